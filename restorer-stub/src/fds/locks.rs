//! File locks taken again (what is saved and why: generator/src/fdplan/locks.rs;
//! record: the format's `FileLock`), once every fd has its final number and every
//! temporary is closed — closing any fd of a file drops the process's POSIX locks
//! on it (fcntl(2)) — and before any of the process's code runs.
//!
//! Non-blocking only: a lock another process holds now stops the resume, naming
//! the fd, the file, the range and the holder, so the process never runs without
//! its lock. fcntl F_GETLK / F_OFD_GETLK tell a record lock's holder (pid -1 for
//! an OFD lock, 0 for a process outside this PID namespace); a flock holder is
//! looked up by inode in /proc/locks.

use super::{errno, head};
use crate::out::Step;
use crate::sys;
use ckpt_format::{FileLock, Tables, LOCK_FLOCK, LOCK_OFD};

const F_GETLK: usize = 5;
const F_SETLK: usize = 6;
const F_OFD_GETLK: usize = 36;
const F_OFD_SETLK: usize = 37;
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;
const LOCK_SH: usize = 1;
const LOCK_EX: usize = 2;
const LOCK_NB: usize = 4;
const EACCES: isize = 13;

/// struct flock (x86_64).
#[repr(C)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    _pad: u32,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
    _pad2: u32,
}

fn record_lock(fd: usize, cmd: usize, fl: &mut Flock) -> sys::Res {
    // SAFETY: fl is a struct flock the kernel reads and (for F_GETLK) writes.
    unsafe { sys::call(sys::SYS_FCNTL, [fd, cmd, fl as *mut Flock as usize, 0, 0, 0]) }
}

fn kind_name(l: &FileLock) -> &'static str {
    match l.kind {
        LOCK_FLOCK => "flock",
        LOCK_OFD => "OFD",
        _ => "POSIX",
    }
}

/// The pid holding a FLOCK lock on inode `ino` other than us, from /proc/locks.
fn flock_holder(ino: u64) -> Option<u64> {
    let fd = sys::open(b"/proc/locks\0", sys::O_RDONLY | sys::O_CLOEXEC, 0).ok()?;
    let me = sys::getpid() as u64;
    let mut buf = [0u8; 4096];
    let mut have = 0;
    let mut found = None;
    loop {
        let n = match sys::read(fd, &mut buf[have..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        have += n;
        let mut used = 0;
        while let Some(nl) = buf[used..have].iter().position(|&c| c == b'\n') {
            let line = &buf[used..used + nl];
            used += nl + 1;
            // "N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INO 0 EOF"
            let mut t = line.split(|&c| c == b' ').filter(|w| !w.is_empty());
            let (_, kind, _, _, pid, dev) = (t.next(), t.next(), t.next(), t.next(), t.next(), t.next());
            let num = |w: Option<&[u8]>| w.and_then(|w| w.iter().try_fold(0u64, |a, &c| c.is_ascii_digit().then(|| a * 10 + (c - b'0') as u64)));
            let dev_ino = dev.and_then(|d| d.rsplit(|&c| c == b':').next());
            if kind == Some(b"FLOCK") && num(dev_ino) == Some(ino) && num(pid).is_some_and(|p| p != me) {
                found = num(pid);
            }
        }
        buf.copy_within(used..have, 0);
        have -= used;
        if have == buf.len() {
            have = 0; // a line longer than the buffer: skip it
        }
    }
    let _ = sys::close(fd);
    found
}

fn conflict(t: &Tables, l: &FileLock, e: isize) -> ! {
    // Validated: the lock's fd is in the image.
    let Some(f) = t.fds.iter().find(|f| f.fd == l.fd) else { sys::exit_group(Step::Fds as i32) };
    let fd = l.fd as usize;
    let mut l2 = head(f);
    l2.s("cannot take its ").s(kind_name(l)).s(if l.write != 0 { " write" } else { " read" }).s(" lock on ");
    match (l.start, l.len) {
        (0, 0) => l2.s("the whole file"),
        (s, 0) => l2.s("bytes ").dec(s).s(" to EOF"),
        (s, n) => l2.s("bytes ").dec(s).s("-").dec(s + n - 1),
    };
    l2.s(" of ").b(t.string(f.path_off, f.path_len)).s(" again: ");
    errno(&mut l2, e);
    if e != sys::EAGAIN && e != EACCES {
        l2.emit();
        sys::exit_group(Step::Fds as i32)
    }
    let holder = if l.kind == LOCK_FLOCK {
        let mut st = sys::Stat::zeroed();
        sys::fstat(fd, &mut st).ok().and_then(|_| flock_holder(st.st_ino)).map(|p| p as i64)
    } else {
        let mut fl = Flock { l_type: if l.write != 0 { F_WRLCK } else { F_RDLCK }, l_whence: 0, _pad: 0, l_start: l.start as i64, l_len: l.len as i64, l_pid: 0, _pad2: 0 };
        let cmd = if l.kind == LOCK_OFD { F_OFD_GETLK } else { F_GETLK };
        record_lock(fd, cmd, &mut fl).ok().filter(|_| fl.l_type != F_UNLCK).map(|_| fl.l_pid as i64)
    };
    match holder {
        Some(p) if p > 0 => l2.s("; held by pid ").dec(p as u64),
        Some(0) => l2.s("; held by a process outside this PID namespace"),
        Some(_) => l2.s("; held through an open file description of another process (OFD lock)"),
        None => l2.s("; held by another process"),
    };
    l2.emit();
    sys::exit_group(Step::Fds as i32)
}

pub fn restore(t: &Tables) {
    for l in t.locks {
        let fd = l.fd as usize;
        let r = if l.kind == LOCK_FLOCK {
            let how = if l.write != 0 { LOCK_EX } else { LOCK_SH };
            sys::flock(fd, how | LOCK_NB)
        } else {
            let mut fl = Flock { l_type: if l.write != 0 { F_WRLCK } else { F_RDLCK }, l_whence: 0, _pad: 0, l_start: l.start as i64, l_len: l.len as i64, l_pid: 0, _pad2: 0 };
            record_lock(fd, if l.kind == LOCK_OFD { F_OFD_SETLK } else { F_SETLK }, &mut fl)
        };
        match r {
            Ok(_) => crate::out::trace("file lock taken (fd, start)", l.fd as u64, l.start),
            Err(e) => conflict(t, l, e),
        }
    }
}
