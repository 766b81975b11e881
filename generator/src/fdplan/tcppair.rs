//! TCP connections with both ends in the process (a server talking to itself over
//! loopback, a test harness, an event loop with its own client): recreated as a
//! fresh connection between the same two addresses, and the bytes each end had
//! received and not yet read are sent again through the other end.
//!
//! Not TCP_REPAIR (tcp(7)): the sequence numbers and windows start anew, which the
//! process cannot see, and it needs no CAP_NET_ADMIN. The restorer binds a new
//! socket to the connecting end's address, connects it to the other end's address
//! (through the process's own listener when it still has one, else a temporary one
//! bound there for the moment) and accepts it.
//!
//! Bytes an end wrote that the other had not received (its send queue, behind a
//! full receive window) are read with TCP_REPAIR where the freeze has
//! CAP_NET_ADMIN ([`super::tcp_sendq`]) and stored after the other end's received
//! bytes, so they arrive in order; without it a warning counts them. Shutdown states
//! (sk_shutdown, from sock_diag: [`super::inet_diag`]) are made again after the
//! bytes: a shut send side's FIN follows them, giving both ends their FIN_WAIT /
//! CLOSE_WAIT / TIME_WAIT / LAST_ACK states back. Which end called connect(2) is
//! told by the listener the other end shares its address with; without one, by
//! which port is in the ephemeral range (a connection works the same either way
//! round).
//!
//! A client of the process's own listener whose connection was not accepted yet
//! (its other end is in the listener's queue, with no fd) is connected again and
//! left waiting, after every accepted connection exists (as unix ones are,
//! [`super::unixconn`]), in fd order: the queue's own order is not told. Bytes it
//! sent are in the queued socket, which cannot be read without accepting it.
//!
//! Record layout (the format's `FdKind::Socket`): `aux[2]` [`TCP_CLIENT`] or
//! [`TCP_SERVER`], `aux[3]` the connection's id (the smaller inode), `offset` the
//! listener's fd ([`NO_LISTENER`]: none), the end's own address in `path`, the bytes
//! it had received in `data`. A waiting client: `aux[2]` [`super::unixconn::WAITING`],
//! `aux[3]` its fd, `offset` the listener's fd, its address in `path`, the address
//! it connected to in `data`.

use std::os::fd::{AsRawFd, OwnedFd};

use super::sockets::{peek, sockaddr_of, OPT_NODELAY};
use super::target::{bytes_readable, getsockopt_int, Target};
use super::{inet_diag, sockstate, tcp_sendq, Class, Planned};
use crate::proc::fds::{FdInfo, FdTarget};
use ckpt_format::FdKind;

/// `aux[2]`: the end that called connect(2).
pub const TCP_CLIENT: u64 = 8;
/// `aux[2]`: the end accept(2) returned.
pub const TCP_SERVER: u64 = 9;
/// `offset` of a connection whose listener is not in the process.
pub const NO_LISTENER: u64 = u64::MAX;

/// Port of a sockaddr_in/in6.
fn port(a: &[u8]) -> u16 {
    if a.len() >= 4 { u16::from_be_bytes([a[2], a[3]]) } else { 0 }
}

/// Whether a listener bound to `l` accepts connections to `a`: same port, and the
/// same address or the wildcard.
fn serves(l: &[u8], a: &[u8]) -> bool {
    let addr = |x: &[u8]| -> Vec<u8> {
        match u16::from_ne_bytes([x[0], x[1]]) as i32 {
            libc::AF_INET => x.get(4..8).unwrap_or(&[]).to_vec(),
            _ => x.get(8..24).unwrap_or(&[]).to_vec(),
        }
    };
    l.len() >= 4 && a.len() >= 4 && l[..2] == a[..2] && port(l) == port(a) && (addr(l) == addr(a) || addr(l).iter().all(|&b| b == 0))
}

/// The process's TCP sockets: fd, inode, and the socket (a duplicate).
fn tcp_sockets(tg: &Target, all: &[FdInfo], family: i32) -> Vec<(i32, u64, OwnedFd)> {
    let mut out = Vec::new();
    for o in all.iter().filter(|o| o.fd > 2) {
        let FdTarget::Socket(ino) = o.target else { continue };
        let Ok(s) = tg.getfd(o.fd) else { continue };
        let q = |opt| getsockopt_int(&s, libc::SOL_SOCKET, opt).unwrap_or(-1);
        if q(libc::SO_DOMAIN) == family && q(libc::SO_TYPE) == libc::SOCK_STREAM && !out.iter().any(|(_, i, _)| *i == ino) {
            out.push((o.fd, ino, s));
        }
    }
    out
}

fn ephemeral(p: u16) -> bool {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = range.split_whitespace().filter_map(|x| x.parse::<u16>().ok());
    let (lo, hi) = (it.next().unwrap_or(32768), it.next().unwrap_or(60999));
    (lo..=hi).contains(&p)
}

/// Whether `s` is an established connection (TCP_INFO's tcpi_state, tcp(7)).
fn established(s: &OwnedFd) -> bool {
    // SAFETY: tcp_info is plain data; all-zero is valid.
    let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: ti/len describe a writable tcp_info.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut ti as *mut libc::tcp_info).cast(), &mut len) };
    r == 0 && ti.tcpi_state == 1 // TCP_ESTABLISHED
}

/// A client of listener `l` (an fd of the process) that nobody in the process
/// accepted: still established, so its other end waits in the listener's queue.
fn waiting(s: &OwnedFd, f: &FdInfo, family: i32, (name, peer): (&[u8], &[u8]), l: i32) -> Option<Class> {
    if !established(s) {
        return None;
    }
    let mut rec = Planned::new(f, FdKind::Socket);
    match sockstate::capture(s, f.fd, (family, libc::SOCK_STREAM, libc::IPPROTO_TCP), 0) {
        Ok((st, opts)) => (rec.sock, rec.opts) = (st, opts),
        Err(e) => return Some(Class::Refuse(format!("its options cannot be read: {e}"))),
    }
    rec.offset = l as u64;
    rec.path = name.to_vec();
    rec.blob = Some(peer.to_vec());
    rec.aux = [family as u64, libc::SOCK_STREAM as u64, super::unixconn::WAITING, f.fd as u64, 0, libc::IPPROTO_TCP as u64];
    Some(Class::Plan(rec))
}

/// How many fds of the process are clients of listener `l` waiting in its queue.
pub fn waiting_on(tg: &Target, all: &[FdInfo], family: i32, l: &[u8]) -> usize {
    let socks = tcp_sockets(tg, all, family);
    let name_of = |o: &OwnedFd| sockaddr_of(o, libc::getsockname).ok();
    let peer_of = |o: &OwnedFd| sockaddr_of(o, libc::getpeername).ok();
    socks
        .iter()
        .filter(|(_, _, o)| peer_of(o).is_some_and(|p| serves(l, &p)) && established(o))
        .filter(|(_, _, o)| !socks.iter().any(|(_, _, x)| name_of(x) == peer_of(o) && peer_of(x) == name_of(o)))
        .count()
}

/// A connected TCP socket (`s`, fd `f`, local `name`, remote `peer`) whose other end
/// is a socket of the process too; None when it is not.
pub fn plan(tg: &Target, s: &OwnedFd, f: &FdInfo, family: i32, (name, peer): (&[u8], &[u8]), all: &[FdInfo], warnings: &mut Vec<String>) -> Option<Class> {
    let FdTarget::Socket(ino) = f.target else { return None };
    let socks = tcp_sockets(tg, all, family);
    let listening = |o: &OwnedFd| getsockopt_int(o, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) != 0;
    let listener_of = |a: &[u8]| {
        socks.iter().find(|(_, _, o)| listening(o) && sockaddr_of(o, libc::getsockname).is_ok_and(|l| serves(&l, a))).map(|(fd, _, _)| *fd)
    };
    let Some((peer_fd, peer_ino, peer_sock)) = socks.iter().find(|(_, i, o)| {
        *i != ino
            && sockaddr_of(o, libc::getsockname).ok().as_deref() == Some(peer)
            && sockaddr_of(o, libc::getpeername).ok().as_deref() == Some(name)
    }) else {
        return waiting(s, f, family, (name, peer), listener_of(peer)?);
    };
    let (role, listener) = match (listener_of(name), listener_of(peer)) {
        (Some(l), _) => (TCP_SERVER, Some(l)),
        (None, Some(l)) => (TCP_CLIENT, Some(l)),
        // The end on an ephemeral port connected (the smaller inode if both are).
        (None, None) => match (ephemeral(port(name)), ephemeral(port(peer))) {
            (true, false) => (TCP_CLIENT, None),
            (false, true) => (TCP_SERVER, None),
            _ if ino < *peer_ino => (TCP_CLIENT, None),
            _ => (TCP_SERVER, None),
        },
    };
    let mut rec = Planned::new(f, FdKind::Socket);
    let n = bytes_readable(s).unwrap_or(0);
    let mut blob = Vec::new();
    if n > 0 {
        match peek(s, n) {
            Some(b) => blob = b,
            None => return Some(Class::Refuse(format!("the {n} bytes it had received cannot be read"))),
        }
    }
    // What the other end wrote and this one has not received yet arrives after.
    if tcp_sendq::queued(peer_sock) > 0 {
        match tcp_sendq::in_transit(peer_sock, s) {
            Ok(tail) => blob.extend_from_slice(&tail),
            Err(e) => {
                let unsent = tcp_sendq::unsent(peer_sock);
                if unsent > 0 {
                    warnings.push(format!(
                        "fd {peer_fd}: {unsent} bytes it wrote to fd {} were not yet sent (its send queue, behind a full window) and are not restored: reading them needs TCP_REPAIR ({e})",
                        f.fd
                    ));
                }
            }
        }
    }
    if !blob.is_empty() {
        rec.blob = Some(blob);
    }
    // A receive side shut by the other end's FIN (tcp_fin()) is shut again by
    // replaying that end's shutdown(SHUT_WR).
    let shut = |ino| inet_diag::tcp_shutdown(family, ino).ok().flatten().unwrap_or(0);
    let mut shutdown = shut(ino);
    if shut(*peer_ino) & ckpt_format::SHUT_SEND as u8 != 0 {
        shutdown &= !(ckpt_format::SHUT_RCV as u8);
    }
    match sockstate::capture(s, f.fd, (family, libc::SOCK_STREAM, libc::IPPROTO_TCP), shutdown) {
        Ok((st, opts)) => (rec.sock, rec.opts) = (st, opts),
        Err(e) => return Some(Class::Refuse(format!("its options cannot be read: {e}"))),
    }
    let mut opts = 0;
    if getsockopt_int(s, libc::IPPROTO_TCP, libc::TCP_NODELAY).unwrap_or(0) != 0 {
        opts |= OPT_NODELAY;
    }
    if getsockopt_int(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE).unwrap_or(0) != 0 {
        opts |= super::sockets::OPT_KEEPALIVE;
    }
    if let Ok(d) = s.try_clone() {
        tg.keep_tcp_end(d);
    }
    rec.offset = listener.map_or(NO_LISTENER, |l| l as u64);
    rec.path = name.to_vec();
    rec.aux = [family as u64, libc::SOCK_STREAM as u64, role, ino.min(*peer_ino), opts, libc::IPPROTO_TCP as u64];
    Some(Class::Plan(rec))
}

/// Make the original's ends of the connections the resume makes anew close with a
/// reset (SO_LINGER on with a zero timeout: tcp_close() then sends RST, tcp(7)),
/// called just before the original is killed; the ends close when `ends` (our
/// duplicates, the last references once the process is gone) is dropped. An
/// orderly close would leave the addresses in TIME_WAIT for a minute, where a
/// bind(2) of the same address fails with EADDRINUSE even with SO_REUSEADDR (the
/// original set none), so the resume could not make the connection again.
pub fn end_with_reset(ends: &[OwnedFd]) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    for s in ends {
        // SAFETY: l is a readable struct linger for the call.
        unsafe { libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&l as *const libc::linger).cast(), std::mem::size_of::<libc::linger>() as libc::socklen_t) };
    }
}

