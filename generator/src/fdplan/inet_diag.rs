//! What only sock_diag tells of a TCP socket of another process: its shutdown
//! state (sk_shutdown, the INET_DIAG_SHUTDOWN attribute that inet_diag puts in
//! every answer, inet_diag_msg_attrs_fill()). getsockopt has no way to read it, and
//! TCP_INFO's state alone cannot tell a shutdown(SHUT_RD) (a local flag, nothing is
//! sent) from none.
//!
//! One NETLINK_SOCK_DIAG dump of the family's TCP sockets (sock_diag(7),
//! linux/inet_diag.h), matched by inode: the exact-socket query would need the
//! socket's cookie, which only another dump tells.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_SHUTDOWN: u16 = 8;
/// struct nlmsghdr (16) + struct inet_diag_req_v2 (56).
const REQ_LEN: usize = 72;
/// struct inet_diag_msg: family, state, timer, retrans, sockid (48), expires,
/// rqueue, wqueue, uid, inode.
const MSG_LEN: usize = 72;
const INODE_AT: usize = 68;

/// The request: every state of `family`'s TCP sockets, no extensions.
fn request(family: i32) -> Vec<u8> {
    let mut req = Vec::with_capacity(REQ_LEN);
    req.extend_from_slice(&(REQ_LEN as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&[0; 8]); // seq, pid
    req.extend_from_slice(&[family as u8, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.resize(REQ_LEN, 0); // a zero sockid: no filter
    req
}

/// The shutdown state in one `inet_diag_msg` with attributes (`m`, one netlink
/// message's payload), when its inode is `ino`.
fn shutdown_in(m: &[u8], ino: u32) -> Option<u8> {
    let u16_at = |o: usize| u16::from_ne_bytes([m[o], m[o + 1]]);
    if m.len() < MSG_LEN || u32::from_ne_bytes(m[INODE_AT..INODE_AT + 4].try_into().ok()?) != ino {
        return None;
    }
    let mut off = MSG_LEN;
    while off + 4 <= m.len() {
        let (alen, atype) = (u16_at(off) as usize, u16_at(off + 2));
        if alen < 4 || off + alen > m.len() {
            break;
        }
        if atype == INET_DIAG_SHUTDOWN && alen >= 5 {
            return Some(m[off + 4]);
        }
        off += (alen + 3) & !3;
    }
    Some(0)
}

/// sk_shutdown (bit 0: receive side, bit 1: send side, as the format's SHUT_RCV
/// and SHUT_SEND) of the TCP socket of `family` with inode `ino`; Ok(None) when no
/// such socket is in this network namespace.
pub fn tcp_shutdown(family: i32, ino: u64) -> io::Result<Option<u8>> {
    // SAFETY: socket(2) takes integers only.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = request(family);
    // SAFETY: req is a readable buffer of its length.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut found = None;
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let b = &buf[..n as usize];
        let mut off = 0;
        // Each datagram holds whole netlink messages, each aligned to 4 bytes.
        while off + 16 <= b.len() {
            let len = u32::from_ne_bytes(b[off..off + 4].try_into().unwrap_or_default()) as usize;
            let ty = u16::from_ne_bytes([b[off + 4], b[off + 5]]);
            if len < 16 || off + len > b.len() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short sock_diag answer"));
            }
            match ty as i32 {
                libc::NLMSG_DONE => return Ok(found),
                libc::NLMSG_ERROR => {
                    let e = i32::from_ne_bytes(b.get(off + 16..off + 20).and_then(|x| x.try_into().ok()).unwrap_or_default());
                    return Err(io::Error::from_raw_os_error(-e));
                }
                _ if ty == SOCK_DIAG_BY_FAMILY && found.is_none() => found = shutdown_in(&b[off + 16..off + len], ino as u32),
                _ => {}
            }
            off += (len + 3) & !3;
        }
        if n == 0 {
            return Ok(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn inode(s: &impl AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd())).unwrap().ino()
    }

    #[test]
    fn request_layout() {
        let r = request(libc::AF_INET);
        assert_eq!(r.len(), REQ_LEN);
        assert_eq!(r[16], libc::AF_INET as u8);
        assert_eq!(r[17], libc::IPPROTO_TCP as u8);
        assert_eq!(&r[20..24], &u32::MAX.to_ne_bytes());
    }

    #[test]
    fn shutdown_of_a_loopback_connection() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        assert_eq!(tcp_shutdown(libc::AF_INET, inode(&c)).unwrap(), Some(0));
        c.write_all(b"x").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(tcp_shutdown(libc::AF_INET, inode(&c)).unwrap(), Some(2));
        // The FIN reaches the other end: its receive side is shut (tcp_fin()).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tcp_shutdown(libc::AF_INET, inode(&a)).unwrap() != Some(1) {
            assert!(std::time::Instant::now() < deadline, "the FIN never arrived");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(tcp_shutdown(libc::AF_INET, u32::MAX as u64).unwrap(), None);
    }
}
