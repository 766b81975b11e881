//! Datagrams queued on a bound unix or UDP socket (a server that receives with
//! recvfrom(2)), or on a UDP socket connect(2)ed to a peer: each came from a
//! sender whose address the receiver sees (and, connected, accepts only from its
//! peer, udp(7)). Sent again at resume from a socket with that same address — the
//! process's own socket bound to it, any socket without a name for an unnamed unix
//! sender, or, for a UDP sender outside the process, a temporary socket bound to
//! the sender's address for the moment, which works where that address is free at
//! resume (the sender has gone, as a client often has; else the restorer warns,
//! naming the fd and counting the datagrams it could not send) — each keeps its
//! boundary and its sender. A datagram from a named unix socket outside the
//! process cannot be given its sender again (binding its path would make a file
//! there): it is dropped, and a warning counts them, as it does files passed in
//! them.
//!
//! The record's data (with `aux[4]` [`OPT_SENDERS`]): per datagram an i32 sender
//! fd ([`UNNAMED`]: no name; [`BOUND_TO`]: a temporary socket bound to the address
//! that follows, as a u32 length and the sockaddr), a u32 length, the bytes.

use std::os::fd::OwnedFd;

use super::sockets::{describe, sockaddr_of, unbound};
use super::sockqueue;
use super::target::{getsockopt_int, Target};
use crate::proc::fds::{FdInfo, FdTarget};

/// `aux[4]` bit: the data holds datagrams with their senders.
pub const OPT_SENDERS: u64 = 1 << 8;
/// Sender of a datagram from an unnamed unix socket.
pub const UNNAMED: i32 = -1;
/// Sender of a datagram from a UDP socket outside the process: its address follows.
pub const BOUND_TO: i32 = -2;

/// Whether a socket bound to `bound` sends with source address `from`: the same
/// name, or for IP the same port on the wildcard address (the kernel picks the
/// source address per route, udp_sendmsg()).
fn sends_as(family: i32, bound: &[u8], from: &[u8]) -> bool {
    let addr = match family {
        libc::AF_INET => 4..8,
        libc::AF_INET6 => 8..24,
        _ => return bound == from,
    };
    bound.len() >= addr.end
        && from.len() >= addr.end
        && bound[2..4] == from[2..4]
        && (bound[addr.clone()] == from[addr.clone()] || bound[addr].iter().all(|&b| b == 0))
}

/// The fd of the process's datagram socket of `family` that sends as `addr`.
fn sender_fd(tg: &Target, all: &[FdInfo], family: i32, addr: &[u8]) -> Option<i32> {
    all.iter().filter(|o| o.fd > 2 && matches!(o.target, FdTarget::Socket(_))).find_map(|o| {
        let s = tg.getfd(o.fd).ok()?;
        let q = |opt| getsockopt_int(&s, libc::SOL_SOCKET, opt).unwrap_or(-1);
        (q(libc::SO_DOMAIN) == family
            && q(libc::SO_TYPE) == libc::SOCK_DGRAM
            && sockaddr_of(&s, libc::getsockname).is_ok_and(|b| sends_as(family, &b, addr)))
        .then_some(o.fd)
    })
}

/// The datagrams queued on `s` (fd `f`, named `name`) framed with their senders;
/// None when there are none to send again.
pub fn capture(tg: &Target, s: &OwnedFd, f: &FdInfo, name: &[u8], all: &[FdInfo], warnings: &mut Vec<String>) -> Result<Option<Vec<u8>>, String> {
    let q = sockqueue::read(s, false, None).map_err(|e| format!("its queued datagrams cannot be read: {e}"))?;
    let (mut out, mut dropped, mut files) = (Vec::new(), 0, 0);
    let family = if name.len() >= 2 { u16::from_ne_bytes([name[0], name[1]]) as i32 } else { libc::AF_UNIX };
    for ((m, fds), from) in q.messages.iter().zip(&q.fds).zip(&q.senders) {
        files += fds.len();
        let sender = if unbound(from) && family == libc::AF_UNIX { Some(UNNAMED) } else { sender_fd(tg, all, family, from) };
        match sender {
            Some(fd) => out.extend_from_slice(&fd.to_ne_bytes()),
            None if family != libc::AF_UNIX && !from.is_empty() => {
                out.extend_from_slice(&BOUND_TO.to_ne_bytes());
                out.extend_from_slice(&(from.len() as u32).to_ne_bytes());
                out.extend_from_slice(from);
            }
            None => {
                dropped += 1;
                continue;
            }
        }
        out.extend_from_slice(&(m.len() as u32).to_ne_bytes());
        out.extend_from_slice(m);
    }
    if dropped > 0 {
        warnings.push(format!(
            "fd {}: {dropped} datagram(s) queued on {} from named unix sockets outside the process are not restored (their address cannot be given again)",
            f.fd,
            describe(name)
        ));
    }
    if files > 0 {
        warnings.push(format!("fd {}: {files} fds passed in the datagrams queued on it are not restored", f.fd));
    }
    Ok((!out.is_empty()).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::sends_as;

    fn v4(a: [u8; 4], port: u16) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[2..4].copy_from_slice(&port.to_be_bytes());
        b[4..8].copy_from_slice(&a);
        b
    }

    #[test]
    fn a_wildcard_bound_socket_sends_as_any_address_of_its_port() {
        let from = v4([127, 0, 0, 1], 4000);
        assert!(sends_as(libc::AF_INET, &v4([127, 0, 0, 1], 4000), &from));
        assert!(sends_as(libc::AF_INET, &v4([0, 0, 0, 0], 4000), &from));
        assert!(!sends_as(libc::AF_INET, &v4([0, 0, 0, 0], 4001), &from));
        assert!(!sends_as(libc::AF_INET, &v4([10, 0, 0, 1], 4000), &from));
        assert!(sends_as(libc::AF_UNIX, b"\x01\x00/x", b"\x01\x00/x"));
    }
}
