//! A TCP connection with both ends in the process, made anew between the same two
//! addresses (record layout and why: generator/src/fdplan/tcppair.rs): the
//! connecting end is bound to its address and connected to the other's, through the
//! process's listener or a temporary one bound there for the moment, and accepted;
//! then each end's received bytes are sent again through the other end, and each
//! end's shutdown(2) is made again.

use super::{build, check, data, errno, fail, head, set_status, sockets, sockstate, to_temps2, Cx};
use crate::out::Step;
use crate::sys;
use ckpt_format::{Fd, FdKind};

pub const TCP_CLIENT: u64 = 8;
pub const TCP_SERVER: u64 = 9;
const NO_LISTENER: u64 = u64::MAX;
const OPT_KEEPALIVE: u64 = 1 << 3;
const OPT_NODELAY: u64 = 1 << 7;
const IPPROTO_TCP: usize = 6;
const TCP_NODELAY: usize = 1;

fn addr_fail(f: &Fd, what: &str, a: &[u8], e: isize) -> ! {
    let mut l = head(f);
    l.s(what).s(" ");
    sockets::describe(&mut l, a).s(": ");
    errno(&mut l, e).emit();
    sys::exit_group(Step::Fds as i32)
}

/// A new TCP socket of `f`'s family bound to `a` (the port may linger in TIME_WAIT
/// after the original closed: SO_REUSEADDR for the bind, socket(7)).
fn bound(f: &Fd, a: &[u8]) -> usize {
    let x = check(f, "socket", sys::socket(f.aux[0] as usize, sys::SOCK_STREAM as usize | sys::O_CLOEXEC, 0));
    check(f, "setsockopt SO_REUSEADDR", sys::setsockopt_int(x, sys::SOL_SOCKET, sys::SO_REUSEADDR, 1));
    if let Err(e) = sys::bind(x, a) {
        addr_fail(f, "cannot bind to", a, e);
    }
    x
}

/// accept(2) on `l`, waiting for the connection just made even when the listener
/// is non-blocking.
fn accept(f: &Fd, l: usize) -> usize {
    let fl = check(f, "F_GETFL", sys::fcntl(l, sys::F_GETFL, 0));
    let nb = fl & sys::O_NONBLOCK as usize != 0;
    if nb {
        check(f, "F_SETFL", sys::fcntl(l, sys::F_SETFL, fl & !(sys::O_NONBLOCK as usize)));
    }
    let a = check(f, "accept", sys::accept4(l, sys::O_CLOEXEC));
    if nb {
        check(f, "F_SETFL", sys::fcntl(l, sys::F_SETFL, fl));
    }
    a
}

/// A client whose connection waits in the queue of the process's listener (record
/// `f`, built after every accepted connection): bound to its address, connected to
/// the one it had (in `data`), not accepted.
pub fn waiting_client(cx: &Cx, f: &Fd) -> usize {
    let Some(li) = cx.t.fds.iter().position(|g| g.fd as u64 == f.offset && g.kind == FdKind::Socket as u32) else {
        fail(f, "its listening socket is not in the image", 0)
    };
    build(cx, li);
    let mut b = [0u8; 128];
    let to = data::read_small(cx, f, &mut b);
    let c = bound(f, cx.t.string(f.path_off, f.path_len));
    loop {
        match sys::connect(c, to) {
            Ok(_) => break,
            Err(sys::EINTR) => {}
            Err(e) => addr_fail(f, "cannot connect again to", to, e),
        }
    }
    let _ = sys::setsockopt_int(c, sys::SOL_SOCKET, sys::SO_REUSEADDR, 0);
    if let Some(st) = sockstate::of(cx.t, f.fd) {
        sockstate::options(f, c, st);
    }
    c
}

/// Both ends, made by the first record of either.
pub fn connection(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let want = if f.aux[2] == TCP_CLIENT { TCP_SERVER } else { TCP_CLIENT };
    let Some(j) = cx.t.fds.iter().position(|g| g.kind == FdKind::Socket as u32 && g.aux[2] == want && g.aux[3] == f.aux[3]) else {
        fail(f, "the other end of its TCP connection is not in the image", 0)
    };
    let (ci, si) = if f.aux[2] == TCP_CLIENT { (i, j) } else { (j, i) };
    let (cf, sf) = (&cx.t.fds[ci], &cx.t.fds[si]);
    let (caddr, saddr) = (cx.t.string(cf.path_off, cf.path_len), cx.t.string(sf.path_off, sf.path_len));
    let listener = (cf.offset != NO_LISTENER).then(|| {
        let Some(li) = cx.t.fds.iter().position(|g| g.fd as u64 == cf.offset && g.kind == FdKind::Socket as u32) else {
            fail(cf, "its listening socket is not in the image", 0)
        };
        build(cx, li);
        cx.temp(li)
    });
    // Buffer sizes before the handshake, which picks the window scale from them
    // (tcp_select_initial_window()): set only afterwards, a small receive buffer
    // under a large scale leaves the window shut for long stretches. The accepted
    // end takes the temporary listener's (sk_clone_lock()).
    let early = |r: &Fd, x: usize| {
        if let Some(st) = sockstate::of(cx.t, r.fd) {
            sockstate::options(r, x, st);
        }
    };
    let l = listener.unwrap_or_else(|| {
        let l = bound(sf, saddr);
        early(sf, l);
        check(sf, "listen", sys::listen(l, 1));
        l
    });
    let c = bound(cf, caddr);
    early(cf, c);
    loop {
        match sys::connect(c, saddr) {
            Ok(_) => break,
            Err(sys::EINTR) => {}
            Err(e) => addr_fail(cf, "cannot connect again to", saddr, e),
        }
    }
    let a = accept(sf, l);
    if listener.is_none() {
        let _ = sys::close(l);
    }
    let _ = sys::setsockopt_int(c, sys::SOL_SOCKET, sys::SO_REUSEADDR, 0);
    for (r, x) in [(cf, c), (sf, a)] {
        if r.aux[4] & OPT_NODELAY != 0 {
            check(r, "setsockopt TCP_NODELAY", sys::setsockopt_int(x, IPPROTO_TCP, TCP_NODELAY, 1));
        }
        if r.aux[4] & OPT_KEEPALIVE != 0 {
            check(r, "setsockopt SO_KEEPALIVE", sys::setsockopt_int(x, sys::SOL_SOCKET, sys::SO_KEEPALIVE, 1));
        }
        if let Some(st) = sockstate::of(cx.t, r.fd) {
            sockstate::options(r, x, st);
        }
    }
    for (r, theirs) in [(cf, a), (sf, c)] {
        if r.data_len != 0 {
            data::copy_to(cx, r, theirs);
        }
    }
    // After the bytes: a shut send side sends its FIN behind them (tcp_shutdown()),
    // which shuts the other end's receive side as the first FIN did.
    for (r, x) in [(cf, c), (sf, a)] {
        if let Some(st) = sockstate::of(cx.t, r.fd) {
            sockstate::shutdown(r, x, st);
        }
    }
    set_status(cf, c);
    set_status(sf, a);
    to_temps2(cx, (ci, c), (si, a));
}
