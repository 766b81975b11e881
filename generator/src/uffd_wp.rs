//! A userfaultfd created inside the target, so that the kernel tracks which pages
//! it writes while ckpt copies its memory (precopy.rs).
//!
//! userfaultfd(2) acts on the caller's own mm, so it is injected (inject.rs):
//! userfaultfd(O_CLOEXEC | O_NONBLOCK), UFFDIO_API asking for
//! UFFD_FEATURE_WP_ASYNC (write faults on protected pages are resolved by the
//! kernel, which only clears the page's uffd-wp bit; no thread ever waits on the
//! fd), then UFFDIO_REGISTER in UFFDIO_REGISTER_MODE_WP over each tracked range.
//! With vm.unprivileged_userfaultfd=0, a task without CAP_SYS_PTRACE gets EPERM
//! unless it passes UFFD_USER_MODE_ONLY, which only concerns faults taken in
//! kernel mode; WP_ASYNC resolves those in place too (do_wp_page()), so the
//! flag changes nothing here. Closing the last reference to the fd unregisters
//! every range and clears the bits it set (userfaultfd_release()); the ranges
//! are unregistered first anyway (UFFDIO_UNREGISTER), in case a child forked
//! meanwhile holds a copy of the fd.

use crate::inject::{checked, word, Injector};
use anyhow::{bail, Result};

/// UFFD_USER_MODE_ONLY, a flag of userfaultfd(2) itself.
const UFFD_USER_MODE_ONLY: u64 = 1;
const UFFD_API: u64 = 0xaa;
/// _IOWR(0xAA, 0x3F, struct uffdio_api) (include/uapi/linux/userfaultfd.h).
const UFFDIO_API: u64 = 0xc018_aa3f;
/// _IOWR(0xAA, 0x00, struct uffdio_register).
const UFFDIO_REGISTER: u64 = 0xc020_aa00;
/// _IOR(0xAA, 0x01, struct uffdio_range).
const UFFDIO_UNREGISTER: u64 = 0x8010_aa01;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;

fn bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Create the tracking userfaultfd in the stopped task of `inj` and register
/// `ranges`; returns its fd number in the task. On failure nothing is left
/// behind (the fd is closed again).
pub fn install(inj: &Injector, task: &str, ranges: &[(u64, u64)]) -> Result<i32> {
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let mut r = inj.syscall(libc::SYS_userfaultfd, [flags, 0, 0, 0, 0, 0])?;
    if r == -(libc::EPERM as i64) {
        r = inj.syscall(libc::SYS_userfaultfd, [flags | UFFD_USER_MODE_ONLY, 0, 0, 0, 0, 0])?;
    }
    let fd = checked(r, "userfaultfd(2)", task)? as i32;
    let set_up = || -> Result<()> {
        inj.write(0, &bytes(&[UFFD_API, UFFD_FEATURE_WP_ASYNC, 0]))?;
        let r = inj.syscall(libc::SYS_ioctl, [fd as u64, UFFDIO_API, inj.ptr(0), 0, 0, 0])?;
        checked(r, "UFFDIO_API with UFFD_FEATURE_WP_ASYNC", task)?;
        let mut api = [0u8; 24];
        inj.read(0, &mut api)?;
        if word(&api, 1) & UFFD_FEATURE_WP_ASYNC == 0 {
            bail!("the userfaultfd of {task} has no UFFD_FEATURE_WP_ASYNC");
        }
        for &(lo, hi) in ranges {
            inj.write(0, &bytes(&[lo, hi - lo, UFFDIO_REGISTER_MODE_WP, 0]))?;
            let r = inj.syscall(libc::SYS_ioctl, [fd as u64, UFFDIO_REGISTER, inj.ptr(0), 0, 0, 0])?;
            checked(r, &format!("UFFDIO_REGISTER (write-protect mode) of {lo:x}-{hi:x}"), task)?;
        }
        Ok(())
    };
    if let Err(e) = set_up() {
        let _ = remove(inj, task, fd, ranges);
        return Err(e);
    }
    Ok(fd)
}

/// Unregister `ranges` (best effort: a range unmapped or replaced meanwhile
/// refuses) and close `fd` in the stopped task of `inj`.
pub fn remove(inj: &Injector, task: &str, fd: i32, ranges: &[(u64, u64)]) -> Result<()> {
    for &(lo, hi) in ranges {
        inj.write(0, &bytes(&[lo, hi - lo]))?;
        inj.syscall(libc::SYS_ioctl, [fd as u64, UFFDIO_UNREGISTER, inj.ptr(0), 0, 0, 0])?;
    }
    let r = inj.syscall(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0])?;
    checked(r, &format!("closing the tracking userfaultfd {fd}"), task)?;
    Ok(())
}
