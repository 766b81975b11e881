//! Bytes typed into a pseudo-terminal (written to its master) that its slave side
//! has not read yet: an expect-like program's answer, keys pressed in a terminal
//! emulator before the program got to them. The line discipline (n_tty) holds them
//! already processed (ICRNL, erase and kill applied) and, in canonical mode, cut
//! into lines; a terminal has no peek, so they are read out through a slave of our
//! own (TIOCGPTPEER, its own open file, non-blocking) and typed back at once
//! ([`replay`]), the way the restorer types them into the new pair.
//!
//! Canonical mode: each read(2) returns one line (n_tty_read(),
//! canon_copy_from_read_buf()); one not ended by '\n', VEOL or VEOL2 was ended by
//! the end-of-file character, and a read of 0 is an end-of-file on its own. The
//! line still being typed is not readable in canonical mode: it is read after
//! canonical mode is switched off for the moment (n_tty_set_termios() then makes the
//! whole queue readable). What is lost: the column the line editor counted for
//! erasing tabs, and a literal-next (VLNEXT) typed as the very last key.
//!
//! A byte still in the terminal's flip buffer (typed in the very instant of the
//! freeze) is pushed to the line discipline by poll(2) on the slave when nothing
//! else is readable (n_tty_poll() calls tty_buffer_flush_work()).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ckpt_format::pty::{ends_line, free_byte, lflag, replay_termios, special_bytes, ICANON, TERMIOS_LEN};

const TCSETS2: libc::c_ulong = 0x402c_542b;
const TIOCGPTPEER: libc::c_ulong = 0x5441;
/// How long the echo of typed-back input may take to reach the master.
const ECHO_WAIT: Duration = Duration::from_secs(3);

/// The input as the restorer types it: bytes with the end-of-file markers as
/// `eof_byte` ([`ckpt_format::pty`]), how many markers there are, and the erase
/// byte that ends it when there are any.
#[derive(Default, Debug, PartialEq)]
pub struct Input {
    pub bytes: Vec<u8>,
    pub eofs: usize,
    pub eof_byte: Option<u8>,
    pub erase_byte: Option<u8>,
}

fn err() -> io::Error {
    io::Error::last_os_error()
}

pub(super) fn set_termios(m: &OwnedFd, t: &[u8; TERMIOS_LEN]) -> io::Result<()> {
    // SAFETY: TCSETS2 reads a struct termios2 (44 bytes).
    if unsafe { libc::ioctl(m.as_raw_fd(), TCSETS2, t.as_ptr()) } < 0 { Err(err()) } else { Ok(()) }
}

/// A new fd on the slave of master `m` (TIOCGPTPEER, Linux 4.13).
pub(super) fn peer(m: &OwnedFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let s = unsafe { libc::ioctl(m.as_raw_fd(), TIOCGPTPEER, flags | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if s < 0 {
        return Err(err());
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// Whether `fd` has something to read within `ms` milliseconds.
pub(super) fn readable(fd: &OwnedFd, ms: i32) -> bool {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 && p.revents & libc::POLLIN != 0 }
}

/// One read(2) of at most `buf.len()` bytes: None when nothing is there (EAGAIN).
fn read_once(s: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is writable for its length.
    let r = unsafe { libc::read(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let e = err();
        return if e.kind() == io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
    }
    Ok(Some(r as usize))
}

/// Set or clear O_NONBLOCK on the open file of `fd`; returns the flags it had.
fn nonblock(fd: &OwnedFd, flags: Option<libc::c_int>) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL/F_SETFL on an fd we own.
    unsafe {
        let old = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if old < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags.unwrap_or(old | libc::O_NONBLOCK)) < 0 {
            return Err(err());
        }
        Ok(old)
    }
}

/// Take every byte waiting for the slave side of master `m`, whose settings are
/// `t`, through `s`, a duplicate of the process's slave fd open for reading. The
/// terminal is left in non-canonical mode when it was canonical: the caller puts
/// `t` back after typing the input again.
pub fn take(m: &OwnedFd, t: &[u8; TERMIOS_LEN], s: &OwnedFd) -> io::Result<Input> {
    let old = nonblock(s, None)?;
    let r = take_nonblocking(m, t, s);
    nonblock(s, Some(old))?;
    r
}

fn take_nonblocking(m: &OwnedFd, t: &[u8; TERMIOS_LEN], s: &OwnedFd) -> io::Result<Input> {
    let mut buf = [0u8; 4096];
    // (bytes, ended by end-of-file)
    let mut parts: Vec<(Vec<u8>, bool)> = Vec::new();
    if lflag(t) & ICANON != 0 {
        while readable(s, 0) {
            let Some(n) = read_once(s, &mut buf)? else { break };
            let line = &buf[..n];
            let by_eof = line.last().is_none_or(|&c| !ends_line(t, c));
            parts.push((line.to_vec(), by_eof));
        }
        let mut raw = *t;
        let lf = lflag(t) & !ICANON;
        raw[12..16].copy_from_slice(&lf.to_ne_bytes());
        set_termios(m, &raw)?;
    }
    let mut rest = Vec::new();
    while readable(s, 0) {
        match read_once(s, &mut buf)? {
            Some(0) | None => break,
            Some(n) => rest.extend_from_slice(&buf[..n]),
        }
    }
    parts.push((rest, false));
    Ok(encode(&parts, &special_bytes(t)))
}

/// The parts as one byte string, each end-of-file a byte used nowhere else and
/// none of `special`, then (with end-of-files) another such byte and an erase byte
/// taking it off again. When the input leaves no three bytes free (it would hold
/// nearly every value), the markers are dropped: the lines they ended run on.
fn encode(parts: &[(Vec<u8>, bool)], special: &[u8]) -> Input {
    let all: Vec<u8> = parts.iter().flat_map(|(b, _)| b.iter().copied()).collect();
    let eofs = parts.iter().filter(|(_, e)| *e).count();
    let free = || {
        let eof = free_byte(&all, special)?;
        let mark = free_byte(&all, &[special, &[eof]].concat())?;
        let erase = free_byte(&all, &[special, &[eof, mark]].concat())?;
        Some((eof, mark, erase))
    };
    let chosen = if eofs > 0 { free() } else { None };
    let mut bytes = Vec::with_capacity(all.len() + eofs + 2);
    for (b, by_eof) in parts {
        bytes.extend_from_slice(b);
        if let (true, Some((eof, ..))) = (*by_eof, chosen) {
            bytes.push(eof);
        }
    }
    match chosen {
        Some((eof, mark, erase)) => {
            bytes.extend_from_slice(&[mark, erase]);
            Input { bytes, eofs, eof_byte: Some(eof), erase_byte: Some(erase) }
        }
        None => Input { bytes, ..Input::default() },
    }
}

/// Read `n` bytes of echo at master `m` and drop them; in packet mode each read
/// starts with a status byte (TIOCPKT_DATA, 0, before data).
pub(super) fn drain(m: &OwnedFd, mut n: usize, pkt: bool) -> io::Result<()> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4097];
    while n > 0 {
        if t0.elapsed() > ECHO_WAIT {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("{n} bytes never reached the line discipline")));
        }
        if !readable(m, 100) {
            continue;
        }
        let want = n.min(4096) + pkt as usize;
        let Some(r) = read_once(m, &mut buf[..want])? else { continue };
        n -= r.saturating_sub(pkt as usize);
    }
    Ok(())
}

/// Type `input` into master `m` again, under [`replay_termios`] of the terminal's
/// settings `t`, and wait until the line discipline has taken every byte (each
/// echoes once at the master, where the echo is read and dropped). The caller
/// puts `t` back. `keep_flow`: for a master in packet mode (see replay_termios).
pub fn replay(m: &OwnedFd, t: &[u8; TERMIOS_LEN], input: &Input, pkt: bool, keep_flow: bool) -> io::Result<()> {
    if input.bytes.is_empty() {
        return Ok(());
    }
    set_termios(m, &replay_termios(t, input.eof_byte, input.erase_byte, keep_flow))?;
    let mut done = 0;
    while done < input.bytes.len() {
        // SAFETY: the slice is readable for its length.
        let n = unsafe { libc::write(m.as_raw_fd(), input.bytes[done..].as_ptr().cast(), input.bytes.len() - done) };
        if n <= 0 {
            return Err(if n < 0 { err() } else { io::Error::new(io::ErrorKind::WriteZero, "the terminal took nothing") });
        }
        done += n as usize;
    }
    drain(m, input.bytes.len() - input.eofs, pkt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_ended_by_eof_get_a_free_byte() {
        let parts = vec![(b"one\n".to_vec(), false), (b"abc".to_vec(), true), (Vec::new(), true), (b"par".to_vec(), false)];
        let i = encode(&parts, &[b'\n', 2, 0, 0, 0]);
        assert_eq!((i.eof_byte, i.erase_byte, i.eofs), (Some(1), Some(4), 2));
        assert_eq!(i.bytes, b"one\nabc\x01\x01par\x03\x04");
        assert_eq!(encode(&[(b"raw\x03".to_vec(), false)], &[]), Input { bytes: b"raw\x03".to_vec(), ..Input::default() });
    }
}
