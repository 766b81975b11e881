//! Fds whose other end is outside the process: a pipe leaked by a shell or a CI
//! runner, make's jobserver, a connection to a daemon. Their peer cannot come
//! along, and closing them would free their number for a later open, so they
//! resume *disconnected*: the same kind of object (fstat says S_IFIFO or
//! S_IFSOCK), at the same number with the same flags, whose peer has gone away.
//!
//! - A pipe's read end delivers the bytes that were buffered, then EOF. The bytes
//!   are copied with tee(2), never taken: the original (with `--leave-running`)
//!   and any other reader of that pipe still find them.
//! - A pipe's write end fails with EPIPE (SIGPIPE as its disposition says).
//! - A connected stream socket (unix or TCP) reads EOF and fails writes with
//!   EPIPE; a unix one first delivers the bytes that were queued for it (MSG_PEEK,
//!   left in place). Its local address is not kept.
//! - A datagram socket keeps its local address when it had one (bound again at
//!   resume where possible) but no peer: a unix one fails its next send with
//!   ECONNREFUSED, as when a peer closes (unix(7)). (A connected UDP socket never
//!   comes here: it is connected again, [`sockets`].)
//!
//! Record layout: the format's `FdKind::Disconnected`.

use std::os::fd::OwnedFd;

use super::{pipes, sockets};
use super::target::{bytes_readable, Target};
use super::{Class, Planned};
use crate::proc::fds::FdInfo;
use ckpt_format::{FdKind, DISC_PIPE, DISC_SOCKET};

/// The saved record plus what the fd was and becomes, for the warning line.
fn disconnect(mut rec: Planned, f: &FdInfo, was: String, becomes: &str) -> Class {
    rec.path = f.link.as_bytes().to_vec();
    Class::Disconnect(rec, was, becomes.to_owned())
}

/// One end of a pipe whose other end no fd above 2 of the process holds.
pub fn pipe_end(tg: &Target, f: &FdInfo) -> Class {
    let read = f.access_mode() == libc::O_RDONLY as u32;
    let mut rec = Planned::new(f, FdKind::Disconnected);
    rec.offset = 0;
    rec.aux[0] = DISC_PIPE;
    rec.aux[1] = !read as u64;
    let dup = match tg.getfd(f.fd) {
        Ok(d) => d,
        Err(e) => return Class::Refuse(format!("cannot reach the pipe: {e}")),
    };
    rec.aux[2] = super::target::fcntl_int(&dup, libc::F_GETPIPE_SZ).unwrap_or(0) as u64;
    if !read {
        return disconnect(
            rec,
            f,
            "the write end of a pipe whose read end is outside the process".into(),
            "writes fail with EPIPE (and raise SIGPIPE)",
        );
    }
    match pipes::capture(tg, f.fd) {
        Ok((bytes, _)) if !bytes.is_empty() => {
            let n = bytes.len();
            rec.blob = Some(bytes);
            disconnect(
                rec,
                f,
                "the read end of a pipe whose write end is outside the process".into(),
                &format!("reads give the {n} buffered bytes, then EOF"),
            )
        }
        Ok(_) => disconnect(
            rec,
            f,
            "the read end of a pipe whose write end is outside the process".into(),
            "reads give EOF",
        ),
        Err(e) => Class::Refuse(format!("its buffered bytes cannot be read: {e}")),
    }
}

/// What the freezer learnt of a connected socket.
pub struct Connected<'a> {
    pub family: i32,
    pub ty: i32,
    pub proto: i32,
    /// getsockname, as sockaddr bytes.
    pub name: &'a [u8],
    /// What it is, for messages: "connected unix socket (local X, peer Y)".
    pub what: String,
}

/// A socket connected to a peer outside the process (`s` is a duplicate of it).
pub fn socket(s: &OwnedFd, f: &FdInfo, c: &Connected, warnings: &mut Vec<String>) -> Class {
    let mut rec = Planned::new(f, FdKind::Disconnected);
    rec.offset = 0;
    rec.aux[..4].copy_from_slice(&[DISC_SOCKET, c.family as u64, c.ty as u64, c.proto as u64]);
    let stream = c.ty == libc::SOCK_STREAM || c.ty == libc::SOCK_SEQPACKET;
    let n = bytes_readable(s).unwrap_or(0);
    let becomes = if stream {
        if n > 0 && c.family == libc::AF_UNIX {
            match sockets::peek(s, n) {
                Some(b) => rec.blob = Some(b),
                None => warnings.push(format!("fd {}: the {n} bytes queued on it are not restored", f.fd)),
            }
        } else if n > 0 {
            warnings.push(format!("fd {}: the {n} bytes queued on it are not restored", f.fd));
        }
        match rec.blob.as_ref().map(Vec::len) {
            Some(k) => format!("reads give the {k} queued bytes, then EOF; writes fail with EPIPE"),
            None => "reads give EOF; writes fail with EPIPE".to_owned(),
        }
    } else {
        if n > 0 {
            warnings.push(format!("fd {}: the datagrams queued on it are not restored", f.fd));
        }
        let bound = !sockets::unbound(c.name);
        if bound {
            rec.blob = Some(c.name.to_vec());
        }
        let addr = if bound { format!("keeps its address {}", sockets::describe(c.name)) } else { "stays unbound".into() };
        let send = if c.family == libc::AF_UNIX { "its next send fails with ECONNREFUSED" } else { "it has no destination" };
        format!("{addr}; {send}")
    };
    disconnect(rec, f, format!("a {} whose peer is outside the process", c.what), &becomes)
}

/// A TCP socket whose connection has ended while the process kept its fd: both
/// directions shut and the state back to CLOSE (FINs both ways, or a reset:
/// tcp_done() sets sk_shutdown to SHUTDOWN_MASK). It reads EOF and fails writes
/// with EPIPE, which is what a disconnected socket does, so it resumes as one
/// without a warning; its old port is not taken again (the kernel freed it when
/// the connection ended, inet_put_port() in tcp_set_state(), and a TIME_WAIT may
/// hold it). Bytes still unread go the way of [`socket`] (a warning counts them).
pub fn ended_tcp(s: &OwnedFd, f: &FdInfo, (family, ty, proto): (i32, i32, i32), name: &[u8], warnings: &mut Vec<String>) -> Class {
    if bytes_readable(s).unwrap_or(0) > 0 {
        let what = format!("TCP socket (local {}) whose connection has ended", sockets::describe(name));
        return socket(s, f, &Connected { family, ty, proto, name, what }, warnings);
    }
    let mut rec = Planned::new(f, FdKind::Disconnected);
    rec.offset = 0;
    rec.aux[..4].copy_from_slice(&[DISC_SOCKET, family as u64, ty as u64, proto as u64]);
    rec.path = f.link.as_bytes().to_vec();
    Class::Plan(rec)
}

