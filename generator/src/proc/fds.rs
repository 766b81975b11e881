//! The open file descriptors of a process (`/proc/PID/fd` and `/proc/PID/fdinfo`):
//! what each fd refers to, its file offset and open flags, so the restorer can
//! reopen files at the same position or refuse objects it cannot recreate.
//!
//! Besides the common `pos`/`flags`/`mnt_id`/`ino` lines, fdinfo carries lines
//! specific to the kind of file (proc(5), "/proc/pid/fdinfo"; the kernel's
//! `*_show_fdinfo` functions), parsed into [`FdExtra`]:
//! - epoll (`ep_show_fdinfo`): one `tfd: %8d events: %8x data: %16llx pos:%lli ino:%lx
//!   sdev:%x` line per registration: fd number at registration time, event mask and
//!   data in hex;
//! - eventfd (`eventfd_show_fdinfo`): `eventfd-count: %16llx` (hex), `eventfd-id`,
//!   and `eventfd-semaphore: 0|1` (Linux 6.6+; absent before);
//! - signalfd (`signalfd_show_fdinfo`): `sigmask: %016llx` (bit n-1 for signal n);
//! - timerfd (`timerfd_show`): `clockid: %d`, `ticks: %llu` (expirations not yet
//!   read), `settime flags: 0%o`, `it_value: (%llu, %llu)` (the time *remaining*, not
//!   the absolute expiry) and `it_interval: (%llu, %llu)`;
//! - inotify (`inotify_fdinfo`): one `inotify wd:%x ino:%lx sdev:%x mask:%x
//!   ignored_mask:%x fhandle-bytes:%x fhandle-type:%x f_handle:%s` line per watch,
//!   all hex; `sdev` is the kernel-internal dev_t (major << 20 | minor).

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
    /// The kind-specific fdinfo lines, parsed.
    pub extra: FdExtra,
    /// The file locks held through this fd's open file description ("lock:" lines).
    pub locks: Vec<super::locks::LockLine>,
}

/// One epoll registration ("tfd:" line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollTfd {
    /// The fd number the target file had when it was registered.
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
    /// Inode number of the registered file.
    pub ino: u64,
}

/// One inotify watch ("inotify wd:" line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyWatch {
    pub wd: i32,
    pub ino: u64,
    /// Kernel-internal dev_t of the watched inode's filesystem (major << 20 | minor).
    pub sdev: u32,
    /// The mask as inotify_add_watch(2) understands it (incl. IN_ONESHOT, IN_EXCL_UNLINK).
    pub mask: u32,
    /// struct file_handle: handle_type and the opaque bytes (open_by_handle_at(2)).
    pub handle_type: i32,
    pub handle: Vec<u8>,
}

/// Timer state of a timerfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerfdState {
    pub clockid: i32,
    pub ticks: u64,
    /// TFD_TIMER_ABSTIME (1) / TFD_TIMER_CANCEL_ON_SET (2) of the last timerfd_settime.
    pub settime_flags: u32,
    /// Remaining time (s, ns): zero means disarmed.
    pub value: (u64, u64),
    pub interval: (u64, u64),
}

/// The kind-specific content of an fdinfo file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FdExtra {
    #[default]
    None,
    Epoll(Vec<EpollTfd>),
    /// count; EFD_SEMAPHORE when the kernel says (Linux 6.6+), else None.
    Eventfd {
        count: u64,
        semaphore: Option<bool>,
    },
    Signalfd {
        mask: u64,
    },
    Timerfd(TimerfdState),
    /// Watches sorted by wd.
    Inotify(Vec<InotifyWatch>),
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

/// Tokens "key: value" and "key:value" of a one-line record, as (key, value) pairs.
fn fields(line: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut toks = line.split_whitespace().peekable();
    while let Some(t) = toks.next() {
        match t.split_once(':') {
            Some((k, "")) => {
                if let Some(v) = toks.next() {
                    out.push((k, v));
                }
            }
            Some((k, v)) => out.push((k, v)),
            None => {}
        }
    }
    out
}

fn hex<T: TryFrom<u64>>(line: &str, v: Option<&str>) -> Result<T, TextError> {
    v.and_then(|v| u64::from_str_radix(v, 16).ok())
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| TextError::line(line, "bad hex field"))
}

fn get<'a>(f: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// "(S, NS)" -> (S, NS)
fn pair(line: &str, v: &str) -> Result<(u64, u64), TextError> {
    let bad = || TextError::line(line, "bad (s, ns) pair");
    let inner = v
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(bad)?;
    let (a, b) = inner.split_once(',').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

fn parse_tfd(line: &str) -> Result<EpollTfd, TextError> {
    let f = fields(line);
    Ok(EpollTfd {
        tfd: get(&f, "tfd")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| TextError::line(line, "bad tfd"))?,
        events: hex(line, get(&f, "events"))?,
        data: hex(line, get(&f, "data"))?,
        ino: hex(line, get(&f, "ino")).unwrap_or(0),
    })
}

fn parse_watch(line: &str) -> Result<InotifyWatch, TextError> {
    let f = fields(line.trim_start_matches("inotify").trim_start());
    let handle_hex = get(&f, "f_handle").unwrap_or("");
    let bytes: usize = hex(line, get(&f, "fhandle-bytes"))?;
    let handle: Vec<u8> = (0..handle_hex.len() / 2)
        .map(|i| u8::from_str_radix(&handle_hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| TextError::line(line, "bad f_handle"))?;
    if handle.len() != bytes {
        return Err(TextError::line(
            line,
            "f_handle length differs from fhandle-bytes",
        ));
    }
    Ok(InotifyWatch {
        wd: hex(line, get(&f, "wd"))?,
        ino: hex(line, get(&f, "ino"))?,
        sdev: hex(line, get(&f, "sdev"))?,
        mask: hex(line, get(&f, "mask"))?,
        handle_type: hex::<u32>(line, get(&f, "fhandle-type"))? as i32,
        handle,
    })
}

/// The kind-specific lines of an fdinfo file (see the module doc for their format).
pub(crate) fn parse_extra(text: &str) -> Result<FdExtra, TextError> {
    let mut tfds = Vec::new();
    let mut watches = Vec::new();
    let mut efd: Option<(u64, Option<bool>)> = None;
    let mut sigmask = None;
    let mut timer: Option<TimerfdState> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let v = value.trim();
        let num = || {
            v.parse::<u64>()
                .map_err(|_| TextError::line(line, "bad number"))
        };
        match key {
            "tfd" => tfds.push(parse_tfd(line)?),
            k if k.starts_with("inotify wd") => watches.push(parse_watch(line)?),
            "eventfd-count" => efd = Some((hex(line, Some(v))?, efd.and_then(|e| e.1))),
            "eventfd-semaphore" => {
                let sem = num()? != 0;
                efd = Some((efd.map_or(0, |e| e.0), Some(sem)));
            }
            "sigmask" => sigmask = Some(hex(line, Some(v))?),
            "clockid" => timer.get_or_insert_with(Default::default).clockid = num()? as i32,
            "ticks" => timer.get_or_insert_with(Default::default).ticks = num()?,
            "settime flags" => {
                timer.get_or_insert_with(Default::default).settime_flags =
                    u32::from_str_radix(v, 8).map_err(|_| TextError::line(line, "bad octal"))?
            }
            "it_value" => timer.get_or_insert_with(Default::default).value = pair(line, v)?,
            "it_interval" => timer.get_or_insert_with(Default::default).interval = pair(line, v)?,
            _ => {}
        }
    }
    watches.sort_by_key(|w: &InotifyWatch| w.wd);
    Ok(if !tfds.is_empty() {
        FdExtra::Epoll(tfds)
    } else if let Some((count, semaphore)) = efd {
        FdExtra::Eventfd { count, semaphore }
    } else if let Some(mask) = sigmask {
        FdExtra::Signalfd { mask }
    } else if let Some(t) = timer {
        FdExtra::Timerfd(t)
    } else if !watches.is_empty() {
        FdExtra::Inotify(watches)
    } else {
        FdExtra::None
    })
}

/// Parse `/proc/PID/fdinfo/N` into (pos, flags, mnt_id, ino).
pub fn parse_fdinfo(text: &str) -> Result<(u64, u32, u64, u64), String> {
    parse_info(text).map_err(String::from)
}

/// One fd, or None if it was closed while we looked.
pub fn read_one(pid: i32, fd: i32) -> Result<Option<FdInfo>, ProcError> {
    let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOENT);
    let link_path = proc_path(pid, &format!("fd/{fd}"));
    let raw = match std::fs::read_link(&link_path) {
        Ok(raw) => raw,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io_error(pid, &link_path, e)),
    };
    let info_path = proc_path(pid, &format!("fdinfo/{fd}"));
    let text = match super::read_file(&info_path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io_error(pid, &info_path, e)),
    };
    let (pos, flags, mnt_id, ino) =
        parse_info(&text).map_err(|e| e.into_proc(pid, info_path.clone()))?;
    let extra = parse_extra(&text).map_err(|e| e.into_proc(pid, info_path.clone()))?;
    let locks = super::locks::parse_fdinfo(&text).map_err(|e| e.into_proc(pid, info_path))?;
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
        extra,
        locks,
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

    // More fdinfo files from this machine (Linux 6.18).
    const SIGNALFD: &str =
        "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nsigmask:\t0000000000000201\n";
    const TIMERFD: &str = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 0\n\
settime flags: 00\nit_value: (99, 999730459)\nit_interval: (2, 500)\n";
    const INOTIFY: &str = "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n\
inotify wd:2 ino:2e1 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:e102000000000000\n\
inotify wd:1 ino:3c4a7 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a7c4030000000000\n";
    const EPOLL2: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
tfd:        4 events:       19 data:                4  pos:0 ino:40e sdev:10\n\
tfd:        3 events: 80000019 data: ffffffffffffffff  pos:0 ino:40e sdev:10\n";

    #[test]
    fn fdinfo_extra_samples() {
        assert_eq!(parse_extra(STDOUT), Ok(FdExtra::None));
        assert_eq!(
            parse_extra(EVENTFD),
            Ok(FdExtra::Eventfd {
                count: 3,
                semaphore: Some(false)
            })
        );
        // Before Linux 6.6 there is no eventfd-semaphore line; the count is hex.
        assert_eq!(
            parse_extra("pos:\t0\nflags:\t02\neventfd-count:                f\n"),
            Ok(FdExtra::Eventfd {
                count: 15,
                semaphore: None
            })
        );
        assert_eq!(parse_extra(SIGNALFD), Ok(FdExtra::Signalfd { mask: 0x201 }));
        assert_eq!(
            parse_extra(TIMERFD),
            Ok(FdExtra::Timerfd(TimerfdState {
                clockid: 1,
                ticks: 0,
                settime_flags: 0,
                value: (99, 999730459),
                interval: (2, 500),
            }))
        );
        let FdExtra::Inotify(w) = parse_extra(INOTIFY).unwrap() else {
            panic!("not inotify")
        };
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].wd, w[0].ino, w[0].sdev, w[0].mask),
            (1, 0x3c4a7, 0xfe00000, 0x300)
        );
        assert_eq!((w[1].wd, w[1].handle_type), (2, 1));
        assert_eq!(w[1].handle, [0xe1, 0x02, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            parse_extra(EPOLL),
            Ok(FdExtra::Epoll(vec![EpollTfd {
                tfd: 7,
                events: 0x19,
                data: 7,
                ino: 0x1410
            }]))
        );
        assert_eq!(
            parse_extra(EPOLL2),
            Ok(FdExtra::Epoll(vec![
                EpollTfd {
                    tfd: 4,
                    events: 0x19,
                    data: 4,
                    ino: 0x40e
                },
                EpollTfd {
                    tfd: 3,
                    events: 0x8000_0019,
                    data: u64::MAX,
                    ino: 0x40e
                },
            ]))
        );
        assert!(parse_extra("tfd: x events: 1 data: 1\n").is_err());
        assert!(parse_extra("it_value: (1 2)\n").is_err());
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
            extra: FdExtra::None,
            locks: Vec::new(),
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
