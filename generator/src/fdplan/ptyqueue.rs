//! Bytes a pseudo-terminal's slave side wrote that its master (an fd of the
//! process) has not read yet: the output a terminal emulator, script(1) or tmux
//! has still to show; and, through [`ptyinput`], the bytes typed into it that the
//! slave side has not read. A terminal has no peek: both queues are read out
//! through duplicates and put back at once, before anything else the stopped
//! process could read — the output written straight back through the slave, the
//! input typed again at the master ([`take_and_put_back`]).
//!
//! Output is written back with output processing off (OPOST cleared for the
//! moment, set through the master: termios ioctls on a master act on its slave's
//! terminal, tty_mode_ioctl()): the bytes had already been through it (ONLCR and
//! the like, n_tty_write()), and the master's own side is raw, so nothing is
//! changed on the way. The slave is reached with TIOCGPTPEER (Linux 4.13), not by
//! path. In packet mode (TIOCPKT) every read at the master starts with a status
//! byte, 0 before data; a status pending there (flow control stopped or started, a
//! flush) would be taken by the first read, so with one pending (poll says POLLPRI,
//! n_tty_poll()) neither queue is touched.
//! A program outside the process writing to or reading the same terminal at this
//! very moment could see its bytes land before these: the window is the few
//! system calls between the read and the put back.
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::ptyinput::{self, peer, set_termios, Input};
use ckpt_format::pty::{iflag, lflag, TERMIOS_LEN, VSTART, VSTOP, EXTPROC, IXON};

/// c_oflag's offset in struct termios2, and OPOST (asm-generic/termbits.h).
const OFLAG_AT: usize = 4;
const OPOST: u32 = 1;

/// Write `b` through slave fd `s` (else a new one of master `m`) with OPOST off
/// (the caller puts the terminal's settings back).
fn write_back(m: &OwnedFd, s: Option<&OwnedFd>, t: &[u8; TERMIOS_LEN], b: &[u8]) -> io::Result<()> {
    let own;
    let s = match s {
        Some(s) => s,
        None => {
            own = peer(m, libc::O_RDWR)?;
            &own
        }
    };
    let mut raw = *t;
    let oflag = u32::from_ne_bytes(raw[OFLAG_AT..OFLAG_AT + 4].try_into().expect("4 bytes")) & !OPOST;
    raw[OFLAG_AT..OFLAG_AT + 4].copy_from_slice(&oflag.to_ne_bytes());
    set_termios(m, &raw)?;
    let mut done = 0;
    while done < b.len() {
        // SAFETY: b[done..] is readable for its length.
        let n = unsafe { libc::write(s.as_raw_fd(), b[done..].as_ptr().cast(), b.len() - done) };
        if n <= 0 {
            return Err(if n < 0 { io::Error::last_os_error() } else { io::Error::new(io::ErrorKind::WriteZero, "the terminal took nothing") });
        }
        done += n as usize;
    }
    Ok(())
}

/// Take the `n` bytes waiting at master `m` (a duplicate of the process's fd). In
/// packet mode each read gives a status byte first (0: data follows).
fn take_output(m: &OwnedFd, n: usize, pkt: bool) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n + 1];
    let mut out = Vec::with_capacity(n);
    // FIONREAD said n bytes are there: reads of at most that many do not block.
    while out.len() < n {
        let want = n - out.len() + pkt as usize;
        // SAFETY: buf is writable for `want` <= n + 1 bytes.
        let r = unsafe { libc::read(m.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
        if r <= 0 {
            break;
        }
        let r = r as usize;
        if pkt && buf[0] != 0 {
            return Err(io::Error::other(format!("a packet-mode status ({:#x}) came first and was taken", buf[0])));
        }
        out.extend_from_slice(&buf[pkt as usize..r]);
    }
    Ok(out)
}

/// Whether a packet-mode status is pending at master `m` (POLLPRI).
fn status_pending(m: &OwnedFd) -> bool {
    let mut p = libc::pollfd { fd: m.as_raw_fd(), events: libc::POLLPRI, revents: 0 };
    // SAFETY: one pollfd.
    unsafe { libc::poll(&mut p, 1, 0) == 1 && p.revents & libc::POLLPRI != 0 }
}

/// What the queues of a pty hold, taken from a live terminal and put back.
#[derive(Default)]
pub struct Queues {
    pub input: Input,
    pub output: Vec<u8>,
}

/// The settings a packet-mode master is not told about when they change: IXON
/// kept when the input has no START/STOP byte it would act on.
fn keep_flow(t: &[u8; TERMIOS_LEN], pkt: bool, input: &Input) -> bool {
    let flow = [ckpt_format::pty::cc(t, VSTART), ckpt_format::pty::cc(t, VSTOP)];
    pkt && !(iflag(t) & IXON != 0 && input.bytes.iter().any(|b| flow.contains(b)))
}

/// A duplicate of the process's slave fd, and whether it may be read and written.
pub struct Slave {
    pub fd: OwnedFd,
    pub read: bool,
    pub write: bool,
}

/// Take both queues of the pty whose master is `m` (`out` bytes waiting there;
/// its input only through `slave`, the process's own slave fd: without one the
/// input is not looked at), put them back as they were, and restore its settings
/// `t`.
pub fn take_and_put_back(m: &OwnedFd, t: &[u8; TERMIOS_LEN], pkt: bool, out: usize, slave: Option<&Slave>) -> io::Result<Queues> {
    let reader = slave.filter(|s| s.read).map(|s| &s.fd);
    let writer = slave.filter(|s| s.write).map(|s| &s.fd);
    if reader.is_none() && out == 0 {
        return Ok(Queues::default());
    }
    if pkt && status_pending(m) {
        return Err(io::Error::other("a packet-mode status is pending at the master"));
    }
    if pkt && lflag(t) & EXTPROC != 0 {
        return Err(io::Error::other("the terminal is in packet mode with EXTPROC, whose every settings change the master is told of"));
    }
    let output = if out > 0 { take_output(m, out, pkt)? } else { Vec::new() };
    let taken = match reader {
        Some(s) => ptyinput::take(m, t, s),
        None => Ok(Input::default()),
    };
    let put = |q: &Input| -> io::Result<()> {
        ptyinput::replay(m, t, q, pkt, keep_flow(t, pkt, q))?;
        if !output.is_empty() {
            write_back(m, writer, t, &output).map_err(|e| io::Error::new(e.kind(), format!("{} bytes of output taken could not be put back: {e}", output.len())))?;
        }
        Ok(())
    };
    let r = match &taken {
        Ok(q) => put(q),
        Err(_) => put(&Input::default()),
    };
    let back = set_termios(m, t);
    let input = taken?;
    r?;
    back?;
    Ok(Queues { input, output })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    const TIOCGPTPEER: libc::c_ulong = 0x5441;

    const TCGETS2: libc::c_ulong = 0x802c_542a;

    fn master() -> OwnedFd {
        // SAFETY: plain libc calls on a new fd.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0);
            assert_eq!(libc::unlockpt(m), 0);
            OwnedFd::from_raw_fd(m)
        }
    }

    fn termios(m: &OwnedFd) -> [u8; 44] {
        let mut t = [0u8; 44];
        // SAFETY: TCGETS2 writes 44 bytes.
        assert_eq!(unsafe { libc::ioctl(m.as_raw_fd(), TCGETS2, t.as_mut_ptr()) }, 0);
        t
    }

    fn readable(m: &OwnedFd) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        unsafe { libc::ioctl(m.as_raw_fd(), libc::FIONREAD, &mut n) };
        n as usize
    }

    #[test]
    fn output_is_read_and_left_in_place() {
        let m = master();
        // SAFETY: TIOCGPTPEER returns a new fd.
        let s = unsafe { OwnedFd::from_raw_fd(libc::ioctl(m.as_raw_fd(), TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY)) };
        // With OPOST and ONLCR on (the default), "\n" reaches the master as "\r\n".
        // SAFETY: a readable buffer.
        assert_eq!(unsafe { libc::write(s.as_raw_fd(), b"a\nb".as_ptr().cast(), 3) }, 3);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let t = termios(&m);
        let n = readable(&m);
        assert_eq!(n, 4);
        let got = take_and_put_back(&m, &t, false, n, None).unwrap();
        assert_eq!(got.output, b"a\r\nb");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(readable(&m), 4, "the bytes are not back at the master");
        assert_eq!(termios(&m), t, "the terminal's settings changed");
        let mut b = [0u8; 8];
        // SAFETY: b is writable.
        let r = unsafe { libc::read(m.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
        assert_eq!(&b[..r as usize], b"a\r\nb");
    }

    fn write(fd: &OwnedFd, b: &[u8]) {
        // SAFETY: b is readable.
        assert_eq!(unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), b.len()) }, b.len() as isize);
    }

    fn read(fd: &OwnedFd) -> Option<Vec<u8>> {
        if !ptyinput::readable(fd, 500) {
            return None;
        }
        let mut b = [0u8; 64];
        // SAFETY: b is writable.
        let r = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 64) };
        Some(b[..r.max(0) as usize].to_vec())
    }

    /// Typed input in canonical mode: lines, a line ended by ^D, a lone ^D and a
    /// line still being typed are taken and typed back; the slave reads the same
    /// lines and end-of-files, the line being typed goes on, nothing echoes.
    #[test]
    fn canonical_input_is_taken_and_typed_back() {
        let m = master();
        // SAFETY: TIOCGPTPEER returns a new fd.
        let s = unsafe { OwnedFd::from_raw_fd(libc::ioctl(m.as_raw_fd(), TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY)) };
        write(&m, b"one\rtwx\x7fo\nabc\x04\x04par");
        // (a lone end-of-file last is checked in the e2e test's fixture, fd_ptyin)
        std::thread::sleep(std::time::Duration::from_millis(50));
        let echo = read(&m).expect("the typing echoes");
        assert!(echo.starts_with(b"one\r\ntwx"), "{echo:?}");
        let t = termios(&m);
        let dup = s.try_clone().unwrap();
        let q = take_and_put_back(&m, &t, false, 0, Some(&Slave { fd: dup, read: true, write: true })).unwrap();
        assert_eq!(q.input.bytes, b"one\ntwo\nabc\x01\x01par\x02\x03");
        assert_eq!((q.input.eofs, q.input.eof_byte, q.input.erase_byte), (2, Some(1), Some(3)));
        assert_eq!(termios(&m), t, "the terminal's settings changed");
        assert_eq!(readable(&m), 0, "the typed-back input echoed");
        for want in [&b"one\n"[..], b"two\n", b"abc", b""] {
            assert_eq!(read(&s).as_deref(), Some(want));
        }
        write(&m, b"tial\n");
        assert_eq!(read(&s).as_deref(), Some(&b"partial\n"[..]));
    }
}
