//! Bytes a pseudo-terminal's slave side wrote that its master (an fd of the
//! process) has not read yet: the output a terminal emulator, script(1) or tmux
//! has still to show. A terminal has no peek, so they are read through the
//! master's duplicate and written straight back through the slave, which puts
//! them at the master again, in the same order, before anything else the stopped
//! process could read.
//!
//! Written back with output processing off (OPOST cleared for the moment, set
//! through the master: termios ioctls on a master act on its slave's terminal,
//! tty_mode_ioctl()): the bytes had already been through it (ONLCR and the like,
//! n_tty_write()), and the master's own side is raw, so nothing is changed on
//! the way. The slave is reached with TIOCGPTPEER (Linux 4.13), not by path.
//! A program outside the process writing to the same slave at this very moment
//! could see its bytes land before these, or unprocessed: the window is the few
//! system calls between the read and the write back.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const TCSETS2: libc::c_ulong = 0x402c_542b;
const TIOCGPTPEER: libc::c_ulong = 0x5441;
/// c_oflag's offset in struct termios2, and OPOST (asm-generic/termbits.h).
const OFLAG_AT: usize = 4;
const OPOST: u32 = 1;

fn err() -> io::Error {
    io::Error::last_os_error()
}

fn set_termios(m: &OwnedFd, t: &[u8; 44]) -> io::Result<()> {
    // SAFETY: TCSETS2 reads a struct termios2 (44 bytes).
    if unsafe { libc::ioctl(m.as_raw_fd(), TCSETS2, t.as_ptr()) } < 0 { Err(err()) } else { Ok(()) }
}

/// Write `b` through a new slave fd of master `m` with OPOST off, then put the
/// terminal's settings `t` back.
fn write_back(m: &OwnedFd, t: &[u8; 44], b: &[u8]) -> io::Result<()> {
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let s = unsafe { libc::ioctl(m.as_raw_fd(), TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if s < 0 {
        return Err(err());
    }
    // SAFETY: a new fd owned by nobody else.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    let mut raw = *t;
    let oflag = u32::from_ne_bytes(raw[OFLAG_AT..OFLAG_AT + 4].try_into().expect("4 bytes")) & !OPOST;
    raw[OFLAG_AT..OFLAG_AT + 4].copy_from_slice(&oflag.to_ne_bytes());
    set_termios(m, &raw)?;
    let mut done = 0;
    let mut r = Ok(());
    while done < b.len() {
        // SAFETY: b[done..] is readable for its length.
        let n = unsafe { libc::write(s.as_raw_fd(), b[done..].as_ptr().cast(), b.len() - done) };
        if n <= 0 {
            r = Err(if n < 0 { err() } else { io::Error::new(io::ErrorKind::WriteZero, "the terminal took nothing") });
            break;
        }
        done += n as usize;
    }
    let back = set_termios(m, t);
    r.and(back)
}

/// The `n` bytes waiting at master `m` (a duplicate of the process's fd), left
/// there as they were. `t`: the terminal's settings as TCGETS2 gave them.
pub fn peek_output(m: &OwnedFd, n: usize, t: &[u8; 44]) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    // FIONREAD said n bytes are there: reads of at most that many do not block.
    while got < n {
        // SAFETY: buf[got..] is writable for its length.
        let r = unsafe { libc::read(m.as_raw_fd(), buf[got..].as_mut_ptr().cast(), n - got) };
        if r <= 0 {
            break;
        }
        got += r as usize;
    }
    buf.truncate(got);
    if got > 0 {
        write_back(m, t, &buf).map_err(|e| io::Error::new(e.kind(), format!("{got} bytes taken could not be put back: {e}")))?;
    }
    if got < n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("only {got} of {n} bytes could be read")));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let got = peek_output(&m, n, &t).unwrap();
        assert_eq!(got, b"a\r\nb");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(readable(&m), 4, "the bytes are not back at the master");
        assert_eq!(termios(&m), t, "the terminal's settings changed");
        let mut b = [0u8; 8];
        // SAFETY: b is writable.
        let r = unsafe { libc::read(m.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
        assert_eq!(&b[..r as usize], b"a\r\nb");
    }
}
