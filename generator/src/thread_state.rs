//! What each thread owns by itself, read from one stopped thread into one `Thread`
//! record: registers and xstate (ptrace regsets), the blocked mask, rseq, the robust
//! futex list, sigaltstack and clear_child_tid (only the thread itself can ask for
//! these two: system calls injected into it), its name, its scheduling, the signals
//! queued for it alone, and what becomes of the system call it was in.
//!
//! Process-wide state (dispositions, fds, timers, limits) is read once, elsewhere
//! (procstate.rs).

use crate::inject::Injector;
use crate::syscall_batch::{Arg, Call};
use crate::memory::Mem;
use crate::proc;
use crate::ptrace::Seized;
use crate::regs::{self, Restart};
use anyhow::{bail, Context, Result};
use ckpt_format::{PendingSignal, Thread, THREAD_RESTART_AGAIN, THREAD_RESTART_EINTR, THREAD_RESTART_NONE};

const PR_GET_TID_ADDRESS: u64 = 40;

/// One thread's record, its XSAVE area and the signals queued for it.
pub struct Captured {
    pub thread: Thread,
    pub xstate: Vec<u8>,
    pub signals: Vec<PendingSignal>,
    pub warnings: Vec<String>,
}

fn ok(r: i64, what: &str, tid: i32) -> Result<i64> {
    crate::inject::checked(r, what, &format!("thread {tid}"))
}

use crate::inject::word;

/// The thread's name from /proc/PID/task/TID/comm.
fn comm(pid: i32, tid: i32) -> [u8; 16] {
    let mut comm = [0u8; 16];
    let name = proc::read_file_text(proc::proc_path(pid, &format!("task/{tid}/comm"))).unwrap_or_default();
    let name = name.trim_end_matches('\n').as_bytes();
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);
    comm
}

/// Scheduling policy, static priority and nice value of one thread (sched(7): all
/// three are per thread on Linux; getpriority(2) with PRIO_PROCESS takes a TID).
fn scheduling(tid: i32) -> Result<(u32, u32, i32)> {
    // SAFETY: sched_getscheduler takes a TID and no pointers.
    let policy = unsafe { libc::sched_getscheduler(tid) };
    if policy < 0 {
        bail!("sched_getscheduler of thread {tid}: {}", std::io::Error::last_os_error());
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a valid out-pointer.
    if unsafe { libc::sched_getparam(tid, &mut param) } != 0 {
        bail!("sched_getparam of thread {tid}: {}", std::io::Error::last_os_error());
    }
    // getpriority returns the nice value, which may be -1: errno tells an error apart.
    // SAFETY: errno location is thread-local; getpriority takes integers.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
        if *libc::__errno_location() != 0 {
            bail!("getpriority of thread {tid}: {}", std::io::Error::last_os_error());
        }
        n
    };
    Ok((policy as u32, param.sched_priority as u32, nice))
}

/// What only the thread itself can tell, read by system calls run in it: its
/// blocked mask as it was, its sigaltstack and its clear_child_tid address.
pub struct Injected {
    pub sigmask: u64,
    ss: (u64, u32, u64),
    tid_address: u64,
}

/// The system calls [`Injected`] is read with: sigaltstack(NULL, &old) and
/// prctl(PR_GET_TID_ADDRESS, &addr).
pub fn calls() -> [Call; 2] {
    let v = Arg::Val;
    [
        Call::new(libc::SYS_sigaltstack, [v(0), Arg::Out, v(0), v(0), v(0), v(0)], 24),
        Call::new(libc::SYS_prctl, [v(PR_GET_TID_ADDRESS), Arg::Out, v(0), v(0), v(0), v(0)], 8),
    ]
}

/// [`Injected`] from the results of [`calls`] run in thread `tid`, whose blocked
/// mask before the injection was `sigmask`.
pub fn injected(tid: i32, sigmask: u64, done: &[(i64, Vec<u8>)]) -> Result<Injected> {
    let [(ss_r, ss), (tid_r, addr)] = done else { bail!("thread {tid}: {} results for the 2 injected calls", done.len()) };
    ok(*ss_r, "sigaltstack", tid)?;
    ok(*tid_r, "PR_GET_TID_ADDRESS", tid)?;
    Ok(Injected { sigmask, ss: (word(ss, 0), word(ss, 1) as u32, word(ss, 2)), tid_address: word(addr, 0) })
}

/// Run [`calls`] in thread `t` (from `page`, the process's injected code page,
/// where it can run: one round trip) and read [`Injected`] from them.
/// `syscall_at` is a `syscall` instruction in the target's text; `writable` says
/// whether a range is writable target memory (the injected calls' scratch area
/// lies below the thread's red zone).
pub fn inject(pid: i32, t: &Seized, page: Option<&crate::syscall_batch::Page>, syscall_at: u64, writable: impl Fn(u64, u64) -> bool) -> Result<Injected> {
    let inj = Injector::new(t, t.regs()?, syscall_at, writable)?;
    let done = crate::syscall_batch::run_on(page, &inj, pid, t.pid, &calls())?;
    injected(t.pid, inj.task_sigmask(), &done)
}

/// Read everything one stopped thread owns; `inj`: what the system calls run in
/// it told ([`inject`]). `state`: the thread's state letter before it was
/// stopped (group.rs).
pub fn capture(pid: i32, t: &Seized, state: u32, mem: &Mem, inj: Injected) -> Result<Captured> {
    let tid = t.pid;
    let orig = t.regs()?;
    let xstate = t.xstate()?;
    let rseq = t.rseq()?;
    let (robust_list, robust_len) = t.robust_list();
    let Injected { sigmask, ss, tid_address } = inj;

    let mut warnings = Vec::new();
    let mut r = orig;
    let restart = if (r.orig_rax as i64) >= 0 && r.rip >= 2 {
        let mut before = [0u8; 2];
        mem.read_exact(r.rip - 2, &mut before).with_context(|| format!("reading the instruction before rip in thread {tid}"))?;
        regs::fix_syscall_restart(&mut r, before).with_context(|| format!("thread {tid} of pid {pid}"))?
    } else {
        Restart::None
    };
    if let Some(rs) = rseq {
        if let Some(abort) = regs::fix_rseq(mem, rs.addr, &mut r)? {
            warnings.push(format!("thread {tid} stopped inside an rseq critical section; resumes at its abort handler {abort:#x}"));
        }
    }
    let comm = comm(pid, tid);
    let (sched_policy, sched_priority, nice) = scheduling(tid)?;
    let mut signals: Vec<PendingSignal> = t
        .pending(false)?
        .into_iter()
        .map(|info| PendingSignal { thread: tid as u32, signo: info[0] as u32, info })
        .collect();
    // A signal already taken off the queue for delivery when the thread stopped
    // (a signal-delivery stop) is queued again for this thread at resume.
    if t.pending_signal() != 0 {
        let info = t.stop_siginfo()?;
        signals.push(PendingSignal { thread: tid as u32, signo: t.pending_signal() as u32, info });
    }
    let thread = Thread {
        tid: tid as u32,
        regs: r,
        sigmask,
        ss_sp: ss.0,
        ss_flags: ss.1,
        ss_size: ss.2,
        tid_address,
        rseq_addr: rseq.map_or(0, |x| x.addr),
        rseq_len: rseq.map_or(0, |x| x.len),
        rseq_sig: rseq.map_or(0, |x| x.sig),
        xstate_size: xstate.len() as u32,
        robust_list,
        robust_len,
        comm,
        sched_policy,
        sched_priority,
        nice,
        syscall_nr: if (orig.orig_rax as i64) >= 0 { orig.orig_rax as i32 } else { -1 },
        restart: match restart {
            Restart::None => THREAD_RESTART_NONE,
            Restart::Reexecute { .. } => THREAD_RESTART_AGAIN,
            Restart::Interrupted { .. } => THREAD_RESTART_EINTR,
        },
        state,
        ..Default::default()
    };
    Ok(Captured { thread, xstate, signals, warnings })
}

/// The record of a leader that has already exited: only its id and name.
pub fn exited_leader(pid: i32) -> Thread {
    let state = crate::group::state_letter(pid, pid);
    Thread { tid: pid as u32, flags: ckpt_format::THREAD_EXITED, comm: comm(pid, pid), state, syscall_nr: -1, ..Default::default() }
}
