//! The options a program sets on a socket and reads back (socket(7)): buffer sizes,
//! SO_PASSCRED, SO_LINGER, SO_KEEPALIVE, SO_REUSEADDR/PORT, receive and send
//! timeouts, and its shutdown state. Read
//! through the duplicate of the fd; buffer sizes are kept only when they differ from
//! what a new socket of the same kind gets here (setting one, even to the default,
//! turns off the kernel's automatic sizing: SOCK_SNDBUF_LOCK, sock_setsockopt()).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::sockopts;
use super::target::getsockopt_int;
use ckpt_format::{SocketState, SOCK_KEEPALIVE, SOCK_LINGER, SOCK_MAX_TIMEO_US, SOCK_PASSCRED, SOCK_REUSEADDR, SOCK_REUSEPORT};

fn getsockopt_raw<T>(s: &OwnedFd, opt: i32, v: &mut T) -> io::Result<()> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: v is writable for len bytes; the kernel writes at most len.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_SOCKET, opt, (v as *mut T).cast(), &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn timeo_us(s: &OwnedFd, opt: i32) -> io::Result<u64> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    getsockopt_raw(s, opt, &mut tv)?;
    Ok((tv.tv_sec.max(0) as u64 * 1_000_000 + tv.tv_usec.max(0) as u64).min(SOCK_MAX_TIMEO_US))
}

/// A new socket of this kind, to compare with.
fn fresh(family: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes integers only.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The state of socket `s` (fd `fd` of the process) that a new one would not have:
/// its [`SocketState`] (None when it has nothing a new one lacks) and its other
/// integer options ([`sockopts`]). `shutdown`: sk_shutdown as sock_diag tells it (0
/// when not known).
pub fn capture(s: &OwnedFd, fd: i32, (family, ty, proto): (i32, i32, i32), shutdown: u8) -> io::Result<(Option<SocketState>, Vec<sockopts::Captured>)> {
    let q = |opt| getsockopt_int(s, libc::SOL_SOCKET, opt);
    let new = fresh(family, ty, proto)?;
    let (def_snd, def_rcv) = (getsockopt_int(&new, libc::SOL_SOCKET, libc::SO_SNDBUF)?, getsockopt_int(&new, libc::SOL_SOCKET, libc::SO_RCVBUF)?);
    let (snd, rcv) = (q(libc::SO_SNDBUF)?, q(libc::SO_RCVBUF)?);
    let mut st = SocketState { fd, shutdown: shutdown as u32 & 3, ..SocketState::default() };
    if snd != def_snd {
        st.sndbuf = snd as u32;
    }
    if rcv != def_rcv {
        st.rcvbuf = rcv as u32;
    }
    if family == libc::AF_UNIX && q(libc::SO_PASSCRED)? != 0 {
        st.flags |= SOCK_PASSCRED;
    }
    for (opt, bit) in [(libc::SO_KEEPALIVE, SOCK_KEEPALIVE), (libc::SO_REUSEADDR, SOCK_REUSEADDR), (libc::SO_REUSEPORT, SOCK_REUSEPORT)] {
        if q(opt)? != 0 {
            st.flags |= bit;
        }
    }
    let mut l = libc::linger { l_onoff: 0, l_linger: 0 };
    getsockopt_raw(s, libc::SO_LINGER, &mut l)?;
    if l.l_onoff != 0 {
        st.flags |= SOCK_LINGER;
        st.linger = l.l_linger.max(0) as u32;
    }
    st.rcvtimeo_us = timeo_us(s, libc::SO_RCVTIMEO)?;
    st.sndtimeo_us = timeo_us(s, libc::SO_SNDTIMEO)?;
    let opts = sockopts::capture(s, ty, &new)?;
    Ok(((st != SocketState { fd, ..SocketState::default() }).then_some(st), opts))
}
