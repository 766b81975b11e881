//! Readers for the parts of `/proc/PID` that describe a process we are about to
//! freeze: its memory map, its stat/status lines, its auxiliary vector and its open
//! file descriptors.
//!
//! Every parser works on text (or bytes) so it can be unit tested with samples
//! copied from this machine; each has a thin `read_*(pid)` wrapper that reads the
//! live file and turns I/O failures into [`ProcError`].

// The freezer consumes this API; until every item is wired in, the binary crate
// would report the unused ones as dead code.
#![allow(dead_code)]

pub mod auxv;
pub mod fds;
pub mod locks;
pub mod maps;
pub mod stat;
pub mod status;

use std::io;
use std::path::{Path, PathBuf};

/// Why information about a process could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no such process: pid {pid}")]
    NoSuchProcess { pid: i32 },
    #[error("permission denied reading {path} (process {pid})")]
    PermissionDenied { pid: i32, path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        pid: i32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot parse line {line:?}: {what}")]
    Parse {
        pid: i32,
        path: PathBuf,
        line: String,
        what: String,
    },
    #[error("{path}: missing field {field:?}")]
    MissingField {
        pid: i32,
        path: PathBuf,
        field: String,
    },
}

/// Structured parse failure used inside this module; the public `parse_*`
/// functions flatten it into a `String`, the `read_*` wrappers into [`ProcError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TextError {
    Line { line: String, what: String },
    Missing(&'static str),
}

impl TextError {
    pub(crate) fn line(line: &str, what: impl Into<String>) -> Self {
        TextError::Line {
            line: line.to_string(),
            what: what.into(),
        }
    }

    pub(crate) fn into_proc(self, pid: i32, path: PathBuf) -> ProcError {
        match self {
            TextError::Line { line, what } => ProcError::Parse {
                pid,
                path,
                line,
                what,
            },
            TextError::Missing(f) => ProcError::MissingField {
                pid,
                path,
                field: f.to_string(),
            },
        }
    }
}

impl From<TextError> for String {
    fn from(e: TextError) -> String {
        match e {
            TextError::Line { line, what } => format!("cannot parse line {line:?}: {what}"),
            TextError::Missing(f) => format!("missing field {f:?}"),
        }
    }
}

/// `/proc/PID/FILE`; an empty `file` gives `/proc/PID` itself.
pub fn proc_path(pid: i32, file: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    if file.is_empty() {
        dir
    } else {
        dir.join(file)
    }
}

/// Classify an I/O error on a file under `/proc/PID`.
///
/// Once a process is gone its `/proc/PID` entries fail with ENOENT (or ESRCH for
/// files opened before it exited); an ENOENT while `/proc/PID` still exists is a
/// genuinely missing file (e.g. a kernel built without the feature).
pub(crate) fn io_error(pid: i32, path: &Path, e: io::Error) -> ProcError {
    match e.raw_os_error() {
        Some(libc::ESRCH) => ProcError::NoSuchProcess { pid },
        Some(libc::ENOENT) if !proc_path(pid, "").exists() => ProcError::NoSuchProcess { pid },
        Some(libc::EACCES) | Some(libc::EPERM) => ProcError::PermissionDenied {
            pid,
            path: path.to_path_buf(),
        },
        _ => ProcError::Read {
            pid,
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Read a whole file of /proc (or /sys) in as few read(2) calls as it takes.
/// The files say size 0, so `std::fs::read` first asks fstat(2) and lseek(2) for
/// a size, then reads 32 bytes, 32, 64, ... (eight calls for a status file);
/// a seq_file fills a large buffer in one call (seq_read_iter()), so here a
/// small file takes two reads: its text, then the end.
pub fn read_file(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 16 << 10];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// [`read_file`] as text (invalid UTF-8 bytes become U+FFFD).
pub fn read_file_text(path: impl AsRef<Path>) -> io::Result<String> {
    let b = read_file(path)?;
    Ok(match String::from_utf8(b) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Read a whole `/proc/PID/FILE` as bytes.
pub(crate) fn read_bytes(pid: i32, file: &str) -> Result<Vec<u8>, ProcError> {
    let path = proc_path(pid, file);
    read_file(&path).map_err(|e| io_error(pid, &path, e))
}

/// Read a whole `/proc/PID/FILE` as text. File names inside (smaps, status Name)
/// need not be UTF-8: invalid bytes become U+FFFD rather than failing the read.
pub(crate) fn read_text(pid: i32, file: &str) -> Result<String, ProcError> {
    Ok(String::from_utf8_lossy(&read_bytes(pid, file)?).into_owned())
}

/// Read `/proc/PID/FILE` and parse it, attributing parse errors to the file.
pub(crate) fn read_parsed<T>(
    pid: i32,
    file: &str,
    parse: fn(&str) -> Result<T, TextError>,
) -> Result<T, ProcError> {
    let text = read_text(pid, file)?;
    parse(&text).map_err(|e| e.into_proc(pid, proc_path(pid, file)))
}

/// Thread ids of `pid`, sorted (the entries of `/proc/PID/task`, proc(5)).
/// Threads may come and go while this runs unless the process is stopped.
pub fn threads(pid: i32) -> Result<Vec<i32>, ProcError> {
    let path = proc_path(pid, "task");
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(&path).map_err(|e| io_error(pid, &path, e))? {
        let entry = entry.map_err(|e| io_error(pid, &path, e))?;
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// The executable (`/proc/PID/exe` symlink). For an unlinked executable the
/// kernel appends " (deleted)", which is kept here.
pub fn exe(pid: i32) -> Result<PathBuf, ProcError> {
    let path = proc_path(pid, "exe");
    std::fs::read_link(&path).map_err(|e| io_error(pid, &path, e))
}

/// Split NUL-terminated strings; a final terminator does not yield an empty string.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The argument vector from `/proc/PID/cmdline`. Empty for zombies and kernel
/// threads; a process that rewrote its argv area shows what it wrote (proc(5)).
pub fn cmdline(pid: i32) -> Result<Vec<String>, ProcError> {
    Ok(parse_cmdline(&read_bytes(pid, "cmdline")?))
}

/// The running kernel's release (`/proc/sys/kernel/osrelease`), or "unknown".
pub fn kernel_release() -> String {
    read_file_text("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> i32 {
        std::process::id() as i32
    }

    #[test]
    fn paths() {
        assert_eq!(proc_path(42, "smaps"), PathBuf::from("/proc/42/smaps"));
        assert_eq!(
            proc_path(42, "fdinfo/3"),
            PathBuf::from("/proc/42/fdinfo/3")
        );
        assert_eq!(proc_path(42, ""), PathBuf::from("/proc/42"));
    }

    #[test]
    fn cmdline_split() {
        assert_eq!(parse_cmdline(b"sleep\x00100\0"), ["sleep", "100"]);
        assert_eq!(parse_cmdline(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(parse_cmdline(b"no-terminator"), ["no-terminator"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn error_mapping() {
        let p = Path::new("/proc/1/mem");
        let e = io_error(1, p, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(e, ProcError::PermissionDenied { pid: 1, .. }));
        let e = io_error(1, p, io::Error::from_raw_os_error(libc::ESRCH));
        assert!(matches!(e, ProcError::NoSuchProcess { pid: 1 }));
        let e = io_error(1, p, io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read /proc/1/mem: {}",
                io::Error::from_raw_os_error(libc::EIO)
            )
        );
    }

    #[test]
    fn missing_process() {
        // pid_max is at most 2^22, so this pid can never exist.
        let pid = 0x3fff_ffff;
        assert!(matches!(threads(pid), Err(ProcError::NoSuchProcess { pid: p }) if p == pid));
        assert!(matches!(exe(pid), Err(ProcError::NoSuchProcess { .. })));
        assert!(matches!(
            stat::read_stat(pid),
            Err(ProcError::NoSuchProcess { .. })
        ));
    }

    #[test]
    fn live_self() {
        assert!(threads(own()).unwrap().contains(&own()));
        assert_eq!(exe(own()).unwrap(), std::env::current_exe().unwrap());
        assert_eq!(
            cmdline(own()).unwrap(),
            std::env::args().collect::<Vec<_>>()
        );
        assert!(kernel_release().starts_with(|c: char| c.is_ascii_digit()));
    }
}
