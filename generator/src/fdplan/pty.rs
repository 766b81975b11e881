//! Pseudo-terminals whose master the process holds (script(1), expect, terminal
//! emulators): the master and the slaves of its pair become a new pair at resume,
//! with the terminal's settings, window size and packet mode. Everything is asked
//! through the master (a duplicate: pidfd_getfd): termios and window-size ioctls
//! on a master act on its slave's terminal (tty_mode_ioctl(), tty_pair_get_tty()),
//! so the slave is never opened here (opening and closing it would hang up a
//! master whose slave was never opened).
//!
//! Bytes the terminal wrote that the master has not read yet, and bytes typed
//! into it that its slave side has not read, come back in order ([`ptyqueue`],
//! [`super::ptyinput`]; the record's data is laid out in `ckpt_format::pty`). The
//! input is taken only when the process holds the slave open too (through its
//! fd: a slave fd of our own would fail to open on a locked or exclusive terminal,
//! and hang it up on closing were it the last); a slave held only by another
//! process (a tree's child) keeps its input where it is, not looked at. The slave's lock (TIOCGPTLCK) and
//! exclusive mode (TIOCGEXCL) come back too.
//! A slave whose master is outside the process is a path like any other (or the
//! controlling terminal, [`super::files`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::target::{bytes_readable, Target};
use super::{ptyqueue, Class, Planned};
use ckpt_format::pty::{PTY_EOF_BYTE, PTY_ERASE_BYTE, PTY_EXCLUSIVE, PTY_LOCKED};
use crate::proc::fds::{FdInfo, FdTarget};
use ckpt_format::{FdKind, PTY_MASTER, PTY_SLAVE};

const TCGETS2: libc::c_ulong = 0x802c_542a;
const TIOCGPKT: libc::c_ulong = 0x8004_5438;
const TIOCGPTLCK: libc::c_ulong = 0x8004_5439;
const TIOCGEXCL: libc::c_ulong = 0x8004_5440;

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

/// The index of the pty slave `f` is open on.
fn slave_index(tg: &Target, f: &FdInfo) -> Option<u32> {
    let md = std::fs::metadata(tg.proc_fd_path(f.fd)).ok()?;
    let (major, minor) = dev(md.rdev());
    (md.file_type().is_char_device() && SLAVE_MAJORS.contains(&major)).then_some((major - SLAVE_MAJORS.start()) * 256 + minor)
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
        let slaves: Vec<&FdInfo> = all.iter().filter(|o| o.fd > 2 && slave_index(tg, o) == Some(index)).collect();
        let mut flags = 0;
        let mut lck: libc::c_int = 0;
        // SAFETY: TIOCGPTLCK (Linux 3.8) writes an int.
        if unsafe { libc::ioctl(m.as_raw_fd(), TIOCGPTLCK, &mut lck) } == 0 && lck != 0 {
            flags |= PTY_LOCKED;
        }
        // The process's slave fd the queues are reached through: one it reads
        // through, if any.
        let pick = slaves.iter().find(|o| o.access_mode() != libc::O_WRONLY as u32).or(slaves.first());
        let slave = pick.and_then(|o| {
            let mode = o.access_mode();
            let fd = tg.getfd(o.fd).ok()?;
            Some(ptyqueue::Slave { fd, read: mode != libc::O_WRONLY as u32, write: mode != libc::O_RDONLY as u32 })
        });
        if let Some(sl) = &slave {
            let mut excl: libc::c_int = 0;
            // SAFETY: TIOCGEXCL (Linux 3.8) writes an int.
            if unsafe { libc::ioctl(sl.fd.as_raw_fd(), TIOCGEXCL, &mut excl) } == 0 && excl != 0 {
                flags |= PTY_EXCLUSIVE;
            }
        }
        // The queues follow the settings ([`ptyqueue`]).
        let out = bytes_readable(&m).unwrap_or(0);
        let q = match ptyqueue::take_and_put_back(&m, &t, pkt != 0, out, slave.as_ref()) {
            Ok(q) => q,
            Err(e) => {
                warnings.push(format!("fd {}: the bytes queued in the terminal /dev/pts/{index} (typed and not read, or written and not read) are not restored: {e}", f.fd));
                ptyqueue::Queues::default()
            }
        };
        let input_len = q.input.bytes.len() as u64;
        blob.extend_from_slice(&q.input.bytes);
        blob.extend_from_slice(&q.output);
        if let Some(b) = q.input.eof_byte {
            flags |= PTY_EOF_BYTE | (b as u64) << 8;
        }
        if let Some(b) = q.input.erase_byte {
            flags |= PTY_ERASE_BYTE | (b as u64) << 16;
        }
        rec.blob = Some(blob);
        rec.aux = [PTY_MASTER, index as u64, (pkt != 0) as u64, input_len, flags, q.input.eofs as u64];
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
    rec.aux = [PTY_SLAVE, index as u64, 0, 0, 0, 0];
    Some(Class::Plan(rec))
}
