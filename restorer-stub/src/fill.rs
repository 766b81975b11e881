//! The eager page fill: every page run to read back is cut into chunks that end at
//! 2 MiB address boundaries, and each chunk is brought in by one call to allocate
//! its pages, one read into place and its checksum while the bytes are still in the
//! CPU's cache. Chunks are taken in order from one shared counter by the leader and,
//! for a large fill, by a second thread (filler.rs) on the other core; the chunks'
//! CRCs are then joined per run (crc32c::combine) and compared with the run's own.
//!
//! Anonymous memory is allocated with MADV_POPULATE_WRITE (madvise(2), Linux 5.14):
//! one call per chunk instead of a page fault per page inside read(2), and unlike
//! MAP_POPULATE of a whole VMA it lets both threads allocate at once; a 2 MiB aligned
//! chunk of a range that had MADV_HUGEPAGE gets a huge page. The mapping stays an
//! ordinary private (or shared) anonymous one.

use crate::ctx::Ctx;
use crate::filler;
use crate::image;
use crate::out::{Line, Step};
use crate::progress;
use crate::sys;
use ckpt_format::crc32c::{combine, crc32c};
use ckpt_format::{align_up, PageRun, Tables, PAGE_SIZE};
use core::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// Chunks end at multiples of this address (a huge page, and a size that fits in
/// the L2 cache of one core with room to spare).
const CHUNK: u64 = 2 << 20;
/// Below this, a chunk's pages are left to fault in during the read.
const POPULATE_MIN: u64 = 64 << 10;
/// Fills of at least this many bytes are shared with a second thread. Starting it
/// and waiting for its exit costs about 0.1 ms; allocating and reading 4 MiB costs
/// about 2 ms on one core (python with numpy imported has 18 MiB to fill: 15 ms on
/// one thread, 10 ms on two). Below it the second thread would barely start.
const TWO_THREADS_MIN: u64 = 4 << 20;

/// One piece of a run: `[addr, addr + len)` from image offset `off`.
#[derive(Clone, Copy)]
struct Chunk {
    addr: u64,
    len: u64,
    off: u64,
    /// Index of the run in the Runs table.
    run: u32,
    /// Whether the memory is anonymous (allocated with MADV_POPULATE_WRITE).
    anon: u32,
}

/// What is left to do for a VMA once its pages are in.
#[derive(PartialEq, Eq)]
pub enum Finish {
    /// Not created by the eager fill (objects, lazily filled, kernel-provided).
    Nothing,
    /// Its lock, if it had one.
    Keep,
    /// Its final protection, then its lock.
    Protect,
}

/// The chunks of every run to fill, in run order, in memory free in both layouts,
/// and what each VMA still needs once they are in.
pub struct Plan {
    chunks: *mut Chunk,
    crcs: *mut u32,
    /// One byte per VMA: 0 nothing, 1 keep, 2 protect.
    finish: *mut u8,
    cap: usize,
    len: usize,
    bytes: u64,
    area: u64,
    area_len: u64,
}

/// The plan the threads work on, and the next chunk to take.
static PLAN: AtomicUsize = AtomicUsize::new(0);
static NEXT: AtomicUsize = AtomicUsize::new(0);
static CTX: AtomicUsize = AtomicUsize::new(0);

impl Plan {
    /// Room for the chunks of every run of the image (an upper bound) and for the
    /// filler thread's stack, in a range no target VMA covers.
    pub fn new(t: &Tables) -> Plan {
        let cap: usize = t.runs.iter().map(|r| (r.len / CHUNK) as usize + 2).sum();
        let chunks_len = align_up((cap * core::mem::size_of::<Chunk>()) as u64, PAGE_SIZE);
        let crcs_len = align_up((cap * 4) as u64, PAGE_SIZE);
        let finish_len = align_up(t.vmas.len() as u64, PAGE_SIZE);
        let area_len = chunks_len + crcs_len + finish_len + filler::STACK;
        let area = match crate::gap::free_range(t, area_len) {
            Some(a) => a,
            None => crate::out::fail(Step::FillPages, 0, area_len, sys::ENOMEM),
        };
        let finish = (area + chunks_len + crcs_len) as *mut u8;
        Plan { chunks: area as *mut Chunk, crcs: (area + chunks_len) as *mut u32, finish, cap, len: 0, bytes: 0, area, area_len }
    }

    /// VMA `index` was created here: once filled, give it its final protection
    /// (`protect`) and lock.
    pub fn finish_later(&mut self, index: usize, protect: bool) {
        // SAFETY: index < t.vmas.len(), the bytes reserved (fresh memory is zero).
        unsafe { self.finish.add(index).write(1 + protect as u8) };
    }

    /// What VMA `index` still needs.
    pub fn finish(&self, index: usize) -> Finish {
        // SAFETY: as finish_later.
        match unsafe { self.finish.add(index).read() } {
            0 => Finish::Nothing,
            1 => Finish::Keep,
            _ => Finish::Protect,
        }
    }

    /// Add the runs of `runs` to fill (skipping clean file pages when `same`).
    /// Returns whether any was added.
    pub fn add(&mut self, t: &Tables, runs: &[PageRun], same: bool, anon: bool) -> bool {
        let mut any = false;
        for r in runs {
            if same && r.flags & ckpt_format::RUN_FILE_CLEAN != 0 {
                progress::add(r.len);
                continue;
            }
            any = true;
            // SAFETY: r is an element of t.runs.
            let run = unsafe { (r as *const PageRun).offset_from(t.runs.as_ptr()) } as u32;
            let mut addr = r.addr;
            while addr < r.addr + r.len {
                let end = (align_up(addr + 1, CHUNK)).min(r.addr + r.len);
                if self.len == self.cap {
                    crate::out::fail(Step::FillPages, r.addr, r.addr + r.len, sys::ENOMEM);
                }
                let c = Chunk { addr, len: end - addr, off: r.data_off + (addr - r.addr), run, anon: anon as u32 };
                // SAFETY: len < cap slots were reserved in the plan's area.
                unsafe { self.chunks.add(self.len).write(c) };
                self.len += 1;
                self.bytes += end - addr;
                addr = end;
            }
        }
        any
    }

    /// Bring every chunk in: on this thread, and on a second one for a large fill.
    pub fn run(&self, ctx: &Ctx) {
        PLAN.store(self as *const Plan as usize, SeqCst);
        CTX.store(ctx as *const Ctx as usize, SeqCst);
        NEXT.store(0, SeqCst);
        let helper = if self.bytes >= TWO_THREADS_MIN {
            Some(filler::start(self.area + self.area_len - filler::STACK, work))
        } else {
            None
        };
        work();
        if let Some(h) = helper {
            filler::join(h);
        }
        crate::out::trace("pages filled", self.bytes, self.len as u64);
    }

    /// Compare each run's CRC with the join of its chunks' ones.
    pub fn verify(&self, t: &Tables) {
        let mut i = 0;
        while i < self.len {
            // SAFETY: i < len, written by add and (crc) by work.
            let (first, mut crc) = unsafe { (*self.chunks.add(i), *self.crcs.add(i)) };
            i += 1;
            // SAFETY: as above.
            while i < self.len && unsafe { (*self.chunks.add(i)).run } == first.run {
                // SAFETY: as above.
                let (c, ccrc) = unsafe { (*self.chunks.add(i), *self.crcs.add(i)) };
                crc = combine(crc, ccrc, c.len);
                i += 1;
            }
            let r = &t.runs[first.run as usize];
            if crc != r.crc {
                Line::new().s("fill pages failed for ").range(r.addr, r.addr + r.len)
                    .s(": page data checksum mismatch (corrupted image)").emit();
                sys::exit_group(Step::FillPages as i32);
            }
        }
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: the area is ours (free_range), no thread uses it any more.
        let _ = unsafe { sys::munmap(self.area as usize, self.area_len as usize) };
    }
}

/// Take chunks until none is left; run by the leader and the filler thread.
extern "C" fn work() {
    // SAFETY: run() set both before any thread calls this, and they outlive it.
    let (plan, ctx) = unsafe { (&*(PLAN.load(SeqCst) as *const Plan), &*(CTX.load(SeqCst) as *const Ctx)) };
    loop {
        let i = NEXT.fetch_add(1, SeqCst);
        if i >= plan.len {
            break;
        }
        // SAFETY: i < len; each chunk is taken by exactly one thread.
        let c = unsafe { *plan.chunks.add(i) };
        if c.anon != 0 && c.len >= POPULATE_MIN {
            // Best effort: without it (EINVAL before 5.14) the read faults pages in.
            let _ = sys::madvise(c.addr as usize, c.len as usize, sys::MADV_POPULATE_WRITE);
        }
        if crate::decompress::active(ctx) {
            crate::decompress::fill(ctx, c.addr, c.len);
        } else {
            image::read_at(ctx, c.addr as usize, c.len as usize, c.off, Step::FillPages);
        }
        // SAFETY: the chunk was just written in a mapped, readable range.
        let data = unsafe { core::slice::from_raw_parts(c.addr as *const u8, c.len as usize) };
        // SAFETY: slot i belongs to this chunk; verify reads it after both threads end.
        unsafe { plan.crcs.add(i).write(crc32c(data, ctx.hw_crc)) };
        progress::add(c.len);
    }
}
