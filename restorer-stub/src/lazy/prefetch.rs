//! Pages read in before the first instruction: the working-set hint (section
//! WorkingSet, `ckpt profile`) and the stack pages around each thread's stack
//! pointer (the frames it returns through and the calls it makes next are what it
//! touches first, hint or not). They are read into place right after their VMA is
//! created, before it is registered with the userfaultfd (a registered missing page
//! would wait for a helper that does not serve yet). The helper counts the same
//! ranges as settled from the start (server.rs), so the process never faults on
//! them; a page of them that is not stored stays missing and faults in as zeros,
//! as it should.

use crate::ctx::Ctx;
use crate::image;
use crate::out::{self, Step};
use crate::sys;
use ckpt_format::{Tables, Vma, PAGE_SIZE, PROT_WRITE, THREAD_EXITED};

/// Stack read in on each side of a thread's stack pointer.
const AROUND_SP: u64 = 4 * PAGE_SIZE;

/// Call `f` with every range `[start, end)` read in before the first instruction
/// (they may overlap, and reach past the lazily resumed VMAs).
pub fn for_each_range(t: &Tables, mut f: impl FnMut(u64, u64)) {
    for r in t.working_set {
        f(r.start, r.end());
    }
    for th in t.threads.iter().filter(|th| th.flags & THREAD_EXITED == 0) {
        let sp = th.regs.rsp & !(PAGE_SIZE - 1);
        f(sp.saturating_sub(AROUND_SP), sp.saturating_add(AROUND_SP));
    }
}

/// Read the stored pages of `v` in those ranges into place; returns the bytes read.
pub fn fill(ctx: &Ctx, t: &Tables, v: &Vma) -> u64 {
    let runs = &t.runs[v.first_run as usize..(v.first_run + v.nruns) as usize];
    let mut unprotected = false;
    let mut bytes = 0;
    for_each_range(t, |start, end| {
        let (start, end) = (start.max(v.start), end.min(v.end));
        if start >= end {
            return;
        }
        for r in runs[runs.partition_point(|r| r.addr + r.len <= start)..].iter().take_while(|r| r.addr < end) {
            let (lo, hi) = (start.max(r.addr), end.min(r.addr + r.len));
            if v.prot & PROT_WRITE == 0 && !unprotected {
                protect(v, sys::PROT_READ | sys::PROT_WRITE);
                unprotected = true;
            }
            image::read_at(ctx, lo as usize, (hi - lo) as usize, r.data_off + (lo - r.addr), Step::FillPages);
            bytes += hi - lo;
        }
    });
    if unprotected {
        protect(v, v.prot as usize);
    }
    if bytes != 0 {
        out::trace("lazy: read in first (bytes, in the vma at)", bytes, v.start);
    }
    bytes
}

fn protect(v: &Vma, prot: usize) {
    // SAFETY: the range is the target's VMA just created.
    let r = unsafe { sys::mprotect(v.start as usize, (v.end - v.start) as usize, prot) };
    out::check(r, Step::Protect, v.start, v.end);
}
