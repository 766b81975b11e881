//! The working-set hint (section WorkingSet, `ckpt profile`): the hinted pages of a
//! lazily resumed VMA are read into place right after the VMA is created, before it
//! is registered with the userfaultfd (a registered missing page would wait for a
//! helper that does not serve yet). The helper counts them as settled from the start
//! (server.rs), so the process never faults on them.

use crate::ctx::Ctx;
use crate::image;
use crate::out::{self, Step};
use crate::sys;
use ckpt_format::{Tables, Vma, PROT_WRITE};

/// Read the hinted, stored pages of `v` into place; returns the bytes read.
pub fn fill(ctx: &Ctx, t: &Tables, v: &Vma) -> u64 {
    let ws = t.working_set;
    let runs = &t.runs[v.first_run as usize..(v.first_run + v.nruns) as usize];
    let mut unprotected = false;
    let mut bytes = 0;
    for h in ws[ws.partition_point(|r| r.end() <= v.start)..].iter().take_while(|r| r.start < v.end) {
        for r in runs[runs.partition_point(|r| r.addr + r.len <= h.start)..].iter().take_while(|r| r.addr < h.end()) {
            let (lo, hi) = (h.start.max(r.addr), h.end().min(r.addr + r.len));
            if v.prot & PROT_WRITE == 0 && !unprotected {
                protect(v, sys::PROT_READ | sys::PROT_WRITE);
                unprotected = true;
            }
            image::read_at(ctx, lo as usize, (hi - lo) as usize, r.data_off + (lo - r.addr), Step::FillPages);
            bytes += hi - lo;
        }
    }
    if unprotected {
        protect(v, v.prot as usize);
    }
    if bytes != 0 {
        out::trace("lazy: working set read in (bytes in range)", bytes, v.start);
    }
    bytes
}

fn protect(v: &Vma, prot: usize) {
    // SAFETY: the range is the target's VMA just created.
    let r = unsafe { sys::mprotect(v.start as usize, (v.end - v.start) as usize, prot) };
    out::check(r, Step::Protect, v.start, v.end);
}
