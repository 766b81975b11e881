//! What only sock_diag tells of a unix socket (sock_diag(7), linux/unix_diag.h):
//! its peer's inode, its queue lengths, its shutdown state and, for a listener,
//! which sockets wait to be accepted. getsockopt has none of these for another
//! process's socket, and the peer's inode is the only way to know which fd of
//! the process holds the other end.

use std::os::fd::{AsRawFd, OwnedFd};

/// What sock_diag says of a unix socket: its peer's inode (0: none), the bytes in
/// its receive queue, and its send queue; for a listener `rqueue` is the number of
/// connections waiting to be accepted and `wqueue` the listen backlog
/// (sk_ack_backlog / sk_max_ack_backlog, sk_diag_show_rqlen()).
pub struct UnixDiag {
    pub peer: u32,
    pub rqueue: u32,
    pub wqueue: u32,
    /// sk_shutdown: SHUT_RCV | SHUT_SEND (UNIX_DIAG_SHUTDOWN).
    pub shutdown: u8,
    /// Inode of the file a path-bound socket was bound to (UNIX_DIAG_VFS); 0: none.
    pub vfs_ino: u32,
    /// For a listener, the inodes of the sockets whose connections wait to be
    /// accepted, oldest first (UNIX_DIAG_ICONS: the peer of each embryo in the
    /// accept queue, sk_diag_dump_icons()).
    pub icons: Vec<u32>,
}

/// One NETLINK_SOCK_DIAG request for the unix socket with inode `ino`
/// (struct unix_diag_req, linux/unix_diag.h), UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN.
pub fn unix_diag(ino: u64) -> std::io::Result<UnixDiag> {
    use std::os::fd::FromRawFd;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_PEER: u32 = 0x4;
    const UDIAG_SHOW_VFS: u32 = 0x2;
    const UDIAG_SHOW_ICONS: u32 = 0x8;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    const UNIX_DIAG_PEER: u16 = 2;
    const UNIX_DIAG_VFS: u16 = 1;
    const UNIX_DIAG_ICONS: u16 = 3;
    const UNIX_DIAG_RQLEN: u16 = 4;
    const UNIX_DIAG_SHUTDOWN: u16 = 6;
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
    req.extend_from_slice(&(UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    // SAFETY: req is a readable buffer of its length.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 65536];
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
    let mut d = UnixDiag { peer: 0, rqueue: 0, wqueue: 0, shutdown: 0, vfs_ino: 0, icons: Vec::new() };
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
            UNIX_DIAG_VFS if alen >= 12 => d.vfs_ino = u32_at(off + 4),
            UNIX_DIAG_SHUTDOWN if alen >= 5 => d.shutdown = b[off + 4],
            UNIX_DIAG_ICONS => d.icons = (off + 4..off + alen).step_by(4).filter(|&o| o + 4 <= off + alen).map(u32_at).collect(),
            _ => {}
        }
        off += (alen + 3) & !3;
    }
    Ok(d)
}

