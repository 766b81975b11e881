//! Sockets that are bound or listening but not connected (a server's listening
//! socket, a bound UDP socket): recreated at resume with socket(2), bind(2) and
//! listen(2) on the same address, so a resumed server accepts new connections on
//! the same port. A connected socket's peer is elsewhere and its TCP state cannot be
//! rebuilt by a user-space restorer: such a socket resumes disconnected
//! ([`disconnected`]).
//!
//! Everything is asked of the socket itself through a duplicate (pidfd_getfd):
//! SO_DOMAIN, SO_TYPE, SO_PROTOCOL, SO_ACCEPTCONN, getsockname, getpeername
//! (socket(7)). The listen backlog of a TCP socket is in TCP_INFO: for a socket in
//! LISTEN state `tcpi_sacked` is sk_max_ack_backlog and `tcpi_unacked` the number of
//! connections waiting in the accept queue (tcp_get_info()); a unix listener's is
//! in sock_diag's UNIX_DIAG_RQLEN; elsewhere [`DEFAULT_BACKLOG`] is used.
//!
//! A unix socket connected to another socket of the same process (socketpair(2),
//! or a connection the process made to itself) is recreated with socketpair(2).
//! Which socket is its peer is only told by sock_diag (NETLINK_SOCK_DIAG,
//! UDIAG_SHOW_PEER, sock_diag(7)); the bytes queued in it are not restored (a
//! warning says how many).
//!
//! Record layout (an extension of the format's `FdKind::Socket` doc): `aux[0]`
//! family, `aux[1]` type, `aux[2]` 1 if listening ([`PAIR`] for one end of a
//! socketpair), `aux[3]` backlog (for a socketpair end: the pair's id, the smaller
//! of the two socket inodes), `aux[4]` the boolean options below
//! ([`OPT_REUSEADDR`]...; [`OPT_PAIR_SECOND`] marks the end with the larger
//! inode), `aux[5]` protocol; the address from getsockname in `data`, empty for a
//! socket never bound (and for socketpair ends).

use std::os::fd::{AsRawFd, OwnedFd};

use super::target::{bytes_readable, getsockopt_int, Target};
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
/// `aux[4]` bit of the socketpair end whose inode is the larger.
pub const OPT_PAIR_SECOND: u64 = 1 << 31;
/// `aux[2]` of a socketpair end.
pub const PAIR: u64 = 2;

/// What sock_diag says of a unix socket: its peer's inode (0: none), the bytes in
/// its receive queue, and its send queue; for a listener `rqueue` is the number of
/// connections waiting to be accepted and `wqueue` the listen backlog
/// (sk_ack_backlog / sk_max_ack_backlog, sk_diag_show_rqlen()).
struct UnixDiag {
    peer: u32,
    rqueue: u32,
    wqueue: u32,
}

/// One NETLINK_SOCK_DIAG request for the unix socket with inode `ino`
/// (struct unix_diag_req, linux/unix_diag.h), UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN.
fn unix_diag(ino: u64) -> std::io::Result<UnixDiag> {
    use std::os::fd::FromRawFd;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_PEER: u32 = 0x4;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    const UNIX_DIAG_PEER: u16 = 2;
    const UNIX_DIAG_RQLEN: u16 = 4;
    // SAFETY: socket(2) takes integers only.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&[0; 8]); // seq, pid
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&(ino as u32).to_ne_bytes());
    req.extend_from_slice(&(UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    // SAFETY: req is a readable buffer of its length.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 8192];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let b = &buf[..n as usize];
    let u16_at = |o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "short or unexpected sock_diag answer");
    if b.len() < 32 {
        return Err(bad());
    }
    if u16_at(4) == libc::NLMSG_ERROR as u16 {
        let e = -(u32_at(16) as i32);
        return Err(std::io::Error::from_raw_os_error(e));
    }
    let len = (u32_at(0) as usize).min(b.len());
    if u16_at(4) != SOCK_DIAG_BY_FAMILY || u32_at(20) != ino as u32 {
        return Err(bad());
    }
    let mut d = UnixDiag { peer: 0, rqueue: 0, wqueue: 0 };
    // Attributes (struct rtattr: u16 len, u16 type) after the 16-byte unix_diag_msg.
    let mut off = 32;
    while off + 4 <= len {
        let (alen, atype) = (u16_at(off) as usize, u16_at(off + 2));
        if alen < 4 || off + alen > len {
            break;
        }
        match atype {
            UNIX_DIAG_PEER if alen >= 8 => d.peer = u32_at(off + 4),
            UNIX_DIAG_RQLEN if alen >= 12 => (d.rqueue, d.wqueue) = (u32_at(off + 4), u32_at(off + 8)),
            _ => {}
        }
        off += (alen + 3) & !3;
    }
    Ok(d)
}

fn sockaddr_of(
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
        return Class::Refuse(format!("it is a socket of address family {family}; only unix, IPv4 and IPv6 sockets are restored"));
    }
    let name = sockaddr_of(&s, libc::getsockname).unwrap_or_default();
    let kind = family_name(family, ty);
    if let Ok(peer) = sockaddr_of(&s, libc::getpeername) {
        if family == libc::AF_UNIX {
            if let Some(rec) = socketpair_end(&s, f, ty, proto, all, warnings) {
                return Class::Plan(rec);
            }
        }
        let what = format!("connected {kind} socket (local {}, peer {})", describe(&name), describe(&peer)).replace("  ", " ");
        let c = disconnected::Connected { family, ty, proto, name: &name, what };
        return disconnected::socket(&s, f, &c, warnings);
    }
    let listening = q(libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) != 0;
    let mut backlog = DEFAULT_BACKLOG;
    if listening && ty == libc::SOCK_STREAM && family != libc::AF_UNIX {
        // SAFETY: tcp_info is plain data; all-zero is valid.
        let mut ti: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: ti/len describe a writable tcp_info.
        let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut ti as *mut libc::tcp_info).cast(), &mut len) };
        if r == 0 && ti.tcpi_sacked > 0 {
            backlog = ti.tcpi_sacked as u64;
            if ti.tcpi_unacked > 0 {
                warnings.push(format!(
                    "fd {}: {} connection(s) waiting to be accepted on {} are lost",
                    f.fd,
                    ti.tcpi_unacked,
                    describe(&name)
                ));
            }
        }
    } else if listening && family == libc::AF_UNIX {
        if let FdTarget::Socket(ino) = f.target {
            if let Some(d) = unix_diag(ino).ok().filter(|d| d.wqueue > 0) {
                backlog = d.wqueue as u64;
                if d.rqueue > 0 {
                    warnings.push(format!(
                        "fd {}: {} connection(s) waiting to be accepted on {} are lost",
                        f.fd,
                        d.rqueue,
                        describe(&name)
                    ));
                }
            }
        }
    } else if !listening && bytes_readable(&s).unwrap_or(0) > 0 {
        warnings.push(format!("fd {}: the data queued on socket {} is not restored", f.fd, describe(&name)));
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
    let mut rec = Planned::new(f, FdKind::Socket);
    rec.aux = [family as u64, ty as u64, listening as u64, backlog, opts, proto as u64];
    if !unbound(&name) {
        rec.blob = Some(name);
    }
    Class::Plan(rec)
}

/// The `n` bytes queued for reading on a stream socket, left in place.
pub(super) fn peek(s: &OwnedFd, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    // SAFETY: buf is writable for n bytes; MSG_PEEK leaves the data queued.
    let r = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), n, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    (r == n as isize).then_some(buf)
}

/// One end of a unix socket pair whose other end is an fd above 2 of the process.
fn socketpair_end(s: &OwnedFd, f: &FdInfo, ty: i32, proto: i32, all: &[FdInfo], warnings: &mut Vec<String>) -> Option<Planned> {
    let FdTarget::Socket(ino) = f.target else { return None };
    let d = unix_diag(ino).ok()?;
    let peer = d.peer as u64;
    let peer_fds: Vec<i32> = all.iter().filter(|o| o.target == FdTarget::Socket(peer)).map(|o| o.fd).collect();
    if d.peer == 0 || peer == ino || peer_fds.is_empty() || peer_fds.iter().any(|&fd| fd <= 2) {
        return None;
    }
    let mut rec = Planned::new(f, FdKind::Socket);
    if d.rqueue > 0 {
        // A stream's queued bytes can be read without consuming them (MSG_PEEK,
        // recv(2)); the restorer writes them into the new peer so this end reads
        // them again. Datagram boundaries cannot be peeked past the first.
        match (ty == libc::SOCK_STREAM).then(|| peek(s, d.rqueue as usize)).flatten() {
            Some(bytes) => rec.blob = Some(bytes),
            None => warnings.push(format!("fd {}: {} bytes queued on its unix socket pair are not restored", f.fd, d.rqueue)),
        }
    }
    let second = if ino > peer { OPT_PAIR_SECOND } else { 0 };
    rec.aux = [libc::AF_UNIX as u64, ty as u64, PAIR, ino.min(peer), second, proto as u64];
    Some(rec)
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
