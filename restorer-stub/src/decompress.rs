//! The pages of a compressed image (`ckpt freeze --compress`, format compress.rs):
//! each chunk of a run is read from the image into a buffer, its checksum checked,
//! and its LZ4 block decoded straight into place. A chunk whose stored bytes do not
//! match their checksum, or do not decode to exactly its length, ends the restore
//! naming its address range (Step::Decompress). A raw chunk (LZ4 could not shrink
//! it) is read straight into place and checked, as any page data, by its run's CRC.
//!
//! Two slots of buffers, one per thread of the eager fill (fill.rs): a slot holds a
//! chunk's stored bytes and, for a range that starts or ends inside a chunk, the
//! whole decoded chunk to copy the part from.

use crate::ctx::Ctx;
use crate::image;
use crate::out::{self, Line, Step};
use crate::sys;
use ckpt_format::crc32c::crc32c;
use ckpt_format::{PageChunk, Tables, COMPRESS_CHUNK, HDR_COMPRESSED};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};

const SLOTS: usize = 2;
/// Per slot: the stored bytes, then a decoded chunk.
const SLOT_LEN: u64 = 2 * COMPRESS_CHUNK;

/// The buffers' area and the chunk table, set by [`prepare`] while the fill runs.
static AREA: AtomicUsize = AtomicUsize::new(0);
static CHUNKS: AtomicUsize = AtomicUsize::new(0);
static NCHUNKS: AtomicUsize = AtomicUsize::new(0);
static BUSY: [AtomicU32; SLOTS] = [AtomicU32::new(0), AtomicU32::new(0)];

/// The buffers, unmapped when dropped.
pub struct Buffers {
    area: u64,
}

/// Whether the image's pages are compressed.
pub fn active(ctx: &Ctx) -> bool {
    ctx.hdr.flags & HDR_COMPRESSED != 0
}

/// Map the buffers in memory no target VMA covers; None for an image that is not
/// compressed.
pub fn prepare(ctx: &Ctx, t: &Tables) -> Option<Buffers> {
    if !active(ctx) {
        return None;
    }
    let len = SLOTS as u64 * SLOT_LEN;
    let area = match crate::gap::free_range(t, len) {
        Some(a) => a,
        None => out::fail(Step::Decompress, 0, len, sys::ENOMEM),
    };
    CHUNKS.store(t.chunks.as_ptr() as usize, SeqCst);
    NCHUNKS.store(t.chunks.len(), SeqCst);
    AREA.store(area as usize, SeqCst);
    Some(Buffers { area })
}

impl Drop for Buffers {
    fn drop(&mut self) {
        AREA.store(0, SeqCst);
        // SAFETY: the area is ours (free_range) and no fill uses it any more.
        let _ = unsafe { sys::munmap(self.area as usize, (SLOTS as u64 * SLOT_LEN) as usize) };
    }
}

fn chunks() -> &'static [PageChunk] {
    // SAFETY: prepare stored the validated table, which stays mapped (the tables'
    // copy in the gap) for the whole restore.
    unsafe { core::slice::from_raw_parts(CHUNKS.load(SeqCst) as *const PageChunk, NCHUNKS.load(SeqCst)) }
}

/// A free slot's buffer address, held until [`release`].
fn acquire() -> (usize, u64) {
    loop {
        for (i, b) in BUSY.iter().enumerate() {
            if b.compare_exchange(0, 1, SeqCst, SeqCst).is_ok() {
                return (i, AREA.load(SeqCst) as u64 + i as u64 * SLOT_LEN);
            }
        }
        sys::sched_yield();
    }
}

fn release(slot: usize) {
    BUSY[slot].store(0, SeqCst);
}

fn corrupt(c: &PageChunk, what: &str) -> ! {
    Line::new().s("decompress pages failed for ").range(c.addr, c.addr + c.len as u64).s(": ").s(what)
        .s(" (corrupted image)").emit();
    sys::exit_group(Step::Decompress as i32)
}

/// Bring in `[addr, addr + len)` of a compressed image's runs (mapped writable):
/// the pages of one or more chunks, whole or in part.
pub fn fill(ctx: &Ctx, addr: u64, len: u64) {
    let (slot, buf) = acquire();
    let all = chunks();
    let end = addr + len;
    let mut a = addr;
    while a < end {
        let i = all.partition_point(|c| c.addr + c.len as u64 <= a);
        let c = match all.get(i) {
            Some(c) if c.addr <= a => c,
            _ => out::fail(Step::Decompress, a, end, sys::EINVAL),
        };
        let c_end = c.addr + c.len as u64;
        let whole = c.addr == a && c_end <= end;
        let dest = if whole { c.addr } else { buf + COMPRESS_CHUNK };
        put(ctx, c, buf, dest);
        if !whole {
            let to = c_end.min(end);
            // SAFETY: the decoded chunk is in the slot's second half; [a, to) lies in
            // the chunk and in the caller's writable range.
            unsafe { crate::mem::memcpy(a as *mut u8, (dest + (a - c.addr)) as *const u8, (to - a) as usize) };
        }
        a = c_end;
    }
    release(slot);
}

/// Decode chunk `c` to `dest` (`c.len` writable bytes), its stored bytes read
/// through `buf` (a slot's first half).
fn put(ctx: &Ctx, c: &PageChunk, buf: u64, dest: u64) {
    if c.is_raw() {
        // Its bytes are the pages themselves: the fill checks them with their
        // run's CRC-32C, as in a file that is not compressed (exit 108).
        image::read_at(ctx, dest as usize, c.len as usize, c.data_off, Step::Decompress);
        return;
    }
    image::read_at(ctx, buf as usize, c.stored_len as usize, c.data_off, Step::Decompress);
    // SAFETY: just read, in a mapped range of stored_len <= COMPRESS_CHUNK bytes.
    let stored = unsafe { core::slice::from_raw_parts(buf as *const u8, c.stored_len as usize) };
    if crc32c(stored, ctx.hw_crc) != c.crc {
        corrupt(c, "compressed chunk checksum mismatch");
    }
    // SAFETY: dest is c.len writable bytes (the chunk's place, or the slot's second
    // half), disjoint from the stored bytes in the first half.
    let out = unsafe { core::slice::from_raw_parts_mut(dest as *mut u8, c.len as usize) };
    match lz4_flex::block::decompress_into(stored, out) {
        Ok(n) if n == c.len as usize => {}
        _ => corrupt(c, "compressed chunk does not decode to its length"),
    }
}
