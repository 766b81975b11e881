//! Fds on files: reopened by path (regular files, directories, devices), or carried
//! whole in the image when no path leads to them any more (deleted files, memfds).

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::target::{fcntl_int, Target};
use super::{Class, Planned};
use crate::proc::fds::FdInfo;
use ckpt_format::FdKind;

/// `HUGETLBFS_MAGIC` (linux/magic.h): memfd_create(MFD_HUGETLB) files live there,
/// and write(2) does not work on them, so their content could not be put back.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

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
    }
    Class::Plan(rec)
}

/// The whole content of a file the target has open (deleted file, memfd): read
/// through a new description (`/proc/PID/fd/N`), or, if that open is refused,
/// through a duplicate of the target's own fd with pread (which leaves its offset).
fn content(tg: &Target, fd: i32, size: u64) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(size as usize);
    match tg.open_proc(fd) {
        Ok(mut file) => {
            file.read_to_end(&mut buf).map_err(|e| format!("cannot read its content: {e}"))?;
        }
        Err(open_err) => {
            let dup = tg.getfd(fd).map_err(|e| format!("cannot read its content: {open_err}; {e}"))?;
            let file = std::fs::File::from(dup);
            buf.resize(size as usize, 0);
            let mut done = 0;
            while done < buf.len() {
                match std::os::unix::fs::FileExt::read_at(&file, &mut buf[done..], done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("cannot read its content: {open_err}; pread: {e}")),
                }
            }
            buf.truncate(done);
        }
    }
    Ok(buf)
}

/// A file deleted while open, or a memfd ("/memfd:NAME (deleted)"): its content
/// goes into the image. A deleted file keeps its permission bits in `aux[0]`; a
/// memfd its seals (F_GET_SEALS through a duplicate of the target's fd).
///
/// The same file open through another description (opened again through
/// /proc/PID/fd, not dup'ed) must come back as the same file, not a copy: that
/// record gets `aux[1]` = 1 + the fd number of the first one (`same_as`), and no
/// content; the stub opens the first one's new file again.
pub fn deleted(tg: &Target, f: &FdInfo, p: &Path, same_as: Option<&FdInfo>) -> Class {
    if let Some(first) = same_as {
        let bytes = p.as_os_str().as_bytes();
        let memfd = bytes.starts_with(b"/memfd:");
        let mut rec = Planned::new(f, if memfd { FdKind::Memfd } else { FdKind::Deleted });
        rec.path = bytes.strip_prefix(b"/memfd:").unwrap_or(bytes).to_vec();
        rec.aux[1] = first.fd as u64 + 1;
        return Class::Plan(rec);
    }
    let md = match std::fs::metadata(tg.proc_fd_path(f.fd)) {
        Ok(m) => m,
        Err(e) => return Class::Refuse(format!("cannot stat it: {e}")),
    };
    if !md.is_file() {
        return Class::Refuse("it is a deleted directory or device, which cannot be recreated".into());
    }
    let bytes = p.as_os_str().as_bytes();
    let memfd_name = bytes.strip_prefix(b"/memfd:");
    let mut rec = Planned::new(f, if memfd_name.is_some() { FdKind::Memfd } else { FdKind::Deleted });
    match memfd_name {
        Some(name) => {
            rec.path = name.to_vec();
            let dup = match tg.getfd(f.fd) {
                Ok(d) => d,
                Err(e) => return Class::Refuse(format!("cannot reach the memfd to read its seals: {e}")),
            };
            // SAFETY: statfs writes into the zeroed struct it is given.
            let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: dup is an open fd; sfs is a valid out-pointer.
            if unsafe { libc::fstatfs(dup.as_raw_fd(), &mut sfs) } == 0 && sfs.f_type == HUGETLBFS_MAGIC {
                return Class::Refuse("it is a hugetlb memfd (MFD_HUGETLB), which cannot be refilled with write(2)".into());
            }
            match fcntl_int(&dup, libc::F_GET_SEALS) {
                Ok(seals) => rec.aux[0] = seals as u64,
                Err(e) => return Class::Refuse(format!("F_GET_SEALS failed: {e}")),
            }
        }
        None => {
            rec.path = bytes.to_vec();
            rec.aux[0] = (md.mode() & 0o7777) as u64;
        }
    }
    match content(tg, f.fd, md.len()) {
        Ok(b) => rec.blob = Some(b),
        Err(e) => return Class::Refuse(e),
    }
    Class::Plan(rec)
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
