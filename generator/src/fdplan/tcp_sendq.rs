//! Bytes a TCP end of the process wrote that its peer (another end of the process)
//! has not received yet: on loopback these exist only while the peer's receive
//! window is full, and they sit in the writer's send queue, which no ordinary call
//! can read.
//!
//! TCP_REPAIR (tcp(7), needs CAP_NET_ADMIN) can: in repair mode a MSG_PEEK recv with
//! TCP_REPAIR_QUEUE = TCP_SEND_QUEUE copies the send queue, oldest byte first
//! (tcp_peek_sndq()), and TCP_QUEUE_SEQ reads the sequence number after the last
//! byte written (write_seq) on the send queue and after the last byte received
//! (rcv_nxt) on the receive queue (do_tcp_getsockopt()). The peer has received
//! everything before its rcv_nxt, so the last `write_seq - rcv_nxt` bytes of the
//! writer's send queue are the ones still to arrive. Both sockets leave repair mode
//! with TCP_REPAIR_OFF_NO_WP, so nothing is sent on the connection because of it
//! and a `--leave-running` target keeps it exactly as it was.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_NO_QUEUE: i32 = 0;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
/// Leave repair mode without the window probe a plain 0 sends (Linux 4.16).
const TCP_REPAIR_OFF_NO_WP: i32 = -1;
/// SIOCOUTQNSD: bytes written and not yet sent (write_seq - snd_nxt, tcp_ioctl()).
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

fn setopt(s: &OwnedFd, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: v is a readable int for the call.
    let r = unsafe { libc::setsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, opt, (&v as *const i32).cast(), 4) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn getopt(s: &OwnedFd, opt: i32) -> io::Result<u32> {
    let mut v: u32 = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: v is writable for len bytes.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, opt, (&mut v as *mut u32).cast(), &mut len) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(v) }
}

fn ioctl_int(s: &OwnedFd, req: libc::c_ulong) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ and SIOCOUTQNSD write one int.
    if unsafe { libc::ioctl(s.as_raw_fd(), req, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// A socket in repair mode for the guard's life.
struct Repair<'a>(&'a OwnedFd);

impl<'a> Repair<'a> {
    fn on(s: &'a OwnedFd) -> io::Result<Self> {
        setopt(s, TCP_REPAIR, 1)?;
        Ok(Repair(s))
    }

    /// TCP_QUEUE_SEQ of queue `q`.
    fn seq(&self, q: i32) -> io::Result<u32> {
        setopt(self.0, TCP_REPAIR_QUEUE, q)?;
        getopt(self.0, TCP_QUEUE_SEQ)
    }
}

impl Drop for Repair<'_> {
    fn drop(&mut self) {
        let _ = setopt(self.0, TCP_REPAIR_QUEUE, TCP_NO_QUEUE);
        let _ = setopt(self.0, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP);
    }
}

/// Bytes in `s`'s send queue, sent or not (SIOCOUTQ).
pub fn queued(s: &OwnedFd) -> usize {
    ioctl_int(s, libc::TIOCOUTQ).unwrap_or(0)
}

/// Bytes written on `s` and not yet sent (SIOCOUTQNSD): the ones surely missing
/// at its peer.
pub fn unsent(s: &OwnedFd) -> usize {
    ioctl_int(s, SIOCOUTQNSD).unwrap_or(0)
}

/// The bytes `writer` wrote that `reader` (its peer) has not received, oldest
/// first. Err(EPERM) without CAP_NET_ADMIN.
pub fn in_transit(writer: &OwnedFd, reader: &OwnedFd) -> io::Result<Vec<u8>> {
    let w = Repair::on(writer)?;
    let r = Repair::on(reader)?;
    let end = w.seq(TCP_SEND_QUEUE)?;
    let got = r.seq(TCP_RECV_QUEUE)?;
    drop(r);
    let missing = end.wrapping_sub(got) as usize;
    if missing == 0 {
        return Ok(Vec::new());
    }
    let queued = ioctl_int(writer, libc::TIOCOUTQ)?;
    if missing > queued {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{missing} bytes missing at the peer but {queued} in the send queue")));
    }
    let mut buf = vec![0u8; queued];
    // SAFETY: buf is writable for its length. tcp_peek_sndq() copies from the
    // queue's head each time, so only a whole copy is of use.
    let n = unsafe { libc::recv(writer.as_raw_fd(), buf.as_mut_ptr().cast(), queued, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != queued {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("peeked {n} of the {queued} bytes in the send queue")));
    }
    drop(w);
    Ok(buf.split_off(queued - missing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn is_root() -> bool {
        // SAFETY: no arguments.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn bytes_behind_a_full_window() {
        if !is_root() {
            eprintln!("skipped: TCP_REPAIR needs CAP_NET_ADMIN");
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        c.set_nonblocking(true).unwrap();
        let mut sent = Vec::new();
        let mut i = 0u32;
        // Write until the reader's window and the writer's buffer are both full.
        loop {
            let chunk: Vec<u8> = (0..4096u32).map(|k| i.wrapping_mul(31).wrapping_add(k) as u8).collect();
            match c.write(&chunk) {
                Ok(n) => sent.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            i += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (w, r) = (OwnedFd::from(c), OwnedFd::from(a));
        let received = super::super::target::bytes_readable(&r).unwrap();
        assert!(unsent(&w) > 0, "nothing waits in the send queue");
        let tail = in_transit(&w, &r).unwrap();
        assert_eq!(received + tail.len(), sent.len());
        assert!(tail == sent[received..]);
        // Out of repair mode, the connection still delivers every byte in order.
        let _w = std::net::TcpStream::from(w);
        let mut r = std::net::TcpStream::from(r);
        r.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut all = vec![0u8; sent.len()];
        r.read_exact(&mut all).unwrap();
        assert!(all == sent);
    }
}
