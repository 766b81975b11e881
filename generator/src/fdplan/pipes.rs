//! Pipes whose both ends are in the task: recreated with pipe2(2) at resume, with
//! the bytes that were waiting in them.
//!
//! The bytes are read without consuming them, so a target left running
//! (`--leave-running`) still finds them: tee(2) duplicates the content of one pipe
//! into another without consuming the input. tee copies whole pipe buffers, so
//! our pipe gets the target pipe's capacity first (F_SETPIPE_SZ up to
//! /proc/sys/fs/pipe-max-size, the same limit the target was under) and a single
//! call must copy every byte FIONREAD reports: a second call would copy the same
//! bytes again, not the next ones.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::target::{bytes_readable, fcntl_int, Target};

/// The buffered bytes and the capacity of the pipe whose read end is `fd`.
pub fn capture(tg: &Target, fd: i32) -> Result<(Vec<u8>, u64), String> {
    let r = tg.getfd(fd).map_err(|e| format!("cannot reach the pipe: {e}"))?;
    let size = fcntl_int(&r, libc::F_GETPIPE_SZ).map_err(|e| format!("F_GETPIPE_SZ: {e}"))? as u64;
    let n = bytes_readable(&r).map_err(|e| format!("FIONREAD: {e}"))?;
    if n == 0 {
        return Ok((Vec::new(), size));
    }
    let mut p = [0i32; 2];
    // SAFETY: p has room for the two fds pipe2 returns.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    let (ours_r, ours_w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    // Failing to grow is not fatal: a small buffer may still be enough.
    // SAFETY: F_SETPIPE_SZ takes an integer.
    unsafe { libc::fcntl(ours_w.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
    // SAFETY: tee takes two fds, a length and flags.
    let t = unsafe { libc::tee(r.as_raw_fd(), ours_w.as_raw_fd(), n, libc::SPLICE_F_NONBLOCK) };
    if t < 0 {
        return Err(format!("tee: {}", std::io::Error::last_os_error()));
    }
    if (t as usize) < n {
        return Err(format!("tee copied only {t} of the {n} buffered bytes"));
    }
    drop(ours_w);
    let mut buf = Vec::with_capacity(n);
    std::fs::File::from(ours_r).read_to_end(&mut buf).map_err(|e| format!("reading the copy: {e}"))?;
    if buf.len() != n {
        return Err(format!("read {} of the {n} buffered bytes", buf.len()));
    }
    Ok((buf, size))
}
