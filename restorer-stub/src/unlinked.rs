//! Files and directories that exist without a name: a deleted file or a removed
//! directory the process still held at the freeze.
//!
//! Each is made under a fresh, unguessable name (mode 0600 or 0700, so nobody else
//! can use it meanwhile) in the directory that held the original when that is still
//! there and writable, else in /tmp. It is then renamed to the original path when
//! that path is free (renameat2(2) RENAME_NOREPLACE never replaces anything), and
//! removed again: /proc/PID/fd and /proc/PID/cwd then read "ORIGINAL (deleted)", as
//! before the freeze. When the original directory is gone or the name is taken, they
//! read "/tmp/.ckpt-... (deleted)" or "DIR/.ckpt-... (deleted)" instead.

use crate::layout::cpath;
use crate::out;
use crate::sys;

/// The directory part of `path` ("/a/b/c" -> "/a/b\0", "/c" -> "/\0").
pub fn dir_of<'b>(path: &[u8], buf: &'b mut [u8; 4096]) -> &'b [u8] {
    let cut = path.iter().rposition(|&c| c == b'/').unwrap_or(0).max(1);
    cpath(&path[..cut.min(path.len())], buf)
}

/// "DIR/.ckpt-WHAT-RANDOM\0" into `buf` (`dir` with its NUL).
fn fresh<'b>(dir: &[u8], what: &[u8], buf: &'b mut [u8; 4096]) -> &'b [u8] {
    let dir = dir.strip_suffix(&[0]).unwrap_or(dir);
    let mut prefix = [0u8; 4096];
    let mut n = 0;
    let sep: &[u8] = if dir.ends_with(b"/") { b"" } else { b"/" };
    for part in [&dir[..dir.len().min(4000)], sep, b".ckpt-", what, b"-"] {
        prefix[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    out::cstr(buf, &[&prefix[..n]], &[sys::random_u64() >> 1], b"")
}

/// Where to make it: the original's directory if `path` is absolute, then /tmp.
fn places<'b>(path: &[u8], buf: &'b mut [u8; 4096]) -> [&'b [u8]; 2] {
    if path.first() == Some(&b'/') {
        [dir_of(path, buf), b"/tmp\0"]
    } else {
        [b"/tmp\0", b"/tmp\0"]
    }
}

/// Give the new entry `made` the original name `path` when that is free and in the
/// same directory; returns the name it has now.
fn take_name<'b>(made: &'b [u8], path: &'b [u8], pbuf: &'b mut [u8; 4096]) -> &'b [u8] {
    let orig = cpath(path, pbuf);
    if sys::rename_noreplace(made, orig).is_ok() {
        orig
    } else {
        made
    }
}

/// An empty directory, opened (O_RDONLY | O_DIRECTORY, close-on-exec) and removed.
/// Its mode is 0700 until the caller sets the saved one.
pub fn removed_dir(path: &[u8]) -> Result<usize, isize> {
    let mut dbuf = [0u8; 4096];
    let mut err = sys::ENOENT;
    for (k, dir) in places(path, &mut dbuf).into_iter().enumerate() {
        let same_dir = k == 0 && path.first() == Some(&b'/');
        for _ in 0..8 {
            let mut nbuf = [0u8; 4096];
            let name = fresh(dir, b"dir", &mut nbuf);
            match sys::mkdir(name, 0o700) {
                Ok(_) => {}
                Err(sys::EEXIST) => continue,
                Err(e) => {
                    err = e;
                    break;
                }
            }
            let mut pbuf = [0u8; 4096];
            let name = if same_dir { take_name(name, path, &mut pbuf) } else { name };
            let fd = sys::open(name, (sys::O_RDONLY | sys::O_DIRECTORY as usize) | sys::O_CLOEXEC, 0);
            let removed = sys::rmdir(name);
            return match (fd, removed) {
                (Ok(fd), Ok(_)) => Ok(fd),
                (Ok(fd), Err(e)) => {
                    let _ = sys::close(fd);
                    Err(e)
                }
                (Err(e), _) => Err(e),
            };
        }
    }
    Err(err)
}

/// An empty regular file opened read-write (close-on-exec), mode 0600, still
/// linked: its name is left in `name` (empty when only an O_TMPFILE file could be
/// made, which has none). The caller gives it its other names ([`link_as`]), then
/// unlinks it.
pub fn named_file<'b>(path: &[u8], name: &'b mut [u8; 4096]) -> Result<(usize, &'b [u8]), isize> {
    let mut dbuf = [0u8; 4096];
    let rw = sys::O_RDWR as usize | sys::O_CLOEXEC;
    let mut err = sys::ENOENT;
    for (k, dir) in places(path, &mut dbuf).into_iter().enumerate() {
        let same_dir = k == 0 && path.first() == Some(&b'/');
        for _ in 0..8 {
            let mut nbuf = [0u8; 4096];
            let made = fresh(dir, b"file", &mut nbuf);
            let fd = match sys::open(made, rw | (sys::O_CREAT | sys::O_EXCL) as usize, 0o600) {
                Ok(fd) => fd,
                Err(sys::EEXIST) => continue,
                Err(e) => {
                    err = e;
                    break;
                }
            };
            let mut pbuf = [0u8; 4096];
            let now = if same_dir { take_name(made, path, &mut pbuf) } else { made };
            name[..now.len()].copy_from_slice(now);
            return Ok((fd, &name[..now.len()]));
        }
    }
    // Filesystems that refuse named files here may still offer O_TMPFILE (open(2)).
    let fd = sys::open(b"/tmp\0", (sys::O_TMPFILE | sys::O_RDWR) as usize | sys::O_CLOEXEC, 0o600).map_err(|_| err)?;
    Ok((fd, &name[..0]))
}

/// Another name of the file linked at `existing` (NUL-terminated): a hard link at
/// `path` when that is free (else under a fresh name next to it), opened read-write
/// and unlinked again, so the fd reads "PATH (deleted)" as before.
pub fn link_as(existing: &[u8], path: &[u8]) -> Result<usize, isize> {
    let mut dbuf = [0u8; 4096];
    let dir = dir_of(path, &mut dbuf);
    let mut pbuf = [0u8; 4096];
    let mut name = cpath(path, &mut pbuf);
    let mut nbuf = [0u8; 4096];
    if let Err(e) = sys::link(existing, name) {
        if e != sys::EEXIST {
            return Err(e);
        }
        name = fresh(dir, b"file", &mut nbuf);
        sys::link(existing, name)?;
    }
    let fd = sys::open(name, sys::O_RDWR as usize | sys::O_CLOEXEC, 0);
    let _ = sys::unlink(name);
    fd
}
