//! Sockets that are bound or listening but not connected (a server's listening
//! socket, a bound UDP socket): recreated at resume with socket(2), bind(2) and
//! listen(2) on the same address, so a resumed server accepts new connections on
//! the same port. A connected socket's peer is elsewhere and its TCP state cannot be
//! rebuilt by a user-space restorer: such sockets are refused, naming the peer.
//!
//! Everything is asked of the socket itself through a duplicate (pidfd_getfd):
//! SO_DOMAIN, SO_TYPE, SO_PROTOCOL, SO_ACCEPTCONN, getsockname, getpeername
//! (socket(7)). The listen backlog of a TCP socket is in TCP_INFO: for a socket in
//! LISTEN state `tcpi_sacked` is sk_max_ack_backlog and `tcpi_unacked` the number of
//! connections waiting in the accept queue (tcp_get_info()); for other sockets it is
//! unknown and [`DEFAULT_BACKLOG`] is used.
//!
//! Record layout (an extension of the format's `FdKind::Socket` doc): `aux[0]`
//! family, `aux[1]` type, `aux[2]` 1 if listening, `aux[3]` backlog, `aux[4]` the
//! boolean options below ([`OPT_REUSEADDR`]...), `aux[5]` protocol; the address
//! from getsockname in `data`, empty for a socket never bound.

use std::os::fd::{AsRawFd, OwnedFd};

use super::target::{bytes_readable, getsockopt_int, Target};
use super::{Class, Planned};
use crate::proc::fds::FdInfo;
use ckpt_format::FdKind;

/// listen(2) backlog when the socket cannot tell (Linux's SOMAXCONN before 5.4).
pub const DEFAULT_BACKLOG: u64 = 128;

/// `aux[4]` bits: the socket options restored as they were.
pub const OPT_REUSEADDR: u64 = 1 << 0;
pub const OPT_REUSEPORT: u64 = 1 << 1;
pub const OPT_V6ONLY: u64 = 1 << 2;
pub const OPT_KEEPALIVE: u64 = 1 << 3;
pub const OPT_BROADCAST: u64 = 1 << 4;

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
/// "@abstract", "an unnamed unix socket".
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
                None => "an unnamed unix socket".into(),
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
fn unbound(addr: &[u8]) -> bool {
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

pub fn socket(tg: &Target, f: &FdInfo, warnings: &mut Vec<String>) -> Class {
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
        return Class::Refuse(format!(
            "it is a connected {kind} socket (local {}, peer {}); connected sockets cannot be restored",
            describe(&name),
            describe(&peer)
        ));
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
        assert_eq!(describe(&un), "an unnamed unix socket");
        assert!(unbound(&un));
        un.extend_from_slice(b"/run/x.sock\0");
        assert_eq!(describe(&un), "/run/x.sock");
        let mut abs = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        abs.extend_from_slice(b"\0name");
        assert_eq!(describe(&abs), "@name");
    }
}
