//! The integer socket options of ckpt_format::sockopts::KNOWN (IP, IPv6, TCP and
//! SOL_SOCKET ones a program sets and reads back) whose value on the target's socket
//! differs from a new socket of the same family, type and protocol made here. An
//! option the socket's family does not have fails getsockopt (ENOPROTOOPT,
//! EOPNOTSUPP) and is skipped.

use std::os::fd::OwnedFd;

use super::target::getsockopt_int;
use ckpt_format::sockopts::KNOWN;
use ckpt_format::SockOpt;

/// The options of `s` (of type `ty`) that `fresh` (a new socket of the same kind)
/// does not share; their `fd` is set by the caller.
pub fn capture(s: &OwnedFd, ty: i32, fresh: &OwnedFd) -> Vec<SockOpt> {
    KNOWN
        .iter()
        .filter(|k| !(k.not_stream && ty == libc::SOCK_STREAM))
        .filter_map(|k| {
            let v = getsockopt_int(s, k.level, k.name).ok()?;
            let default = getsockopt_int(fresh, k.level, k.name).ok();
            (default != Some(v)).then_some(SockOpt { fd: -1, level: k.level, name: k.name, value: v })
        })
        .collect()
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
        assert_eq!(capture(&s, libc::SOCK_STREAM, &fresh), vec![]);
        set(&s, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        set(&s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 77);
        set(&s, libc::IPPROTO_IP, libc::IP_TOS, 0x10);
        set(&s, libc::SOL_SOCKET, libc::SO_PRIORITY, 4);
        let got = capture(&s, libc::SOCK_STREAM, &fresh);
        let names: Vec<_> = got.iter().map(|o| ckpt_format::sockopts::label(o.level, o.name)).collect();
        assert_eq!(names, ["IP_TOS", "TCP_NODELAY", "TCP_KEEPIDLE", "SO_PRIORITY"]);
        let again = socket(libc::AF_INET, libc::SOCK_STREAM);
        for o in &got {
            set(&again, o.level, o.name, o.value);
        }
        assert_eq!(capture(&again, libc::SOCK_STREAM, &fresh), got);
    }

    #[test]
    fn options_of_another_family_are_skipped() {
        let s = socket(libc::AF_UNIX, libc::SOCK_STREAM);
        let fresh = socket(libc::AF_UNIX, libc::SOCK_STREAM);
        set(&s, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0);
        let got = capture(&s, libc::SOCK_STREAM, &fresh);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].name, got[0].value), (libc::SO_PEEK_OFF, 0));
    }
}
