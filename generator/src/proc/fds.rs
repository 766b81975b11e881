//! The open file descriptors of a process (`/proc/PID/fd` and `/proc/PID/fdinfo`):
//! what each fd refers to, its file offset and open flags, so the restorer can
//! reopen files at the same position or refuse objects it cannot recreate.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{io_error, proc_path, ProcError, TextError};

/// What an fd's `/proc/PID/fd/N` symlink points at (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdTarget {
    /// An absolute path that still exists (as far as d_path knows).
    File(PathBuf),
    /// An unlinked file, " (deleted)" stripped; memfds appear as "/memfd:NAME".
    DeletedFile(PathBuf),
    /// "pipe:[INODE]"
    Pipe(u64),
    /// "socket:[INODE]"
    Socket(u64),
    /// "anon_inode:X": "[eventpoll]", "[eventfd]", "[timerfd]", "[signalfd]", "inotify"...
    AnonInode(String),
    /// Anything else, raw: namespaces ("net:[4026531840]"), pidfds, ...
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdInfo {
    pub fd: i32,
    pub target: FdTarget,
    /// The raw readlink text (lossy UTF-8).
    pub link: String,
    pub pos: u64,
    /// fdinfo "flags:" (octal): open(2) access mode and status flags, plus
    /// O_CLOEXEC when the close-on-exec flag is set (proc(5)).
    pub flags: u32,
    pub mnt_id: u64,
    pub ino: u64,
}

impl FdInfo {
    pub fn cloexec(&self) -> bool {
        self.flags & libc::O_CLOEXEC as u32 != 0
    }

    /// O_RDONLY, O_WRONLY or O_RDWR.
    pub fn access_mode(&self) -> u32 {
        self.flags & libc::O_ACCMODE as u32
    }
}

const DELETED: &str = " (deleted)";

/// "NAME:[NUMBER]" -> NUMBER
fn bracketed(link: &str, prefix: &str) -> Option<u64> {
    link.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

pub fn classify_link(link: &str) -> FdTarget {
    if link.starts_with('/') {
        match link.strip_suffix(DELETED) {
            Some(p) => FdTarget::DeletedFile(PathBuf::from(p)),
            None => FdTarget::File(PathBuf::from(link)),
        }
    } else if let Some(ino) = bracketed(link, "pipe:") {
        FdTarget::Pipe(ino)
    } else if let Some(ino) = bracketed(link, "socket:") {
        FdTarget::Socket(ino)
    } else if let Some(kind) = link.strip_prefix("anon_inode:") {
        FdTarget::AnonInode(kind.to_string())
    } else {
        FdTarget::Other(link.to_string())
    }
}

pub(crate) fn parse_info(text: &str) -> Result<(u64, u32, u64, u64), TextError> {
    let (mut pos, mut flags, mut mnt_id, mut ino) = (None, None, 0, 0);
    for line in text.lines() {
        // Type-specific lines (epoll "tfd:", inotify, eventfd-count...) are skipped.
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let bad = || TextError::line(line, "bad number");
        match key {
            "pos" => pos = Some(value.parse().map_err(|_| bad())?),
            "flags" => flags = Some(u32::from_str_radix(value, 8).map_err(|_| bad())?),
            // mnt_id since Linux 3.15, ino since 5.14: 0 when absent.
            "mnt_id" => mnt_id = value.parse().map_err(|_| bad())?,
            "ino" => ino = value.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok((
        pos.ok_or(TextError::Missing("pos"))?,
        flags.ok_or(TextError::Missing("flags"))?,
        mnt_id,
        ino,
    ))
}

/// Parse `/proc/PID/fdinfo/N` into (pos, flags, mnt_id, ino).
pub fn parse_fdinfo(text: &str) -> Result<(u64, u32, u64, u64), String> {
    parse_info(text).map_err(String::from)
}

/// One fd, or None if it was closed while we looked.
fn read_one(pid: i32, fd: i32) -> Result<Option<FdInfo>, ProcError> {
    let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOENT);
    let link_path = proc_path(pid, &format!("fd/{fd}"));
    let raw = match std::fs::read_link(&link_path) {
        Ok(raw) => raw,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io_error(pid, &link_path, e)),
    };
    let info_path = proc_path(pid, &format!("fdinfo/{fd}"));
    let text = match std::fs::read(&info_path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io_error(pid, &info_path, e)),
    };
    let (pos, flags, mnt_id, ino) = parse_info(&text).map_err(|e| e.into_proc(pid, info_path))?;
    let link = raw.to_string_lossy().into_owned();
    // Keep non-UTF-8 file names intact: rebuild the path from the raw bytes.
    let bytes = raw.as_os_str().as_bytes();
    let target = match classify_link(&link) {
        FdTarget::File(_) => FdTarget::File(raw.clone()),
        FdTarget::DeletedFile(_) => {
            let stripped = &bytes[..bytes.len() - DELETED.len()];
            FdTarget::DeletedFile(PathBuf::from(OsStr::from_bytes(stripped)))
        }
        other => other,
    };
    Ok(Some(FdInfo {
        fd,
        target,
        link,
        pos,
        flags,
        mnt_id,
        ino,
    }))
}

/// All open fds of `pid`, sorted by fd. Reading another process's fds needs
/// ptrace-read access (proc(5)); an fd closed during the scan is skipped.
pub fn read_fds(pid: i32) -> Result<Vec<FdInfo>, ProcError> {
    let dir = proc_path(pid, "fd");
    let mut fds = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| io_error(pid, &dir, e))? {
        let entry = entry.map_err(|e| io_error(pid, &dir, e))?;
        if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            fds.extend(read_one(pid, fd)?);
        }
    }
    fds.sort_by_key(|f| f.fd);
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    // fdinfo files of a python3 process on this machine (Linux 6.18).
    const EPOLL: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
tfd:        7 events:       19 data:                7  pos:0 ino:1410 sdev:f\n";
    const EVENTFD: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
eventfd-count:                3\neventfd-id: 1\neventfd-semaphore: 0\n";
    const STDOUT: &str = "pos:\t12\nflags:\t0100001\nmnt_id:\t27\nino:\t10010718\n";

    #[test]
    fn fdinfo_samples() {
        assert_eq!(parse_fdinfo(EPOLL), Ok((0, 0o2000002, 17, 1038)));
        assert_eq!(parse_fdinfo(EVENTFD), Ok((0, 0o2000002, 17, 1038)));
        assert_eq!(parse_fdinfo(STDOUT), Ok((12, 0o100001, 27, 10010718)));
        // Before Linux 3.15 only pos and flags existed.
        assert_eq!(parse_fdinfo("pos:\t7\nflags:\t01\n"), Ok((7, 1, 0, 0)));
        let e = parse_fdinfo("pos:\t0\nflags:\t9\n").unwrap_err();
        assert!(e.contains("flags:\\t9"), "{e}");
        assert!(parse_fdinfo("flags:\t0\n").unwrap_err().contains("\"pos\""));
        assert!(parse_fdinfo("pos:\t0\n").unwrap_err().contains("\"flags\""));
    }

    #[test]
    fn flag_helpers() {
        let (pos, flags, mnt_id, ino) = parse_fdinfo(STDOUT).unwrap();
        let info = FdInfo {
            fd: 1,
            target: FdTarget::Pipe(1),
            link: String::new(),
            pos,
            flags,
            mnt_id,
            ino,
        };
        assert!(!info.cloexec());
        assert_eq!(info.access_mode(), libc::O_WRONLY as u32);
        let info = FdInfo {
            flags: parse_fdinfo(EPOLL).unwrap().1,
            ..info
        };
        assert!(info.cloexec());
        assert_eq!(info.access_mode(), libc::O_RDWR as u32);
    }

    #[test]
    fn links() {
        use FdTarget::*;
        assert_eq!(classify_link("pipe:[5136]"), Pipe(5136));
        assert_eq!(classify_link("socket:[5137]"), Socket(5137));
        assert_eq!(
            classify_link("anon_inode:[eventpoll]"),
            AnonInode("[eventpoll]".into())
        );
        assert_eq!(
            classify_link("anon_inode:inotify"),
            AnonInode("inotify".into())
        );
        assert_eq!(classify_link("/dev/null"), File("/dev/null".into()));
        assert_eq!(
            classify_link("/tmp/my file (x).dat (deleted)"),
            DeletedFile("/tmp/my file (x).dat".into())
        );
        assert_eq!(
            classify_link("/memfd:x (deleted)"),
            DeletedFile("/memfd:x".into())
        );
        assert_eq!(
            classify_link("net:[4026531840]"),
            Other("net:[4026531840]".into())
        );
        assert_eq!(classify_link("pipe:[x]"), Other("pipe:[x]".into()));
    }

    #[test]
    fn live_self() {
        let pid = std::process::id() as i32;
        let dir = std::env::temp_dir().join(format!("ckpt-proc-fds-{pid}"));
        let mut file = std::fs::File::create(&dir).unwrap();
        file.write_all(b"hello world").unwrap();
        file.seek(SeekFrom::Start(5)).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();

        let fds = read_fds(pid).unwrap();
        assert!(fds.windows(2).all(|p| p[0].fd < p[1].fd));
        let get = |fd: i32| {
            fds.iter()
                .find(|f| f.fd == fd)
                .unwrap_or_else(|| panic!("no fd {fd}"))
        };
        for fd in 0..=2 {
            get(fd);
        }
        let f = get(file.as_raw_fd());
        assert_eq!(f.target, FdTarget::DeletedFile(dir.clone()));
        assert_eq!(
            (f.pos, f.access_mode(), f.cloexec()),
            (5, libc::O_WRONLY as u32, true)
        );
        assert!(f.link.ends_with(" (deleted)") && f.ino > 0 && f.mnt_id > 0);
        let (pr, pw) = (get(r.as_raw_fd()), get(w.as_raw_fd()));
        assert!(matches!(pr.target, FdTarget::Pipe(ino) if ino == pr.ino));
        assert_eq!(pr.target, pw.target);
        assert_eq!(
            (pr.access_mode(), pw.access_mode()),
            (libc::O_RDONLY as u32, libc::O_WRONLY as u32)
        );
    }
}
