//! Datagrams queued on a bound unix or UDP socket, sent to it again once every
//! socket exists, each from a socket with its sender's address: the process's own
//! socket of that name, or a unix socket without a name (record layout:
//! generator/src/fdplan/dgramqueue.rs). Before the paths deleted after bind are
//! removed again: the datagrams are sent to the socket's name.

use super::messages::map_checked;
use super::sockets::OPT_SENDERS;
use super::{check, fail, Cx};
use crate::sys;
use ckpt_format::{Fd, FdKind};

/// sendto(2) naming the receiver (a connected sender may still name another
/// receiver that is not connected elsewhere, unix(7)).
fn send(f: &Fd, from: usize, to: &[u8], bytes: &[u8]) {
    loop {
        match sys::sendto(from, bytes, sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL, to) {
            Ok(_) => return,
            Err(sys::EINTR) => {}
            Err(e) => fail(f, "sending its queued datagrams again", e),
        }
    }
}

/// Every bound socket's queued datagrams.
pub fn replay(cx: &Cx) {
    let mut unnamed = None;
    for (i, f) in cx.t.fds.iter().enumerate() {
        if f.kind != FdKind::Socket as u32 || f.aux[4] & OPT_SENDERS == 0 || f.data_len == 0 {
            continue;
        }
        let mut name = [0u8; 128];
        let n = check(f, "getsockname", sys::getsockname(cx.temp(i), &mut name));
        let to = &name[..n];
        let m = map_checked(cx, f);
        let mut rest = m.bytes(f.data_len as usize);
        while !rest.is_empty() {
            let Some((head, tail)) = rest.split_first_chunk::<8>() else { fail(f, "its queued datagrams are cut short", 0) };
            let sender = i32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
            let len = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]) as usize;
            if len > tail.len() {
                fail(f, "its queued datagrams are cut short", 0);
            }
            let from = if sender < 0 {
                *unnamed.get_or_insert_with(|| check(f, "socket", sys::socket(sys::AF_UNIX as usize, 2 | sys::O_CLOEXEC, 0)))
            } else {
                match cx.t.fds.binary_search_by_key(&sender, |g| g.fd) {
                    Ok(k) => cx.temp(k),
                    Err(_) => fail(f, "a queued datagram's sender is not in the image", 0),
                }
            };
            send(f, from, to, &tail[..len]);
            rest = &tail[len..];
        }
    }
    if let Some(u) = unnamed {
        let _ = sys::close(u);
    }
}
