//! Which pages the helper still owes a process, in the addresses of the freeze.
//!
//! Every page of the lazily resumed VMAs has one bit, set once the page is settled:
//! copied in, zero-filled, or given up by the process (MADV_DONTNEED, munmap, or
//! moved by mremap after the helper copied it to its new place). A page whose bit is
//! clear is therefore still missing at its original address, which is what lets a
//! fault be answered from the image without tracking every later change of layout;
//! a missing page whose bit is set can only be one the process dropped, and reads as
//! zeros, as after MADV_DONTNEED in an eager resume.

use super::eligible;
use crate::sys;
use ckpt_format::{PageRun, Tables, PAGE_SIZE};

/// One lazily resumed VMA: its range, its first bit and its runs.
#[derive(Clone, Copy)]
pub struct Span {
    pub start: u64,
    pub end: u64,
    pub bit: u64,
    pub first_run: u32,
    pub nruns: u32,
}

/// Memory of the helper's own, zeroed, never freed (the helper exits when done).
pub fn alloc(bytes: usize) -> *mut u8 {
    let len = ckpt_format::align_up(bytes.max(1) as u64, PAGE_SIZE) as usize;
    // SAFETY: a new anonymous mapping at an address of the kernel's choice.
    match unsafe { sys::mmap(0, len, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_PRIVATE | sys::MAP_ANONYMOUS, -1, 0) } {
        Ok(a) => a as *mut u8,
        Err(_) => sys::exit_group(1),
    }
}

/// The spans, in address order (the VMAs are validated sorted).
pub struct Index {
    pub spans: &'static [Span],
    pub nbits: u64,
}

impl Index {
    pub fn build(t: &Tables) -> Index {
        let n = t.vmas.iter().filter(|v| eligible(v)).count();
        let p = alloc(n * core::mem::size_of::<Span>()) as *mut Span;
        let mut bit = 0;
        for (i, v) in t.vmas.iter().filter(|v| eligible(v)).enumerate() {
            let s = Span { start: v.start, end: v.end, bit, first_run: v.first_run, nruns: v.nruns };
            // SAFETY: i < n, inside the allocation made for n spans.
            unsafe { p.add(i).write(s) };
            bit += (v.end - v.start) / PAGE_SIZE;
        }
        // SAFETY: n spans were written above; the memory is never freed.
        Index { spans: unsafe { core::slice::from_raw_parts(p, n) }, nbits: bit }
    }

    /// The span holding `addr` and the page's bit.
    pub fn find(&self, addr: u64) -> Option<(&Span, u64)> {
        let i = self.spans.partition_point(|s| s.end <= addr);
        let s = self.spans.get(i).filter(|s| s.start <= addr)?;
        Some((s, s.bit + (addr - s.start) / PAGE_SIZE))
    }

    /// The run of `s` holding `addr`, if the page was stored (else it was zero).
    pub fn run_at<'a>(&self, t: &Tables<'a>, s: &Span, addr: u64) -> Option<&'a PageRun> {
        let runs = &t.runs[s.first_run as usize..(s.first_run + s.nruns) as usize];
        let i = runs.partition_point(|r| r.addr + r.len <= addr);
        runs.get(i).filter(|r| r.addr <= addr)
    }
}

/// One bit per page of the index.
pub struct Done {
    words: &'static mut [u64],
}

impl Done {
    pub fn new(nbits: u64) -> Done {
        let n = nbits.div_ceil(64) as usize;
        let p = alloc(n * 8) as *mut u64;
        // SAFETY: a fresh zeroed allocation of n words, never freed.
        Done { words: unsafe { core::slice::from_raw_parts_mut(p, n) } }
    }

    /// A copy, for a process forked from the one these bits describe.
    pub fn copy(&self) -> Done {
        let d = Done::new(self.words.len() as u64 * 64);
        d.words.copy_from_slice(self.words);
        d
    }

    pub fn test(&self, bit: u64) -> bool {
        self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    pub fn set(&mut self, bit: u64, n: u64) {
        for b in bit..bit + n {
            self.words[(b / 64) as usize] |= 1 << (b % 64);
        }
    }

    /// Settle every page of `[start, end)` (addresses of the freeze).
    pub fn set_range(&mut self, index: &Index, start: u64, end: u64) {
        let first = index.spans.partition_point(|s| s.end <= start);
        for s in index.spans[first..].iter().take_while(|s| s.start < end) {
            let (lo, hi) = (start.max(s.start), end.min(s.end));
            self.set(s.bit + (lo - s.start) / PAGE_SIZE, (hi - lo).div_ceil(PAGE_SIZE));
        }
    }
}
