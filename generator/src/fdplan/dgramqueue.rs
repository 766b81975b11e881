//! Datagrams queued on a bound unix datagram socket (a server that receives with
//! recvfrom(2)): each came from a sender whose address the receiver sees. Sent
//! again at resume from a socket with that same address — the process's own socket
//! bound to it, or any socket without a name for an unnamed sender — each keeps its
//! boundary and its sender. A datagram from a named socket outside the process
//! cannot be given its sender again: it is dropped, and a warning counts them, as
//! it does files passed in them.
//!
//! The record's data (with `aux[4]` [`OPT_SENDERS`]): per datagram an i32 sender fd
//! (-1: no name), a u32 length, the bytes.

use std::os::fd::OwnedFd;

use super::sockets::{describe, sockaddr_of, unbound};
use super::sockqueue;
use super::target::{getsockopt_int, Target};
use crate::proc::fds::{FdInfo, FdTarget};

/// `aux[4]` bit: the data holds datagrams with their senders.
pub const OPT_SENDERS: u64 = 1 << 8;

/// The fd of the process's unix datagram socket named `addr`.
fn sender_fd(tg: &Target, all: &[FdInfo], addr: &[u8]) -> Option<i32> {
    all.iter().filter(|o| o.fd > 2 && matches!(o.target, FdTarget::Socket(_))).find_map(|o| {
        let s = tg.getfd(o.fd).ok()?;
        let q = |opt| getsockopt_int(&s, libc::SOL_SOCKET, opt).unwrap_or(-1);
        (q(libc::SO_DOMAIN) == libc::AF_UNIX && q(libc::SO_TYPE) == libc::SOCK_DGRAM && sockaddr_of(&s, libc::getsockname).ok().as_deref() == Some(addr))
            .then_some(o.fd)
    })
}

/// The datagrams queued on `s` (fd `f`, named `name`) framed with their senders;
/// None when there are none to send again.
pub fn capture(tg: &Target, s: &OwnedFd, f: &FdInfo, name: &[u8], all: &[FdInfo], warnings: &mut Vec<String>) -> Result<Option<Vec<u8>>, String> {
    let q = sockqueue::read(s, false, None).map_err(|e| format!("its queued datagrams cannot be read: {e}"))?;
    let (mut out, mut dropped, mut files) = (Vec::new(), 0, 0);
    for ((m, fds), from) in q.messages.iter().zip(&q.fds).zip(&q.senders) {
        files += fds.len();
        let sender = if unbound(from) { Some(-1) } else { sender_fd(tg, all, from) };
        let Some(sender) = sender else {
            dropped += 1;
            continue;
        };
        out.extend_from_slice(&sender.to_ne_bytes());
        out.extend_from_slice(&(m.len() as u32).to_ne_bytes());
        out.extend_from_slice(m);
    }
    if dropped > 0 {
        warnings.push(format!(
            "fd {}: {dropped} datagram(s) queued on {} from senders outside the process are not restored (their address cannot be given again)",
            f.fd,
            describe(name)
        ));
    }
    if files > 0 {
        warnings.push(format!("fd {}: {files} fds passed in the datagrams queued on it are not restored", f.fd));
    }
    Ok((!out.is_empty()).then_some(out))
}
