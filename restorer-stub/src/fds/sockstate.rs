//! A socket's options and shutdown state (the image's Sockets section), set on the
//! new socket: the options before its queued data is written back (the buffer sizes
//! decide how much fits), the shutdown after (a shut send side takes no more).

use super::{check, errno, head};
use crate::out::Step;
use crate::sys;
use ckpt_format::{Fd, SocketState, Tables, SHUT_RCV, SHUT_SEND, SOCK_KEEPALIVE, SOCK_LINGER, SOCK_PASSCRED, SOCK_REUSEADDR, SOCK_REUSEPORT};

/// The saved state of fd `fd`, if it had one (the section is in fd order).
pub fn of<'a>(t: &Tables<'a>, fd: i32) -> Option<&'a SocketState> {
    t.sockets.binary_search_by_key(&fd, |s| s.fd).ok().map(|i| &t.sockets[i])
}

/// SO_SNDBUF/SO_RCVBUF: the kernel stores twice the value set, clamped to
/// wmem_max/rmem_max (socket(7)); a size the original got above that (a privileged
/// SO_*BUFFORCE) is forced again where allowed, else the resume stops naming it.
fn buffer(f: &Fd, x: usize, opt: usize, force: usize, want: u32) {
    let set = |o| sys::setsockopt_int(x, sys::SOL_SOCKET, o, (want / 2) as i32);
    check(f, "setsockopt SO_SNDBUF/SO_RCVBUF", set(opt));
    if sys::getsockopt_int(x, sys::SOL_SOCKET, opt) == Ok(want as usize) {
        return;
    }
    if let Err(e) = set(force) {
        let mut l = head(f);
        l.s("cannot set its ").s(if opt == sys::SO_SNDBUF { "SO_SNDBUF" } else { "SO_RCVBUF" })
            .s(" to ").dec(want as u64).s(" bytes (above the sysctl limit; SO_*BUFFORCE needs CAP_NET_ADMIN): ");
        errno(&mut l, e).emit();
        sys::exit_group(Step::Fds as i32);
    }
}

fn timeo(f: &Fd, x: usize, opt: usize, us: u64) {
    if us != 0 {
        let tv: [i64; 2] = [(us / 1_000_000) as i64, (us % 1_000_000) as i64];
        check(f, "setsockopt SO_RCVTIMEO/SO_SNDTIMEO", sys::setsockopt(x, sys::SOL_SOCKET, opt, &tv));
    }
}

/// Everything but the shutdown state.
pub fn options(f: &Fd, x: usize, st: &SocketState) {
    if st.sndbuf != 0 {
        buffer(f, x, sys::SO_SNDBUF, sys::SO_SNDBUFFORCE, st.sndbuf);
    }
    if st.rcvbuf != 0 {
        buffer(f, x, sys::SO_RCVBUF, sys::SO_RCVBUFFORCE, st.rcvbuf);
    }
    for (bit, opt, what) in [
        (SOCK_PASSCRED, sys::SO_PASSCRED, "setsockopt SO_PASSCRED"),
        (SOCK_KEEPALIVE, sys::SO_KEEPALIVE, "setsockopt SO_KEEPALIVE"),
        (SOCK_REUSEADDR, sys::SO_REUSEADDR, "setsockopt SO_REUSEADDR"),
        (SOCK_REUSEPORT, sys::SO_REUSEPORT, "setsockopt SO_REUSEPORT"),
    ] {
        if st.flags & bit != 0 {
            check(f, what, sys::setsockopt_int(x, sys::SOL_SOCKET, opt, 1));
        }
    }
    if st.flags & SOCK_LINGER != 0 {
        let l: [i32; 2] = [1, st.linger as i32];
        check(f, "setsockopt SO_LINGER", sys::setsockopt(x, sys::SOL_SOCKET, sys::SO_LINGER, &l));
    }
    timeo(f, x, sys::SO_RCVTIMEO, st.rcvtimeo_us);
    timeo(f, x, sys::SO_SNDTIMEO, st.sndtimeo_us);
}

/// shutdown(2) as it was. On a connected unix stream or seqpacket socket the
/// kernel mirrors it on the peer (unix_shutdown()), as it did the first time.
pub fn shutdown(f: &Fd, x: usize, st: &SocketState) {
    let how = match (st.shutdown & SHUT_RCV != 0, st.shutdown & SHUT_SEND != 0) {
        (false, false) => return,
        (true, false) => 0,
        (false, true) => 1,
        (true, true) => sys::SHUT_RDWR,
    };
    check(f, "shutdown", sys::shutdown(x, how));
}
