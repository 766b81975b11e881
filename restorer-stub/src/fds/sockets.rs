//! Bound and listening sockets: socket(2), the saved options, bind(2) to the saved
//! address, listen(2). Record layout: generator/src/fdplan/sockets.rs (`aux[0]`
//! family, `aux[1]` type, `aux[2]` listening, `aux[3]` backlog, `aux[4]` option
//! bits, `aux[5]` protocol; the sockaddr in the data, none if never bound). A unix
//! socket pair (`aux[2]` = [`PAIR`], `aux[3]` the pair's id) is made with
//! socketpair(2) by its first record, for both ends: their options first, then the
//! data each had queued to read, sent through the other end (a stream's bytes, or
//! each message on its own: [`messages`]), then their shutdown state ([`sockstate`]).
//!
//! SO_REUSEADDR is set for the bind of an IP socket (then put back as it was), so
//! the port is free again although the original's connections may linger in
//! TIME_WAIT (socket(7)). A unix socket's path still exists after the original
//! died: if bind finds it in use, and it is a socket nobody accepts on (connect
//! fails with ECONNREFUSED, unix(7)), it is the original's leftover and is removed.

use super::{check, data, errno, fail, head, messages, set_status, sockstate, tcppair, to_temp, to_temps2, unixconn, Cx};
use ckpt_format::FdKind;
use crate::out::{Line, Step};
use crate::sys;
use ckpt_format::Fd;

const OPT_REUSEADDR: u64 = 1 << 0;
const OPT_REUSEPORT: u64 = 1 << 1;
const OPT_V6ONLY: u64 = 1 << 2;
const OPT_KEEPALIVE: u64 = 1 << 3;
const OPT_BROADCAST: u64 = 1 << 4;
const OPT_MESSAGES: u64 = 1 << 5;
/// Datagrams queued on a bound unix socket, with their senders ([`super::dgramqueue`]).
pub const OPT_SENDERS: u64 = 1 << 8;
const OPT_PAIR_SECOND: u64 = 1 << 31;
const PAIR: u64 = 2;
/// A UDP socket connected to a peer, whose address is in `path` (then its own,
/// with queued datagrams).
const CONNECTED_DGRAM: u64 = 7;
const AF_INET6: u64 = 10;
const AT_SYMLINK_NOFOLLOW: usize = 0x100;

/// An address for messages: "127.0.0.1:80", "port 80", or a unix path.
pub fn describe<'l>(l: &'l mut Line, a: &[u8]) -> &'l mut Line {
    let family = if a.len() >= 2 { u16::from_ne_bytes([a[0], a[1]]) as u64 } else { 0 };
    match family {
        2 if a.len() >= 8 => {
            for k in 0..4 {
                l.dec(a[4 + k] as u64).s(if k < 3 { "." } else { ":" });
            }
            l.dec(u16::from_be_bytes([a[2], a[3]]) as u64)
        }
        10 if a.len() >= 4 => l.s("IPv6 port ").dec(u16::from_be_bytes([a[2], a[3]]) as u64),
        1 if a.len() > 2 && a[2] == 0 => l.s("@").b(&a[3..]),
        1 if a.len() > 2 => {
            let p = &a[2..];
            l.b(&p[..p.iter().position(|&c| c == 0).unwrap_or(p.len())])
        }
        _ => l.s("an address of family ").dec(family),
    }
}

/// The NUL-terminated path of a unix sockaddr naming a file, if it names one.
pub fn unix_path<'b>(a: &[u8], buf: &'b mut [u8; 4096]) -> Option<&'b [u8]> {
    let p = a.get(2..)?;
    if p.first().is_none_or(|&c| c == 0) {
        return None; // unnamed or abstract
    }
    let p = &p[..p.iter().position(|&c| c == 0).unwrap_or(p.len())];
    Some(crate::layout::cpath(p, buf))
}

/// A unix socket file nobody listens on any more: remove it and say so.
pub fn remove_stale(addr: &[u8], ty: usize) -> bool {
    let mut buf = [0u8; 4096];
    let Some(path) = unix_path(addr, &mut buf) else { return false };
    let mut st = sys::Stat::zeroed();
    if sys::fstatat(sys::AT_FDCWD, path, &mut st, AT_SYMLINK_NOFOLLOW).is_err() || st.st_mode & sys::S_IFMT != sys::S_IFSOCK {
        return false;
    }
    let Ok(probe) = sys::socket(sys::AF_UNIX as usize, ty | sys::O_CLOEXEC, 0) else { return false };
    let stale = sys::connect(probe, addr) == Err(sys::ECONNREFUSED);
    let _ = sys::close(probe);
    stale && sys::unlink(path).is_ok()
}

fn bind_fail(f: &Fd, addr: &[u8], e: isize) -> ! {
    let mut l = head(f);
    l.s("cannot bind to ");
    describe(&mut l, addr).s(": ");
    errno(&mut l, e).emit();
    sys::exit_group(Step::Fds as i32)
}

/// Both ends of a socket pair, made by the first record of either end.
fn pair(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let [family, ty, _, id, opts, proto] = f.aux;
    let end = |second: bool| {
        cx.t.fds.iter().position(|g| {
            g.kind == FdKind::Socket as u32 && g.aux[2] == PAIR && g.aux[3] == id && (g.aux[4] & OPT_PAIR_SECOND != 0) == second
        })
    };
    let mine = opts & OPT_PAIR_SECOND != 0;
    let Some(other) = end(!mine) else { fail(f, "the other end of its socket pair is not in the image", 0) };
    let mut sv = [0i32; 2];
    check(f, "socketpair", sys::socketpair(family as usize, ty as usize, proto as usize, &mut sv));
    let g = &cx.t.fds[other];
    let ends = [(f, sv[0] as usize, sv[1] as usize), (g, sv[1] as usize, sv[0] as usize)];
    for (r, mine, _) in ends {
        if let Some(st) = sockstate::of(cx.t, r.fd) {
            sockstate::options(r, mine, st);
        }
    }
    // What one end had queued to read is sent again through the other end.
    for (r, _, theirs) in ends {
        if r.data_len != 0 && r.aux[4] & OPT_MESSAGES != 0 {
            messages::send_all(cx, r, theirs);
        } else if r.data_len != 0 {
            data::copy_to(cx, r, theirs);
        }
    }
    for (r, mine, _) in ends {
        if let Some(st) = sockstate::of(cx.t, r.fd) {
            sockstate::shutdown(r, mine, st);
        }
    }
    set_status(f, sv[0] as usize);
    set_status(&cx.t.fds[other], sv[1] as usize);
    to_temps2(cx, (i, sv[0] as usize), (other, sv[1] as usize));
}

pub fn socket(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let [family, ty, listening, backlog, opts, proto] = f.aux;
    match listening {
        PAIR => return pair(cx, i),
        unixconn::CONNECTING | unixconn::ACCEPTED => return unixconn::connection(cx, i),
        unixconn::DGRAM_TO => return unixconn::dgram_to(cx, i),
        tcppair::TCP_CLIENT | tcppair::TCP_SERVER => return tcppair::connection(cx, i),
        unixconn::WAITING => fail(f, "a waiting connection built out of its turn", 0),
        _ => {}
    }
    let x = check(f, "socket", sys::socket(family as usize, ty as usize, proto as usize));
    let set = |level, opt, on: bool| check(f, "setsockopt", sys::setsockopt_int(x, level, opt, on as i32));
    let ip = family != sys::AF_UNIX;
    if opts & OPT_REUSEPORT != 0 {
        set(sys::SOL_SOCKET, sys::SO_REUSEPORT, true);
    }
    if opts & OPT_KEEPALIVE != 0 {
        set(sys::SOL_SOCKET, sys::SO_KEEPALIVE, true);
    }
    if opts & OPT_BROADCAST != 0 {
        set(sys::SOL_SOCKET, sys::SO_BROADCAST, true);
    }
    if family == AF_INET6 {
        set(sys::IPPROTO_IPV6, sys::IPV6_V6ONLY, opts & OPT_V6ONLY != 0);
    }
    let senders = opts & OPT_SENDERS != 0;
    let path = cx.t.string(f.path_off, f.path_len);
    // A connected UDP socket's peer is in `path`, followed by its own address when
    // it has queued datagrams.
    let (peer, own) = if listening == CONNECTED_DGRAM && senders {
        path.split_at(if family == AF_INET6 { 28 } else { 16 }.min(path.len()))
    } else {
        (path, path)
    };
    if f.data_len != 0 || senders {
        let mut abuf = [0u8; 128];
        // With queued datagrams (their senders) the address is in `path`.
        let addr = if senders { own } else { data::read_small(cx, f, &mut abuf) };
        if ip {
            set(sys::SOL_SOCKET, sys::SO_REUSEADDR, true);
        }
        match sys::bind(x, addr) {
            Ok(_) => {}
            Err(sys::EADDRINUSE) if !ip && remove_stale(addr, ty as usize) => {
                if let Err(e) = sys::bind(x, addr) {
                    bind_fail(f, addr, e);
                }
            }
            Err(e) => bind_fail(f, addr, e),
        }
        if ip && opts & OPT_REUSEADDR == 0 {
            set(sys::SOL_SOCKET, sys::SO_REUSEADDR, false);
        }
    } else if opts & OPT_REUSEADDR != 0 {
        set(sys::SOL_SOCKET, sys::SO_REUSEADDR, true);
    }
    if listening == CONNECTED_DGRAM {
        if let Err(e) = sys::connect(x, peer) {
            let mut l = head(f);
            l.s("cannot connect to ");
            describe(&mut l, peer).s(" again: ");
            errno(&mut l, e).emit();
            sys::exit_group(Step::Fds as i32);
        }
    } else if listening != 0 {
        check(f, "listen", sys::listen(x, backlog as usize));
    }
    if let Some(st) = sockstate::of(cx.t, f.fd) {
        sockstate::options(f, x, st);
        sockstate::shutdown(f, x, st);
    }
    set_status(f, x);
    to_temp(cx, i, x);
}
