//! The integer socket options of ckpt_format::sockopts::KNOWN (IP, IPv6, TCP and
//! SOL_SOCKET ones a program sets and reads back) whose value on the target's socket
//! differs from a new socket of the same family, type and protocol made here. An
//! option the socket's family does not have fails getsockopt (ENOPROTOOPT,
//! EOPNOTSUPP) and is skipped. Also a classic BPF filter attached with
//! SO_ATTACH_FILTER, read back with SO_GET_FILTER.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::target::getsockopt_int;
use ckpt_format::sockopts::{KNOWN, SOL_SOCKET, SO_ATTACH_FILTER};
use ckpt_format::SockOpt;

/// One option as captured: for a filter, its instructions (for the Strings section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub opt: SockOpt,
    pub data: Vec<u8>,
}

/// The classic filter attached to `s`, as struct sock_filter bytes, if any.
/// SO_GET_FILTER counts in instructions, not bytes: with a length of 0 it answers
/// how many there are, and it fails with EINVAL when given fewer (sk_get_filter()).
fn filter(s: &OwnedFd) -> io::Result<Option<Vec<u8>>> {
    let mut n: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel writes nothing but the length.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_GET_FILTER, std::ptr::null_mut(), &mut n) };
    if r < 0 {
        let e = io::Error::last_os_error();
        // A program attached with SO_ATTACH_BPF has no classic original to give back.
        if e.raw_os_error() == Some(libc::EACCES) {
            return Err(io::Error::other("an eBPF socket filter (SO_ATTACH_BPF) is attached, which cannot be read back"));
        }
        return Err(e);
    }
    if n == 0 {
        return Ok(None);
    }
    let mut buf = vec![0u8; n as usize * 8];
    // SAFETY: buf holds n instructions of 8 bytes, which is what length n allows.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_GET_FILTER, buf.as_mut_ptr().cast(), &mut n) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize * 8);
    Ok(Some(buf))
}

/// The options of `s` (of type `ty`) that `fresh` (a new socket of the same kind)
/// does not share, in [`KNOWN`] order; their `fd` is set by the caller.
pub fn capture(s: &OwnedFd, ty: i32, fresh: &OwnedFd) -> io::Result<Vec<Captured>> {
    let mut out = Vec::new();
    for k in KNOWN.iter().filter(|k| !(k.not_stream && ty == libc::SOCK_STREAM)) {
        let opt = SockOpt { fd: -1, level: k.level, name: k.name, ..SockOpt::default() };
        if (k.level, k.name) == (SOL_SOCKET, SO_ATTACH_FILTER) {
            if let Some(data) = filter(s)? {
                out.push(Captured { opt: SockOpt { value: (data.len() / 8) as i32, ..opt }, data });
            }
            continue;
        }
        let Ok(v) = getsockopt_int(s, k.level, k.name) else { continue };
        if getsockopt_int(fresh, k.level, k.name).ok() != Some(v) {
            out.push(Captured { opt: SockOpt { value: v, ..opt }, data: Vec::new() });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd};

    fn socket(family: i32, ty: i32) -> OwnedFd {
        // SAFETY: socket(2) takes integers only; the new fd is owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(libc::socket(family, ty | libc::SOCK_CLOEXEC, 0)) }
    }

    fn set(s: &OwnedFd, level: i32, name: i32, v: i32) {
        // SAFETY: the value is an int on our stack and its size is given.
        let r = unsafe { libc::setsockopt(s.as_raw_fd(), level, name, (&v as *const i32).cast(), 4) };
        assert_eq!(r, 0, "setsockopt {level}/{name}");
    }

    #[test]
    fn only_the_options_set_are_captured_and_they_read_back_when_set_again() {
        let s = socket(libc::AF_INET, libc::SOCK_STREAM);
        let fresh = socket(libc::AF_INET, libc::SOCK_STREAM);
        assert_eq!(capture(&s, libc::SOCK_STREAM, &fresh).unwrap(), vec![]);
        set(&s, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        set(&s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 77);
        set(&s, libc::IPPROTO_IP, libc::IP_TOS, 0x10);
        set(&s, libc::SOL_SOCKET, libc::SO_PRIORITY, 4);
        let got = capture(&s, libc::SOCK_STREAM, &fresh).unwrap();
        let names: Vec<_> = got.iter().map(|c| ckpt_format::sockopts::label(c.opt.level, c.opt.name)).collect();
        assert_eq!(names, ["IP_TOS", "TCP_NODELAY", "TCP_KEEPIDLE", "SO_PRIORITY"]);
        let again = socket(libc::AF_INET, libc::SOCK_STREAM);
        for c in &got {
            set(&again, c.opt.level, c.opt.name, c.opt.value);
        }
        assert_eq!(capture(&again, libc::SOCK_STREAM, &fresh).unwrap(), got);
    }

    #[test]
    fn options_of_another_family_are_skipped() {
        let s = socket(libc::AF_UNIX, libc::SOCK_STREAM);
        let fresh = socket(libc::AF_UNIX, libc::SOCK_STREAM);
        set(&s, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0);
        let got = capture(&s, libc::SOCK_STREAM, &fresh).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].opt.name, got[0].opt.value), (libc::SO_PEEK_OFF, 0));
    }

    #[test]
    fn a_classic_filter_reads_back_whole() {
        let s = socket(libc::AF_INET, libc::SOCK_DGRAM);
        let fresh = socket(libc::AF_INET, libc::SOCK_DGRAM);
        // ld len; jge #100 -> ret #0 : ret #-1 (drops datagrams of 100 bytes or more).
        let prog: [libc::sock_filter; 4] = [
            libc::sock_filter { code: 0x80, jt: 0, jf: 0, k: 0 },
            libc::sock_filter { code: 0x35, jt: 0, jf: 1, k: 100 },
            libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },
            libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: u32::MAX },
        ];
        let fp = libc::sock_fprog { len: 4, filter: prog.as_ptr() as *mut _ };
        // SAFETY: fp points at 4 instructions that outlive the call.
        let r = unsafe {
            libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, (&fp as *const libc::sock_fprog).cast(), std::mem::size_of_val(&fp) as u32)
        };
        assert_eq!(r, 0);
        let got = capture(&s, libc::SOCK_DGRAM, &fresh).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].opt.name, got[0].opt.value, got[0].data.len()), (SO_ATTACH_FILTER, 4, 32));
        assert_eq!(&got[0].data[8..16], &[0x35, 0, 0, 1, 100, 0, 0, 0]);
    }
}
