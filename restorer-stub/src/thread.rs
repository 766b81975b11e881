//! Per-thread kernel state that lives outside the registers, set by each thread for
//! itself: the rseq registration (rseq(2); glibc registers every thread and caches
//! the area's address in TLS), the fs/gs bases (arch_prctl(2)), the robust futex
//! list, the clear_child_tid address, the thread's name and its scheduling (both
//! per thread on Linux, sched(7)).

use crate::out::{self, Line, Step};
use crate::sys::{self, call};
use ckpt_format::Thread;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering::Relaxed;

const PR_SET_NAME: usize = 15;

/// Policy, priority and nice value as they were. A thread may lower its own
/// priority, but raising it (a negative nice, a real-time policy) needs CAP_SYS_NICE
/// or RLIMIT_NICE/RLIMIT_RTPRIO (sched(7)): then the thread runs with what it has,
/// and a warning says so.
fn scheduling(th: &Thread, created: bool) {
    let (policy, cur_nice) = current_scheduling(created);
    if policy != Ok(th.sched_policy as usize) || th.sched_priority != 0 {
        let param = th.sched_priority as i32;
        // SAFETY: param is a struct sched_param (one int).
        let r = unsafe { call(sys::SYS_SCHED_SETSCHEDULER, [0, th.sched_policy as usize, &param as *const i32 as usize, 0, 0, 0]) };
        if let Err(e) = r {
            Line::new().s("ckpt: warning: thread ").dec(th.tid as u64).s(": scheduling policy ").dec(th.sched_policy as u64)
                .s(" priority ").dec(th.sched_priority as u64).s(" not restored: ").errno(e).emit();
        }
    }
    if cur_nice != Ok(th.nice) {
        // SAFETY: integer arguments only (PRIO_PROCESS, 0 = the calling thread).
        if let Err(e) = unsafe { call(sys::SYS_SETPRIORITY, [0, 0, th.nice as isize as usize, 0, 0, 0]) } {
            Line::new().s("ckpt: warning: thread ").dec(th.tid as u64).s(": nice value not restored: ").errno(e).emit();
        }
    }
}

/// The calling thread's policy and nice value (getpriority(2): the raw system call
/// returns 20 - nice).
fn read_scheduling() -> (sys::Res, sys::Res) {
    // SAFETY: integer arguments only.
    let (policy, nice) = unsafe { (call(sys::SYS_SCHED_GETSCHEDULER, [0; 6]), call(sys::SYS_GETPRIORITY, [0, 0, 0, 0, 0, 0])) };
    (policy, nice.map(|n| (20 - n as i32) as usize))
}

/// What a thread created by the restorer starts with: the leader's policy and nice
/// value at the time (clone(2) copies them), read once by [`inherit_scheduling`].
static INHERITED_POLICY: AtomicUsize = AtomicUsize::new(usize::MAX);
static INHERITED_NICE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Called by the leader just before it creates the other threads.
pub fn inherit_scheduling() {
    let (p, n) = read_scheduling();
    INHERITED_POLICY.store(p.unwrap_or(usize::MAX), Relaxed);
    INHERITED_NICE.store(n.unwrap_or(usize::MAX), Relaxed);
}

/// This thread's policy and nice: inherited for a created thread, else asked for.
fn current_scheduling(created: bool) -> (sys::Res, Result<i32, isize>) {
    let (p, n) = if created && INHERITED_POLICY.load(Relaxed) != usize::MAX {
        (Ok(INHERITED_POLICY.load(Relaxed)), Ok(INHERITED_NICE.load(Relaxed)))
    } else {
        read_scheduling()
    };
    (p, n.map(|v| v as i32))
}

/// Set thread `th`'s own state; `created`: the calling thread is one the restorer
/// created (threads.rs), not the leader.
pub fn restore(th: &Thread, created: bool) {
    if th.comm[0] != 0 {
        let mut name = [0u8; 16];
        name[..15].copy_from_slice(&th.comm[..15]);
        // SAFETY: name is NUL-terminated within 16 bytes.
        let _ = unsafe { sys::prctl(PR_SET_NAME, name.as_ptr() as usize, 0, 0) };
    }
    scheduling(th, created);
    if th.rseq_addr != 0 {
        out::trace("register rseq", th.rseq_addr, th.rseq_addr + th.rseq_len as u64);
        // SAFETY: the rseq area is in the target memory just restored.
        let r = unsafe { sys::rseq(th.rseq_addr, th.rseq_len, 0, th.rseq_sig) };
        out::check(r, Step::Thread, th.rseq_addr, th.rseq_addr + th.rseq_len as u64);
    }
    // A created thread got its fs base from clone3's CLONE_SETTLS (threads.rs).
    if !created {
        out::check(sys::arch_prctl(sys::ARCH_SET_FS, th.regs.fs_base), Step::Thread, th.regs.fs_base, 0);
    }
    if th.regs.gs_base != 0 {
        out::check(sys::arch_prctl(sys::ARCH_SET_GS, th.regs.gs_base), Step::Thread, th.regs.gs_base, 0);
    }
    if th.robust_list != 0 {
        // SAFETY: the list head is in restored target memory.
        let r = unsafe { sys::set_robust_list(th.robust_list, th.robust_len) };
        out::check(r, Step::Thread, th.robust_list, th.robust_list + th.robust_len);
    }
    // A created thread got its clear_child_tid from clone3's CLONE_CHILD_CLEARTID.
    if th.tid_address != 0 && !created {
        // SAFETY: the word is in restored target memory.
        let _ = unsafe { sys::set_tid_address(th.tid_address) };
    }
}
