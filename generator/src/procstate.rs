//! Process-wide state that lives in the kernel, not in memory: signal dispositions,
//! umask, personality, prctl flags, interval and POSIX timers (read by system calls
//! injected into one thread, inject.rs), plus what /proc and ptrace give from
//! outside: rlimits (prlimit(2) on another process), cwd, comm and the signals queued
//! for the whole process (PTRACE_PEEKSIGINFO). Per-thread state is in thread_state.rs.
//!
//! Timers that expired while their signal waits in the queue are read as the kernel
//! shows them, which is not how they must be set again (see `rearm_expired`).

use crate::inject::Injector;
use crate::syscall_batch::{Arg, Call};
use crate::plan::Strings;
use crate::ptrace::Seized;
use anyhow::{bail, Context, Result};
use ckpt_format::{
    PendingSignal, PosixTimer, Process, SigAction, NLIMITS, PROC_CWD_DELETED, PROC_HAVE_STATE, PROC_NO_NEW_PRIVS, PROC_THP_DISABLE,
};
use std::os::unix::fs::MetadataExt;

const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_GET_NO_NEW_PRIVS: u64 = 39;
const PR_GET_THP_DISABLE: u64 = 42;

pub struct Captured {
    pub process: Process,
    pub timers: Vec<PosixTimer>,
    /// Signals queued for the whole process (thread-directed ones are per thread).
    pub signals: Vec<PendingSignal>,
}

fn ok(r: i64, what: &str, pid: i32) -> Result<i64> {
    crate::inject::checked(r, what, &format!("pid {pid}"))
}

use crate::inject::word as u64_at;

/// One timer of /proc/PID/timers (proc(5)): id, signal/value, notify, clock.
fn parse_timers(text: &str) -> Result<Vec<PosixTimer>> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines() {
        let (k, v) = line.split_once(':').map(|(k, v)| (k.trim(), v.trim())).unwrap_or((line, ""));
        match k {
            "ID" => out.push(PosixTimer { id: v.parse().context("timer ID")?, ..Default::default() }),
            "signal" => {
                let t = out.last_mut().context("timers: signal before ID")?;
                let (sig, val) = v.split_once('/').context("timers: signal field")?;
                t.signo = sig.parse().context("timer signal")?;
                t.sigval = u64::from_str_radix(val, 16).context("timer sigval")?;
            }
            "notify" => {
                let t = out.last_mut().context("timers: notify before ID")?;
                let (how, target) = v.split_once('/').context("timers: notify field")?;
                t.notify = match how {
                    "signal" => libc::SIGEV_SIGNAL,
                    "none" => libc::SIGEV_NONE,
                    "thread" => libc::SIGEV_THREAD,
                    _ => bail!("timers: unknown notify {how}"),
                };
                if let Some(tid) = target.strip_prefix("tid.") {
                    t.notify |= libc::SIGEV_THREAD_ID;
                    t.notify_tid = tid.parse().context("timer tid")?;
                }
            }
            "ClockID" => out.last_mut().context("timers: ClockID before ID")?.clock = v.parse().context("timer clock")?,
            _ => {}
        }
    }
    Ok(out)
}

/// ITIMER_REAL is re-armed from its interval only when its SIGALRM is dequeued
/// (dequeue_signal, kernel/signal.c): a process stopped with that signal queued reads
/// a zero value and a non-zero interval, and setting exactly that would disarm the
/// timer (setitimer(2)). The queued SIGALRM is restored with the other signals; the
/// timer runs again one interval later, as it would have after the dequeue.
/// `it`: interval (s, us), value (s, us).
fn rearm_itimer_real(it: &mut [u64; 4]) {
    if it[2] == 0 && it[3] == 0 && (it[0] != 0 || it[1] != 0) {
        (it[2], it[3]) = (it[0], it[1]);
    }
}

const SI_TIMER: i32 = -2;

/// A POSIX timer whose signal is queued is re-armed by the kernel when that signal is
/// dequeued, with the overrun count in its siginfo (posixtimer_rearm). A copy of the
/// signal re-queued at resume would be a foreign one, and the timer would fire again
/// on its own. So the timer's own queued signal is not re-queued; the timer is armed
/// to expire at once instead (a value of 1 ns, which timer_gettime(2) also reports
/// for an expired periodic timer), and the kernel queues its signal again and
/// re-arms it by its interval. The overrun of the lost expiry is not carried over.
fn rearm_expired(timers: &mut [PosixTimer], signals: &mut Vec<PendingSignal>) {
    signals.retain(|s| {
        // siginfo_t: si_signo, si_errno, si_code (ints), then _timer: si_tid, si_overrun.
        let code = s.info[1] as u32 as i32;
        let timer_id = s.info[2] as u32 as i32;
        if code != SI_TIMER {
            return true;
        }
        match timers.iter_mut().find(|t| t.id == timer_id && t.signo == s.signo as i32) {
            Some(t) => {
                if t.value == [0, 0] {
                    t.value = [0, 1];
                }
                false
            }
            None => true,
        }
    });
}

/// If stdin is a terminal, its settings and window size (tcgetattr(3)/TIOCGWINSZ
/// through our own open of /proc/PID/fd/0, which reaches the same terminal).
fn read_tty(pid: i32, p: &mut Process) {
    use std::os::unix::io::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new().read(true).open(format!("/proc/{pid}/fd/0")) else { return };
    let mut t = [0u8; 40];
    // SAFETY: TCGETS writes a 36-byte struct termios into the 40-byte buffer.
    if unsafe { libc::ioctl(f.as_raw_fd(), libc::TCGETS, t.as_mut_ptr()) } != 0 {
        return;
    }
    let mut ws = [0u16; 4];
    // SAFETY: TIOCGWINSZ writes a struct winsize (4 u16).
    unsafe { libc::ioctl(f.as_raw_fd(), libc::TIOCGWINSZ, ws.as_mut_ptr()) };
    p.termios = t;
    p.winsize = ws;
    p.flags |= ckpt_format::PROC_HAVE_TTY;
}

/// The umask of a /proc/PID/status text ("Umask:", octal, Linux 4.7+); None
/// where the kernel does not show it.
fn umask_of(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
}

/// The process-wide state read through thread `t`, with the results of that
/// thread's `own` calls (run in the same batch), and the page the batch ran in,
/// left mapped for the other threads' calls (syscall_batch.rs; None where no
/// batch can run: the calls then ran one by one).
pub struct WithThread {
    pub state: Captured,
    pub own: crate::syscall_batch::Results,
    pub page: Option<crate::syscall_batch::Page>,
}

/// Read the process-wide state through thread `t` (injector `inj`); `own`: calls
/// of that thread's own, run in the same batch.
/// `status`: the text of its /proc/PID/status, read after the stop.
pub fn capture(t: &Seized, inj: &Injector, own: &[Call], status: &str, strings: &mut Strings) -> Result<WithThread> {
    let pid = t.pid;
    let page = crate::syscall_batch::Page::map(inj, pid, t.pid, &batch_size_hint(own))?;
    match capture_on(t, inj, page.as_ref(), own, status, strings) {
        Ok((state, own)) => Ok(WithThread { state, own, page }),
        Err(e) => {
            if let Some(p) = page {
                let _ = p.unmap(inj, pid);
            }
            Err(e)
        }
    }
}

/// Calls as many and as large as the batch of [`capture_on`] at most (a page
/// fits up to 40 POSIX timers more; a process with more runs its calls one by one).
fn batch_size_hint(own: &[Call]) -> Vec<Call> {
    let v = Arg::Val;
    let big = Call::new(libc::SYS_getpid, [v(0), Arg::Out, v(0), v(0), v(0), v(0)], 32);
    let mut calls = vec![big; 64 + 5 + 3 + 40 + 3 + 1];
    calls.extend_from_slice(own);
    calls
}

fn capture_on(t: &Seized, inj: &Injector, page: Option<&crate::syscall_batch::Page>, own: &[Call], status: &str, strings: &mut Strings) -> Result<(Captured, crate::syscall_batch::Results)> {
    let pid = t.pid;
    let mut p = Process { flags: PROC_HAVE_STATE, ..Default::default() };
    let mut timers = match crate::proc::read_file_text(format!("/proc/{pid}/timers")) {
        Ok(text) => parse_timers(&text)?,
        Err(_) => Vec::new(),
    };
    if let Some(tm) = timers.iter().find(|tm| tm.notify & !libc::SIGEV_THREAD_ID == libc::SIGEV_THREAD) {
        bail!("pid {pid} has a POSIX timer ({}) that notifies by starting a thread, which cannot be restored yet", tm.id);
    }
    // Every read below is independent of the others: one batch (syscall_batch.rs).
    let sigs: Vec<u64> = (1..=64u64).filter(|&s| s != libc::SIGKILL as u64 && s != libc::SIGSTOP as u64).collect();
    let v = Arg::Val;
    let mut calls: Vec<Call> = sigs.iter().map(|&sig| Call::new(libc::SYS_rt_sigaction, [v(sig), v(0), Arg::Out, v(8), v(0), v(0)], 32)).collect();
    let prctl = |op: u64, out: bool| Call::new(libc::SYS_prctl, [v(op), if out { Arg::Out } else { v(0) }, v(0), v(0), v(0), v(0)], if out { 8 } else { 0 });
    calls.extend([
        Call::new(libc::SYS_personality, [v(0xffff_ffff), v(0), v(0), v(0), v(0), v(0)], 0),
        prctl(PR_GET_PDEATHSIG, true),
        prctl(PR_GET_DUMPABLE, false),
        prctl(PR_GET_NO_NEW_PRIVS, false),
        prctl(PR_GET_THP_DISABLE, false),
    ]);
    calls.extend((0..3u64).map(|which| Call::new(libc::SYS_getitimer, [v(which), Arg::Out, v(0), v(0), v(0), v(0)], 32)));
    calls.extend(timers.iter().map(|tm| Call::new(libc::SYS_timer_gettime, [v(tm.id as u64), Arg::Out, v(0), v(0), v(0), v(0)], 32)));
    let probes = crate::identity::membarrier_probes();
    calls.extend(probes.iter().map(|(c, _)| *c));
    let umask = umask_of(status);
    if umask.is_none() {
        calls.push(Call::new(libc::SYS_umask, [v(0); 6], 0));
    }
    calls.extend_from_slice(own);
    let mut done = crate::syscall_batch::run_on(page, inj, pid, t.pid, &calls)?;
    crate::trace::mark("process state: injected batch");
    let own_done = done.split_off(done.len() - own.len());
    let membarrier = crate::identity::membarrier(pid, &probes, &done[done.len() - probes.len() - umask.is_none() as usize..].iter().map(|d| d.0).collect::<Vec<_>>())?;
    let mut done = done.iter();
    let mut next = |what: &str| -> Result<(i64, &[u8])> {
        let (r, out) = done.next().expect("one result per call");
        Ok((ok(*r, what, pid)?, out))
    };
    for &sig in &sigs {
        let (_, b) = next("rt_sigaction")?;
        p.sigactions[sig as usize - 1] = SigAction { handler: u64_at(b, 0), flags: u64_at(b, 1), restorer: u64_at(b, 2), mask: u64_at(b, 3) };
    }
    p.personality = next("personality")?.0 as u32;
    p.pdeathsig = u32::from_le_bytes(next("PR_GET_PDEATHSIG")?.1[..4].try_into().unwrap());
    p.dumpable = next("PR_GET_DUMPABLE")?.0 as u32;
    if next("PR_GET_NO_NEW_PRIVS")?.0 == 1 {
        p.flags |= PROC_NO_NEW_PRIVS;
    }
    if next("PR_GET_THP_DISABLE")?.0 == 1 {
        p.flags |= PROC_THP_DISABLE;
    }
    for which in 0..3 {
        let (_, b) = next("getitimer")?;
        p.itimers[which] = [u64_at(b, 0), u64_at(b, 1), u64_at(b, 2), u64_at(b, 3)];
    }
    rearm_itimer_real(&mut p.itimers[0]);
    for tm in &mut timers {
        let (_, b) = next("timer_gettime")?;
        tm.interval = [u64_at(b, 0), u64_at(b, 1)];
        tm.value = [u64_at(b, 2), u64_at(b, 3)];
    }
    p.umask = match umask {
        Some(m) => m,
        None => {
            // umask(2) cannot only read: the batch set it to 0, set it back.
            let old = ok(done.last().expect("the umask call").0, "umask", pid)?;
            ok(inj.syscall(libc::SYS_umask, [old as u64, 0, 0, 0, 0, 0])?, "umask", pid)?;
            old as u32
        }
    };
    timers.sort_by_key(|t| t.id);

    for (res, lim) in p.rlimits.iter_mut().enumerate().take(NLIMITS) {
        let mut l = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: prlimit64 on another process with a null new limit and a valid out-pointer.
        if unsafe { libc::prlimit64(pid, res as libc::__rlimit_resource_t, std::ptr::null(), &mut l) } == 0 {
            *lim = [l.rlim_cur, l.rlim_max];
        }
    }
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).with_context(|| format!("reading the cwd of pid {pid}"))?;
    let mut cwd = cwd.to_string_lossy().into_owned();
    // A removed working directory: d_path(3) appends " (deleted)", and rmdir(2)
    // leaves it without links (a directory really named so still has them).
    if let Some(path) = cwd.strip_suffix(" (deleted)") {
        let md = std::fs::metadata(format!("/proc/{pid}/cwd")).with_context(|| format!("reading the cwd of pid {pid}"))?;
        if md.nlink() == 0 {
            p.flags |= PROC_CWD_DELETED;
            p.cwd_mode = md.mode() & 0o7777;
            cwd = path.to_owned();
        }
    }
    (p.cwd_off, p.cwd_len) = strings.add(&cwd);
    let comm = crate::proc::read_file_text(format!("/proc/{pid}/comm")).unwrap_or_default();
    let comm = comm.trim_end_matches('\n').as_bytes();
    p.comm[..comm.len().min(15)].copy_from_slice(&comm[..comm.len().min(15)]);

    read_tty(pid, &mut p);
    crate::identity::capture(pid, status, membarrier, strings, &mut p)?;
    let mut signals: Vec<PendingSignal> =
        t.pending(true)?.into_iter().map(|info| PendingSignal { thread: 0, signo: info[0] as u32, info }).collect();
    rearm_expired(&mut timers, &mut signals);
    Ok((Captured { process: p, timers, signals }, own_done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_itimer_real_is_armed_again_by_its_interval() {
        let mut it = [0, 10_000, 0, 0];
        rearm_itimer_real(&mut it);
        assert_eq!(it, [0, 10_000, 0, 10_000]);
        let mut one_shot = [0, 0, 0, 0];
        rearm_itimer_real(&mut one_shot);
        assert_eq!(one_shot, [0; 4]);
        let mut running = [0, 10_000, 0, 5_000];
        rearm_itimer_real(&mut running);
        assert_eq!(running, [0, 10_000, 0, 5_000]);
    }

    #[test]
    fn queued_timer_signal_becomes_an_immediate_expiry() {
        let mut timers = [PosixTimer { id: 3, signo: 34, interval: [0, 1_000_000], ..Default::default() }];
        let mut info = [0u64; 16];
        info[0] = 34;
        info[1] = (-2i32) as u32 as u64; // SI_TIMER
        info[2] = 3;
        let other = PendingSignal { thread: 0, signo: 10, info: [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] };
        let mut signals = vec![PendingSignal { thread: 0, signo: 34, info }, other];
        rearm_expired(&mut timers, &mut signals);
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].signo, 10);
        assert_eq!(timers[0].value, [0, 1]);
    }

    #[test]
    fn umask_from_status() {
        assert_eq!(umask_of("Name:\tx\nUmask:\t0027\nState:\tS\n"), Some(0o027));
        assert_eq!(umask_of("Name:\tx\n"), None);
    }

    #[test]
    fn parses_proc_timers() {
        let text = "ID: 0\nsignal: 14/00000000deadbeef\nnotify: signal/pid.42\nClockID: 1\nID: 3\nsignal: 10/0000000000000000\nnotify: signal/tid.43\nClockID: 0\n";
        let t = parse_timers(text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].id, t[0].signo, t[0].sigval, t[0].notify, t[0].clock), (0, 14, 0xdeadbeef, libc::SIGEV_SIGNAL, 1));
        assert_eq!((t[1].id, t[1].notify, t[1].notify_tid), (3, libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID, 43));
    }
}
