//! The data queued on a socket of the stopped process, read without taking it.
//!
//! The kernel has no interface to read another process's socket queue; the only way
//! is to receive from the socket itself, through a duplicate of its fd
//! (pidfd_getfd(2), [`super::target`]), with MSG_PEEK (recv(2)) so nothing is
//! consumed. One peek returns one datagram (or, on a stream, the bytes up to the next
//! message that carries fds or another writer's credentials, unix_stream_read_generic()).
//! SO_PEEK_OFF (socket(7); unix sockets of every type on this kernel, probed) makes
//! each peek start where the previous one ended, so a loop of peeks walks the whole
//! queue, message by message, leaving it as it was. The option belongs to the socket,
//! which the process shares with us: its old value is put back at once.
//!
//! fds passed with SCM_RIGHTS in a peeked message are installed in *our* process by
//! the peek (scm_fp_dup(), "questionable" says af_unix.c); they are counted and
//! closed here, and not restored.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::target::getsockopt_int;

/// Largest datagram read; a larger one is refused by name (the default unix
/// datagram limit is the sender's SO_SNDBUF, at most a few hundred KiB).
const MAX_MESSAGE: usize = 4 << 20;

/// What a socket had queued to be read.
#[derive(Default)]
pub struct Queue {
    /// The messages, oldest first; a stream socket's bytes as one.
    pub messages: Vec<Vec<u8>>,
    /// fds passed with SCM_RIGHTS in them (not restored).
    pub passed_fds: usize,
}

impl Queue {
    /// The messages framed for the image: each a native-endian u32 length, then its
    /// bytes (the format's `FdKind::Socket` doc).
    pub fn framed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.messages.iter().map(|m| m.len() + 4).sum());
        for m in &self.messages {
            out.extend_from_slice(&(m.len() as u32).to_ne_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    pub fn bytes(&self) -> usize {
        self.messages.iter().map(Vec::len).sum()
    }
}

fn set_peek_off(s: &OwnedFd, v: i32) -> io::Result<()> {
    // SAFETY: the option value is an int on our stack.
    let r = unsafe {
        libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, (&v as *const i32).cast(), 4)
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One peek: (bytes, fds passed with it), or None at the end of the queue.
fn peek_one(s: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, usize)>> {
    let mut ctl = [0u64; 512];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctl);
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
    // SAFETY: msg points at a writable buffer and control area of the sizes it gives.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EAGAIN) { Ok(None) } else { Err(e) };
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::other(format!("a queued message is larger than {MAX_MESSAGE} bytes")));
    }
    let mut fds = 0;
    // SAFETY: the CMSG_* walk stays inside the control area the kernel filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let k = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..k {
                    libc::close(data.add(i).read_unaligned());
                }
                fds += k;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some((n as usize, fds)))
}

/// Every message queued on `s` (a duplicate of the process's fd), left in place.
/// `total`: the bytes queued, as sock_diag counts them for a stream or seqpacket
/// socket, to stop at when the socket's receive side is shut down (a peek past them
/// reads EOF, which looks like an empty message); None: read until the queue is
/// empty.
pub fn read(s: &OwnedFd, stream: bool, total: Option<usize>) -> io::Result<Queue> {
    let old = getsockopt_int(s, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    set_peek_off(s, 0)?;
    let r = walk(s, stream, total);
    set_peek_off(s, old)?;
    r
}

fn walk(s: &OwnedFd, stream: bool, total: Option<usize>) -> io::Result<Queue> {
    let mut q = Queue::default();
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut got = 0;
    while total.is_none_or(|t| got < t) {
        let Some((n, fds)) = peek_one(s, &mut buf)? else { break };
        q.passed_fds += fds;
        if stream {
            if n == 0 {
                break; // EOF of a shut down stream
            }
            q.messages.resize_with(1, Vec::new);
            q.messages[0].extend_from_slice(&buf[..n]);
        } else {
            q.messages.push(buf[..n].to_vec());
        }
        got += n;
        if q.messages.len() > 1 << 20 {
            return Err(io::Error::other("more than a million queued messages"));
        }
    }
    Ok(q)
}
