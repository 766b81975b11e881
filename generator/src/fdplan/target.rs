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
//!
//! Files in flight (passed with SCM_RIGHTS in a message still queued on one of the
//! target's sockets) have no fd in the target; peeking the message gave us one. They
//! are [`Target::adopt`]ed under made-up fd numbers above the target's, and every
//! method here answers for them through our own fd, so the planners treat them as
//! any other fd.

use std::cell::RefCell;
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
    /// Files in flight: (made-up fd number, our fd), numbers ascending.
    inflight: RefCell<Vec<(i32, OwnedFd)>>,
    /// The first made-up number (above every fd of the target).
    first_inflight: i32,
    /// How many of the first made-up numbers are files of other processes of a
    /// tree rather than files in flight ([`super::exports`]).
    exported: std::cell::Cell<i32>,
    /// Socket queues already peeked, by socket inode: a zero-length datagram once
    /// peeked is skipped by every later peek at an offset (skb->peeked,
    /// __skb_try_recv_from_queue()), so each queue is peeked once.
    queues: RefCell<std::collections::HashMap<u64, Peeked>>,
    /// Duplicates of the TCP ends planned to be made anew ([`super::tcppair`]).
    tcp_ends: RefCell<Vec<OwnedFd>>,
}

/// A socket's queued messages, as peeked: bytes, and the (made-up) fd numbers of
/// the files passed with each.
#[derive(Clone, Default)]
pub struct Peeked {
    pub messages: Vec<Vec<u8>>,
    pub fds: Vec<Vec<i32>>,
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

impl Target {
    /// The target stopped under `t`: we are its tracer for as long as we use this.
    pub fn new(t: &Seized, highest_fd: i32) -> Target {
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
        Target { pid, tty_nr, pidfd, inflight: RefCell::new(Vec::new()), first_inflight: highest_fd.max(2) + 1, exported: Default::default(), queues: Default::default(), tcp_ends: Default::default() }
    }

    /// The queue of socket `ino` if it was peeked before.
    pub fn peeked(&self, ino: u64) -> Option<Peeked> {
        self.queues.borrow().get(&ino).cloned()
    }

    /// Keep a duplicate of a TCP end that the resume makes anew.
    pub fn keep_tcp_end(&self, s: OwnedFd) {
        self.tcp_ends.borrow_mut().push(s);
    }

    pub fn take_tcp_ends(&self) -> Vec<OwnedFd> {
        self.tcp_ends.take()
    }

    pub fn remember(&self, ino: u64, p: Peeked) {
        self.queues.borrow_mut().insert(ino, p);
    }

    /// Whether `fd` is a made-up number of a file in flight.
    pub fn is_inflight(&self, fd: i32) -> bool {
        fd >= self.first_inflight + self.exported.get()
    }

    /// Whether `fd` is a made-up number of a file of another process of the tree.
    pub fn is_exported(&self, fd: i32) -> bool {
        fd >= self.first_inflight && fd < self.first_inflight + self.exported.get()
    }

    /// The file just adopted at `fd` is another process's ([`super::exports`]).
    pub fn mark_exported(&self, fd: i32) {
        debug_assert_eq!(fd, self.first_inflight + self.exported.get());
        self.exported.set(self.exported.get() + 1);
    }

    /// Our own fd holding in-flight file `fd`.
    fn ours(&self, fd: i32) -> Option<i32> {
        self.inflight.borrow().iter().find(|(n, _)| *n == fd).map(|(_, o)| o.as_raw_fd())
    }

    /// A file in flight that a peek gave us: its made-up fd number, and whether it
    /// is new (the same open file description met before keeps its number).
    pub fn adopt(&self, fd: OwnedFd) -> io::Result<(i32, bool)> {
        let me = std::process::id() as i32;
        for (n, o) in self.inflight.borrow().iter() {
            if kcmp_file(me, o.as_raw_fd(), me, fd.as_raw_fd())? {
                return Ok((*n, false));
            }
        }
        let mut v = self.inflight.borrow_mut();
        let n = self.first_inflight + v.len() as i32;
        v.push((n, fd));
        Ok((n, true))
    }

    /// `/proc/.../fd/N` of `fd` (ours for a file in flight).
    pub fn proc_fd_path(&self, fd: i32) -> String {
        match self.ours(fd) {
            Some(o) => format!("/proc/self/fd/{o}"),
            None => format!("/proc/{}/fd/{fd}", self.pid),
        }
    }

    /// (pid, fd) that names `fd` for kcmp(2).
    fn kcmp_ref(&self, fd: i32) -> (i32, i32) {
        match self.ours(fd) {
            Some(o) => (std::process::id() as i32, o),
            None => (self.pid, fd),
        }
    }

    /// A duplicate of the target's `fd` in this process (close-on-exec).
    pub fn getfd(&self, fd: i32) -> io::Result<OwnedFd> {
        if let Some(o) = self.ours(fd) {
            // SAFETY: F_DUPFD_CLOEXEC on our own open fd; the result is owned here.
            let r = unsafe { libc::fcntl(o, libc::F_DUPFD_CLOEXEC, 0) };
            if r < 0 {
                return Err(last_err());
            }
            // SAFETY: a new fd owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(r) });
        }
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
        File::open(self.proc_fd_path(fd))
    }

    /// Whether fds `a` and `b` of the target share one open file description.
    pub fn same_description(&self, a: i32, b: i32) -> io::Result<bool> {
        let ((pa, a), (pb, b)) = (self.kcmp_ref(a), self.kcmp_ref(b));
        kcmp_file(pa, a, pb, b)
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

/// kcmp(2) KCMP_FILE: whether fd `a` of `pa` and fd `b` of `pb` are one open file
/// description.
fn kcmp_file(pa: i32, a: i32, pb: i32, b: i32) -> io::Result<bool> {
    // SAFETY: KCMP_FILE takes two fd numbers, no pointers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pa, pb, KCMP_FILE, a as libc::c_ulong, b as libc::c_ulong) };
    if r < 0 {
        return Err(last_err());
    }
    Ok(r == 0)
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
