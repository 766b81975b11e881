//! Sockets that are bound or listening but not connected (a server's listening
//! socket, a bound UDP socket): recreated at resume with socket(2), bind(2) and
//! listen(2) on the same address, so a resumed server accepts new connections on
//! the same port. A connected socket's peer is elsewhere and its TCP state cannot be
//! rebuilt by a user-space restorer: such a socket resumes disconnected
//! ([`disconnected`]). A UDP socket connected to a peer is bound and connected
//! again (`aux[2]` [`CONNECTED_DGRAM`], the peer's address in `path`; with its
//! queued datagrams, the peer's and then its own address). A TCP
//! connection with both ends in the process is made anew ([`tcppair`]). A bound
//! unix datagram socket keeps its queued datagrams and their senders
//! ([`dgramqueue`]; its address then in `path`). Netlink,
//! packet and raw sockets are refused by name.
//!
//! Everything is asked of the socket itself through a duplicate (pidfd_getfd):
//! SO_DOMAIN, SO_TYPE, SO_PROTOCOL, SO_ACCEPTCONN, getsockname, getpeername
//! (socket(7)). The listen backlog of a TCP socket is in TCP_INFO: for a socket in
//! LISTEN state `tcpi_sacked` is sk_max_ack_backlog and `tcpi_unacked` the number of
//! connections waiting in the accept queue (tcp_get_info()); a unix listener's is
//! in sock_diag's UNIX_DIAG_RQLEN; elsewhere [`DEFAULT_BACKLOG`] is used.
//!
//! A unix socket connected to another socket of the same process (socketpair(2),
//! or a connection the process made to itself) is planned by [`unixpair`]: which
//! socket is its peer is only told by sock_diag ([`super::unix_diag`]).
//!
//! Record layout (an extension of the format's `FdKind::Socket` doc): `aux[0]`
//! family, `aux[1]` type, `aux[2]` 1 if listening ([`PAIR`] for one end of a
//! socketpair), `aux[3]` backlog (for a socketpair end: the pair's id, the smaller
//! of the two socket inodes), `aux[4]` the boolean options below
//! ([`OPT_REUSEADDR`]...; [`OPT_PAIR_SECOND`] marks the end with the larger
//! inode, [`OPT_MESSAGES`] framed messages in `data`), `aux[5]` protocol; the address from getsockname in `data`, empty for a
//! socket never bound; for socketpair ends, the data queued for it.

use std::os::fd::{AsRawFd, OwnedFd};

use super::target::{bytes_readable, getsockopt_int, Target};
use super::unix_diag::unix_diag;
use super::{dgramqueue, sockstate, tcppair, unixconn, unixpair};
use super::{disconnected, Class, Planned};
use crate::proc::fds::{FdInfo, FdTarget};
use ckpt_format::FdKind;

/// listen(2) backlog when the socket cannot tell (Linux's SOMAXCONN before 5.4).
pub const DEFAULT_BACKLOG: u64 = 128;

/// `aux[4]` bits: the socket options restored as they were.
pub const OPT_REUSEADDR: u64 = 1 << 0;
pub const OPT_REUSEPORT: u64 = 1 << 1;
pub const OPT_V6ONLY: u64 = 1 << 2;
pub const OPT_KEEPALIVE: u64 = 1 << 3;
pub const OPT_BROADCAST: u64 = 1 << 4;
/// `aux[4]` bit: the data holds messages, each a u32 length and its bytes
/// ([`sockqueue::Queue::framed`]), not a stream's bytes.
pub const OPT_MESSAGES: u64 = 1 << 5;
/// `aux[4]` bit: the socket's path was deleted after it was bound; the restorer
/// removes it again once every socket is made.
pub const OPT_UNLINK: u64 = 1 << 6;
/// `aux[4]` bit: TCP_NODELAY (a TCP connection's end, [`tcppair`]).
pub const OPT_NODELAY: u64 = 1 << 7;
/// `aux[4]` bit of the socketpair end whose inode is the larger.
pub const OPT_PAIR_SECOND: u64 = 1 << 31;
/// `aux[2]` of a socketpair end.
pub const PAIR: u64 = 2;
/// `aux[2]` of a UDP socket connected to a peer (its address in `path`).
pub const CONNECTED_DGRAM: u64 = 7;

pub(super) fn sockaddr_of(
    fd: &OwnedFd,
    f: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> std::io::Result<Vec<u8>> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len describe a writable buffer of `len` bytes.
    if unsafe { f(fd.as_raw_fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel wrote `len` bytes (capped to the buffer) into ss.
    let b = unsafe { std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len.min(128) as usize) };
    Ok(b.to_vec())
}

/// A sockaddr for messages: "127.0.0.1:80", "[::1]:80", "/run/x.sock",
/// "@abstract", "(unnamed)" for an unbound unix socket.
pub fn describe(addr: &[u8]) -> String {
    let family = if addr.len() >= 2 { u16::from_ne_bytes([addr[0], addr[1]]) as i32 } else { -1 };
    match family {
        libc::AF_INET if addr.len() >= 8 => {
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            format!("{}.{}.{}.{}:{port}", addr[4], addr[5], addr[6], addr[7])
        }
        libc::AF_INET6 if addr.len() >= 24 => {
            let port = u16::from_be_bytes([addr[2], addr[3]]);
            let ip: [u8; 16] = addr[8..24].try_into().expect("16 bytes");
            format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))
        }
        libc::AF_UNIX => {
            let path = &addr[2..];
            match path.first() {
                None => "(unnamed)".into(),
                Some(0) => format!("@{}", String::from_utf8_lossy(&path[1..])),
                Some(_) => {
                    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                    String::from_utf8_lossy(&path[..end]).into_owned()
                }
            }
        }
        _ => format!("an address of family {family}"),
    }
}

/// Whether a getsockname result means "never bound".
pub(super) fn unbound(addr: &[u8]) -> bool {
    let family = if addr.len() >= 2 { u16::from_ne_bytes([addr[0], addr[1]]) as i32 } else { return true };
    match family {
        // Port 0 and the wildcard address: what getsockname says before bind.
        libc::AF_INET | libc::AF_INET6 => addr[2..].iter().all(|&b| b == 0),
        libc::AF_UNIX => addr.len() <= 2,
        _ => false,
    }
}

fn family_name(family: i32, ty: i32) -> &'static str {
    match (family, ty) {
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM) => "TCP",
        (libc::AF_INET | libc::AF_INET6, libc::SOCK_DGRAM) => "UDP",
        (libc::AF_UNIX, _) => "unix",
        _ => "",
    }
}

/// Whether TCP socket `s` had a connection that has ended: state CLOSE (TCP_INFO,
/// tcp(7)) with options a handshake negotiated (tcpi_options: timestamps, SACK,
/// window scaling; a socket never connected, or whose connect was refused, has
/// none). A socket in CLOSE is in no lookup table, so sock_diag cannot tell its
/// shutdown state; after a connection it is both directions (tcp_done()).
fn connection_ended(s: &OwnedFd) -> bool {
    const TCP_CLOSE: u8 = 7;
    // SAFETY: tcp_info is plain data; all-zero is valid.
    let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: ti/len describe a writable tcp_info.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut ti as *mut libc::tcp_info).cast(), &mut len) };
    r == 0 && ti.tcpi_state == TCP_CLOSE && ti.tcpi_options != 0
}

pub fn socket(tg: &Target, f: &FdInfo, all: &[FdInfo], warnings: &mut Vec<String>) -> Class {
    if f.fd <= 2 {
        return Class::Inherit;
    }
    let s = match tg.getfd(f.fd) {
        Ok(s) => s,
        Err(e) => return Class::Refuse(format!("cannot reach the socket: {e}")),
    };
    let q = |level, opt| getsockopt_int(&s, level, opt);
    let (family, ty, proto) = match (q(libc::SOL_SOCKET, libc::SO_DOMAIN), q(libc::SOL_SOCKET, libc::SO_TYPE), q(libc::SOL_SOCKET, libc::SO_PROTOCOL)) {
        (Ok(d), Ok(t), Ok(p)) => (d, t, p),
        (d, t, p) => {
            let e = d.err().or(t.err()).or(p.err()).expect("one failed");
            return Class::Refuse(format!("cannot query the socket: {e}"));
        }
    };
    if !matches!(family, libc::AF_UNIX | libc::AF_INET | libc::AF_INET6) {
        let what = match family {
            libc::AF_NETLINK => "a netlink socket (AF_NETLINK), whose kernel-side subscriptions and sequence state cannot be read back".to_owned(),
            libc::AF_PACKET => "a packet socket (AF_PACKET), bound to a device and its traffic".to_owned(),
            _ => format!("a socket of address family {family}"),
        };
        return Class::Refuse(format!("it is {what}; only unix, IPv4 and IPv6 sockets are restored"));
    }
    // SOCK_PACKET (10): the obsolete packet socket of AF_INET (packet(7)).
    if ty == libc::SOCK_RAW || ty == 10 {
        return Class::Refuse(format!("it is a raw IP socket (SOCK_RAW, protocol {proto}); raw sockets are not restored"));
    }
    let name = sockaddr_of(&s, libc::getsockname).unwrap_or_default();
    let kind = family_name(family, ty);
    if let Ok(peer) = sockaddr_of(&s, libc::getpeername) {
        if family != libc::AF_UNIX && ty == libc::SOCK_DGRAM {
            return udp_connected(tg, &s, f, (family, ty, proto), (name, peer), all, warnings);
        }
        if family != libc::AF_UNIX && ty == libc::SOCK_STREAM {
            if let Some(c) = tcppair::plan(tg, &s, f, family, (&name, &peer), all, warnings) {
                return c;
            }
        }
        if family == libc::AF_UNIX {
            if let Some(c) = unixpair::unix_connected(tg, &s, f, ty, all, warnings) {
                return c;
            }
        }
        let what = format!("connected {kind} socket (local {}, peer {})", describe(&name), describe(&peer)).replace("  ", " ");
        let c = disconnected::Connected { family, ty, proto, name: &name, what };
        return disconnected::socket(&s, f, &c, warnings);
    }
    let listening = q(libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) != 0;
    if !listening && family != libc::AF_UNIX && ty == libc::SOCK_STREAM && connection_ended(&s) {
        return disconnected::ended_tcp(&s, f, (family, ty, proto), &name, warnings);
    }
    let mut backlog = DEFAULT_BACKLOG;
    if listening && ty == libc::SOCK_STREAM && family != libc::AF_UNIX {
        // SAFETY: tcp_info is plain data; all-zero is valid.
        let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: ti/len describe a writable tcp_info.
        let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut ti as *mut libc::tcp_info).cast(), &mut len) };
        if r == 0 && ti.tcpi_sacked > 0 {
            backlog = ti.tcpi_sacked as u64;
            // Clients in the process are connected again ([`tcppair`]).
            let lost = (ti.tcpi_unacked as usize).saturating_sub(tcppair::waiting_on(tg, all, family, &name));
            if lost > 0 {
                warnings.push(format!(
                    "fd {}: {lost} connection(s) waiting to be accepted on {} are lost",
                    f.fd,
                    describe(&name)
                ));
            }
        }
    } else if listening && family == libc::AF_UNIX {
        if let FdTarget::Socket(ino) = f.target {
            if let Some(d) = unix_diag(ino).ok().filter(|d| d.wqueue > 0) {
                backlog = d.wqueue as u64;
                // Waiting clients in the process are connected again ([`unixconn`]).
                let inside = |i: &u32| all.iter().any(|o| o.fd > 2 && o.target == FdTarget::Socket(*i as u64));
                let lost = d.icons.iter().filter(|i| !inside(i)).count();
                if lost > 0 {
                    warnings.push(format!(
                        "fd {}: {lost} connection(s) waiting to be accepted on {} are lost",
                        f.fd,
                        describe(&name)
                    ));
                }
            }
        }
    } else if !listening && bytes_readable(&s).unwrap_or(0) > 0 && ty != libc::SOCK_DGRAM {
        warnings.push(format!("fd {}: the data queued on socket {} is not restored", f.fd, describe(&name)));
    }
    let mut queued = None;
    // A datagram socket here is a unix or UDP one (other families are refused above).
    if ty == libc::SOCK_DGRAM && !unbound(&name) {
        match dgramqueue::capture(tg, &s, f, &name, all, warnings) {
            Ok(q) => queued = q,
            Err(e) => return Class::Refuse(e),
        }
    }
    let mut opts = 0;
    for (level, opt, bit) in [
        (libc::SOL_SOCKET, libc::SO_REUSEADDR, OPT_REUSEADDR),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT, OPT_REUSEPORT),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, OPT_KEEPALIVE),
        (libc::SOL_SOCKET, libc::SO_BROADCAST, OPT_BROADCAST),
        (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, OPT_V6ONLY),
    ] {
        if (family == libc::AF_INET6 || level != libc::IPPROTO_IPV6) && q(level, opt).unwrap_or(0) != 0 {
            opts |= bit;
        }
    }
    if family == libc::AF_UNIX {
        if let Some(d) = unix_diag_of(f) {
            if unixconn::path_deleted(&name, &d) {
                opts |= OPT_UNLINK;
            }
        }
    }
    let mut rec = Planned::new(f, FdKind::Socket);
    match sockstate::capture(&s, f.fd, (family, ty, proto), 0) {
        Ok((st, opts)) => (rec.sock, rec.opts) = (st, opts),
        Err(e) => return Class::Refuse(format!("its options cannot be read: {e}")),
    }
    rec.aux = [family as u64, ty as u64, listening as u64, backlog, opts, proto as u64];
    if !unbound(&name) {
        rec.blob = Some(name);
    }
    if let Some(q) = queued {
        // The address moves to `path`; the data holds the datagrams.
        rec.path = rec.blob.replace(q).unwrap_or_default();
        rec.aux[4] |= dgramqueue::OPT_SENDERS;
    }
    Class::Plan(rec)
}

/// A UDP socket connect(2)ed to a peer: connectionless, so it is bound and
/// connected again wherever the peer is (udp(7): connect only sets the default
/// destination and filters what is received).
///
/// Datagrams queued on it (all from the peer) come back as on a bound socket
/// ([`dgramqueue`]); `path` then holds the peer's address followed by the
/// socket's own, the data the datagrams.
fn udp_connected(tg: &Target, s: &OwnedFd, f: &FdInfo, (family, ty, proto): (i32, i32, i32), (name, peer): (Vec<u8>, Vec<u8>), all: &[FdInfo], warnings: &mut Vec<String>) -> Class {
    let queued = if bytes_readable(s).unwrap_or(0) > 0 || has_empty_datagram(s) {
        match dgramqueue::capture(tg, s, f, &name, all, warnings) {
            Ok(q) => q,
            Err(e) => return Class::Refuse(e),
        }
    } else {
        None
    };
    let mut rec = Planned::new(f, FdKind::Socket);
    match sockstate::capture(s, f.fd, (family, ty, proto), 0) {
        Ok((st, opts)) => (rec.sock, rec.opts) = (st, opts),
        Err(e) => return Class::Refuse(format!("its options cannot be read: {e}")),
    }
    let mut opts = 0;
    for (opt, bit) in [(libc::SO_REUSEADDR, OPT_REUSEADDR), (libc::SO_REUSEPORT, OPT_REUSEPORT), (libc::SO_BROADCAST, OPT_BROADCAST)] {
        if getsockopt_int(s, libc::SOL_SOCKET, opt).unwrap_or(0) != 0 {
            opts |= bit;
        }
    }
    if family == libc::AF_INET6 && getsockopt_int(s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).unwrap_or(0) != 0 {
        opts |= OPT_V6ONLY;
    }
    rec.aux = [family as u64, ty as u64, CONNECTED_DGRAM, 0, opts, proto as u64];
    match queued {
        Some(q) => {
            rec.path = [peer, name].concat();
            rec.blob = Some(q);
            rec.aux[4] |= dgramqueue::OPT_SENDERS;
        }
        None => {
            rec.path = peer;
            if !unbound(&name) {
                rec.blob = Some(name);
            }
        }
    }
    Class::Plan(rec)
}

/// Whether an empty datagram is first in `s`'s queue (FIONREAD says 0 then).
fn has_empty_datagram(s: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: b is writable; MSG_PEEK leaves the datagram queued.
    unsafe { libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) == 0 }
}

fn unix_diag_of(f: &FdInfo) -> Option<super::unix_diag::UnixDiag> {
    match f.target {
        FdTarget::Socket(ino) => unix_diag(ino).ok(),
        _ => None,
    }
}

/// The `n` bytes queued for reading on a stream socket, left in place.
pub(super) fn peek(s: &OwnedFd, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    // SAFETY: buf is writable for n bytes; MSG_PEEK leaves the data queued.
    let r = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), n, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    (r == n as isize).then_some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut a = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&port.to_be_bytes());
        a.extend_from_slice(&ip);
        a.extend_from_slice(&[0; 8]);
        a
    }

    #[test]
    fn addresses() {
        assert_eq!(describe(&inet([127, 0, 0, 1], 8080)), "127.0.0.1:8080");
        assert!(unbound(&inet([0; 4], 0)));
        assert!(!unbound(&inet([0; 4], 80)));
        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        assert_eq!(describe(&un), "(unnamed)");
        assert!(unbound(&un));
        un.extend_from_slice(b"/run/x.sock\0");
        assert_eq!(describe(&un), "/run/x.sock");
        let mut abs = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        abs.extend_from_slice(b"\0name");
        assert_eq!(describe(&abs), "@name");
    }
}
