//! A second thread for the page fill (fill.rs), so that both cores allocate, read
//! and checksum pages. It exists only while the pages are filled: the leader waits
//! until the kernel has cleared its clear_child_tid word (set_tid_address(2): after
//! the thread has stopped using its stack and memory) and then until its thread id
//! is gone (tgkill(2) with signal 0 says ESRCH), so the id is free again for a
//! thread or process to be created at its saved id, and the stack can be unmapped.

use crate::arch;
use crate::out::{self, Step};
use crate::sys::{self, CloneArgs};
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};

/// The filler's stack (its work is a loop of system calls and checksums).
pub const STACK: u64 = 64 * 1024;

/// Non-zero while the filler runs; the kernel zeroes it and wakes the leader when
/// the thread exits (CLONE_CHILD_CLEARTID).
static RUNNING: AtomicU32 = AtomicU32::new(0);
static ENTRY: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// A started filler thread: its thread id.
pub struct Filler(u32);

/// Start a thread running `f` on the stack `[stack, stack + STACK)`.
pub fn start(stack: u64, f: extern "C" fn()) -> Filler {
    RUNNING.store(1, SeqCst);
    ENTRY.store(f as usize, SeqCst);
    let args = CloneArgs {
        flags: sys::CLONE_THREAD_FLAGS | sys::CLONE_CHILD_CLEARTID,
        pidfd: 0,
        child_tid: RUNNING.as_ptr() as u64,
        parent_tid: 0,
        exit_signal: 0,
        stack,
        stack_size: STACK,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: 0,
    };
    // SAFETY: a CLONE_VM thread on its own stack; main never returns.
    let r = unsafe { arch::clone3_thread(&args as *const CloneArgs as usize, core::mem::size_of::<CloneArgs>(), main as *const () as usize, 0) };
    if r < 0 {
        out::fail(Step::FillPages, stack, stack + STACK, -r);
    }
    out::trace("filler thread started", r as u64, stack);
    Filler(r as u32)
}

extern "C" fn main(_: usize) -> ! {
    // SAFETY: start stored a valid `extern "C" fn()` before creating this thread.
    let f: extern "C" fn() = unsafe { core::mem::transmute::<usize, extern "C" fn()>(ENTRY.load(SeqCst)) };
    f();
    sys::exit_thread(0)
}

/// Wait until the filler has exited and its thread id is released.
pub fn join(f: Filler) {
    loop {
        let r = RUNNING.load(SeqCst);
        if r == 0 {
            break;
        }
        sys::futex_wait_shared(&RUNNING, r);
    }
    // The id is released a moment after clear_child_tid (release_task runs after
    // exit_mm in do_exit): wait for it, bounded.
    let pid = sys::getpid();
    for _ in 0..100_000 {
        if sys::tgkill(pid, f.0 as usize, 0) == Err(sys::ESRCH) {
            return;
        }
        sys::sched_yield();
    }
    out::fail(Step::FillPages, 0, 0, sys::EBUSY);
}
