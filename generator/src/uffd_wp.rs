//! A userfaultfd of the target's memory, held by ckpt, so that the kernel tracks
//! which pages the target writes while ckpt copies them (precopy.rs).
//!
//! userfaultfd(2) acts on the caller's own mm, so it is created by a system call
//! injected into the stopped target (inject.rs). ckpt then takes a copy of the
//! fd (pidfd_getfd(2), which needs the same ptrace access as the freeze) and the
//! target closes its own at once: the target's fd table is back as it was before
//! it runs again. Every ioctl of a userfaultfd acts on the mm it was created
//! for, whoever calls it (userfaultfd_register() uses ctx->mm), so ckpt enables
//! UFFD_FEATURE_WP_ASYNC (write faults on protected pages are resolved by the
//! kernel, which only clears the page's uffd-wp bit; nobody reads the fd) and
//! registers the tracked ranges in UFFDIO_REGISTER_MODE_WP from its side while
//! the target runs. With vm.unprivileged_userfaultfd=0, a task without
//! CAP_SYS_PTRACE gets EPERM unless it passes UFFD_USER_MODE_ONLY, which only
//! concerns faults taken in kernel mode; WP_ASYNC resolves those in place too
//! (do_wp_page()), so the flag changes nothing here. Closing the fd unregisters
//! every range and clears the bits it set (userfaultfd_release()).

use crate::inject::{checked, Injector};
use anyhow::{bail, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// UFFD_USER_MODE_ONLY, a flag of userfaultfd(2) itself.
const UFFD_USER_MODE_ONLY: u64 = 1;
const UFFD_API: u64 = 0xaa;
/// _IOWR(0xAA, 0x3F, struct uffdio_api) (include/uapi/linux/userfaultfd.h).
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// _IOR(0xAA, 0x01, struct uffdio_range).
const UFFDIO_UNREGISTER: libc::c_ulong = 0x8010_aa01;
/// What one UFFDIO_UNREGISTER at the drop covers.
const UNREGISTER_PIECE: u64 = 64 << 20;
/// _IOWR(0xAA, 0x00, struct uffdio_register).
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;

/// ckpt's copy of the target's userfaultfd; dropping it ends the tracking.
pub struct Tracker {
    fd: OwnedFd,
    pid: i32,
    /// The ranges registered, unregistered piece by piece at the drop.
    registered: Vec<(u64, u64)>,
}

/// Create the userfaultfd in the stopped task of `inj` (thread of pid `pid`)
/// and take it into ckpt; the task keeps no fd of it.
pub fn create(inj: &Injector, pid: i32, tid: i32) -> Result<Tracker> {
    let task = format!("pid {pid}");
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let mut r = inj.syscall(libc::SYS_userfaultfd, [flags, 0, 0, 0, 0, 0])?;
    if r == -(libc::EPERM as i64) {
        r = inj.syscall(libc::SYS_userfaultfd, [flags | UFFD_USER_MODE_ONLY, 0, 0, 0, 0, 0])?;
    }
    let theirs = checked(r, "userfaultfd(2)", &task)?;
    let ours = take(tid, theirs as i32);
    let r = inj.syscall(libc::SYS_close, [theirs as u64, 0, 0, 0, 0, 0])?;
    checked(r, &format!("closing fd {theirs} after taking it"), &task)?;
    Ok(Tracker { fd: ours?, pid, registered: Vec::new() })
}

/// PIDFD_THREAD (Linux 6.9): a pidfd of a thread, not only of a group leader.
const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;

/// A copy of fd `fd` of task `tid` (pidfd_open(2), pidfd_getfd(2); close-on-exec).
fn take(tid: i32, fd: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let mut pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, PIDFD_THREAD) };
    if pidfd < 0 {
        // SAFETY: as above; an older kernel, for which tid must be a leader.
        pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid, 0) };
    }
    if pidfd < 0 {
        bail!("pidfd_open of thread {tid}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: pidfd is a new fd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd takes a pidfd, an fd number and flags, returns a new fd or -1.
    let ours = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if ours < 0 {
        bail!("pidfd_getfd of fd {fd} of thread {tid}: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ours as i32) })
}

impl Tracker {
    /// A userfaultfd of ckpt's own memory (tests).
    #[cfg(test)]
    pub fn of_self() -> Tracker {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: userfaultfd takes flags and returns a new fd or -1.
        let mut fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        if fd < 0 {
            // SAFETY: as above.
            fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY as i32) };
        }
        assert!(fd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
        // SAFETY: a new fd we own.
        Tracker { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) }, pid: std::process::id() as i32, registered: Vec::new() }
    }

    fn ioctl(&self, what: &str, req: libc::c_ulong, arg: &mut [u64]) -> Result<()> {
        // SAFETY: arg is the complete struct the request reads and writes
        // (uffdio_api: 3 words, uffdio_register: 4 words).
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), req, arg.as_mut_ptr()) } < 0 {
            bail!("{what} on the userfaultfd of pid {}: {}", self.pid, std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Enable WP_ASYNC and register `ranges` in write-protect mode; returns the
    /// ranges registered. A range the target unmapped or changed since its maps
    /// were read is refused (EINVAL: not one whole anonymous VMA any more,
    /// userfaultfd_register()) and left out, with the reason traced.
    pub fn track(&mut self, ranges: &[(u64, u64)]) -> Result<Vec<(u64, u64)>> {
        let mut api = [UFFD_API, UFFD_FEATURE_WP_ASYNC, 0];
        self.ioctl("UFFDIO_API with UFFD_FEATURE_WP_ASYNC", UFFDIO_API, &mut api)?;
        let mut done = Vec::new();
        for &(lo, hi) in ranges {
            let mut reg = [lo, hi - lo, UFFDIO_REGISTER_MODE_WP, 0];
            match self.ioctl(&format!("UFFDIO_REGISTER (write-protect mode) of {lo:x}-{hi:x}"), UFFDIO_REGISTER, &mut reg) {
                Ok(()) => {
                    done.push((lo, hi));
                    self.registered.push((lo, hi));
                }
                Err(e) => crate::trace::mark(&format!("pre-copy: {e:#}; that range is read at the stop")),
            }
        }
        Ok(done)
    }
}

/// Ending the tracking clears the uffd-wp bit of every page it set, under the
/// target's mmap lock held for writing (userfaultfd_release() and
/// userfaultfd_unregister() walk the page tables, uffd_wp_range()): about 20 ms
/// per GiB here, during which the target's page faults wait. Unregistering
/// 64 MiB at a time lets it run between the pieces (each piece splits its VMA,
/// which merges again with the piece before once both are unregistered); the
/// close then finds nothing left. A range the target unmapped or changed
/// meanwhile fails here and is left to the close.
impl Drop for Tracker {
    fn drop(&mut self) {
        for &(lo, hi) in &self.registered {
            let mut at = lo;
            while at < hi {
                let len = UNREGISTER_PIECE.min(hi - at);
                let mut range = [at, len];
                if self.ioctl("UFFDIO_UNREGISTER", UFFDIO_UNREGISTER, &mut range).is_err() {
                    break;
                }
                at += len;
            }
        }
    }
}
