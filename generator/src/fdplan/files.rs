//! Fds on files: reopened by path (regular files, directories, devices; a
//! terminal device with its settings); files no
//! path leads to any more (deleted files, memfds) stored once in the Files section
//! ([`super::objects`]); removed directories made again at resume.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::objects::Objects;
use super::target::Target;
use super::{Class, Planned};
use crate::plan::Strings;
use crate::proc::fds::FdInfo;
use ckpt_format::FdKind;

/// The path the resumed process should open. A file under the target's own
/// `/proc/PID/` would name the dead original after the resume: it is rewritten to
/// `/proc/self/` (the resumed process is the same program, at another pid).
pub fn resume_path(pid: i32, p: &Path) -> Vec<u8> {
    let b = p.as_os_str().as_bytes();
    let own = format!("/proc/{pid}/");
    match b.strip_prefix(own.as_bytes()) {
        Some(rest) => [b"/proc/self/".as_slice(), rest].concat(),
        None => b.to_vec(),
    }
}

/// An fd whose link is an existing path. fds 0-2 keep the resumer's unless they are
/// a regular file or a directory (a terminal, /dev/null or a FIFO there is the
/// resumer's business); above 2 every kind of path is reopened, except a FIFO,
/// whose other side cannot be known.
pub fn path(tg: &Target, f: &FdInfo, p: &Path, warnings: &mut Vec<String>) -> Class {
    // stat of the magic link is the stat of the open file itself.
    let md = match std::fs::metadata(tg.proc_fd_path(f.fd)) {
        Ok(m) => m,
        Err(e) => return Class::Refuse(format!("cannot stat it: {e}")),
    };
    let ft = md.file_type();
    let opath = f.flags & libc::O_PATH as u32 != 0;
    if f.fd <= 2 && !(md.is_file() || md.is_dir()) {
        return Class::Inherit;
    }
    if ft.is_fifo() && !opath {
        return Class::Refuse("it is a named pipe (FIFO); its other side cannot be restored".into());
    }
    if ft.is_socket() && !opath {
        return Class::Refuse("it is a socket file".into());
    }
    match std::fs::metadata(p) {
        Ok(now) if (now.dev(), now.ino()) != (md.dev(), md.ino()) => warnings.push(format!(
            "fd {}: {} now names another file than the one open; the resume opens the file found at that path",
            f.fd,
            p.display()
        )),
        Err(e) => warnings.push(format!(
            "fd {}: {} cannot be reached from here ({e}); the resume will fail unless it exists then",
            f.fd,
            p.display()
        )),
        _ => {}
    }
    let mut rec = Planned::new(f, FdKind::Path);
    rec.path = resume_path(tg.pid, p);
    // The controlling terminal (e.g. the /dev/tty a full-screen program opens for
    // its keyboard) is whatever terminal the resumer has: /proc/PID/fd shows the
    // old /dev/pts/N, which belongs to another session after the resume.
    if ft.is_char_device() && tg.tty_nr != 0 && md.rdev() == tg.tty_nr {
        rec.path = b"/dev/tty".to_vec();
    } else if ft.is_char_device() && !opath {
        if let Some(settings) = tty_settings(tg, f, md.rdev()) {
            rec.aux[0] = ckpt_format::PATH_TTY_SETTINGS;
            rec.blob = Some(settings);
        }
    }
    Class::Plan(rec)
}

/// A terminal device other than a pty or /dev/tty, /dev/console, /dev/ptmx (a
/// virtual console, a serial line): its termios2 and winsize, set again after it
/// is reopened. A virtual console's settings go back to the defaults on its last
/// close (the vt driver has TTY_DRIVER_RESET_TERMIOS), as they do when the
/// original is killed. None for anything else (TCGETS2 fails on a non-terminal).
fn tty_settings(tg: &Target, f: &FdInfo, rdev: u64) -> Option<Vec<u8>> {
    const TCGETS2: libc::c_ulong = 0x802c_542a;
    let major = libc::major(rdev);
    if major == 5 || (128..=143).contains(&major) {
        return None;
    }
    let d = tg.getfd(f.fd).ok()?;
    let mut t = [0u8; 44];
    // SAFETY: winsize is plain data.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS2 writes 44 bytes, TIOCGWINSZ a struct winsize.
    let ok = unsafe {
        libc::ioctl(d.as_raw_fd(), TCGETS2, t.as_mut_ptr()) == 0 && libc::ioctl(d.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0
    };
    if !ok {
        return None;
    }
    let mut b = t.to_vec();
    for v in [ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    Some(b)
}

/// Removed directories met so far: (device, inode) and the first fd on each.
#[derive(Default)]
pub struct RemovedDirs {
    seen: Vec<((u64, u64), i32)>,
    /// The working directory's device and inode, when it was removed too.
    pub cwd: Option<(u64, u64)>,
}

impl RemovedDirs {
    /// The working directory of `pid`, if it had been removed: its /proc/PID/cwd
    /// link ends in " (deleted)" and it has no links left (rmdir(2) drops them all).
    pub fn new(pid: i32) -> RemovedDirs {
        let cwd = std::fs::metadata(format!("/proc/{pid}/cwd")).ok().filter(|m| m.nlink() == 0).map(|m| (m.dev(), m.ino()));
        RemovedDirs { seen: Vec::new(), cwd }
    }
}

/// A file deleted while open, or a memfd ("/memfd:NAME (deleted)"): the file goes
/// into the Files section once (objects.rs), and the fd names it. A removed
/// directory: `DeletedDir`, made again empty at resume.
pub fn deleted(tg: &Target, f: &FdInfo, p: &Path, objects: &mut Objects, dirs: &mut RemovedDirs, strings: &mut Strings) -> Class {
    let bytes = p.as_os_str().as_bytes();
    let md = match std::fs::metadata(tg.proc_fd_path(f.fd)) {
        Ok(m) => m,
        Err(e) => return Class::Refuse(format!("cannot stat it: {e}")),
    };
    if md.is_dir() {
        let mut rec = Planned::new(f, FdKind::DeletedDir);
        rec.path = bytes.to_vec();
        rec.offset = 0;
        rec.aux[0] = (md.mode() & 0o7777) as u64;
        let key = (md.dev(), md.ino());
        match dirs.seen.iter().find(|(k, _)| *k == key) {
            Some(&(_, first)) => rec.aux[1] = first as u64 + 1,
            None => {
                dirs.seen.push((key, f.fd));
                rec.aux[2] = (dirs.cwd == Some(key)) as u64;
            }
        }
        return Class::Plan(rec);
    }
    match objects.of_fd(tg, f, bytes, strings) {
        Ok(i) => {
            let memfd = objects.files[i].kind == ckpt_format::FileKind::Memfd as u32;
            let mut rec = Planned::new(f, if memfd { FdKind::Memfd } else { FdKind::Deleted });
            rec.path = bytes.strip_prefix(b"/memfd:").unwrap_or(bytes).to_vec();
            rec.aux[0] = i as u64;
            Class::Plan(rec)
        }
        Err(why) => Class::Refuse(why),
    }
}

#[cfg(test)]
mod tests {
    use super::resume_path;
    use std::path::Path;

    #[test]
    fn own_proc_files_become_proc_self() {
        assert_eq!(resume_path(123, Path::new("/proc/123/status")), b"/proc/self/status");
        assert_eq!(resume_path(123, Path::new("/proc/1234/status")), b"/proc/1234/status");
        assert_eq!(resume_path(123, Path::new("/tmp/proc/123/x")), b"/tmp/proc/123/x");
    }
}
