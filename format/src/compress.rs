//! Compressed page data (`ckpt freeze --compress`, header flag [`HDR_COMPRESSED`]).
//!
//! Each page run is cut into chunks that end at [`COMPRESS_CHUNK`] address
//! boundaries (the same cut as the stub's eager fill, so one chunk is one read and
//! one decode). A chunk's bytes are stored as one LZ4 block, or raw when LZ4 does
//! not make them smaller. The Chunks section holds one [`PageChunk`] per chunk, in
//! run order; the runs keep their address, length and CRC-32C of the uncompressed
//! bytes (checked after decoding, as for a plain image), and their `data_off` is 0.
//! Each chunk carries the CRC-32C of its stored bytes, so a corrupted chunk is
//! named before it is decoded. Only page runs are compressed; fd data and file
//! extents stay as they are.

use crate::records::PageRun;
use crate::{align_up, FormatError, DATA_START, PAGE_SIZE};

/// Header flag: page runs are stored as the chunks of the Chunks section.
pub const HDR_COMPRESSED: u64 = 1 << 3;

/// Chunks end at multiples of this address: 2 MiB.
pub const COMPRESS_CHUNK: u64 = 2 << 20;

/// Most chunks an image may hold (every run has one, and one per 2 MiB more).
pub const MAX_CHUNKS: u32 = 1 << 25;

/// One stored piece of a page run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageChunk {
    /// Address of its first byte: its run's start, or a multiple of
    /// [`COMPRESS_CHUNK`] inside the run.
    pub addr: u64,
    /// Image offset of the stored bytes (any alignment, >= DATA_START).
    pub data_off: u64,
    /// Uncompressed bytes: up to the next [`COMPRESS_CHUNK`] boundary or the run's end.
    pub len: u32,
    /// Stored bytes: `len` when stored raw, fewer for an LZ4 block.
    pub stored_len: u32,
    /// CRC-32C of the stored bytes.
    pub crc: u32,
    /// Index of its run in the Runs section.
    pub run: u32,
}

impl PageChunk {
    /// Whether the bytes are stored as they are (not an LZ4 block).
    pub fn is_raw(&self) -> bool {
        self.stored_len == self.len
    }
}

/// Where the chunk starting at `addr` of a run ending at `run_end` ends.
pub const fn chunk_end(addr: u64, run_end: u64) -> u64 {
    let b = align_up(addr + 1, COMPRESS_CHUNK);
    if b < run_end {
        b
    } else {
        run_end
    }
}

/// Without the flag there are no chunks and runs hold their bytes; with it, every
/// run's `data_off` is 0 and the chunks cut every run exactly, in order: run by
/// run, each chunk where the previous one ended and as long as [`chunk_end`] says,
/// its stored bytes non-empty, no longer than its own, and inside the image.
pub fn check(flags: u64, runs: &[PageRun], chunks: &[PageChunk], image_size: u64) -> Result<(), FormatError> {
    if flags & HDR_COMPRESSED == 0 {
        if !chunks.is_empty() {
            return Err(FormatError::BadChunk { index: 0, what: "chunks in an image without compressed pages" });
        }
        return Ok(());
    }
    let mut next = 0usize;
    for (ri, r) in runs.iter().enumerate() {
        if r.data_off != 0 {
            return Err(FormatError::BadRun { index: ri as u32, what: "data offset set in a compressed image" });
        }
        let end = r.addr + r.len; // checked by check_runs
        let mut addr = r.addr;
        while addr < end {
            let i = next as u32;
            let bad = |what| Err(FormatError::BadChunk { index: i, what });
            let Some(c) = chunks.get(next) else {
                return Err(FormatError::BadRun { index: ri as u32, what: "not covered by its chunks" });
            };
            if c.run != ri as u32 || c.addr != addr {
                return bad("not the next piece of its run");
            }
            if c.len as u64 != chunk_end(addr, end) - addr {
                return bad("length does not end at a chunk boundary or the run's end");
            }
            if c.stored_len == 0 || c.stored_len > c.len {
                return bad("stored length empty or longer than the chunk");
            }
            if c.data_off < DATA_START || c.data_off.checked_add(c.stored_len as u64).is_none_or(|e| e > image_size) {
                return bad("data outside the image");
            }
            addr += c.len as u64;
            next += 1;
        }
    }
    if next != chunks.len() {
        return Err(FormatError::BadChunk { index: next as u32, what: "chunk past the last run" });
    }
    Ok(())
}

/// The chunk starting at `addr` (chunks are sorted by address, checked on read).
pub fn chunk_at(chunks: &[PageChunk], addr: u64) -> Option<&PageChunk> {
    let i = chunks.partition_point(|c| c.addr < addr);
    chunks.get(i).filter(|c| c.addr == addr)
}

const _: () = assert!(COMPRESS_CHUNK.is_multiple_of(PAGE_SIZE) && COMPRESS_CHUNK <= u32::MAX as u64);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(addr: u64, len: u64) -> PageRun {
        PageRun { addr, len, ..PageRun::default() }
    }

    /// The chunks of `runs`, stored raw one after another from DATA_START.
    fn cut(runs: &[PageRun]) -> alloc_free::Chunks {
        let mut out = alloc_free::Chunks::default();
        let mut off = DATA_START;
        for (i, r) in runs.iter().enumerate() {
            let mut a = r.addr;
            while a < r.addr + r.len {
                let e = chunk_end(a, r.addr + r.len);
                let len = (e - a) as u32;
                out.push(PageChunk { addr: a, data_off: off, len, stored_len: len, crc: 0, run: i as u32 });
                off += len as u64;
                a = e;
            }
        }
        out
    }

    /// A fixed-capacity list (the format crate has no allocator).
    mod alloc_free {
        use super::PageChunk;
        #[derive(Default)]
        pub struct Chunks {
            pub items: [PageChunk; 16],
            pub len: usize,
        }
        impl Chunks {
            pub fn push(&mut self, c: PageChunk) {
                self.items[self.len] = c;
                self.len += 1;
            }
            pub fn as_slice(&self) -> &[PageChunk] {
                &self.items[..self.len]
            }
            pub fn as_mut_slice(&mut self) -> &mut [PageChunk] {
                &mut self.items[..self.len]
            }
        }
    }

    const M: u64 = COMPRESS_CHUNK;
    const BIG: u64 = 1 << 40;

    fn runs() -> [PageRun; 2] {
        // One small run, one from inside a 2 MiB block across three boundaries.
        [run(0x10000, 2 * PAGE_SIZE), run(5 * M - PAGE_SIZE, 2 * M + 3 * PAGE_SIZE)]
    }

    #[test]
    fn size_is_pinned() {
        assert_eq!(core::mem::size_of::<PageChunk>(), 32);
    }

    #[test]
    fn chunks_end_at_boundaries() {
        assert_eq!(chunk_end(0, 3 * M), M);
        assert_eq!(chunk_end(M - PAGE_SIZE, 3 * M), M);
        assert_eq!(chunk_end(M, 3 * M), 2 * M);
        assert_eq!(chunk_end(2 * M, 2 * M + PAGE_SIZE), 2 * M + PAGE_SIZE);
        let c = cut(&runs());
        let lens: [u32; 5] = core::array::from_fn(|i| c.as_slice()[i].len);
        assert_eq!(c.len, 5);
        assert_eq!(lens, [2 * PAGE_SIZE as u32, PAGE_SIZE as u32, M as u32, M as u32, 2 * PAGE_SIZE as u32]);
        assert_eq!(chunk_at(c.as_slice(), 5 * M).map(|c| c.len), Some(M as u32));
        assert!(chunk_at(c.as_slice(), 5 * M + PAGE_SIZE).is_none());
    }

    #[test]
    fn valid_chunks_are_accepted() {
        let r = runs();
        assert_eq!(check(HDR_COMPRESSED, &r, cut(&r).as_slice(), BIG), Ok(()));
        assert_eq!(check(0, &r, &[], BIG), Ok(()));
        assert_eq!(check(HDR_COMPRESSED, &[], &[], BIG), Ok(()));
    }

    fn expect(f: impl FnOnce(&mut [PageRun; 2], &mut alloc_free::Chunks), want: FormatError) {
        let mut r = runs();
        let mut c = cut(&r);
        f(&mut r, &mut c);
        assert_eq!(check(HDR_COMPRESSED, &r, c.as_slice(), BIG), Err(want));
    }

    const BC: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadChunk { index, what };

    #[test]
    fn each_way_a_chunk_is_rejected() {
        let r = runs();
        assert_eq!(check(0, &r, cut(&r).as_slice(), BIG), Err(BC(0, "chunks in an image without compressed pages")));
        expect(|r, _| r[1].data_off = DATA_START, FormatError::BadRun { index: 1, what: "data offset set in a compressed image" });
        expect(|_, c| c.len -= 1, FormatError::BadRun { index: 1, what: "not covered by its chunks" });
        expect(|_, c| c.push(c.items[4]), BC(5, "chunk past the last run"));
        expect(|_, c| c.as_mut_slice()[1].run = 0, BC(1, "not the next piece of its run"));
        expect(|_, c| c.as_mut_slice()[2].addr += PAGE_SIZE, BC(2, "not the next piece of its run"));
        expect(|_, c| c.as_mut_slice()[2].len -= PAGE_SIZE as u32, BC(2, "length does not end at a chunk boundary or the run's end"));
        expect(|_, c| c.as_mut_slice()[4].len += PAGE_SIZE as u32, BC(4, "length does not end at a chunk boundary or the run's end"));
        expect(|_, c| c.as_mut_slice()[0].stored_len = 0, BC(0, "stored length empty or longer than the chunk"));
        expect(|_, c| c.as_mut_slice()[0].stored_len += 1, BC(0, "stored length empty or longer than the chunk"));
        expect(|_, c| c.as_mut_slice()[1].data_off = DATA_START - 1, BC(1, "data outside the image"));
        expect(|_, c| c.as_mut_slice()[1].data_off = u64::MAX - 2, BC(1, "data outside the image"));
        expect(|_, c| c.as_mut_slice()[3].data_off = BIG - 1, BC(3, "data outside the image"));
        // Swapped records: out of order.
        expect(|_, c| c.as_mut_slice().swap(2, 3), BC(2, "not the next piece of its run"));
    }
}
