//! Pseudo-terminals whose master the process holds (script(1), expect, terminal
//! emulators): the master and the slaves of its pair become a new pair at resume,
//! with the terminal's settings, window size and packet mode. Everything is asked
//! through the master (a duplicate: pidfd_getfd): termios and window-size ioctls
//! on a master act on its slave's terminal (tty_mode_ioctl(), tty_pair_get_tty()),
//! so the slave is never opened here (opening and closing it would hang up a
//! master whose slave was never opened).
//!
//! Bytes the terminal wrote that the master has not read yet come back in order
//! ([`ptyqueue`], after the settings in the record's data). Bytes typed into the
//! terminal and not yet read by its slave side cannot be taken without running
//! them through the line discipline again (echo, signals, line editing): they are
//! not restored, and a warning counts them.
//! A slave whose master is outside the process is a path like any other (or the
//! controlling terminal, [`super::files`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::target::{bytes_readable, Target};
use super::{ptyqueue, Class, Planned};
use crate::proc::fds::{FdInfo, FdTarget};
use ckpt_format::{FdKind, PTY_MASTER, PTY_SLAVE};

const TCGETS2: libc::c_ulong = 0x802c_542a;
const TIOCGPKT: libc::c_ulong = 0x8004_5438;

/// major/minor of /dev/ptmx; the slaves' majors (UNIX98_PTY_SLAVE_MAJOR, 8 of them).
const PTMX: (u32, u32) = (5, 2);
const SLAVE_MAJORS: std::ops::RangeInclusive<u32> = 136..=143;

fn dev(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

/// The pty index of the master `m` (TIOCGPTN).
fn index_of(m: &OwnedFd) -> Option<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int.
    (unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCGPTN, &mut n) } == 0).then_some(n)
}

/// Whether `f` is a pty master; its index.
fn master_index(tg: &Target, f: &FdInfo) -> Option<u32> {
    let md = std::fs::metadata(tg.proc_fd_path(f.fd)).ok()?;
    if dev(md.rdev()) != PTMX || !md.file_type().is_char_device() {
        return None;
    }
    index_of(&tg.getfd(f.fd).ok()?)
}

/// `f` as one end of a pty whose master the process holds; None when it is not.
pub fn classify(tg: &Target, f: &FdInfo, all: &[FdInfo], warnings: &mut Vec<String>) -> Option<Class> {
    if f.fd <= 2 {
        return None;
    }
    let md = std::fs::metadata(tg.proc_fd_path(f.fd)).ok()?;
    if !md.file_type().is_char_device() {
        return None;
    }
    let (major, minor) = dev(md.rdev());
    let mut rec = Planned::new(f, FdKind::Pty);
    rec.offset = 0;
    if (major, minor) == PTMX {
        let m = tg.getfd(f.fd).ok()?;
        let index = index_of(&m)?;
        let mut t = [0u8; 44];
        let mut ws: libc::winsize = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        let mut pkt: libc::c_int = 0;
        // SAFETY: TCGETS2 writes a struct termios2 (44 bytes), TIOCGWINSZ a struct
        // winsize, TIOCGPKT an int.
        let ok = unsafe {
            libc::ioctl(m.as_raw_fd(), TCGETS2, t.as_mut_ptr()) == 0
                && libc::ioctl(m.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0
                && libc::ioctl(m.as_raw_fd(), TIOCGPKT, &mut pkt) == 0
        };
        if !ok {
            return Some(Class::Refuse(format!("its terminal settings cannot be read: {}", std::io::Error::last_os_error())));
        }
        let mut blob = t.to_vec();
        for v in [ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel] {
            blob.extend_from_slice(&v.to_ne_bytes());
        }
        // Output not read yet follows the settings ([`ptyqueue`]).
        let out = bytes_readable(&m).unwrap_or(0);
        if out > 0 && pkt != 0 {
            warnings.push(format!("fd {}: {out} bytes the terminal /dev/pts/{index} wrote, not yet read, are not restored (packet mode)", f.fd));
        } else if out > 0 {
            match ptyqueue::peek_output(&m, out, &t) {
                Ok(b) => blob.extend_from_slice(&b),
                Err(e) => warnings.push(format!("fd {}: the {out} bytes the terminal /dev/pts/{index} wrote, not yet read, are not restored: {e}", f.fd)),
            }
        }
        rec.blob = Some(blob);
        rec.aux = [PTY_MASTER, index as u64, (pkt != 0) as u64, 0, 0, 0];
        return Some(Class::Plan(rec));
    }
    if !SLAVE_MAJORS.contains(&major) {
        return None;
    }
    let index = (major - SLAVE_MAJORS.start()) * 256 + minor;
    let has_master = all.iter().any(|o| o.fd > 2 && matches!(o.target, FdTarget::File(_)) && master_index(tg, o) == Some(index));
    if !has_master {
        return None;
    }
    if let Some(n) = tg.getfd(f.fd).ok().and_then(|s| bytes_readable(&s).ok()).filter(|&n| n > 0) {
        warnings.push(format!("fd {}: {n} bytes typed into /dev/pts/{index}, not yet read, are not restored", f.fd));
    }
    rec.aux = [PTY_SLAVE, index as u64, 0, 0, 0, 0];
    Some(Class::Plan(rec))
}
