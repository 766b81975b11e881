//! Files: reopened by path (`Path`; a terminal with its settings); deleted files and memfds opened again from
//! the one file objects.rs made for them (`Deleted`, `Memfd`); removed directories
//! made again empty and removed (`DeletedDir`).

use super::{check, fail_path, head, to_temp, Cx};
use crate::layout::cpath;
use crate::out::Step;
use crate::sys;
use ckpt_format::{Fd, FdKind};

/// Flags that only mean something when a file is created, or that the stub sets
/// itself (close-on-exec goes with dup3 at the end).
const OPEN_ONLY: u32 = sys::O_CREAT | sys::O_EXCL | sys::O_TRUNC | sys::O_NOCTTY | sys::O_CLOEXEC as u32 | (sys::O_TMPFILE & !sys::O_DIRECTORY);

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
    // (Not on the /dev/null put in a missing file's place.)
    if f.aux[0] == ckpt_format::PATH_TTY_SETTINGS && sys::is_terminal(x) {
        tty_settings(cx, f, x);
    }
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

/// A terminal reopened by path (a virtual console, a serial line): its termios2
/// and window size set again (a virtual console resets them on its last close).
fn tty_settings(cx: &Cx, f: &Fd, x: usize) {
    const TCSETS2: usize = 0x402c_542b;
    const TIOCSWINSZ: usize = 0x5414;
    let mut b = [0u8; ckpt_format::pty::PTY_SETTINGS_LEN];
    let b = super::data::read_small(cx, f, &mut b);
    if b.len() == ckpt_format::pty::PTY_SETTINGS_LEN {
        check(f, "TCSETS2", sys::ioctl_set(x, TCSETS2, &b[..44]));
        check(f, "TIOCSWINSZ", sys::ioctl_set(x, TIOCSWINSZ, &b[44..]));
    }
}

/// "/proc/self/fd/N\0" into `buf`.
pub fn proc_fd(fd: usize, buf: &mut [u8; 32]) -> &[u8] {
    crate::out::cstr(buf, &[b"/proc/self/fd/"], &[fd as u64], &[])
}

/// Record `i` opens again the file of the Files section it names (`aux[0]`), made
/// and parked by objects.rs: a new open file description with the saved flags
/// (access mode, O_APPEND, O_SYNC...) through /proc/self/fd (which works for
/// unlinked files, proc(5)), at the saved offset. Every fd of one file, whatever
/// the link it was opened through, is then that one file again.
pub fn object(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let mut b = [0u8; 32];
    let p = proc_fd(crate::objects::fd_of(cx.ctx, cx.t, f.aux[0] as usize), &mut b);
    let flags = f.flags & !OPEN_ONLY & !sys::O_DIRECTORY;
    let x = match sys::open(p, flags as usize | sys::O_CLOEXEC, 0) {
        Ok(x) => x,
        Err(e) => fail_path(f, "cannot open the recreated file through", p, e),
    };
    check(f, "lseek", sys::lseek(x, f.offset, sys::SEEK_SET));
    to_temp(cx, i, x);
}

/// A directory removed while open: an empty directory made, opened and removed
/// again (unlinked.rs); or, for a later record of the same directory (`aux[1]`),
/// that one opened again. Opened with the saved flags (O_PATH, O_DIRECTORY...);
/// its mode is set in [`removed_dirs_done`], after every open.
pub fn deleted_dir(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let first = if f.aux[1] == 0 {
        None
    } else {
        cx.t.fds[..i].iter().position(|g| g.fd as u64 + 1 == f.aux[1])
    };
    let (made, from) = match first {
        Some(k) => (None, cx.temp(k)),
        None => match crate::unlinked::removed_dir(cx.t.string(f.path_off, f.path_len)) {
            Ok(x) => (Some(x), x),
            Err(e) => {
                let mut pb = [0u8; 4096];
                fail_path(f, "cannot make an empty directory in the place of", cpath(cx.t.string(f.path_off, f.path_len), &mut pb), e)
            }
        },
    };
    let mut b = [0u8; 32];
    let p = proc_fd(from, &mut b);
    let flags = f.flags & !OPEN_ONLY;
    let x = match sys::open(p, flags as usize | sys::O_CLOEXEC, 0) {
        Ok(x) => x,
        Err(e) => fail_path(f, "cannot open the removed directory again through", p, e),
    };
    if let Some(m) = made {
        let _ = sys::close(m);
    }
    to_temp(cx, i, x);
}

/// Once every fd exists: the process's working directory, when it is one of these
/// removed directories (fchdir(2) needs search permission, so before the mode),
/// then the saved mode of each.
pub fn removed_dirs_done(cx: &Cx) {
    for (i, f) in cx.t.fds.iter().enumerate() {
        if f.kind != FdKind::DeletedDir as u32 || f.aux[1] != 0 {
            continue;
        }
        if f.aux[2] != 0 {
            check(f, "fchdir into it (the working directory)", sys::fchdir(cx.temp(i)));
        }
        // fchmod(2) refuses an O_PATH fd (EBADF): then through a plain open of it.
        if let Err(e) = sys::fchmod(cx.temp(i), f.aux[0] as u32) {
            let mut b = [0u8; 32];
            let p = proc_fd(cx.temp(i), &mut b);
            let flags = sys::O_RDONLY | sys::O_DIRECTORY as usize | sys::O_CLOEXEC;
            let x = match sys::open(p, flags, 0) {
                Ok(x) if e == sys::EBADF => x,
                _ => super::fail(f, "fchmod", e),
            };
            check(f, "fchmod", sys::fchmod(x, f.aux[0] as u32));
            let _ = sys::close(x);
        }
    }
}
