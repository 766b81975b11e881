//! Process-wide kernel state saved at the freeze: cwd, umask, personality, comm,
//! prctl flags, rlimits, signal dispositions, interval and POSIX timers, and the
//! queued signals (re-queued last; every signal stays blocked until rt_sigreturn
//! installs the saved mask, so nothing is delivered into the restorer).

use crate::layout::cpath;
use crate::out::{self, Line, Step};
use crate::sys::{self, call};
use crate::threads;
use ckpt_format::{FdKind, Process, Tables, NLIMITS, PROC_CWD_DELETED, PROC_HAVE_STATE, PROC_HAVE_TTY, PROC_NO_NEW_PRIVS, PROC_THP_DISABLE};

const PR_SET_PDEATHSIG: usize = 1;
const PR_SET_DUMPABLE: usize = 4;
const PR_SET_NAME: usize = 15;
const PR_SET_NO_NEW_PRIVS: usize = 38;
const PR_SET_THP_DISABLE: usize = 41;
const SIGKILL: usize = 9;
const SIGSTOP: usize = 19;
const SIGEV_THREAD_ID: i32 = 4;

fn fail_errno(what: &str, n: u64, e: isize) -> ! {
    Line::new().s("restore process state failed: ").s(what).s(" ").dec(n).s(": ").errno(e).emit();
    sys::exit_group(Step::Process as i32)
}

/// A removed working directory: an empty directory is made, entered and removed
/// (unlinked.rs), with the saved mode, unless it is one of the removed directories
/// the fds step made (and entered already).
fn removed_cwd(t: &Tables, p: &Process) {
    let as_fd = t.fds.iter().any(|f| f.kind == FdKind::DeletedDir as u32 && f.aux[1] == 0 && f.aux[2] != 0);
    if as_fd {
        return;
    }
    let saved = t.string(p.cwd_off, p.cwd_len);
    let fail = |what: &str, e: isize| -> ! {
        Line::new().s("restore process state failed: the working directory ").b(saved).s(" had been removed; ")
            .s(what).s(": ").errno(e).emit();
        sys::exit_group(Step::Process as i32)
    };
    let fd = match crate::unlinked::removed_dir(saved) {
        Ok(fd) => fd,
        Err(e) => fail("cannot make an empty directory in its place", e),
    };
    if let Err(e) = sys::fchdir(fd) {
        fail("fchdir", e);
    }
    if let Err(e) = sys::fchmod(fd, p.cwd_mode) {
        fail("fchmod", e);
    }
    let _ = sys::close(fd);
}

fn cwd(t: &Tables, p: &Process) {
    if p.cwd_len == 0 {
        return;
    }
    if p.flags & PROC_CWD_DELETED != 0 {
        return removed_cwd(t, p);
    }
    let mut buf = [0u8; 4096];
    let path = cpath(t.string(p.cwd_off, p.cwd_len), &mut buf);
    // SAFETY: path is NUL-terminated.
    if let Err(e) = unsafe { call(sys::SYS_CHDIR, [path.as_ptr() as usize, 0, 0, 0, 0, 0]) } {
        Line::new().s("restore process state failed: cannot change to the saved working directory ")
            .b(&path[..path.len() - 1]).s(": ").errno(e).emit();
        sys::exit_group(Step::Process as i32);
    }
}

fn small_settings(p: &Process) {
    // SAFETY: every call below takes integer arguments, or pointers into `p`.
    unsafe {
        let _ = call(sys::SYS_UMASK, [p.umask as usize, 0, 0, 0, 0, 0]);
        let _ = call(sys::SYS_PERSONALITY, [p.personality as usize, 0, 0, 0, 0, 0]);
        let _ = sys::prctl(PR_SET_NAME, p.comm.as_ptr() as usize, 0, 0);
        if p.flags & PROC_NO_NEW_PRIVS != 0 {
            if let Err(e) = sys::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0) {
                fail_errno("PR_SET_NO_NEW_PRIVS", 1, e);
            }
        }
        if p.flags & PROC_THP_DISABLE != 0 {
            let _ = sys::prctl(PR_SET_THP_DISABLE, 1, 0, 0);
        }
        if p.pdeathsig != 0 {
            let _ = sys::prctl(PR_SET_PDEATHSIG, p.pdeathsig as usize, 0, 0);
        }
        if p.dumpable <= 1 {
            let _ = sys::prctl(PR_SET_DUMPABLE, p.dumpable as usize, 0, 0);
        }
    }
}

/// Resource limits: a hard limit can only be raised with CAP_SYS_RESOURCE, so when
/// the saved one is above ours, keep ours and clamp the soft limit to it.
fn rlimits(p: &Process) {
    for res in 0..NLIMITS {
        let want = p.rlimits[res];
        // SAFETY: pointers to local 16-byte rlimit64 structs.
        unsafe {
            if call(sys::SYS_PRLIMIT64, [0, res, want.as_ptr() as usize, 0, 0, 0]).is_ok() {
                continue;
            }
            let mut cur = [0u64; 2];
            if call(sys::SYS_PRLIMIT64, [0, res, 0, cur.as_mut_ptr() as usize, 0, 0]).is_err() {
                continue;
            }
            let clamped = [want[0].min(cur[1]), want[1].min(cur[1])];
            out::trace("rlimit clamped to this hard limit", res as u64, clamped[1]);
            let _ = call(sys::SYS_PRLIMIT64, [0, res, clamped.as_ptr() as usize, 0, 0, 0]);
        }
    }
}

/// Every disposition as saved, the default ones too: the restorer's process may
/// have others (the init of a new PID namespace, pid.rs, gives every signal a
/// handler that is gone once the restorer leaves; a tree's processes are forked
/// from it).
fn sigactions(p: &Process) {
    for (i, a) in p.sigactions.iter().enumerate() {
        let sig = i + 1;
        if sig == SIGKILL || sig == SIGSTOP {
            continue;
        }
        // SAFETY: `a` is a kernel struct sigaction (handler, flags, restorer, mask).
        if let Err(e) = unsafe { call(sys::SYS_RT_SIGACTION, [sig, a as *const _ as usize, 0, 8, 0, 0]) } {
            fail_errno("rt_sigaction for signal", sig as u64, e);
        }
    }
}

/// struct itimerval as four u64: interval (sec, usec), value (sec, usec).
fn setitimer(which: usize, v: &[u64; 4]) {
    // SAFETY: v is a struct itimerval the kernel only reads.
    if let Err(e) = unsafe { call(sys::SYS_SETITIMER, [which, v.as_ptr() as usize, 0, 0, 0, 0]) } {
        fail_errno("setitimer", which as u64, e);
    }
}

fn itimers(p: &Process) {
    const ITIMER_REAL: usize = 0;
    for (which, v) in p.itimers.iter().enumerate() {
        if v.iter().all(|&x| x == 0) {
            continue;
        }
        setitimer(which, v);
        if which == ITIMER_REAL || v[2] == 0 && v[3] == 0 {
            continue;
        }
        // The kernel adds one tick to an armed ITIMER_VIRTUAL/PROF value
        // (set_cpu_itimer in kernel/time/itimer.c), so every resume would push the
        // timer a tick later: read the tick back and take it off again.
        let mut now = [0u64; 4];
        // SAFETY: `now` is a writable struct itimerval.
        if unsafe { call(sys::SYS_GETITIMER, [which, now.as_mut_ptr() as usize, 0, 0, 0, 0]) }.is_err() {
            continue;
        }
        let us = |t: &[u64; 4]| t[2].saturating_mul(1_000_000).saturating_add(t[3]);
        let extra = us(&now).saturating_sub(us(v));
        if extra > 0 && extra < 1_000_000 {
            let want = us(v).saturating_sub(extra).max(1);
            setitimer(which, &[v[0], v[1], want / 1_000_000, want % 1_000_000]);
        }
    }
}

/// POSIX timer ids are handed out in increasing order: create throwaway timers for
/// the gaps so each saved timer gets its own id back, then delete the throwaways.
/// After the threads exist: a timer may notify one of them (SIGEV_THREAD_ID).
pub fn posix_timers(t: &Tables) {
    if !t.timers.is_empty() {
        out::trace("restore posix timers", 0, t.timers.len() as u64);
    }
    let mut dummies = [0i32; 64];
    let mut nd = 0;
    for tm in t.timers {
        loop {
            #[repr(C)]
            struct SigEvent {
                value: u64,
                signo: i32,
                notify: i32,
                tid: i32,
                pad: [i32; 11],
            }
            let ev = SigEvent {
                value: tm.sigval,
                signo: tm.signo,
                notify: tm.notify,
                tid: if tm.notify & SIGEV_THREAD_ID != 0 { threads::current_tid(t, tm.notify_tid as u32) as i32 } else { 0 },
                pad: [0; 11],
            };
            let mut id: i32 = -1;
            // SAFETY: ev and id are valid for the call.
            let r = unsafe { call(sys::SYS_TIMER_CREATE, [tm.clock as usize, &ev as *const SigEvent as usize, &mut id as *mut i32 as usize, 0, 0, 0]) };
            if let Err(e) = r {
                fail_errno("timer_create for timer", tm.id as u64, e);
            }
            if id == tm.id {
                let spec = [tm.interval[0], tm.interval[1], tm.value[0], tm.value[1]];
                if tm.value != [0, 0] {
                    // SAFETY: spec is a struct itimerspec.
                    if let Err(e) = unsafe { call(sys::SYS_TIMER_SETTIME, [id as usize, 0, spec.as_ptr() as usize, 0, 0, 0]) } {
                        fail_errno("timer_settime for timer", tm.id as u64, e);
                    }
                }
                break;
            }
            if id > tm.id || nd == dummies.len() {
                Line::new().s("restore process state failed: cannot get POSIX timer id ").dec(tm.id as u64)
                    .s(" back (the kernel gave ").dec(id as u64).s(")").emit();
                sys::exit_group(Step::Process as i32);
            }
            dummies[nd] = id;
            nd += 1;
        }
    }
    for &id in &dummies[..nd] {
        // SAFETY: deleting a timer we created.
        let _ = unsafe { call(sys::SYS_TIMER_DELETE, [id as usize, 0, 0, 0, 0, 0]) };
    }
}

/// A terminal on stdin gets the saved settings back (a full-screen program left it
/// in raw mode). The window size stays the new terminal's own: SIGWINCH (queued in
/// `requeue_signals`) makes the program ask for it and redraw, SIGCONT as after a
/// job-control stop.
fn tty(p: &Process) -> bool {
    const TCGETS: usize = 0x5401;
    const TCSETS: usize = 0x5402;
    if p.flags & PROC_HAVE_TTY == 0 {
        return false;
    }
    let mut cur = [0u8; 40];
    // SAFETY: TCGETS writes 36 bytes into the local buffer.
    if unsafe { call(sys::SYS_IOCTL, [0, TCGETS, cur.as_mut_ptr() as usize, 0, 0, 0]) }.is_err() {
        return false; // the resumer's stdin is not a terminal
    }
    // SAFETY: TCSETS reads the saved struct termios.
    let _ = unsafe { call(sys::SYS_IOCTL, [0, TCSETS, p.termios.as_ptr() as usize, 0, 0, 0]) };
    out::trace("terminal settings restored on fd", 0, 0);
    true
}

pub fn restore(t: &Tables) {
    let p = match t.process {
        Some(p) if p.flags & PROC_HAVE_STATE != 0 => p,
        _ => return,
    };
    out::trace("restore process state (cwd, umask, limits, signal handlers, interval timers)", 0, 0);
    cwd(t, p);
    small_settings(p);
    rlimits(p);
    sigactions(p);
    itimers(p);
    crate::identity::membarrier(t);
}

/// Install the saved seccomp filters, oldest first (seccomp(2)
/// SECCOMP_SET_MODE_FILTER; needs no_new_privs or CAP_SYS_ADMIN). This is the last
/// system call before the exit, which the filters then also govern.
pub fn seccomp(t: &Tables) {
    const SYS_SECCOMP: usize = 317;
    const SECCOMP_SET_MODE_FILTER: usize = 1;
    // Every thread gets the same filters (SECCOMP_FILTER_FLAG_TSYNC, seccomp(2));
    // the freeze refused threads whose filters differed.
    const SECCOMP_FILTER_FLAG_TSYNC: usize = 1;
    for (n, insns) in t.seccomp_filters() {
        #[repr(C)]
        struct Prog {
            len: u16,
            filter: *const u8,
        }
        let prog = Prog { len: n as u16, filter: insns.as_ptr() };
        // SAFETY: prog points at n validated 8-byte BPF instructions.
        if let Err(e) = unsafe { call(SYS_SECCOMP, [SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog as *const Prog as usize, 0, 0, 0]) } {
            fail_errno("installing seccomp filter of length", n as u64, e);
        }
    }
}

/// Queue the saved pending signals again (after everything else, just before the
/// jump), and SIGWINCH + SIGCONT when a terminal was given back.
pub fn requeue_signals(t: &Tables) {
    let pid = sys::getpid();
    if t.process.is_some_and(tty) {
        const SIGCONT: usize = 18;
        const SIGWINCH: usize = 28;
        for sig in [SIGWINCH, SIGCONT] {
            // SAFETY: kill(2) on ourselves; the signal stays pending until the saved
            // mask is installed by rt_sigreturn.
            let _ = unsafe { call(sys::SYS_KILL, [pid, sig, 0, 0, 0, 0]) };
        }
    }
    let mut n = 0;
    for s in t.signals.iter().filter(|s| s.thread == 0) {
        // SAFETY: info is a 128-byte siginfo_t; the leader (tid == pid) may queue any
        // si_code to its own process.
        let r = unsafe { call(sys::SYS_RT_SIGQUEUEINFO, [pid, s.signo as usize, s.info.as_ptr() as usize, 0, 0, 0]) };
        if let Err(e) = r {
            fail_errno("re-queueing signal", s.signo as u64, e);
        }
        n += 1;
    }
    if n != 0 {
        out::trace("process signals queued again", n, 0);
    }
    requeue_thread_signals(t, t.threads[0].tid);
}

/// Queue again the signals saved for the calling thread (saved id `saved_tid`). Each
/// thread does it for itself: rt_tgsigqueueinfo(2) lets a thread send a signal with
/// si_code SI_USER, SI_TKILL or another kernel code only to itself (EPERM for any
/// other target, do_rt_tgsigqueueinfo in kernel/signal.c).
pub fn requeue_thread_signals(t: &Tables, saved_tid: u32) {
    // Asked only when there is a signal to queue (two system calls per thread).
    if !t.signals.iter().any(|s| s.thread == saved_tid) {
        return;
    }
    let (pid, tid) = (sys::getpid(), sys::gettid());
    for s in t.signals.iter().filter(|s| s.thread == saved_tid) {
        // SAFETY: info is a 128-byte siginfo_t; the target is the calling thread.
        let r = unsafe { call(sys::SYS_RT_TGSIGQUEUEINFO, [pid, tid, s.signo as usize, s.info.as_ptr() as usize, 0, 0]) };
        if let Err(e) = r {
            fail_errno("re-queueing signal", s.signo as u64, e);
        }
    }
}
