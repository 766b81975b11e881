//! Stopping every thread of a process, and letting all of them go again.
//!
//! Each thread is its own tracee: PTRACE_SEIZE and PTRACE_INTERRUPT act on one task
//! (ptrace(2)). Threads may be created while we attach, so /proc/PID/task is read
//! again after every pass until a pass finds no thread it has not stopped: once every
//! known thread is stopped, none is left to call clone(2), and a thread created by a
//! clone that was in progress is in the list by the time its creator stops (the
//! kernel links it into the thread group inside clone, copy_process). A thread that
//! exits while we attach is dropped from the freeze, not an error.
//!
//! A leader that called pthread_exit stays a zombie while its threads run on
//! (/proc/PID/status says Z, Threads > 1); it cannot be traced, so it is recorded as
//! exited and every /proc read about the process goes through a live thread (the
//! zombie's mm and fd table are gone, so /proc/PID/maps and /proc/PID/fd read empty).

use crate::proc;
use crate::ptrace::{PtraceError, Release, Seized};
use anyhow::{bail, Context, Result};

pub struct Group {
    pub pid: i32,
    /// The stopped threads, the leader first when it is alive.
    pub threads: Vec<Seized>,
    /// The leader had already exited (pthread_exit) and is not among `threads`.
    pub leader_exited: bool,
    /// Each thread's scheduler state letter just before it was stopped (once traced,
    /// /proc says "t", tracing stop, for all of them).
    states: Vec<(i32, u32)>,
}

/// The state letter of /proc/PID/task/TID/stat (proc(5): the field after the comm).
pub fn state_letter(pid: i32, tid: i32) -> u32 {
    let stat = proc::read_file_text(proc::proc_path(pid, &format!("task/{tid}/stat"))).unwrap_or_default();
    stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next()).unwrap_or('?') as u32
}

/// Whether the leader of `pid` is a zombie whose other threads still run.
fn leader_is_zombie(pid: i32) -> bool {
    let task = proc::proc_path(pid, &format!("task/{pid}/status"));
    proc::read_file_text(task)
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("State:")).map(|l| l.contains('Z')))
        .unwrap_or(false)
}

impl Group {
    /// Stop every thread of process `pid`; on error every thread stopped so far is
    /// let go again (each guard detaches on drop).
    pub fn seize(pid: i32, release: Release) -> Result<Group> {
        let mut g = Group { pid, threads: Vec::new(), leader_exited: false, states: Vec::new() };
        let mut gone: Vec<i32> = Vec::new();
        for pass in 0.. {
            if pass == 1000 {
                bail!("pid {pid}: threads keep appearing faster than they can be stopped");
            }
            let tids = proc::threads(pid).with_context(|| format!("listing the threads of pid {pid}"))?;
            let mut new = false;
            let mut asked: Vec<Seized> = Vec::new();
            for tid in tids {
                if g.threads.iter().any(|t| t.pid == tid) || gone.contains(&tid) || (tid == pid && g.leader_exited) {
                    continue;
                }
                new = true;
                if tid == pid && leader_is_zombie(pid) {
                    g.leader_exited = true;
                    continue;
                }
                g.states.push((tid, state_letter(pid, tid)));
                let t = match Seized::seize(tid) {
                    Ok(t) => t,
                    Err(PtraceError::NoSuchProcess { .. }) if tid != pid => {
                        gone.push(tid);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                match t.request_stop() {
                    Ok(()) => asked.push(t),
                    Err(PtraceError::Call { source, .. }) if tid != pid && source.raw_os_error() == Some(libc::ESRCH) => gone.push(tid),
                    Err(e) => return Err(e.into()),
                }
            }
            for mut t in asked {
                let tid = t.pid;
                match t.wait_stop() {
                    Ok(()) => {}
                    Err(PtraceError::Exited { .. }) if tid != pid => {
                        gone.push(tid);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                // One SIGSTOP for the whole group (kill(2) on any thread id stops the
                // thread group), sent by the first guard to be dropped.
                if g.threads.is_empty() {
                    t.set_release(release);
                }
                g.threads.push(t);
            }
            if !new {
                break;
            }
        }
        if g.threads.is_empty() {
            bail!("pid {pid} has no live thread");
        }
        Ok(g)
    }

    /// The state letter of thread `tid` before the freeze stopped it.
    pub fn state_before(&self, tid: i32) -> u32 {
        self.states.iter().rev().find(|s| s.0 == tid).map_or('?' as u32, |s| s.1)
    }

    /// A live thread through which the process's memory, maps and fds are read.
    pub fn reader(&self) -> &Seized {
        &self.threads[0]
    }

    /// Fail if any stopped thread has died (a SIGKILL during the freeze).
    pub fn check_alive(&self) -> Result<(), PtraceError> {
        self.threads.iter().try_for_each(Seized::check_alive)
    }

    /// Kill the process (once its file is safely on disk) and wait until every thread
    /// we traced has gone; the leader's end is reported last (the kernel delays a
    /// leader's exit until its other threads have been reaped, wait(2)).
    pub fn kill(mut self) {
        // SAFETY: plain signal delivery to the thread group.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        while let Some(t) = self.threads.pop() {
            t.reap();
        }
    }
}
