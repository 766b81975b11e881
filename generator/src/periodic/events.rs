//! What the periodic loop waits for: the interval passing, the process ending (a
//! pidfd, pidfd_open(2), readable once it has exited) or SIGINT/SIGTERM (blocked
//! and read from a signalfd, signalfd(2), so a checkpoint in progress is never cut
//! short; threads started later inherit the mask).

use anyhow::{Context, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

pub enum Event {
    Timeout,
    /// The process has exited.
    Ended,
    /// SIGINT or SIGTERM arrived.
    Signal(i32),
}

pub struct Events {
    pidfd: OwnedFd,
    sigfd: OwnedFd,
}

impl Events {
    /// Watch process `pid`; blocks SIGINT and SIGTERM in this thread from now on.
    pub fn new(pid: i32) -> Result<Events> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("watching pid {pid} (pidfd_open)"));
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: an empty set filled by the libc calls, then used as the mask.
        let sigfd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
        };
        if sigfd < 0 {
            return Err(std::io::Error::last_os_error()).context("signalfd for SIGINT and SIGTERM");
        }
        // SAFETY: sigfd is a new descriptor that nothing else owns.
        let sigfd = unsafe { OwnedFd::from_raw_fd(sigfd) };
        Ok(Events { pidfd, sigfd })
    }

    /// Wait up to `timeout` for the process to end or a signal.
    pub fn wait(&self, timeout: Duration) -> Event {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut fds = [
                libc::pollfd { fd: self.sigfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: fds is a valid array of two pollfd.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if r < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Event::Timeout;
            }
            if fds[0].revents != 0 {
                return Event::Signal(self.read_signal());
            }
            if fds[1].revents != 0 {
                return Event::Ended;
            }
            if r == 0 {
                return Event::Timeout;
            }
        }
    }

    /// Whether the process has exited (no waiting).
    pub fn ended(&self) -> bool {
        let mut p = libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: p is a valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) > 0 }
    }

    fn read_signal(&self) -> i32 {
        // SAFETY: signalfd_siginfo is plain data; read fills it or fails.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(self.sigfd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), std::mem::size_of::<libc::signalfd_siginfo>());
            if n > 0 {
                info.ssi_signo as i32
            } else {
                libc::SIGTERM
            }
        }
    }
}
