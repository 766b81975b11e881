//! Pseudo-terminals whose master the process held: a new pair from /dev/ptmx, the
//! same index where it is free (devpts hands out the lowest free index, so the
//! masters below it are opened and closed again), else another with a warning; the
//! saved termios, window size and packet mode set through the master (they act on
//! the slave's terminal); each slave opened from the master with TIOCGPTPEER
//! (Linux 4.13), never by path; the output the master had not read is written
//! again through a slave before the settings are put back. Record layout: the
//! format's `FdKind::Pty`.

use super::{check, data, fail, set_status, to_temp, Cx};
use crate::out::Line;
use crate::sys;
use ckpt_format::{FdKind, PTY_MASTER, PTY_SLAVE};

const TIOCGPTN: usize = 0x8004_5430;
const TIOCSPTLCK: usize = 0x4004_5431;
const TIOCGPTPEER: usize = 0x5441;
const TIOCSWINSZ: usize = 0x5414;
const TCSETS2: usize = 0x402c_542b;
const TIOCPKT: usize = 0x5420;
/// Most masters opened to reach a saved index.
const MAX_SKIP: usize = 256;

fn new_master(f: &ckpt_format::Fd) -> (usize, u32) {
    let m = check(f, "open /dev/ptmx", sys::open(b"/dev/ptmx\0", sys::O_RDWR as usize | sys::O_NOCTTY as usize | sys::O_CLOEXEC, 0));
    check(f, "TIOCSPTLCK", sys::ioctl_set(m, TIOCSPTLCK, &0i32));
    let n = check(f, "TIOCGPTN", sys::ioctl_get_int(m, TIOCGPTN)) as u32;
    (m, n)
}

/// A master of index `want` where it can be had, else the lowest free one.
fn master_at(f: &ckpt_format::Fd, want: u32) -> (usize, u32) {
    let mut skipped = [0usize; MAX_SKIP];
    let mut k = 0;
    let (mut m, mut n) = new_master(f);
    while n < want && k < MAX_SKIP {
        skipped[k] = m;
        k += 1;
        (m, n) = new_master(f);
    }
    if n != want {
        // Taken (or too far): the first one opened.
        if k > 0 {
            let _ = sys::close(m);
            m = skipped[0];
            skipped[0] = usize::MAX;
            n = sys::ioctl_get_int(m, TIOCGPTN).unwrap_or(0) as u32;
        }
        Line::new().s("warning: fd ").dec(f.fd as u64).s(": /dev/pts/").dec(want as u64)
            .s(" is taken; the terminal is /dev/pts/").dec(n as u64).s(" instead").emit();
    }
    for &x in skipped[..k].iter().filter(|&&x| x != usize::MAX) {
        let _ = sys::close(x);
    }
    (m, n)
}

/// The record's data: termios2 (44 bytes) and winsize (8), then the output the
/// master had not read.
const SETTINGS: usize = 52;
const OPOST: u32 = 1;

/// The output the master had not read, written again through a slave of the new
/// pair with output processing off (it had been through it already), so the
/// master reads it first. The slave fd is closed again: the process's own slave
/// fds are opened afresh, which undoes the "other side closed" mark
/// (TTY_OTHER_CLOSED, pty_open()).
fn output(cx: &Cx, f: &ckpt_format::Fd, m: usize, settings: &[u8]) {
    let mut raw = [0u8; 44];
    raw.copy_from_slice(&settings[..44]);
    let oflag = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]) & !OPOST;
    raw[4..8].copy_from_slice(&oflag.to_ne_bytes());
    check(f, "TCSETS2", sys::ioctl_set(m, TCSETS2, &raw));
    let s = check(f, "TIOCGPTPEER", sys::ioctl_val(m, TIOCGPTPEER, sys::O_RDWR as usize | sys::O_NOCTTY as usize | sys::O_CLOEXEC));
    data::copy_tail(cx, f, SETTINGS as u64, s);
    let _ = sys::close(s);
}

pub fn pty(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    if f.aux[0] == PTY_SLAVE {
        // Made by its master, which may come later.
        let Some(mi) = cx.t.fds.iter().position(|g| g.kind == FdKind::Pty as u32 && g.aux[0] == PTY_MASTER && g.aux[1] == f.aux[1]) else {
            fail(f, "its pty master is not in the image", 0)
        };
        super::build(cx, mi);
        let flags = (f.flags & sys::O_ACCMODE) as usize | sys::O_NOCTTY as usize | sys::O_CLOEXEC;
        let s = check(f, "TIOCGPTPEER", sys::ioctl_val(cx.temp(mi), TIOCGPTPEER, flags));
        set_status(f, s);
        to_temp(cx, i, s);
        return;
    }
    let (m, _) = master_at(f, f.aux[1] as u32);
    let mut b = [0u8; SETTINGS];
    let saved = data::read_head(cx, f, &mut b);
    if f.data_len > SETTINGS as u64 {
        output(cx, f, m, saved);
    } else {
        // The whole data is the settings: checked here.
        data::read_small(cx, f, &mut b);
    }
    check(f, "TCSETS2", sys::ioctl_set(m, TCSETS2, &b[..44]));
    check(f, "TIOCSWINSZ", sys::ioctl_set(m, TIOCSWINSZ, &b[44..52]));
    if f.aux[2] != 0 {
        check(f, "TIOCPKT", sys::ioctl_set(m, TIOCPKT, &1i32));
    }
    set_status(f, m);
    to_temp(cx, i, m);
}

/// A slave of the tree root's pty master (at slot `aux[0]`, inherited), opened from
/// it with the record's access mode and O_NONBLOCK. Without O_NOCTTY: a session
/// leader without a terminal (the shell of a pane, after its setsid) takes it as
/// its controlling terminal, as when it first opened it (tty_open()).
pub fn peer_of_tree_master(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let flags = (f.flags as usize & (sys::O_ACCMODE as usize | sys::O_NONBLOCK as usize)) | sys::O_CLOEXEC;
    let s = check(f, "TIOCGPTPEER of the tree's pty", sys::ioctl_val(f.aux[0] as usize, TIOCGPTPEER, flags));
    to_temp(cx, i, s);
}
