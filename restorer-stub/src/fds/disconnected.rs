//! Fds whose other end was outside the process, made again as the same kind of
//! object whose peer has gone away (why and what each becomes:
//! generator/src/fdplan/disconnected.rs; record layout: the format's
//! `FdKind::Disconnected`).
//!
//! - Pipe: pipe2(2), then the end the process did not hold is closed: a read end
//!   reads the saved bytes, then EOF; a write end gets EPIPE (pipe(7)).
//! - Unix socket: socketpair(2) of the saved type, the saved queued bytes written
//!   into the other end, which is then closed: a stream or seqpacket end reads the
//!   bytes, then EOF, and writes fail with EPIPE; a datagram end's next send fails
//!   with ECONNREFUSED (unix_dgram_sendmsg() on a dead peer). A datagram end is
//!   bound to its saved address again where possible.
//! - TCP: a new socket shut down both ways. shutdown(2) of a never-connected TCP
//!   socket returns ENOTCONN but still marks it shut (inet_shutdown()), so reads
//!   give EOF and writes EPIPE. UDP: a new socket bound to its saved address where
//!   possible.

use super::{check, data, fail, set_status, to_temp, Cx};
use crate::out::Line;
use crate::sys;
use ckpt_format::{Fd, DISC_PIPE, DISC_SOCKET};

pub fn disconnected(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let x = match f.aux[0] {
        DISC_PIPE => pipe(cx, f),
        DISC_SOCKET => socket(cx, f),
        _ => fail(f, "unknown kind of disconnected fd", 0),
    };
    set_status(f, x);
    to_temp(cx, i, x);
}

fn pipe(cx: &Cx, f: &Fd) -> usize {
    let mut p = [0i32; 2];
    let direct = if f.flags & sys::O_DIRECT != 0 { sys::O_DIRECT as usize } else { 0 };
    check(f, "pipe2", sys::pipe2(&mut p, sys::O_NONBLOCK as usize | direct));
    let (r, w) = (p[0] as usize, p[1] as usize);
    if f.aux[2] > sys::fcntl(w, sys::F_GETPIPE_SZ, 0).unwrap_or(0) as u64 {
        // Above /proc/sys/fs/pipe-max-size this needs CAP_SYS_RESOURCE; the bytes
        // below fail with a message if they then do not fit.
        let _ = sys::fcntl(w, sys::F_SETPIPE_SZ, f.aux[2] as usize);
    }
    if f.aux[1] == 0 {
        if f.data_len != 0 {
            data::copy_to(cx, f, w);
        }
        let _ = sys::close(w);
        r
    } else {
        let _ = sys::close(r);
        w
    }
}

fn warn_unbound(f: &Fd, addr: &[u8], e: isize) {
    let mut l = Line::new();
    l.s("warning: fd ").dec(f.fd as u64).s(" (disconnected socket): cannot bind to ");
    super::sockets::describe(&mut l, addr).s(" again: ");
    super::errno(&mut l, e).s("; it stays unbound").emit();
}

fn socket(cx: &Cx, f: &Fd) -> usize {
    let [_, family, ty, proto, _, _] = f.aux;
    let stream = ty == sys::SOCK_STREAM || ty == sys::SOCK_SEQPACKET;
    let mut abuf = [0u8; 128];
    if family == sys::AF_UNIX {
        let mut sv = [0i32; 2];
        check(f, "socketpair", sys::socketpair(family as usize, ty as usize | sys::SOCK_NONBLOCK, proto as usize, &mut sv));
        let (mine, peer) = (sv[0] as usize, sv[1] as usize);
        if stream && f.data_len != 0 {
            data::copy_to(cx, f, peer);
        }
        let _ = sys::close(peer);
        if !stream && f.data_len != 0 {
            let addr = data::read_small(cx, f, &mut abuf);
            let r = match sys::bind(mine, addr) {
                Err(sys::EADDRINUSE) if super::sockets::remove_stale(addr, ty as usize) => sys::bind(mine, addr),
                r => r,
            };
            if let Err(e) = r {
                warn_unbound(f, addr, e);
            }
        }
        return mine;
    }
    let x = check(f, "socket", sys::socket(family as usize, ty as usize, proto as usize));
    if stream {
        // ENOTCONN is expected: the socket is marked shut all the same.
        let _ = sys::shutdown(x, sys::SHUT_RDWR);
    } else if f.data_len != 0 {
        let addr = data::read_small(cx, f, &mut abuf);
        // The original's socket may linger on the port for a moment (socket(7)).
        let _ = sys::setsockopt_int(x, sys::SOL_SOCKET, sys::SO_REUSEADDR, 1);
        if let Err(e) = sys::bind(x, addr) {
            warn_unbound(f, addr, e);
        }
        let _ = sys::setsockopt_int(x, sys::SOL_SOCKET, sys::SO_REUSEADDR, 0);
    }
    x
}
