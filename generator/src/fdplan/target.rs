//! Reaching the target's open files from the freezer, without disturbing them.
//!
//! Three kernel interfaces, all usable by the tracer of a stopped task:
//! - `pidfd_getfd(2)` (Linux 5.6) duplicates one of the target's fds into ours: the
//!   same open file description, so we can ask the object itself (F_GET_SEALS,
//!   getsockname, FIONREAD, tee). It needs PTRACE_MODE_ATTACH_REALCREDS over the
//!   target, which its tracer has. The duplicate is closed again at once; closing it
//!   never affects the target (the description lives while the target's fd does).
//!   Side effect documented in pidfd_getfd(2): a socket's cgroup net classid/prio
//!   are updated to ours (`__receive_sock`), which matters only for net_cls/net_prio.
//! - `kcmp(2)` KCMP_FILE tells whether two fds of the target share one open file
//!   description (dup(2), inheritance), KCMP_EPOLL_TFD whether an epoll registration
//!   still points at the file now open at that fd number. Needs PTRACE_MODE_READ.
//! - Opening `/proc/PID/fd/N` gives a *new* description of the same file (proc(5)):
//!   reading it never moves the target's offset, and it works for deleted files and
//!   memfds.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::ptrace::Seized;

const KCMP_FILE: libc::c_int = 0;
const KCMP_EPOLL_TFD: libc::c_int = 7;

/// struct kcmp_epoll_slot (include/uapi/linux/kcmp.h).
#[repr(C)]
struct KcmpEpollSlot {
    efd: u32,
    tfd: u32,
    toff: u32,
}

pub struct Target {
    pub pid: i32,
    /// Device number of the target's controlling terminal (0: none).
    pub tty_nr: u64,
    pidfd: io::Result<OwnedFd>,
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

impl Target {
    /// The target stopped under `t`: we are its tracer for as long as we use this.
    pub fn new(t: &Seized) -> Target {
        let pid = t.pid;
        // SAFETY: pidfd_open takes a pid and flags, no pointers.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = if r < 0 {
            Err(last_err())
        } else {
            // SAFETY: the kernel just returned this fd to us; nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
        };
        let tty_nr = crate::proc::stat::read_stat(pid).map_or(0, |s| s.tty_nr);
        Target { pid, tty_nr, pidfd }
    }

    /// A duplicate of the target's `fd` in this process (close-on-exec).
    pub fn getfd(&self, fd: i32) -> io::Result<OwnedFd> {
        let pidfd = match &self.pidfd {
            Ok(p) => p,
            Err(e) => return Err(io::Error::new(e.kind(), format!("pidfd_open: {e}"))),
        };
        // SAFETY: pidfd_getfd takes two fds and flags (must be 0), no pointers.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if r < 0 {
            let e = last_err();
            return Err(io::Error::new(e.kind(), format!("pidfd_getfd: {e}")));
        }
        // SAFETY: a new fd returned by the kernel, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }

    /// `/proc/PID/fd/N` opened anew with `flags` (O_RDONLY for reading content).
    pub fn open_proc(&self, fd: i32) -> io::Result<File> {
        File::open(format!("/proc/{}/fd/{fd}", self.pid))
    }

    /// Whether fds `a` and `b` of the target share one open file description.
    pub fn same_description(&self, a: i32, b: i32) -> io::Result<bool> {
        let p = self.pid;
        // SAFETY: KCMP_FILE takes two fd numbers, no pointers.
        let r = unsafe { libc::syscall(libc::SYS_kcmp, p, p, KCMP_FILE, a as libc::c_ulong, b as libc::c_ulong) };
        if r < 0 {
            return Err(last_err());
        }
        Ok(r == 0)
    }

    /// Whether the `toff`-th registration for fd number `tfd` in epoll `epfd` is the
    /// file open at `tfd` now.
    pub fn epoll_target_is(&self, epfd: i32, tfd: i32, toff: u32) -> io::Result<bool> {
        let p = self.pid;
        let slot = KcmpEpollSlot { efd: epfd as u32, tfd: tfd as u32, toff };
        // SAFETY: KCMP_EPOLL_TFD reads a struct kcmp_epoll_slot through idx2.
        let r = unsafe {
            libc::syscall(libc::SYS_kcmp, p, p, KCMP_EPOLL_TFD, tfd as libc::c_ulong, &slot as *const KcmpEpollSlot)
        };
        if r < 0 {
            return Err(last_err());
        }
        Ok(r == 0)
    }
}

/// An integer socket/fcntl query on one of our fds.
pub fn getsockopt_int(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are valid out-pointers of the advertised size.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    if r < 0 {
        return Err(last_err());
    }
    Ok(v)
}

pub fn fcntl_int(fd: &OwnedFd, cmd: libc::c_int) -> io::Result<i32> {
    // SAFETY: only commands without pointer arguments are used.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd) };
    if r < 0 {
        return Err(last_err());
    }
    Ok(r)
}

/// FIONREAD: bytes waiting to be read (pipes, sockets, inotify).
pub fn bytes_readable(fd: &OwnedFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(last_err());
    }
    Ok(n.max(0) as usize)
}
