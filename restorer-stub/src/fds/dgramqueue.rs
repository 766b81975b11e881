//! Datagrams queued on a bound unix or UDP socket (or a connected UDP one), sent
//! to it again once every socket exists, each from a socket with its sender's
//! address: the process's own socket of that name, a unix socket without a name,
//! or a UDP socket bound to the outside sender's address for the moment — where
//! that address is taken, those datagrams are not sent and a warning names the fd
//! and counts them (record layout: generator/src/fdplan/dgramqueue.rs). Before the
//! paths deleted after bind are removed again: the datagrams are sent to the
//! socket's name.

use super::messages::map_checked;
use super::sockets::OPT_SENDERS;
use super::{check, fail, Cx};
use crate::out::Line;
use crate::sys;
use ckpt_format::{Fd, FdKind};

const UNNAMED: i32 = -1;
const BOUND_TO: i32 = -2;
/// Temporary sockets kept bound to outside senders' addresses at once.
const MAX_BOUND: usize = 8;

/// Temporary UDP sockets bound to outside senders' addresses, closed at the end.
struct Bound {
    socks: [(usize, [u8; 28], usize); MAX_BOUND],
    n: usize,
}

impl Bound {
    /// A socket bound to `addr`; Err(errno) when it cannot be had.
    fn get(&mut self, addr: &[u8]) -> Result<usize, isize> {
        if addr.len() > 28 || addr.len() < 2 {
            return Err(sys::EINVAL);
        }
        if let Some(s) = self.socks[..self.n].iter().find(|s| &s.1[..s.2] == addr) {
            return Ok(s.0);
        }
        if self.n == MAX_BOUND {
            self.n -= 1;
            let _ = sys::close(self.socks[self.n].0);
        }
        let family = u16::from_ne_bytes([addr[0], addr[1]]) as usize;
        let x = sys::socket(family, 2 | sys::O_CLOEXEC, 0)?;
        if let Err(e) = sys::bind(x, addr) {
            let _ = sys::close(x);
            return Err(e);
        }
        let mut a = [0u8; 28];
        a[..addr.len()].copy_from_slice(addr);
        self.socks[self.n] = (x, a, addr.len());
        self.n += 1;
        Ok(x)
    }

    fn close(&mut self) {
        for s in &self.socks[..self.n] {
            let _ = sys::close(s.0);
        }
        self.n = 0;
    }
}

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
    let mut bound = Bound { socks: [(0, [0; 28], 0); MAX_BOUND], n: 0 };
    for (i, f) in cx.t.fds.iter().enumerate() {
        if f.kind != FdKind::Socket as u32 || f.aux[4] & OPT_SENDERS == 0 || f.data_len == 0 {
            continue;
        }
        let mut name = [0u8; 128];
        let n = check(f, "getsockname", sys::getsockname(cx.temp(i), &mut name));
        let to = &name[..n];
        let m = map_checked(cx, f);
        let mut rest = m.bytes(f.data_len as usize);
        let (mut lost, mut why) = (0u64, 0isize);
        let short = || -> ! { fail(f, "its queued datagrams are cut short", 0) };
        while !rest.is_empty() {
            let Some((head, mut tail)) = rest.split_first_chunk::<4>() else { short() };
            let sender = i32::from_ne_bytes(*head);
            let mut from_addr: &[u8] = &[];
            if sender == BOUND_TO {
                let Some((alen, t)) = tail.split_first_chunk::<4>() else { short() };
                let alen = u32::from_ne_bytes(*alen) as usize;
                if alen > t.len() {
                    short();
                }
                (from_addr, tail) = t.split_at(alen);
            }
            let Some((len, tail)) = tail.split_first_chunk::<4>() else { short() };
            let len = u32::from_ne_bytes(*len) as usize;
            if len > tail.len() {
                short();
            }
            rest = &tail[len..];
            let from = match sender {
                UNNAMED => *unnamed.get_or_insert_with(|| check(f, "socket", sys::socket(sys::AF_UNIX as usize, 2 | sys::O_CLOEXEC, 0))),
                BOUND_TO => match bound.get(from_addr) {
                    Ok(x) => x,
                    Err(e) => {
                        (lost, why) = (lost + 1, e);
                        continue;
                    }
                },
                _ => match cx.t.fds.binary_search_by_key(&sender, |g| g.fd) {
                    Ok(k) => cx.temp(k),
                    Err(_) => fail(f, "a queued datagram's sender is not in the image", 0),
                },
            };
            send(f, from, to, &tail[..len]);
        }
        if lost > 0 {
            let mut l = Line::new();
            l.s("warning: fd ").dec(f.fd as u64).s(": ").dec(lost).s(" datagram(s) queued from senders outside the process are not restored: their address cannot be bound again (");
            super::errno(&mut l, why).s(")").emit();
        }
    }
    bound.close();
    if let Some(u) = unnamed {
        let _ = sys::close(u);
    }
}
