//! `ckpt freeze --compress`: page data stored as LZ4 blocks, one per chunk of a run
//! (the chunks end at 2 MiB address boundaries, format/src/compress.rs), packed one
//! after another. A chunk LZ4 does not shrink is stored raw. Memory stays bounded:
//! one staged chunk and one output buffer (2 MiB each), whatever the image's size.
//!
//! LZ4 because its decoder is small, needs no allocator (the restorer decodes in
//! place, restorer-stub/src/decompress.rs) and decodes at several GB/s.

use ckpt_format::{align_up, PageChunk, COMPRESS_CHUNK, PAGE_SIZE};
use std::io::{self, Write};

/// Compresses the page data a [`crate::pages::PageWriter`] is given, chunk by chunk.
pub struct Packer {
    hw: bool,
    /// The chunk being filled: its run, its first address and its bytes so far.
    run: u32,
    addr: u64,
    staged: Vec<u8>,
    out: Vec<u8>,
    pub chunks: Vec<PageChunk>,
    /// Bytes given and bytes written.
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

/// The next chunk boundary after `addr`.
fn boundary(addr: u64) -> u64 {
    align_up(addr + 1, COMPRESS_CHUNK)
}

impl Packer {
    pub fn new(hw: bool) -> Packer {
        Packer { hw, run: 0, addr: 0, staged: Vec::new(), out: Vec::new(), chunks: Vec::new(), raw_bytes: 0, stored_bytes: 0 }
    }

    /// Add `data` for `addr` of run `run` (whole pages, in order): chunks that end
    /// are compressed and written to `w` at image offset `*pos`, which advances.
    pub fn add<W: Write>(&mut self, w: &mut W, pos: &mut u64, run: u32, mut addr: u64, mut data: &[u8]) -> io::Result<()> {
        self.raw_bytes += data.len() as u64;
        if !self.staged.is_empty() && (run != self.run || addr != self.addr + self.staged.len() as u64) {
            self.flush(w, pos)?;
        }
        while !data.is_empty() {
            let start = if self.staged.is_empty() { addr } else { self.addr };
            let room = (boundary(start) - addr) as usize;
            let n = room.min(data.len());
            if self.staged.is_empty() && n == room {
                // A whole chunk in the caller's buffer: no copy.
                self.put(w, pos, run, addr, &data[..n])?;
            } else {
                if self.staged.is_empty() {
                    (self.run, self.addr) = (run, addr);
                }
                self.staged.extend_from_slice(&data[..n]);
                if n == room {
                    self.flush(w, pos)?;
                }
            }
            data = &data[n..];
            addr += n as u64;
        }
        Ok(())
    }

    /// Write the staged chunk, if any (its run ended, or a boundary was reached).
    pub fn flush<W: Write>(&mut self, w: &mut W, pos: &mut u64) -> io::Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        let r = self.put(w, pos, self.run, self.addr, &staged);
        self.staged = staged;
        self.staged.clear();
        r
    }

    /// Compress one chunk and write it (raw when LZ4 does not make it smaller).
    fn put<W: Write>(&mut self, w: &mut W, pos: &mut u64, run: u32, addr: u64, data: &[u8]) -> io::Result<()> {
        debug_assert!(data.len() as u64 <= COMPRESS_CHUNK && (data.len() as u64).is_multiple_of(PAGE_SIZE));
        self.out.resize(lz4_flex::block::get_maximum_output_size(data.len()), 0);
        let stored = match lz4_flex::block::compress_into(data, &mut self.out) {
            Ok(n) if n < data.len() => &self.out[..n],
            _ => data,
        };
        let crc = if self.hw { ::crc32c::crc32c(stored) } else { ckpt_format::crc32c::update_sw(0, stored) };
        self.chunks.push(PageChunk { addr, data_off: *pos, len: data.len() as u32, stored_len: stored.len() as u32, crc, run });
        w.write_all(stored)?;
        *pos += stored.len() as u64;
        self.stored_bytes += stored.len() as u64;
        Ok(())
    }
}

/// Read `buf.len()` bytes of a compressed image's pages from `addr` on (inside one
/// run) out of `file`, whose image starts at `base`: each chunk's stored bytes are
/// checked against their CRC-32C and decoded. For `ckpt info`, `convert` and `core`.
pub fn read_pages(file: &std::fs::File, base: u64, chunks: &[PageChunk], addr: u64, buf: &mut [u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let end = addr + buf.len() as u64;
    let (mut stored, mut whole) = (Vec::new(), Vec::new());
    let mut a = addr;
    while a < end {
        let i = chunks.partition_point(|c| c.addr + c.len as u64 <= a);
        let Some(c) = chunks.get(i).filter(|c| c.addr <= a) else {
            anyhow::bail!("no compressed chunk holds the page at {a:#x}");
        };
        let range = || format!("compressed chunk {:#x}-{:#x}", c.addr, c.addr + c.len as u64);
        stored.resize(c.stored_len as usize, 0);
        file.read_exact_at(&mut stored, base + c.data_off).map_err(anyhow::Error::from).map_err(|e| e.context(range()))?;
        if ckpt_format::crc32c::crc32c(&stored, ckpt_format::crc32c::have_hw()) != c.crc {
            anyhow::bail!("{}: checksum mismatch (corrupted image)", range());
        }
        let bytes: &[u8] = if c.is_raw() {
            &stored
        } else {
            whole.resize(c.len as usize, 0);
            match lz4_flex::block::decompress_into(&stored, &mut whole) {
                Ok(n) if n == whole.len() => &whole,
                _ => anyhow::bail!("{}: does not decode to its length (corrupted image)", range()),
            }
        };
        let to = (c.addr + c.len as u64).min(end);
        buf[(a - addr) as usize..(to - addr) as usize].copy_from_slice(&bytes[(a - c.addr) as usize..(to - c.addr) as usize]);
        a = to;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_format::chunk_end;

    const P: usize = PAGE_SIZE as usize;
    const M: u64 = COMPRESS_CHUNK;

    fn pages(n: usize, seed: u8) -> Vec<u8> {
        (0..n * P).map(|i| if i % 3 == 0 { seed } else { (i / P) as u8 }).collect()
    }

    #[test]
    fn chunks_follow_the_format_cut_and_decode_back() {
        let mut p = Packer::new(false);
        let mut out = Vec::new();
        let mut pos = 4096;
        // Run 0: from one page below a boundary, given in uneven pieces across two
        // boundaries; run 1: one page right after it.
        let start = 3 * M - PAGE_SIZE;
        let all = pages(1 + 2 * (M as usize / P) + 2, 7);
        let cuts = [P, 5 * P, M as usize, all.len()];
        let mut at = 0;
        for &c in &cuts {
            p.add(&mut out, &mut pos, 0, start + at as u64, &all[at..c]).unwrap();
            at = c;
        }
        let end = start + all.len() as u64;
        p.add(&mut out, &mut pos, 1, end, &pages(1, 9)).unwrap();
        p.flush(&mut out, &mut pos).unwrap();
        let mut a = start;
        for c in &p.chunks[..p.chunks.len() - 1] {
            assert_eq!((c.run, c.addr, c.len as u64), (0, a, chunk_end(a, end) - a));
            a += c.len as u64;
        }
        assert_eq!(a, end);
        let last = p.chunks.last().unwrap();
        assert_eq!((last.run, last.addr, last.len), (1, end, P as u32));
        // Decoded, the chunks give the bytes back; each CRC is of its stored bytes.
        let mut back = Vec::new();
        for c in &p.chunks[..p.chunks.len() - 1] {
            let s = &out[(c.data_off - 4096) as usize..][..c.stored_len as usize];
            assert_eq!(c.crc, ckpt_format::crc32c::update_sw(0, s));
            let mut d = vec![0u8; c.len as usize];
            if c.is_raw() {
                d.copy_from_slice(s);
            } else {
                assert_eq!(lz4_flex::block::decompress_into(s, &mut d).unwrap(), c.len as usize);
            }
            back.extend_from_slice(&d);
        }
        assert_eq!(back, all);
        assert!(p.stored_bytes < p.raw_bytes, "repetitive pages compress");
        assert_eq!(pos, 4096 + out.len() as u64);
    }

    #[test]
    fn incompressible_chunks_are_stored_raw() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let noise: Vec<u8> = (0..4 * P)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut p = Packer::new(false);
        let (mut out, mut pos) = (Vec::new(), 4096);
        p.add(&mut out, &mut pos, 0, M, &noise).unwrap();
        p.flush(&mut out, &mut pos).unwrap();
        assert_eq!(p.chunks.len(), 1);
        assert!(p.chunks[0].is_raw());
        assert_eq!(out, noise);
    }
}
