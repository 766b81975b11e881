//! inotify instances: each watch is known by inode and file handle only (fdinfo),
//! so it is mapped back to a path with open_by_handle_at(2), which needs
//! CAP_DAC_READ_SEARCH: without it the freeze is refused, naming the fd.
//!
//! Encoding in the image (the format's `FdKind::Inotify` leaves it to us):
//! `aux[0]` = number of watches; `path_off`/`path_len` span that many records in
//! the Strings section, in ascending wd order, each `"WD MASK PATH\0"` with WD and
//! MASK in lower-case hex (a path cannot contain NUL). The stub adds the watches in
//! that order; the kernel hands out wds cyclically (idr_alloc_cyclic in
//! inotify_add_to_idr), so gaps left by removed watches are recreated with
//! throw-away watches that are removed again.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{Class, Planned};
use crate::proc::fds::{FdExtra, FdInfo, InotifyWatch};
use ckpt_format::FdKind;

/// Mount points of the filesystem with kernel dev_t `sdev` (major << 20 | minor),
/// from /proc/PID/mountinfo (field 3 is "major:minor", field 5 the mount point
/// with octal escapes, proc(5)).
fn mounts_of(pid: i32, sdev: u32) -> Vec<PathBuf> {
    let want = format!("{}:{}", sdev >> 20, sdev & 0xf_ffff);
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[2] == want).then(|| PathBuf::from(unescape(f[4])))
        })
        .collect()
}

/// "\040" -> " " (mountinfo escapes space, tab, newline and backslash in octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of the watched inode, found through its file handle.
fn watch_path(pid: i32, w: &InotifyWatch) -> Result<Vec<u8>, String> {
    // struct file_handle: u32 handle_bytes, i32 handle_type, then the bytes; u64
    // words keep it aligned.
    let mut fh = vec![0u64; 1 + w.handle.len().div_ceil(8)];
    // SAFETY: fh has 8 + handle.len() bytes or more; plain byte writes.
    unsafe {
        let p = fh.as_mut_ptr().cast::<u8>();
        std::ptr::copy_nonoverlapping((w.handle.len() as u32).to_ne_bytes().as_ptr(), p, 4);
        std::ptr::copy_nonoverlapping(w.handle_type.to_ne_bytes().as_ptr(), p.add(4), 4);
        std::ptr::copy_nonoverlapping(w.handle.as_ptr(), p.add(8), w.handle.len());
    }
    let mut last = String::from("no mount of its filesystem found");
    for m in mounts_of(pid, w.sdev) {
        let Ok(c) = CString::new(m.as_os_str().as_bytes()) else { continue };
        // SAFETY: c is NUL-terminated.
        let mfd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if mfd < 0 {
            last = format!("{}: {}", m.display(), std::io::Error::last_os_error());
            continue;
        }
        // SAFETY: a new fd owned by nobody else.
        let mfd = unsafe { OwnedFd::from_raw_fd(mfd) };
        // SAFETY: fh is a complete struct file_handle; O_PATH opens without access.
        let fd = unsafe {
            libc::syscall(libc::SYS_open_by_handle_at, mfd.as_raw_fd(), fh.as_ptr(), libc::O_PATH | libc::O_CLOEXEC)
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) {
                return Err(
                    "mapping its watches back to paths needs CAP_DAC_READ_SEARCH (open_by_handle_at); freeze it as root".into(),
                );
            }
            last = format!("open_by_handle_at: {e}");
            continue;
        }
        // SAFETY: a new fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| e.to_string())?;
        let bytes = link.as_os_str().as_bytes();
        if bytes.ends_with(b" (deleted)") || !bytes.starts_with(b"/") {
            return Err(format!("watch {} is on a deleted or unreachable file ({})", w.wd, link.display()));
        }
        match std::fs::symlink_metadata(&link) {
            Ok(md) if md.ino() == w.ino => return Ok(bytes.to_vec()),
            _ => last = format!("{} is not the watched inode {}", link.display(), w.ino),
        }
    }
    Err(format!("cannot find the path of watch {}: {last}", w.wd))
}

pub fn inotify(pid: i32, f: &FdInfo, warnings: &mut Vec<String>, queued: usize) -> Class {
    let watches = match &f.extra {
        FdExtra::Inotify(w) => w.as_slice(),
        _ => &[],
    };
    let mut text = Vec::new();
    for w in watches {
        let path = match watch_path(pid, w) {
            Ok(p) => p,
            Err(e) => return Class::Refuse(e),
        };
        text.extend_from_slice(format!("{:x} {:x} ", w.wd, w.mask).as_bytes());
        text.extend_from_slice(&path);
        text.push(0);
    }
    if queued > 0 {
        warnings.push(format!("fd {}: {queued} bytes of inotify events not yet read are lost", f.fd));
    }
    let mut rec = Planned::new(f, FdKind::Inotify);
    rec.aux[0] = watches.len() as u64;
    rec.path = text;
    Class::Plan(rec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(super::unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(super::unescape(r"/x\\"), r"/x\\");
        assert_eq!(super::unescape("/"), "/");
    }
}
