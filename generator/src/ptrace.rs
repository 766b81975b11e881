//! The tracer side of a freeze: attach without the task noticing, read its registers
//! and kernel-held state, and always let go of it.
//!
//! PTRACE_SEIZE + PTRACE_INTERRUPT stop the task without queuing a SIGSTOP it could
//! observe (ptrace(2)); no PTRACE_O_EXITKILL, so if ckpt dies the kernel detaches and
//! the task runs on. [`Seized`] detaches on drop, so every error path leaves the
//! target running as it was.

use ckpt_format::Regs;
use std::io;

const NT_PRSTATUS: libc::c_int = 1;
const NT_X86_XSTATE: libc::c_int = 0x202;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const PTRACE_EVENT_STOP: i32 = 128;
const PTRACE_O_SUSPEND_SECCOMP: usize = 1 << 21;

#[derive(Debug, thiserror::Error)]
pub enum PtraceError {
    #[error("no such process: pid {pid}")]
    NoSuchProcess { pid: i32 },
    #[error("not permitted to trace pid {pid} (not ours, or already traced): {source}")]
    NotPermitted { pid: i32, source: io::Error },
    #[error("pid {pid} exited during the freeze ({how})")]
    Exited { pid: i32, how: String },
    #[error("ptrace {what} on pid {pid} failed: {source}")]
    Call { pid: i32, what: &'static str, source: io::Error },
}

/// What to do with the task when the guard is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Detach: the task continues as before.
    Continue,
    /// Detach and leave it stopped (group stop via SIGSTOP).
    Stop,
}

/// The rseq registration of a thread (struct ptrace_rseq_configuration).
#[derive(Clone, Copy, Debug, Default)]
pub struct RseqConfig {
    pub addr: u64,
    pub len: u32,
    pub sig: u32,
}

pub struct Seized {
    pub pid: i32,
    attached: bool,
    /// A signal that was being delivered when the task stopped; passed on at detach.
    pending: std::cell::Cell<i32>,
    /// Its siginfo, read while the task was in that signal-delivery stop.
    pending_info: std::cell::Cell<[u64; 16]>,
    /// Whether the task still sits in that signal-delivery stop (PTRACE_DETACH can
    /// then deliver the signal itself).
    in_signal_stop: std::cell::Cell<bool>,
    /// The PTRACE_O_* options set so far.
    options: std::cell::Cell<usize>,
    release: Release,
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

impl Seized {
    pub fn seize(pid: i32) -> Result<Seized, PtraceError> {
        // SAFETY: PTRACE_SEIZE takes no pointers (addr and data are 0: no options).
        let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0usize, 0usize) };
        if r != 0 {
            let e = errno();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => PtraceError::NoSuchProcess { pid },
                Some(libc::EPERM) | Some(libc::EACCES) => PtraceError::NotPermitted { pid, source: e },
                _ => PtraceError::Call { pid, what: "SEIZE", source: e },
            });
        }
        Ok(Seized {
            pid,
            attached: true,
            pending: std::cell::Cell::new(0),
            pending_info: std::cell::Cell::new([0; 16]),
            in_signal_stop: std::cell::Cell::new(false),
            options: std::cell::Cell::new(0),
            release: Release::Continue,
        })
    }

    /// Wait for the next state change of the tracee (its stop or its end).
    fn wait(&self) -> Result<i32, PtraceError> {
        let mut status = 0;
        loop {
            // SAFETY: status is a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r == self.pid {
                return Ok(status);
            }
            let e = errno();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(PtraceError::Call { pid: self.pid, what: "waitpid", source: e });
            }
        }
    }

    pub fn set_release(&mut self, r: Release) {
        self.release = r;
    }

    /// Ask the task to stop (PTRACE_INTERRUPT) without waiting for it: stopping
    /// many threads, the requests go out first and the waits follow, so a thread
    /// that must first get a CPU to reach its stop does not hold up the others.
    pub fn request_stop(&self) -> Result<(), PtraceError> {
        // SAFETY: PTRACE_INTERRUPT takes no pointers.
        if unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, self.pid, 0usize, 0usize) } != 0 {
            return Err(PtraceError::Call { pid: self.pid, what: "INTERRUPT", source: errno() });
        }
        Ok(())
    }

    /// Wait for the stop asked for with [`Self::request_stop`].
    pub fn wait_stop(&mut self) -> Result<(), PtraceError> {
        let pid = self.pid;
        let status = self.wait()?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            self.attached = false;
            let how = if libc::WIFEXITED(status) {
                format!("exit status {}", libc::WEXITSTATUS(status))
            } else {
                format!("killed by signal {}", libc::WTERMSIG(status))
            };
            return Err(PtraceError::Exited { pid, how });
        }
        // Either our event stop, a group stop, or a signal-delivery stop; in the last
        // case the signal is handed back at detach so it is not lost.
        if libc::WIFSTOPPED(status) && (status >> 16) != PTRACE_EVENT_STOP {
            self.note_signal_stop(libc::WSTOPSIG(status));
        }
        Ok(())
    }

    /// Confirm the task is still there and stopped (a SIGKILL during the freeze ends
    /// it even while traced; its memory then reads as nothing).
    pub fn check_alive(&self) -> Result<(), PtraceError> {
        match self.regs() {
            Ok(_) => Ok(()),
            Err(PtraceError::Call { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {
                Err(PtraceError::Exited { pid: self.pid, how: "killed".into() })
            }
            Err(e) => Err(e),
        }
    }

    /// The signal the task was about to receive when it stopped, if any.
    pub fn pending_signal(&self) -> i32 {
        self.pending.get()
    }

    /// The task is in a signal-delivery stop for `sig`: the signal is off its queue,
    /// so keep it and its siginfo (PTRACE_GETSIGINFO) to hand back at detach and to
    /// store in the image.
    fn note_signal_stop(&self, sig: i32) {
        let mut info = [0u64; 16];
        // SAFETY: the kernel writes one 128-byte siginfo_t into `info`.
        if unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, self.pid, 0usize, info.as_mut_ptr()) } != 0 {
            info = [0; 16];
            info[0] = sig as u64;
        }
        self.pending.set(sig);
        self.pending_info.set(info);
        self.in_signal_stop.set(true);
    }

    /// The siginfo of the signal taken at a signal-delivery stop ([`Self::pending_signal`]).
    pub fn stop_siginfo(&self) -> Result<[u64; 16], PtraceError> {
        Ok(self.pending_info.get())
    }

    fn getregset(&self, nt: libc::c_int, buf: &mut [u8], what: &'static str) -> Result<usize, PtraceError> {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: iov describes `buf`, which the kernel fills up to iov_len bytes.
        let r = unsafe { libc::ptrace(libc::PTRACE_GETREGSET, self.pid, nt as usize, &mut iov as *mut libc::iovec) };
        if r != 0 {
            return Err(PtraceError::Call { pid: self.pid, what, source: errno() });
        }
        Ok(iov.iov_len)
    }

    /// General registers with fs_base/gs_base (NT_PRSTATUS = struct user_regs_struct).
    pub fn regs(&self) -> Result<Regs, PtraceError> {
        let mut buf = [0u8; std::mem::size_of::<Regs>()];
        let n = self.getregset(NT_PRSTATUS, &mut buf, "GETREGSET(NT_PRSTATUS)")?;
        if n != buf.len() {
            return Err(PtraceError::Call { pid: self.pid, what: "GETREGSET(NT_PRSTATUS) size", source: io::ErrorKind::InvalidData.into() });
        }
        Ok(ckpt_format::read_record(&buf).expect("length checked"))
    }

    /// The blocked signal mask (PTRACE_GETSIGMASK).
    pub fn sigmask(&self) -> Result<u64, PtraceError> {
        let mut m = 0u64;
        // SAFETY: the kernel writes 8 bytes (addr = sizeof(sigset)) into m.
        let r = unsafe { libc::ptrace(libc::PTRACE_GETSIGMASK, self.pid, 8usize, &mut m as *mut u64) };
        if r != 0 {
            return Err(PtraceError::Call { pid: self.pid, what: "GETSIGMASK", source: errno() });
        }
        Ok(m)
    }

    /// Replace the blocked signal mask (PTRACE_SETSIGMASK).
    pub fn set_sigmask(&self, m: u64) -> Result<(), PtraceError> {
        // SAFETY: the kernel reads 8 bytes from &m.
        let r = unsafe { libc::ptrace(libc::PTRACE_SETSIGMASK, self.pid, 8usize, &m as *const u64) };
        if r != 0 {
            return Err(PtraceError::Call { pid: self.pid, what: "SETSIGMASK", source: errno() });
        }
        Ok(())
    }

    /// Replace the general registers (PTRACE_SETREGSET NT_PRSTATUS).
    pub fn set_regs(&self, r: &Regs) -> Result<(), PtraceError> {
        let mut b = ckpt_format::as_bytes(r).to_vec();
        let mut iov = libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() };
        // SAFETY: iov describes `b`, which the kernel reads.
        let rc = unsafe { libc::ptrace(libc::PTRACE_SETREGSET, self.pid, NT_PRSTATUS as usize, &mut iov as *mut libc::iovec) };
        if rc != 0 {
            return Err(PtraceError::Call { pid: self.pid, what: "SETREGSET(NT_PRSTATUS)", source: errno() });
        }
        Ok(())
    }

    /// Run the system call instruction at the task's rip, from its entry stop to
    /// its exit stop (PTRACE_SYSCALL twice). Not PTRACE_SINGLESTEP: the trap of a
    /// step is a SIGTRAP forced on the task (force_sig_fault), and forcing a signal
    /// the task blocks or ignores resets its disposition to SIG_DFL
    /// (force_sig_info_to_task()): the task's own SIGTRAP handler or SIG_IGN would be
    /// lost. Syscall stops are ptrace reports, not signals.
    pub fn run_syscall(&self) -> Result<(), PtraceError> {
        let pid = self.pid;
        let mut stops = 0;
        for _ in 0..16 {
            // SAFETY: no pointers; signal 0.
            if unsafe { libc::ptrace(libc::PTRACE_SYSCALL, pid, 0usize, 0usize) } != 0 {
                return Err(PtraceError::Call { pid, what: "SYSCALL", source: errno() });
            }
            self.in_signal_stop.set(false);
            let status = self.wait()?;
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Err(PtraceError::Exited { pid, how: "during an injected system call".into() });
            }
            // An interrupt queued while the task sat in a signal-delivery stop (or a
            // group stop) reports first as an event stop, and an injected clone(2)
            // with PTRACE_O_TRACECLONE as a PTRACE_EVENT_CLONE stop before its exit
            // stop: neither is a signal nor our syscall stop, go on.
            if status >> 16 != 0 {
                continue;
            }
            // Without PTRACE_O_TRACESYSGOOD a syscall stop reports plain SIGTRAP.
            if libc::WSTOPSIG(status) & 0x7f == libc::SIGTRAP && status >> 16 == 0 {
                stops += 1;
                if stops == 2 {
                    return Ok(());
                }
                continue;
            }
            // A signal that cannot be blocked or was forced: kept for the image and
            // the detach, not delivered now.
            self.note_signal_stop(libc::WSTOPSIG(status));
        }
        Err(PtraceError::Call { pid, what: "SYSCALL (no syscall stops)", source: std::io::ErrorKind::Interrupted.into() })
    }

    /// Let the task run (PTRACE_CONT) until the `int3` ending injected code traps
    /// with rip at `end`. The SIGTRAP that int3 forces (do_int3_user() ->
    /// force_sig()) reaches us as a signal-delivery stop and is never delivered:
    /// the next resume passes signal 0. The caller makes sure SIGTRAP is neither
    /// blocked nor ignored nor already pending, so forcing it changes no
    /// disposition (force_sig_info_to_task() resets only a blocked or ignored one)
    /// and the trap is ours. Returns rip otherwise, for the error.
    pub fn cont_until_trap(&self, end: u64) -> Result<Result<(), u64>, PtraceError> {
        let pid = self.pid;
        for _ in 0..16 {
            // SAFETY: no pointers; signal 0.
            if unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0usize, 0usize) } != 0 {
                return Err(PtraceError::Call { pid, what: "CONT", source: errno() });
            }
            self.in_signal_stop.set(false);
            let status = self.wait()?;
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Err(PtraceError::Exited { pid, how: "during injected code".into() });
            }
            // A queued interrupt reports first as an event stop (see run_syscall).
            if status >> 16 != 0 {
                continue;
            }
            let sig = libc::WSTOPSIG(status);
            if sig == libc::SIGTRAP {
                let rip = self.regs()?.rip;
                return Ok(if rip == end { Ok(()) } else { Err(rip) });
            }
            // A signal that cannot be blocked: kept for the image and the detach.
            self.note_signal_stop(sig);
        }
        Err(PtraceError::Call { pid, what: "CONT (no trap of the injected code)", source: std::io::ErrorKind::Interrupted.into() })
    }

    /// Put the task back into a plain PTRACE_INTERRUPT stop after injected system
    /// calls: PTRACE_CONT ends the syscall-stop mode, and the queued interrupt stops
    /// the task again before it reaches user mode. Without this, a tracer that dies
    /// would leave the task in a syscall stop.
    pub fn repark(&self) -> Result<(), PtraceError> {
        let pid = self.pid;
        // SAFETY: PTRACE_INTERRUPT and PTRACE_CONT take no pointers.
        unsafe {
            if libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0usize, 0usize) != 0 {
                return Err(PtraceError::Call { pid, what: "INTERRUPT", source: errno() });
            }
            if libc::ptrace(libc::PTRACE_CONT, pid, 0usize, 0usize) != 0 {
                return Err(PtraceError::Call { pid, what: "CONT", source: errno() });
            }
        }
        self.in_signal_stop.set(false);
        let status = self.wait()?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Err(PtraceError::Exited { pid, how: "while being stopped again".into() });
        }
        // A signal that became deliverable stops the task first: keep it for detach.
        if libc::WIFSTOPPED(status) && (status >> 16) != PTRACE_EVENT_STOP && libc::WSTOPSIG(status) != libc::SIGTRAP {
            self.note_signal_stop(libc::WSTOPSIG(status));
        }
        Ok(())
    }

    /// The task's seccomp filters, oldest first, each as its BPF instructions
    /// (PTRACE_SECCOMP_GET_FILTER; needs CAP_SYS_ADMIN; index 0 is the newest).
    pub fn seccomp_filters(&self) -> Result<Vec<Vec<u8>>, PtraceError> {
        const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
        let mut out = Vec::new();
        for index in 0usize.. {
            // SAFETY: a null buffer asks for the instruction count only.
            let n = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, self.pid, index, std::ptr::null_mut::<u8>()) };
            if n < 0 {
                let e = errno();
                if e.raw_os_error() == Some(libc::ENOENT) {
                    break;
                }
                return Err(PtraceError::Call { pid: self.pid, what: "SECCOMP_GET_FILTER", source: e });
            }
            let mut buf = vec![0u8; n as usize * 8];
            // SAFETY: buf holds n struct sock_filter (8 bytes each).
            let m = unsafe { libc::ptrace(PTRACE_SECCOMP_GET_FILTER, self.pid, index, buf.as_mut_ptr()) };
            if m != n {
                return Err(PtraceError::Call { pid: self.pid, what: "SECCOMP_GET_FILTER", source: errno() });
            }
            out.push(buf);
        }
        out.reverse();
        Ok(out)
    }

    /// Let system calls injected from now on bypass the task's seccomp filters
    /// (PTRACE_O_SUSPEND_SECCOMP, Linux 4.3+, needs CAP_SYS_ADMIN). The option ends
    /// with the detach, so the task is filtered again as soon as it runs on.
    pub fn suspend_seccomp(&self) -> Result<(), PtraceError> {
        self.options.set(self.options.get() | PTRACE_O_SUSPEND_SECCOMP);
        self.set_options("SETOPTIONS(SUSPEND_SECCOMP)")
    }

    /// Trace the children this task creates with clone(2) from now on: each starts
    /// traced by us, in a PTRACE_EVENT_STOP before its first instruction
    /// (PTRACE_O_TRACECLONE for a child whose exit signal is not SIGCHLD, ptrace(2)).
    /// Options set before (seccomp suspension) are kept: SETOPTIONS replaces them all.
    pub fn trace_clones(&self) -> Result<(), PtraceError> {
        self.options.set(self.options.get() | libc::PTRACE_O_TRACECLONE as usize);
        self.set_options("SETOPTIONS(TRACECLONE)")
    }

    fn set_options(&self, what: &'static str) -> Result<(), PtraceError> {
        // SAFETY: PTRACE_SETOPTIONS takes the options in data, no pointers.
        if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, self.pid, 0usize, self.options.get()) } != 0 {
            return Err(PtraceError::Call { pid: self.pid, what, source: errno() });
        }
        Ok(())
    }

    /// Queued signals (PTRACE_PEEKSIGINFO): thread-directed, or with `shared` the
    /// process-wide queue. Each entry is a 128-byte siginfo_t.
    pub fn pending(&self, shared: bool) -> Result<Vec<[u64; 16]>, PtraceError> {
        #[repr(C)]
        struct Args {
            off: u64,
            flags: u32,
            nr: i32,
        }
        let mut out = Vec::new();
        loop {
            let mut buf = [[0u64; 16]; 32];
            let a = Args { off: out.len() as u64, flags: shared as u32, nr: buf.len() as i32 };
            // SAFETY: the kernel writes at most `nr` siginfo_t (128 bytes each) into buf.
            let n = unsafe { libc::ptrace(libc::PTRACE_PEEKSIGINFO, self.pid, &a as *const Args, buf.as_mut_ptr()) };
            if n < 0 {
                return Err(PtraceError::Call { pid: self.pid, what: "PEEKSIGINFO", source: errno() });
            }
            out.extend_from_slice(&buf[..n as usize]);
            if (n as usize) < buf.len() {
                return Ok(out);
            }
        }
    }

    /// The XSAVE area in standard format (NT_X86_XSTATE); its size depends on the CPU.
    pub fn xstate(&self) -> Result<Vec<u8>, PtraceError> {
        let mut buf = vec![0u8; ckpt_format::MAX_XSTATE as usize];
        let n = self.getregset(NT_X86_XSTATE, &mut buf, "GETREGSET(NT_X86_XSTATE)")?;
        buf.truncate(n);
        Ok(buf)
    }

    /// The rseq registration (Linux 5.13+); None when the task registered none.
    pub fn rseq(&self) -> Result<Option<RseqConfig>, PtraceError> {
        #[repr(C)]
        #[derive(Default)]
        struct Conf {
            addr: u64,
            len: u32,
            sig: u32,
            flags: u32,
            pad: u32,
        }
        let mut c = Conf::default();
        // SAFETY: the kernel writes at most `addr` (= sizeof) bytes into `c`.
        let r = unsafe {
            libc::ptrace(PTRACE_GET_RSEQ_CONFIGURATION, self.pid, std::mem::size_of::<Conf>(), &mut c as *mut Conf)
        };
        if r < 0 {
            let e = errno();
            if e.raw_os_error() == Some(libc::EIO) {
                return Ok(None); // kernel without the request
            }
            return Err(PtraceError::Call { pid: self.pid, what: "GET_RSEQ_CONFIGURATION", source: e });
        }
        Ok((c.addr != 0).then_some(RseqConfig { addr: c.addr, len: c.len, sig: c.sig }))
    }

    /// The robust futex list head and length (get_robust_list(2) works on a tracee).
    pub fn robust_list(&self) -> (u64, u64) {
        let (mut head, mut len) = (0u64, 0usize);
        // SAFETY: both out-pointers are valid.
        let r = unsafe { libc::syscall(libc::SYS_get_robust_list, self.pid, &mut head as *mut u64, &mut len as *mut usize) };
        if r == 0 {
            (head, len as u64)
        } else {
            (0, 0)
        }
    }

    /// Wait until the task, already sent SIGKILL, is gone. As its tracer we are told
    /// of its death; bounded by the kernel (SIGKILL cannot be blocked).
    pub fn reap(mut self) {
        let pid = self.pid;
        self.attached = false;
        let mut status = 0;
        // SAFETY: status is a valid out-pointer.
        while unsafe { libc::waitpid(pid, &mut status, libc::__WALL) } == pid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                break;
            }
        }
    }
}

impl Drop for Seized {
    fn drop(&mut self) {
        if !self.attached {
            return;
        }
        // The signal argument of PTRACE_DETACH is ignored unless the tracee is in a
        // signal-delivery stop (ptrace(2)), which a PTRACE_INTERRUPT stop is not:
        // queue SIGSTOP with kill(2) so the task stops as soon as it is let go, and
        // a signal taken off the queue at a stop the task has since left goes back on
        // its queue (with its siginfo where the kernel allows a tracer to send it,
        // rt_tgsigqueueinfo(2); else as from tkill).
        let mut sig = self.pending.get();
        if sig != 0 && !self.in_signal_stop.get() {
            let info = self.pending_info.get();
            let tgid = crate::proc::status::read_status(self.pid).map(|s| s.tgid).unwrap_or(self.pid);
            // SAFETY: info is a 128-byte siginfo_t; plain signal delivery otherwise.
            unsafe {
                if libc::syscall(libc::SYS_rt_tgsigqueueinfo, tgid, self.pid, sig, info.as_ptr()) != 0 {
                    libc::syscall(libc::SYS_tkill, self.pid, sig);
                }
            }
            sig = 0;
        }
        if self.release == Release::Stop {
            // SAFETY: plain signal delivery.
            unsafe { libc::kill(self.pid, libc::SIGSTOP) };
        }
        // SAFETY: PTRACE_DETACH takes a signal number as data, no pointers.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, self.pid, 0usize, sig as usize) };
    }
}
