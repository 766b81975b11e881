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
//! the peek (scm_fp_dup(), "questionable" says af_unix.c): each message comes with
//! them, so the files in flight can be planned as any fd ([`super::inflight`]).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::target::getsockopt_int;

/// Largest datagram read; a larger one is refused by name (the default unix
/// datagram limit is the sender's SO_SNDBUF, at most a few hundred KiB).
const MAX_MESSAGE: usize = 4 << 20;

/// What a socket had queued to be read.
#[derive(Default)]
pub struct Queue {
    /// The messages, oldest first; a stream socket's bytes as one, or as several
    /// when files were passed with them (each part ends with the bytes they came with).
    pub messages: Vec<Vec<u8>>,
    /// The files passed with each message (SCM_RIGHTS), as our own fds.
    pub fds: Vec<Vec<OwnedFd>>,
    /// Each datagram's sender address (sockaddr bytes; `sun_family` alone when the
    /// sender had no name).
    pub senders: Vec<Vec<u8>>,
}

/// Messages framed for the image: each a native-endian u32 length, a u32 count of
/// fds passed with it, those fds' numbers in the image (i32 each, `nums[i]` for
/// message i), then its bytes (the format's `FdKind::Socket` doc).
pub fn framed(messages: &[Vec<u8>], nums: &[Vec<i32>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let fds = nums.get(i).map_or(&[][..], Vec::as_slice);
        out.extend_from_slice(&(m.len() as u32).to_ne_bytes());
        out.extend_from_slice(&(fds.len() as u32).to_ne_bytes());
        for n in fds {
            out.extend_from_slice(&n.to_ne_bytes());
        }
        out.extend_from_slice(m);
    }
    out
}

impl Queue {
    /// Whether any message carries files.
    pub fn passes_fds(&self) -> bool {
        self.fds.iter().any(|f| !f.is_empty())
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

/// What one peek gave: bytes, fds passed with them, the sender's address.
type Peek = (usize, Vec<OwnedFd>, Vec<u8>);

/// One peek, or None at the end of the queue.
fn peek_one(s: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<Peek>> {
    let mut ctl = [0u64; 512];
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of_val(&from) as libc::socklen_t;
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
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* walk stays inside the control area the kernel filled; the
    // fds in an SCM_RIGHTS message are new fds of ours, owned by nobody else.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let k = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..k {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("a queued message passes more fds than one peek can take"));
    }
    // SAFETY: the kernel wrote msg_namelen bytes (at most the buffer) into `from`.
    let sender = unsafe { std::slice::from_raw_parts((&from as *const libc::sockaddr_storage).cast::<u8>(), (msg.msg_namelen as usize).min(128)) };
    Ok(Some((n as usize, fds, sender.to_vec())))
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
        let Some((n, fds, sender)) = peek_one(s, &mut buf)? else { break };
        if stream {
            if n == 0 && fds.is_empty() {
                break; // EOF of a shut down stream
            }
            // A stream peek stops after the bytes files came with
            // (unix_stream_read_generic()), but may start with bytes written before
            // them. Where that write began cannot be told: here (6.18, probed) a
            // one-byte peek anywhere in the chunk reports the files. They are sent
            // again with the chunk's last byte alone, so a reader taking the bytes
            // before in any pieces never loses them (a read without room for
            // them would), and one taking the whole chunk gets them as before.
            let split = if fds.is_empty() { n } else { n.saturating_sub(1) };
            for (part, with) in [(&buf[..split], Vec::new()), (&buf[split..n], fds)] {
                if part.is_empty() && with.is_empty() {
                    continue;
                }
                // A new part after one that passed files, and for bytes that pass some.
                let last_passed = !q.fds.last().is_none_or(Vec::is_empty);
                let last_empty = q.messages.last().is_none_or(Vec::is_empty);
                if q.messages.is_empty() || last_passed || (!with.is_empty() && !last_empty) {
                    q.messages.push(Vec::new());
                    q.fds.push(Vec::new());
                }
                q.messages.last_mut().expect("one part").extend_from_slice(part);
                *q.fds.last_mut().expect("one part") = with;
            }
        } else {
            q.messages.push(buf[..n].to_vec());
            q.fds.push(fds);
            q.senders.push(sender);
        }
        got += n;
        if q.messages.len() > 1 << 20 {
            return Err(io::Error::other("more than a million queued messages"));
        }
    }
    Ok(q)
}
