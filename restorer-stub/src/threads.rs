//! The other threads of the process: created again once the address space and the
//! fds exist, each on a small stack of its own in the gap, with its saved TID
//! (clone3 `set_tid`, in the PID namespace where the process got its own PID back),
//! TLS (CLONE_SETTLS) and clear_child_tid (CLONE_CHILD_CLEARTID).
//!
//! No thread runs target code before all are ready: each sets its own kernel state
//! (thread.rs), writes its signal frame and counts itself ready, then sleeps on one
//! futex word until the leader, having restored everything process-wide, releases
//! all of them at once. Each leaves through rt_sigreturn on its own frame, saying
//! "gone" with a futex operation made from the target's own text (sigframe.rs), so
//! the last thread out can unmap the restorer without pulling code from under
//! another. The last one is the last thread created, so the leader (which, in
//! most programs, is the one that goes on first) leaves at once; or, when the
//! leader had already exited (pthread_exit), the first other thread: the leader
//! then ends again with exit(2) once the others are released, and the process
//! shows the same zombie leader. Creating them takes no round trip per thread:
//! the leader and the first thread it creates each create half of the others, on
//! two cores at once, and the last one to be ready wakes the leader once.
//! Every signal stays blocked in every thread until its own rt_sigreturn.

use crate::arch;
use crate::ctx::Ctx;
use crate::out::{self, Line, Step};
use crate::procstate;
use crate::sigframe;
use crate::sys::{self, CloneArgs};
use crate::thread;
use ckpt_format::{Tables, MAX_THREADS, THREAD_EXITED};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};

/// Stack of each created thread while it is in the restorer (its frame, with room
/// for the fallback that builds the frame and xstate on this stack).
pub const STACK: u64 = 64 * 1024;


/// Threads that have set their state and wait for the release; the last of them
/// (the count reaching NTHREADS - 1) wakes the leader, once.
static READY: AtomicU32 = AtomicU32::new(0);
static NTHREADS: AtomicU32 = AtomicU32::new(0);
/// Set to 1 to release every thread.
static GO: AtomicU32 = AtomicU32::new(0);
/// Threads (other than the last one out) still running restorer code.
static LEFT: AtomicU32 = AtomicU32::new(0);
/// 1 while an exited leader is still running restorer code; its clear_child_tid, so
/// the kernel zeroes it and wakes waiters once the leader is gone (set_tid_address(2)).
static LEADER_HERE: AtomicU32 = AtomicU32::new(0);
/// Whether every thread leaves through the target's text (the gap is then unmapped).
static THROUGH_TARGET: AtomicU32 = AtomicU32::new(0);
/// Whether threads are created with their saved ids (clone3 `set_tid`).
static SAME_IDS: AtomicU32 = AtomicU32::new(0);
/// The Ctx in the gap, for the threads created here.
static CTX: AtomicUsize = AtomicUsize::new(0);

/// The validated tables, parsed once by the leader and read by every thread.
struct Shared(UnsafeCell<Option<Tables<'static>>>);
// SAFETY: written once by the leader before any thread is created, read-only after.
unsafe impl Sync for Shared {}
static TABLES: Shared = Shared(UnsafeCell::new(None));

/// The TID each saved thread got (the saved one unless ids could not be kept).
struct Tids(UnsafeCell<[u32; MAX_THREADS as usize]>);
// SAFETY: each slot is written by the leader before it is read by anyone.
unsafe impl Sync for Tids {}
static TIDS: Tids = Tids(UnsafeCell::new([0; MAX_THREADS as usize]));

fn tables() -> &'static Tables<'static> {
    // SAFETY: set by `start` before any thread exists; never changed afterwards.
    unsafe { (*TABLES.0.get()).as_ref().unwrap_unchecked() }
}

/// The TID thread `i` has now.
pub fn tid_of(i: usize) -> u32 {
    // SAFETY: filled by `start` before anything reads it.
    unsafe { (*TIDS.0.get())[i] }
}

/// The TID now held by the thread saved as `saved`, or 0 if there is none.
pub fn current_tid(t: &Tables, saved: u32) -> usize {
    t.thread_index(saved).map_or(0, |i| tid_of(i) as usize)
}

/// Index of the thread that leaves last and unmaps the gap: a created thread, so
/// the leader runs its own code as soon as every thread is released, without
/// waiting for all others to be scheduled and leave first (the last one created,
/// or the first when an exited leader's ending must be awaited).
fn last_index(t: &Tables) -> usize {
    match t.threads.len() {
        1 => 0,
        _ if t.threads[0].flags & THREAD_EXITED != 0 => 1,
        n => n - 1,
    }
}

/// Create threads 1.. (the calling thread is the leader, thread 0) and wait until
/// each has set its own state. `same_ids`: the process is in the PID namespace where
/// its saved PID is its own, so each thread can ask for its saved TID.
pub fn start(ctx: &Ctx, t: &Tables<'static>, same_ids: bool) {
    // SAFETY: no other thread exists yet.
    unsafe {
        *TABLES.0.get() = Some(*t);
        (*TIDS.0.get())[0] = sys::getpid() as u32;
    }
    CTX.store(ctx as *const Ctx as usize, SeqCst);
    sigframe::init(ctx);
    thread::inherit_scheduling();
    THROUGH_TARGET.store(sigframe::all_leave_through_target(ctx, t) as u32, SeqCst);
    let n = t.threads.len();
    LEFT.store((n - 1) as u32, SeqCst);
    NTHREADS.store(n as u32, SeqCst);
    if n == 1 {
        return;
    }
    SAME_IDS.store(same_ids as u32, SeqCst);
    out::trace("create threads", 1, n as u64);
    create_children(ctx, t, 0);
    if !same_ids {
        Line::new().s("ckpt: warning: the ").dec(n as u64 - 1).s(" other threads run with new thread ids (the saved ones could not be had)").emit();
    }
    loop {
        let r = READY.load(SeqCst);
        if r as usize == n - 1 {
            break;
        }
        sys::futex_wait(&READY, r);
    }
    out::trace("every thread ready", 1, n as u64);
}

/// The threads thread `i` creates: the leader (0) creates thread 1 and then half
/// of the rest, thread 1 the other half. So two threads call clone3(2) at once,
/// one per core, at the price of one wait for a new thread to be scheduled (a
/// deeper tree waits once per level, which on a loaded machine costs more than it
/// saves). Thread 1 creates its share before anything else, and before its own
/// state is set, so each thread starts with the leader's scheduling and name, as
/// when the leader created them all.
fn creates(i: usize, n: usize) -> core::ops::Range<usize> {
    let mid = 2 + (n.saturating_sub(2)) / 2;
    match i {
        0 if n > 1 => 1..mid,
        1 => mid..n,
        _ => 0..0,
    }
}

/// Create the threads thread `i` creates ([`creates`]).
fn create_children(ctx: &Ctx, t: &Tables, i: usize) {
    let same_ids = SAME_IDS.load(SeqCst) != 0;
    for c in creates(i, t.threads.len()) {
        let th = &t.threads[c];
        let tid = th.tid as i32;
        let stack = ctx.thread_stacks + (c - 1) * STACK as usize;
        let args = CloneArgs {
            flags: sys::CLONE_THREAD_FLAGS | sys::CLONE_SETTLS | sys::CLONE_CHILD_CLEARTID,
            pidfd: 0,
            child_tid: th.tid_address,
            parent_tid: 0,
            exit_signal: 0,
            stack: stack as u64,
            stack_size: STACK,
            tls: th.regs.fs_base,
            set_tid: if same_ids { &tid as *const i32 as u64 } else { 0 },
            set_tid_size: same_ids as u64,
            cgroup: 0,
        };
        let r = create(&args, c);
        if r < 0 {
            Line::new().s("restore thread state failed: cannot create thread ").dec(th.tid as u64)
                .s(if same_ids { " with its saved thread id: " } else { ": " }).errno(-r).emit();
            sys::exit_group(Step::Thread as i32);
        }
        // SAFETY: slot c is written once, here, before thread c's creator counts
        // itself ready (READY), and read only after every thread is ready.
        unsafe { (*TIDS.0.get())[c] = r as u32 };
    }
}

/// Create thread `i`. A saved id can still be held for a moment by a thread that
/// has just exited (the page filler, filler.rs, released at exit): EEXIST is
/// retried, bounded.
fn create(args: &CloneArgs, i: usize) -> isize {
    let mut tries = 0;
    loop {
        // SAFETY: CLONE_VM thread on its own stack in the gap; thread_main never returns.
        let r = unsafe { arch::clone3_thread(args as *const CloneArgs as usize, core::mem::size_of::<CloneArgs>(), thread_main as *const () as usize, i) };
        if r != -sys::EEXIST || args.set_tid_size == 0 || tries == 1000 {
            return r;
        }
        tries += 1;
        sys::sched_yield();
    }
}

/// Entry of each created thread, on its own stack in the gap.
extern "C" fn thread_main(i: usize) -> ! {
    let t = tables();
    // SAFETY: CTX points at the Ctx copied into the gap, which outlives every thread.
    let ctx = unsafe { &*(CTX.load(SeqCst) as *const Ctx) };
    create_children(ctx, t, i);
    let th = &t.threads[i];
    thread::restore(th, true);
    procstate::requeue_thread_signals(t, th.tid);
    let frame = if THROUGH_TARGET.load(SeqCst) != 0 { sigframe::place_on_target(ctx, t, th) } else { 0 };
    if READY.fetch_add(1, SeqCst) + 1 == NTHREADS.load(SeqCst) - 1 {
        sys::futex_wake(&READY, 1);
    }
    while GO.load(SeqCst) == 0 {
        sys::futex_wait(&GO, 0);
    }
    wake_two();
    if i == last_index(t) {
        leave_last(ctx, t, i, frame)
    }
    leave_counted(ctx, t, i, frame)
}

/// Wake two of the threads waiting for the release; each thread woken wakes two
/// more, so the leader spends one short system call on the release instead of
/// waking every thread itself, and the wakeups spread over the cores. None is
/// left asleep: no thread waits once GO is set (futex(2) compares the word), and
/// while one still waits, every thread woken makes another call that wakes it.
fn wake_two() {
    sys::futex_wake(&GO, 2);
}

/// Any thread but the last one out: leave, counting itself out of LEFT.
fn leave_counted(ctx: &Ctx, t: &Tables, i: usize, frame: usize) -> ! {
    if frame == 0 {
        LEFT.fetch_sub(1, SeqCst);
        sys::futex_wake(&LEFT, 1);
        sigframe::leave_from_gap(ctx, t, &t.threads[i])
    }
    sigframe::leave_signalling(ctx, frame, &LEFT)
}

/// The last thread out waits until every other thread has left the restorer's code
/// (and an exited leader is gone), then leaves, unmapping the gap when it can.
fn leave_last(ctx: &Ctx, t: &Tables, i: usize, frame: usize) -> ! {
    loop {
        let left = LEFT.load(SeqCst);
        if left == 0 {
            break;
        }
        sys::futex_wait(&LEFT, left);
    }
    loop {
        let here = LEADER_HERE.load(SeqCst);
        if here == 0 {
            break;
        }
        sys::futex_wait_shared(&LEADER_HERE, here);
    }
    if frame == 0 {
        sigframe::leave_from_gap(ctx, t, &t.threads[i])
    }
    sigframe::leave_last(ctx, frame)
}

/// Called by the leader once the whole process is restored: release every thread
/// together, then leave (or, for a leader that had exited, end this thread again).
pub fn release_and_leave(ctx: &Ctx, t: &Tables) -> ! {
    let exited = t.threads[0].flags & THREAD_EXITED != 0;
    if exited {
        LEADER_HERE.store(1, SeqCst);
        // SAFETY: the word is in the gap, which the last thread unmaps only after
        // the kernel has cleared it at this thread's exit.
        let _ = unsafe { sys::set_tid_address(LEADER_HERE.as_ptr() as u64) };
        // The leader counted itself among those who leave signalling; it does not.
        LEFT.fetch_sub(1, SeqCst);
    }
    if t.threads.len() > 1 {
        out::trace("release every thread", 0, t.threads.len() as u64);
    }
    // The leader's frame first: from the release on, the others compete for the CPU.
    let frame = if !exited && THROUGH_TARGET.load(SeqCst) != 0 { sigframe::place_on_target(ctx, t, &t.threads[0]) } else { 0 };
    GO.store(1, SeqCst);
    wake_two();
    if exited {
        out::trace("the leader had exited: ending it again", 0, 0);
        sys::exit_thread(0)
    }
    if last_index(t) == 0 {
        leave_last(ctx, t, 0, frame)
    }
    leave_counted(ctx, t, 0, frame)
}
