//! Pseudo-terminals whose master the process held: a new pair from /dev/ptmx, the
//! same index where it is free (devpts hands out the lowest free index, so the
//! masters below it are opened and closed again), else another with a warning; the
//! saved termios, window size and packet mode set through the master (they act on
//! the slave's terminal); each slave opened from the master with TIOCGPTPEER
//! (Linux 4.13), never by path; the input the slave side had not read is typed
//! into the new master again (under `ckpt_format::pty::replay_termios`: nothing
//! but the line ends is special, and each byte echoes once at the master, which is
//! how the stub knows the line discipline has taken it all before the settings go
//! back; the echo is read and dropped); the output the master had not read is
//! written again through a slave; then the settings are put back, and last, once
//! every fd of the pair is open, the slave's lock and exclusive mode. Record
//! layout: the format's `FdKind::Pty` and `ckpt_format::pty`.

use super::{check, data, fail, set_status, to_temp, Cx};
use crate::out::{Line, Step};
use crate::sys;
use ckpt_format::pty::{eof_byte, erase_byte, replay_termios, PTY_EXCLUSIVE, PTY_LOCKED, PTY_SETTINGS_LEN};
use ckpt_format::{FdKind, PTY_MASTER, PTY_SLAVE};

const TIOCGPTN: usize = 0x8004_5430;
const TIOCSPTLCK: usize = 0x4004_5431;
const TIOCGPTPEER: usize = 0x5441;
const TIOCSWINSZ: usize = 0x5414;
const TCSETS2: usize = 0x402c_542b;
const TIOCPKT: usize = 0x5420;
const TIOCEXCL: usize = 0x540c;
const POLLIN: i16 = 1;
/// How many 100 ms waits the echo of the typed input may take.
const ECHO_POLLS: usize = 50;
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

/// The record's data: termios2 (44 bytes) and winsize (8), then the input, then
/// the output the master had not read.
const SETTINGS: usize = PTY_SETTINGS_LEN;
const OPOST: u32 = 1;

/// A failed step of typing the input again: named, with errno, exit 118.
fn fail_input(f: &ckpt_format::Fd, what: &str, e: isize) -> ! {
    let mut l = super::head(f);
    l.s("typing its queued input into the new terminal: ").s(what);
    if e != 0 {
        l.s(": ");
        super::errno(&mut l, e);
    }
    l.emit();
    sys::exit_group(Step::Tty as i32)
}

fn check_input(f: &ckpt_format::Fd, what: &str, r: sys::Res) -> usize {
    r.unwrap_or_else(|e| fail_input(f, what, e))
}

/// The input the slave side had not read (`aux[3]` bytes after the settings),
/// typed into new master `m` under the replay settings; returns once the line
/// discipline has taken every byte: each echoes once at the master (`aux[5]`
/// end-of-file markers do not; a byte and its erase end such input), where the
/// echo is read and dropped. A slave fd is
/// open meanwhile, as the process's was.
fn input(cx: &Cx, f: &ckpt_format::Fd, m: usize, settings: &[u8]) {
    let n = f.aux[3];
    if n == 0 {
        return;
    }
    let mut t = [0u8; 44];
    t.copy_from_slice(&settings[..44]);
    let r = replay_termios(&t, eof_byte(f.aux[4]), erase_byte(f.aux[4]), false);
    check_input(f, "TCSETS2", sys::ioctl_set(m, TCSETS2, &r));
    let s = check_input(f, "TIOCGPTPEER", sys::ioctl_val(m, TIOCGPTPEER, sys::O_RDWR as usize | sys::O_NOCTTY as usize | sys::O_CLOEXEC));
    data::copy_range(cx, f, SETTINGS as u64, SETTINGS as u64 + n, m);
    let mut left = (n - f.aux[5]) as usize;
    let mut buf = [0u8; 512];
    let mut polls = 0;
    while left > 0 {
        if check_input(f, "poll", sys::poll1(m, POLLIN, 100)) == 0 {
            polls += 1;
            if polls > ECHO_POLLS {
                fail_input(f, "the line discipline did not take every byte within 5 s", 0);
            }
            continue;
        }
        let k = left.min(buf.len());
        left -= check_input(f, "reading its echo", sys::read(m, &mut buf[..k]));
    }
    let _ = sys::close(s);
}

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
    data::copy_tail(cx, f, SETTINGS as u64 + f.aux[3], s);
    let _ = sys::close(s);
}

/// Once every fd exists: each master's slave locked again (TIOCSPTLCK) and put
/// in exclusive mode again (TIOCEXCL, through one of its slave fds) where it was;
/// both would stop the slave fds being opened, so they come last.
pub fn finish(cx: &Cx) {
    let fds = &cx.t.fds;
    for (i, f) in fds.iter().enumerate().filter(|(_, f)| f.kind == FdKind::Pty as u32 && f.aux[0] == PTY_MASTER) {
        if f.aux[4] & PTY_EXCLUSIVE != 0 {
            if let Some(j) = fds.iter().position(|g| g.kind == f.kind && g.aux[0] == PTY_SLAVE && g.aux[1] == f.aux[1]) {
                check(&fds[j], "TIOCEXCL", sys::ioctl_val(cx.temp(j), TIOCEXCL, 0));
            }
        }
        if f.aux[4] & PTY_LOCKED != 0 {
            check(f, "TIOCSPTLCK", sys::ioctl_set(cx.temp(i), TIOCSPTLCK, &1i32));
        }
    }
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
    input(cx, f, m, saved);
    if f.data_len > SETTINGS as u64 + f.aux[3] {
        output(cx, f, m, saved);
    } else if f.aux[3] == 0 {
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
