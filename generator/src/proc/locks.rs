//! File locks as /proc shows them: the `lock:` lines of /proc/PID/fdinfo/N (the
//! locks taken through that fd's open file description) and /proc/locks (every
//! lock of the system, with its holder). Both are printed by lock_get_status()
//! (fs/locks.c):
//!
//! ```text
//! 1: FLOCK  ADVISORY  WRITE 8505 fe:00:10011557 0 EOF
//! 2: POSIX  ADVISORY  READ 8505 fe:00:10011558 10 14
//! 3: OFDLCK ADVISORY  WRITE -1 fe:00:10011559 100 EOF
//! ```
//!
//! kind, ADVISORY, mode, holder pid (-1 for OFD locks, which belong to no
//! process), major:minor:inode (hex, hex, decimal), first and last byte (EOF: to
//! the end of the file, however far it grows). /proc/locks adds `->` lines for
//! waiters, which hold nothing.

use super::TextError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Flock,
    Posix,
    Ofd,
    /// A lease or delegation (F_SETLEASE), or an access check.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLine {
    pub kind: LockKind,
    /// The raw kind word, for messages ("LEASE", "DELEG"...).
    pub kind_name: String,
    pub write: bool,
    pub pid: i32,
    pub ino: u64,
    pub start: u64,
    /// Last byte; None: to the end of the file.
    pub end: Option<u64>,
}

/// One lock line without its "lock:" prefix; None for a waiter ("->").
pub fn parse_line(line: &str) -> Result<Option<LockLine>, TextError> {
    let t: Vec<&str> = line.split_whitespace().collect();
    if t.get(1) == Some(&"->") {
        return Ok(None);
    }
    let bad = |what: &str| TextError::line(line, what);
    if t.len() < 8 {
        return Err(bad("short lock line"));
    }
    let kind = match t[1] {
        "FLOCK" => LockKind::Flock,
        "POSIX" => LockKind::Posix,
        "OFDLCK" => LockKind::Ofd,
        _ => LockKind::Other,
    };
    let write = match t[3] {
        "WRITE" => true,
        "READ" => false,
        // A lease's mode ("BREAKING", "UNLCK"...).
        _ if kind == LockKind::Other => false,
        _ => return Err(bad("lock mode neither READ nor WRITE")),
    };
    let ino = t[5].rsplit(':').next().and_then(|i| i.parse().ok()).ok_or_else(|| bad("bad device:inode"))?;
    let start = t[6].parse().map_err(|_| bad("bad lock start"))?;
    let end = match t[7] {
        "EOF" => None,
        e => Some(e.parse().map_err(|_| bad("bad lock end"))?),
    };
    Ok(Some(LockLine {
        kind,
        kind_name: t[1].to_owned(),
        write,
        pid: t[4].parse().map_err(|_| bad("bad lock pid"))?,
        ino,
        start,
        end,
    }))
}

/// The `lock:` lines of an fdinfo file.
pub fn parse_fdinfo(text: &str) -> Result<Vec<LockLine>, TextError> {
    let mut out = Vec::new();
    for l in text.lines().filter_map(|l| l.strip_prefix("lock:")) {
        out.extend(parse_line(l)?);
    }
    Ok(out)
}

/// Every lock of /proc/locks (waiters skipped, unreadable lines too), read on a
/// thread of its own when it is needed at all: the read takes the kernel's
/// file-lock rwsem for writing (locks_start(), fs/locks.c), whose
/// percpu_down_write waits for an RCU grace period, about 6 ms here even when
/// there are few locks. Started once the target is stopped, it overlaps the rest
/// of the capture; [`Prefetch::skip`] when no lock can be missing from fdinfo
/// (fdplan/locks.rs says when).
pub struct Prefetch(Option<std::thread::JoinHandle<std::io::Result<Vec<LockLine>>>>);

impl Prefetch {
    pub fn start() -> Prefetch {
        Prefetch(Some(std::thread::spawn(read_all)))
    }

    /// /proc/locks is not read: [`Prefetch::get`] gives no lock.
    pub fn skip() -> Prefetch {
        Prefetch(None)
    }

    pub fn get(self) -> std::io::Result<Vec<LockLine>> {
        match self.0 {
            None => Ok(Vec::new()),
            Some(h) => h.join().unwrap_or_else(|_| Err(std::io::Error::other("the /proc/locks reading thread panicked"))),
        }
    }
}

pub fn read_all() -> std::io::Result<Vec<LockLine>> {
    let text = std::fs::read_to_string("/proc/locks")?;
    Ok(text.lines().filter_map(|l| parse_line(l).ok().flatten()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // fdinfo and /proc/locks lines of a python3 process on this machine (Linux 6.18).
    const FDINFO: &str = "pos:\t0\nflags:\t02100002\nmnt_id:\t27\nino:\t10011558\n\
lock:\t1: POSIX  ADVISORY  WRITE 8505 fe:00:10011558 10 14\n\
lock:\t2: FLOCK  ADVISORY  READ 8505 fe:00:10011558 0 EOF\n";

    #[test]
    fn fdinfo_lock_lines() {
        let l = parse_fdinfo(FDINFO).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].kind, l[0].write, l[0].pid, l[0].ino, l[0].start, l[0].end), (LockKind::Posix, true, 8505, 10011558, 10, Some(14)));
        assert_eq!((l[1].kind, l[1].write, l[1].end), (LockKind::Flock, false, None));
        assert!(parse_fdinfo("pos:\t0\n").unwrap().is_empty());
    }

    #[test]
    fn proc_locks_lines() {
        let ofd = parse_line("1: OFDLCK ADVISORY  WRITE -1 fe:00:10011559 100 EOF").unwrap().unwrap();
        assert_eq!((ofd.kind, ofd.pid, ofd.start, ofd.end), (LockKind::Ofd, -1, 100, None));
        assert_eq!(parse_line("1: -> POSIX  ADVISORY  WRITE 77 fe:00:12 0 EOF").unwrap(), None);
        let lease = parse_line("4: LEASE  ACTIVE    READ 77 fe:00:12 0 EOF").unwrap().unwrap();
        assert_eq!((lease.kind, lease.kind_name.as_str()), (LockKind::Other, "LEASE"));
        assert!(parse_line("1: POSIX  ADVISORY  WRITE 77 fe:00:12 0").is_err());
        assert!(parse_line("1: POSIX  ADVISORY  MAYBE 77 fe:00:12 0 EOF").is_err());
    }
}
