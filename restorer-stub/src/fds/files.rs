//! Files: reopened by path (`Path`), or recreated unlinked from the content stored
//! in the image (`Deleted`: an O_TMPFILE file; `Memfd`: memfd_create(2)).

use super::{check, data, fail, fail_path, head, set_status, to_temp, Cx};
use crate::layout::cpath;
use crate::out::Step;
use crate::sys;
use ckpt_format::Fd;

/// Flags that only mean something when a file is created, or that the stub sets
/// itself (close-on-exec goes with dup3 at the end).
const OPEN_ONLY: u32 = sys::O_CREAT | sys::O_EXCL | sys::O_TRUNC | sys::O_NOCTTY | sys::O_CLOEXEC as u32 | (sys::O_TMPFILE & !sys::O_DIRECTORY);
/// O_SYNC is __O_SYNC | O_DSYNC; neither can be set with F_SETFL (fcntl(2)).
const O_SYNC_BITS: u32 = 0o4010000;

/// Seek `fd` to the saved offset. A regular file must still reach it, unless it
/// is opened O_APPEND (writes go to the end anyway: the offset is clamped); other
/// kinds (directories: a position cookie; devices) and pseudo-files without an
/// end (procfs refuses SEEK_END with EINVAL) are sought best effort.
/// Returns false when a regular file no longer reaches the offset.
fn seek(f: &Fd, fd: usize) -> bool {
    let mut st = sys::Stat::zeroed();
    let regular = sys::fstat(fd, &mut st).is_ok() && st.st_mode & sys::S_IFMT == sys::S_IFREG;
    let end = if regular { sys::lseek(fd, 0, sys::SEEK_END).ok() } else { None };
    let Some(end) = end.map(|e| e as u64) else {
        let _ = sys::lseek(fd, f.offset, sys::SEEK_SET);
        return true;
    };
    let mut off = f.offset;
    if off > end {
        if f.flags & sys::O_APPEND == 0 {
            return false;
        }
        off = end;
    }
    check(f, "lseek", sys::lseek(fd, off, sys::SEEK_SET));
    true
}

/// With missing files ignored (`ckpt freeze --missing-files=ignore`, or
/// CKPT_MISSING_FILES=ignore at resume): /dev/null in the file's place, said on
/// stderr, never silently.
fn dev_null_instead(f: &Fd, path: &[u8], why: &str) -> usize {
    let p = path.strip_suffix(&[0]).unwrap_or(path);
    crate::out::Line::new().s("warning: fd ").dec(f.fd as u64).s(": ").b(p).s(" ").s(why)
        .s("; /dev/null opened in its place").emit();
    check(f, "open /dev/null", sys::open(b"/dev/null\0", (f.flags & 3) as usize | sys::O_CLOEXEC, 0))
}

pub fn path(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let mut buf = [0u8; 4096];
    let path = cpath(cx.t.string(f.path_off, f.path_len), &mut buf);
    let x = match sys::open(path, (f.flags & !OPEN_ONLY) as usize, 0) {
        Ok(x) => x,
        Err(e) if cx.ctx.missing_ignore && e == 2 => dev_null_instead(f, path, "is missing"),
        // The process's controlling terminal is the resumer's (generator/src/fdplan/
        // files.rs); a resumer without one (setsid, a service, cron) gets ENXIO
        // (tty(4)): the fd reads EOF and discards writes, as a terminal-less
        // program's /dev/null would, and a warning says so.
        Err(sys::ENXIO) if path == b"/dev/tty\0" => {
            dev_null_instead(f, path, "cannot be opened: the resumer has no controlling terminal")
        }
        Err(e) => fail_path(f, "cannot reopen", path, e),
    };
    if f.flags & sys::O_PATH == 0 && !seek(f, x) {
        if !cx.ctx.missing_ignore {
            let p = path.strip_suffix(&[0]).unwrap_or(path);
            let end = sys::lseek(x, 0, sys::SEEK_END).unwrap_or(0) as u64;
            head(f).b(p).s(" is shorter (").dec(end).s(" bytes) than the saved offset ").dec(f.offset).emit();
            sys::exit_group(Step::Fds as i32);
        }
        let _ = sys::close(x);
        let n = dev_null_instead(f, path, "is shorter than the saved offset");
        to_temp(cx, i, n);
        return;
    }
    to_temp(cx, i, x);
}

/// "/proc/self/fd/N\0" into `buf`.
pub fn proc_fd(fd: usize, buf: &mut [u8; 32]) -> &[u8] {
    crate::out::cstr(buf, &[b"/proc/self/fd/"], &[fd as u64], &[])
}

/// Give a new read-write file `x`, already filled, the saved access mode, flags and
/// offset. Access mode and O_SYNC/O_DSYNC can only be chosen at open: the file is
/// opened again through /proc/self/fd (which works for unlinked files, proc(5)).
fn finish(cx: &Cx, i: usize, x: usize) {
    let f = &cx.t.fds[i];
    let x = if f.flags & sys::O_ACCMODE != sys::O_RDWR || f.flags & O_SYNC_BITS != 0 {
        let mut b = [0u8; 32];
        let p = proc_fd(x, &mut b);
        let flags = f.flags & !OPEN_ONLY & !sys::O_DIRECTORY;
        let y = match sys::open(p, flags as usize, 0) {
            Ok(y) => y,
            Err(e) => fail_path(f, "cannot reopen the recreated file through", p, e),
        };
        let _ = sys::close(x);
        y
    } else {
        set_status(f, x);
        x
    };
    check(f, "lseek", sys::lseek(x, f.offset, sys::SEEK_SET));
    to_temp(cx, i, x);
}

/// The directory part of `path` ("/a/b/c" -> "/a/b\0", "/c" -> "/\0").
fn dir_of<'b>(path: &[u8], buf: &'b mut [u8; 4096]) -> &'b [u8] {
    let cut = path.iter().rposition(|&c| c == b'/').unwrap_or(0).max(1);
    cpath(&path[..cut.min(path.len())], buf)
}

/// Record `i` is another open file description of the file recreated for the
/// record of fd `aux[1] - 1`: open that file again through /proc/self/fd.
fn same_file(cx: &Cx, i: usize) -> bool {
    let f = &cx.t.fds[i];
    if f.aux[1] == 0 {
        return false;
    }
    let first = cx.t.fds.iter().position(|g| g.fd as u64 + 1 == f.aux[1] && g.kind == f.kind);
    let Some(k) = first.filter(|&k| k < i) else { fail(f, "the file it shares is not in the image", 0) };
    let mut b = [0u8; 32];
    let p = proc_fd(cx.temp(k), &mut b);
    let flags = f.flags & !OPEN_ONLY & !sys::O_DIRECTORY;
    let x = match sys::open(p, flags as usize, 0) {
        Ok(x) => x,
        Err(e) => fail_path(f, "cannot open the recreated file again through", p, e),
    };
    check(f, "lseek", sys::lseek(x, f.offset, sys::SEEK_SET));
    to_temp(cx, i, x);
    true
}

pub fn deleted(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    if same_file(cx, i) {
        return;
    }
    let orig = cx.t.string(f.path_off, f.path_len);
    let mut dbuf = [0u8; 4096];
    let dir = if orig.first() == Some(&b'/') { dir_of(orig, &mut dbuf) } else { b"/tmp\0" };
    let tmpfile = (sys::O_TMPFILE | sys::O_RDWR) as usize;
    // O_TMPFILE in the original's directory (same filesystem as before), else in
    // /tmp, else a named file in /tmp unlinked at once (filesystems without
    // O_TMPFILE support fail with EOPNOTSUPP, open(2)).
    let x = match sys::open(dir, tmpfile, 0o600).or_else(|_| sys::open(b"/tmp\0", tmpfile, 0o600)) {
        Ok(x) => x,
        Err(_) => {
            let mut nbuf = [0u8; 64];
            let name = tmp_name(f, &mut nbuf);
            let flags = (sys::O_CREAT | sys::O_EXCL | sys::O_RDWR) as usize;
            let x = match sys::open(name, flags, 0o600) {
                Ok(x) => x,
                Err(e) => fail_path(f, "cannot create a file to hold the deleted file's content, e.g.", name, e),
            };
            let _ = sys::unlink(name);
            x
        }
    };
    data::copy_to(cx, f, x);
    if f.aux[0] != 0 {
        let _ = sys::fchmod(x, (f.aux[0] & 0o7777) as u32);
    }
    finish(cx, i, x);
}

/// "/tmp/.ckpt-deleted-PID-FD\0"
fn tmp_name<'b>(f: &Fd, buf: &'b mut [u8; 64]) -> &'b [u8] {
    crate::out::cstr(buf, &[b"/tmp/.ckpt-deleted-", b"-"], &[sys::getpid() as u64, f.fd as u64], b"")
}

pub fn memfd(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    if same_file(cx, i) {
        return;
    }
    let mut nbuf = [0u8; 4096];
    // memfd_create(2): the name is at most 249 bytes.
    let name = cx.t.string(f.path_off, f.path_len);
    let name = cpath(&name[..name.len().min(249)], &mut nbuf);
    let x = match sys::memfd_create(name, sys::MFD_ALLOW_SEALING) {
        Ok(x) => x,
        Err(e) => fail_path(f, "memfd_create", name, e),
    };
    data::copy_to(cx, f, x);
    // Seals after the content: F_SEAL_WRITE/GROW would forbid writing it. A memfd
    // created without MFD_ALLOW_SEALING had only F_SEAL_SEAL, added here as well.
    if f.aux[0] != 0 {
        check(f, "F_ADD_SEALS", sys::fcntl(x, sys::F_ADD_SEALS, f.aux[0] as usize));
    }
    finish(cx, i, x);
}
