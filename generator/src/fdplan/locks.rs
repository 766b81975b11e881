//! File locks the process holds — flock(2), POSIX record locks and OFD locks
//! (fcntl(2)) — to be taken again at resume through the same fd, before any of
//! the process's code runs (restorer-stub/src/fds/locks.rs).
//!
//! Each fd's fdinfo lists the locks of its open file description (flock, OFD) and
//! the process's POSIX locks taken through that description (show_fd_locks(),
//! fs/proc/fd.c): fds sharing one description all list the same locks, which are
//! taken once. A POSIX lock belongs to the process's fd table, and one that no fd
//! lists could not be taken again: such locks are refused, as are leases and
//! locks through the resumer's own stdio.
//!
//! With one fd table, every POSIX lock is listed: the fd it was taken through is
//! still open, since closing any fd of a file drops all the process's POSIX locks
//! on it (filp_flush() calls locks_remove_posix(), fs/open.c, fs/locks.c; close,
//! dup2 over an fd, close_range and exec's close-on-exec all end there). Only a
//! thread with a table of its own (clone without CLONE_FILES, or
//! unshare(CLONE_FILES)) can hold a lock no fdinfo of the process shows; then
//! /proc/locks is read (slow: proc/locks.rs) and checked for them ([`needs_proc_locks`]).

use anyhow::{bail, Result};
use ckpt_format::{FdKind, FileLock, LOCK_FLOCK, LOCK_OFD, LOCK_POSIX};

use super::FdPlan;
use crate::proc::fds::FdInfo;
use crate::proc::locks::{self, LockKind, LockLine};

/// Whether /proc/locks must be read: some thread of the process (`tids`, the one
/// its fds are read through first) has another fd table (kcmp(2) KCMP_FILES), or
/// kcmp cannot tell.
pub fn needs_proc_locks(tids: &[i32]) -> bool {
    const KCMP_FILES: libc::c_long = 2;
    let Some((&first, rest)) = tids.split_first() else { return false };
    rest.iter().any(|&t| {
        // SAFETY: kcmp takes integers only.
        unsafe { libc::syscall(libc::SYS_kcmp, first as libc::c_long, t as libc::c_long, KCMP_FILES, 0 as libc::c_long, 0 as libc::c_long) != 0 }
    })
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        LOCK_FLOCK => "flock",
        LOCK_POSIX => "POSIX",
        _ => "OFD",
    }
}

/// "bytes 10-14", "bytes 100 to EOF", "the whole file".
pub fn range(start: u64, end: Option<u64>) -> String {
    match end {
        Some(e) => format!("bytes {start}-{e}"),
        None if start == 0 => "the whole file".into(),
        None => format!("bytes {start} to EOF"),
    }
}

fn same_range(l: &LockLine, k: &FileLock) -> bool {
    k.start == l.start && k.len == l.end.map_or(0, |e| e - l.start + 1)
}

/// The locks of `fds` (planned as `out`), in fd order.
pub fn plan(pid: i32, fds: &[FdInfo], out: &FdPlan, all: locks::Prefetch) -> Result<Vec<FileLock>> {
    let mut taken: Vec<(FileLock, u32, u64)> = Vec::new(); // lock, desc, inode
    for f in fds.iter().filter(|f| !f.locks.is_empty()) {
        let rec = out.fds.iter().find(|r| r.fd == f.fd);
        for l in &f.locks {
            let kind = match l.kind {
                LockKind::Flock => LOCK_FLOCK,
                LockKind::Posix => LOCK_POSIX,
                LockKind::Ofd => LOCK_OFD,
                LockKind::Other => {
                    bail!("pid {pid}: fd {} ({}) holds a {} on its file, which cannot be taken again", f.fd, f.link, l.kind_name)
                }
            };
            let Some(rec) = rec.filter(|r| r.kind != FdKind::Inherit as u32) else {
                bail!(
                    "pid {pid}: fd {} ({}) holds a {} lock on {}, but at resume that fd is the resumer's own and the lock cannot be taken again",
                    f.fd,
                    f.link,
                    kind_name(kind),
                    range(l.start, l.end)
                );
            };
            let lock = FileLock {
                fd: f.fd,
                kind,
                write: l.write as u32,
                start: l.start,
                len: l.end.map_or(0, |e| e - l.start + 1),
                _pad: 0,
            };
            let dup = rec.desc != 0 && taken.iter().any(|(k, d, _)| *d == rec.desc && k.kind == kind && k.write == lock.write && same_range(l, k));
            if !dup {
                taken.push((lock, rec.desc, f.ino));
            }
        }
    }
    if let Ok(all) = all.get() {
        for l in all.iter().filter(|l| l.kind == LockKind::Posix && l.pid == pid) {
            if !taken.iter().any(|(k, _, ino)| k.kind == LOCK_POSIX && *ino == l.ino && same_range(l, k)) {
                bail!(
                    "pid {pid} holds a POSIX lock on {} of inode {} that none of its fds reaches (the file is open only through a mapping, or another process's fd); it cannot be taken again",
                    range(l.start, l.end),
                    l.ino
                );
            }
        }
    }
    Ok(taken.into_iter().map(|(k, ..)| k).collect())
}
