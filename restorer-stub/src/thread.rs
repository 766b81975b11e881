//! Per-thread kernel state that lives outside the registers: the rseq registration
//! (rseq(2); glibc registers every thread and caches the area's address in TLS), the
//! fs/gs bases (arch_prctl(2)), the robust futex list and clear_child_tid address.

use crate::out::{self, Step};
use crate::sys;
use ckpt_format::Thread;

pub fn restore(th: &Thread) {
    if th.rseq_addr != 0 {
        out::trace("register rseq", th.rseq_addr, th.rseq_addr + th.rseq_len as u64);
        // SAFETY: the rseq area is in the target memory just restored.
        let r = unsafe { sys::rseq(th.rseq_addr, th.rseq_len, 0, th.rseq_sig) };
        out::check(r, Step::Thread, th.rseq_addr, th.rseq_addr + th.rseq_len as u64);
    }
    out::check(sys::arch_prctl(sys::ARCH_SET_FS, th.regs.fs_base), Step::Thread, th.regs.fs_base, 0);
    if th.regs.gs_base != 0 {
        out::check(sys::arch_prctl(sys::ARCH_SET_GS, th.regs.gs_base), Step::Thread, th.regs.gs_base, 0);
    }
    if th.robust_list != 0 {
        // SAFETY: the list head is in restored target memory.
        let r = unsafe { sys::set_robust_list(th.robust_list, th.robust_len) };
        out::check(r, Step::Thread, th.robust_list, th.robust_list + th.robust_len);
    }
    if th.tid_address != 0 {
        // SAFETY: the word is in restored target memory.
        let _ = unsafe { sys::set_tid_address(th.tid_address) };
    }
}
