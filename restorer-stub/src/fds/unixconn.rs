//! Unix connections the process made to its own listening (or bound datagram)
//! sockets, made again the same way so every end keeps its name: connect(2) a new
//! socket to the restored listener, accept(2) the other end (record layout:
//! generator/src/fdplan/unixconn.rs). Connections still waiting to be accepted are
//! connected after every accepted one exists, in their queue order, and left in the
//! listener's queue ([`waiting`]). Paths deleted after they were bound are removed
//! once every socket exists ([`unlink_deleted`]).

use super::{build, check, data, fail, messages, set_status, sockets, sockstate, to_temps2, Cx};
use crate::sys;
use ckpt_format::{Fd, FdKind};

pub const CONNECTING: u64 = 3;
pub const ACCEPTED: u64 = 4;
pub const WAITING: u64 = 5;
pub const DGRAM_TO: u64 = 6;
const OPT_MESSAGES: u64 = 1 << 5;
const OPT_UNLINK: u64 = 1 << 6;

/// The live address of the socket at record `li`'s temporary fd, built first if
/// it is not yet.
fn target_name<'b>(cx: &Cx, f: &Fd, buf: &'b mut [u8; 128]) -> &'b [u8] {
    let fd = f.offset as i32;
    let Some(li) = cx.t.fds.iter().position(|g| g.fd == fd && g.kind == FdKind::Socket as u32) else {
        fail(f, "the socket it is connected through is not in the image", 0)
    };
    build(cx, li);
    let n = check(f, "getsockname of the socket it connects to", sys::getsockname(cx.temp(li), buf));
    &buf[..n]
}

/// A new unix socket of record `f`'s type, bound to its own saved name (in `path`).
fn client(cx: &Cx, f: &Fd) -> usize {
    let c = check(f, "socket", sys::socket(sys::AF_UNIX as usize, f.aux[1] as usize | sys::O_CLOEXEC, 0));
    if f.path_len != 0 {
        let name = cx.t.string(f.path_off, f.path_len);
        if let Err(e) = sys::bind(c, name) {
            if !(e == sys::EADDRINUSE && sockets::remove_stale(name, f.aux[1] as usize) && sys::bind(c, name).is_ok()) {
                fail(f, "cannot bind its own name again", e);
            }
        }
    }
    if let Some(st) = sockstate::of(cx.t, f.fd) {
        sockstate::options(f, c, st);
    }
    c
}

fn connect(f: &Fd, c: usize, to: &[u8]) {
    loop {
        match sys::connect(c, to) {
            Ok(_) => return,
            Err(sys::EINTR) => {}
            Err(e) => {
                let mut l = super::head(f);
                l.s("cannot connect to ");
                sockets::describe(&mut l, to).s(" again: ");
                super::errno(&mut l, e).emit();
                sys::exit_group(crate::out::Step::Fds as i32);
            }
        }
    }
}

/// Both ends of a connection through a listener, made by the first record of
/// either end.
pub fn connection(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let mine = f.aux[2];
    let want = if mine == CONNECTING { ACCEPTED } else { CONNECTING };
    let Some(j) = cx.t.fds.iter().position(|g| {
        g.kind == FdKind::Socket as u32 && g.aux[2] == want && g.aux[3] == f.aux[3] && g.offset == f.offset
    }) else {
        fail(f, "the other end of its connection is not in the image", 0)
    };
    let (ci, ai) = if mine == CONNECTING { (i, j) } else { (j, i) };
    let (cf, af) = (&cx.t.fds[ci], &cx.t.fds[ai]);
    let mut buf = [0u8; 128];
    let to = target_name(cx, cf, &mut buf);
    let c = client(cx, cf);
    connect(cf, c, to);
    let lfd = cx.temp(cx.t.fds.iter().position(|g| g.fd == cf.offset as i32).unwrap_or(0));
    let a = check(af, "accept", sys::accept4(lfd, sys::O_CLOEXEC));
    if let Some(st) = sockstate::of(cx.t, af.fd) {
        sockstate::options(af, a, st);
    }
    for (r, theirs) in [(cf, a), (af, c)] {
        if r.data_len != 0 && r.aux[4] & OPT_MESSAGES != 0 {
            messages::send_all(cx, r, theirs);
        } else if r.data_len != 0 {
            data::copy_to(cx, r, theirs);
        }
    }
    for (r, mine) in [(cf, c), (af, a)] {
        if let Some(st) = sockstate::of(cx.t, r.fd) {
            sockstate::shutdown(r, mine, st);
        }
        set_status(r, mine);
    }
    to_temps2(cx, (ci, c), (ai, a));
}

/// A datagram socket connected to another socket of the process.
pub fn dgram_to(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let mut buf = [0u8; 128];
    let to = target_name(cx, f, &mut buf);
    let c = client(cx, f);
    connect(f, c, to);
    if let Some(st) = sockstate::of(cx.t, f.fd) {
        sockstate::shutdown(f, c, st);
    }
    set_status(f, c);
    super::to_temp(cx, i, c);
}

/// Connections waiting to be accepted (unix, and TCP: [`super::tcppair`]),
/// connected again in their listener's queue order (by listener fd, then place),
/// after every other fd exists.
pub fn waiting(cx: &Cx) {
    let first = |k: usize| {
        let d = cx.t.fds[k].desc;
        d == 0 || !(0..k).any(|j| cx.t.fds[j].desc == d)
    };
    let mut last: Option<(u64, u64)> = None;
    loop {
        let next = (0..cx.t.fds.len())
            .filter(|&k| is_waiting(&cx.t.fds[k]) && first(k))
            .map(|k| (cx.t.fds[k].offset, cx.t.fds[k].aux[3], k))
            .filter(|&(l, p, _)| last.is_none_or(|prev| (l, p) > prev))
            .min();
        let Some((l, p, k)) = next else { return };
        last = Some((l, p));
        let f = &cx.t.fds[k];
        let c = if f.aux[0] == sys::AF_UNIX {
            let mut buf = [0u8; 128];
            let to = target_name(cx, f, &mut buf);
            let c = client(cx, f);
            connect(f, c, to);
            c
        } else {
            super::tcppair::waiting_client(cx, f)
        };
        set_status(f, c);
        super::to_temp(cx, k, c);
    }
}

/// Whether record `f` is built by [`waiting`] rather than in fd order.
pub fn is_waiting(f: &Fd) -> bool {
    f.kind == FdKind::Socket as u32 && f.aux[2] == WAITING
}

/// Remove again the paths of sockets whose path had been deleted after bind.
pub fn unlink_deleted(cx: &Cx) {
    for (i, f) in cx.t.fds.iter().enumerate() {
        if f.kind != FdKind::Socket as u32 || f.aux[4] & OPT_UNLINK == 0 {
            continue;
        }
        let mut buf = [0u8; 128];
        let Ok(n) = sys::getsockname(cx.temp(i), &mut buf) else { continue };
        let mut pbuf = [0u8; 4096];
        if let Some(p) = sockets::unix_path(&buf[..n], &mut pbuf) {
            let _ = sys::unlink(p);
        }
    }
}
