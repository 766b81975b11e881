//! A unix socket whose peer is a socket of the process too: one end of a socket
//! pair (socketpair(2), recreated with socketpair at resume) or of a connection
//! through one of the process's listeners ([`unixconn`]). Either way with the data
//! queued for it, read in place ([`sockqueue`]; the files passed in it are files in
//! flight, [`super::inflight`]), and its options and shutdown state ([`sockstate`]).

use std::os::fd::OwnedFd;

use super::sockets::{OPT_MESSAGES, OPT_PAIR_SECOND, PAIR};
use super::target::{Peeked, Target};
use super::unix_diag::unix_diag;
use super::{sockqueue, sockstate, unixconn, Class, Planned};
use crate::proc::fds::{FdInfo, FdTarget};
use ckpt_format::FdKind;

/// A connected unix socket whose other end is an fd above 2 of the process: one end
/// of a connection through a listener of the process ([`unixconn`]), else one end
/// of a socket pair. With the data queued for it and its state.
pub fn unix_connected(tg: &Target, s: &OwnedFd, f: &FdInfo, ty: i32, all: &[FdInfo], warnings: &mut Vec<String>) -> Option<Class> {
    let FdTarget::Socket(ino) = f.target else { return None };
    let d = unix_diag(ino).ok()?;
    let mut rec = match unixconn::plan(tg, s, f, ty, all, warnings) {
        Some(Class::Plan(rec)) => rec,
        Some(other) => return Some(other),
        None => {
            let peer = d.peer as u64;
            let peer_fds: Vec<i32> = all.iter().filter(|o| o.target == FdTarget::Socket(peer)).map(|o| o.fd).collect();
            if d.peer == 0 || peer == ino || peer_fds.is_empty() || peer_fds.iter().any(|&fd| fd <= 2) {
                return None;
            }
            // A pair's ends are each other's peers (not so a datagram socket
            // connected to another that is not connected back).
            if unix_diag(peer).ok().is_none_or(|p| p.peer as u64 != ino) {
                return None;
            }
            let mut rec = Planned::new(f, FdKind::Socket);
            let second = if ino > peer { OPT_PAIR_SECOND } else { 0 };
            rec.aux = [libc::AF_UNIX as u64, ty as u64, PAIR, ino.min(peer), second, 0];
            rec
        }
    };
    rec.aux[5] = 0; // AF_UNIX has protocol 0 only (unix(7))
    if !matches!(rec.aux[2], unixconn::WAITING | unixconn::DGRAM_TO) {
        // Read with MSG_PEEK and SO_PEEK_OFF, left in place ([`sockqueue`]); the
        // restorer writes them into the new peer so this end reads them again.
        // Peeked once, when the files in flight were looked for ([`inflight`]).
        let q = match tg.peeked(ino) {
            Some(q) => q,
            None => match read_unix_queue(s, ino, ty) {
                Ok(Some(q)) if q.passes_fds() => {
                    return Some(Class::Refuse("it passes files in its queued messages that were not looked at".into()))
                }
                Ok(q) => Peeked { messages: q.map(|q| q.messages).unwrap_or_default(), fds: Vec::new() },
                Err(e) => return Some(Class::Refuse(format!("its queued data cannot be read: {e}"))),
            },
        };
        let passes = q.fds.iter().any(|m| !m.is_empty());
        if ty == libc::SOCK_STREAM && !passes {
            rec.blob = q.messages.into_iter().next().filter(|b| !b.is_empty());
        } else if !q.messages.is_empty() {
            rec.blob = Some(sockqueue::framed(&q.messages, &q.fds));
            rec.aux[4] |= OPT_MESSAGES;
        }
    }
    match sockstate::capture(s, f.fd, (libc::AF_UNIX, ty, 0), d.shutdown) {
        Ok((st, opts)) => (rec.sock, rec.opts) = (st, opts),
        Err(e) => return Some(Class::Refuse(format!("its options cannot be read: {e}"))),
    }
    Some(Class::Plan(rec))
}

/// What unix socket `s` (inode `ino`, type `ty`) has queued to read, in place;
/// None when it cannot have anything (no queue to peek).
pub fn read_unix_queue(s: &OwnedFd, ino: u64, ty: i32) -> std::io::Result<Option<sockqueue::Queue>> {
    let d = unix_diag(ino)?;
    if ty == libc::SOCK_STREAM && d.rqueue == 0 {
        return Ok(None);
    }
    let shut_rd = d.shutdown & ckpt_format::SHUT_RCV as u8 != 0;
    // A shut down stream or seqpacket socket reads EOF past its queue.
    let limit = (ty != libc::SOCK_DGRAM && shut_rd).then_some(d.rqueue as usize);
    sockqueue::read(s, ty == libc::SOCK_STREAM, limit).map(Some)
}
