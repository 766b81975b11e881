//! File descriptors of the resumed process: every saved fd number gets an
//! equivalent object again (see generator/src/fdplan.rs for what is saved and why).
//!
//! Runs after every page is in place and before the thread state. Order:
//! 1. Every fd above 2 of the resumer is closed, except the image, which is parked
//!    above every number used below (its data blobs are still to be read).
//! 2. Each record's object is built and moved at once to a temporary number
//!    `base + index`, above the highest saved fd, so no final number is taken
//!    before its turn. Records sharing a `desc` are duplicated from the first one's
//!    temporary (one open file description, as before). A new object lands on the
//!    lowest free number (open(2)), which may be a temporary not made yet: moving
//!    it there at once is harmless, and the one case of two new fds at a time (the
//!    ends of a pipe or socket pair) is ordered so neither lands on the other
//!    ([`to_temps2`]).
//!    Unix connections waiting to be accepted are made after every other one
//!    ([`unixconn`]). Then datagrams queued from other sockets are sent again and the
//!    sockets' integer options set ([`sockopts`]), still at the temporaries.
//! 3. Each temporary is dup3(2)'d to its final number with or without O_CLOEXEC;
//!    fds 0-2 last, so the resumer's stdio stays usable (and shareable) until then.
//! 4. The temporaries are closed; epoll registrations are made on the final
//!    numbers (epoll_ctl(2) keys a registration by file *and* fd number).
//! 5. The image is closed.
//! 6. The file locks are taken again ([`locks`]).
//!
//! Fds above the soft RLIMIT_NOFILE cannot be created (dup3 fails with EBADF), so
//! the soft limit is raised up to the hard one for the duration, then put back.

mod data;
mod dgramqueue;
mod disconnected;
pub mod files;
mod inotify;
mod locks;
mod messages;
mod objects;
mod pty;
mod sockets;
mod sockopts;
mod sockstate;
mod tcppair;
mod unixconn;

use crate::ctx::Ctx;
use crate::out::{self, Line, Step};
use crate::sys;
use ckpt_format::{Fd, FdKind, Tables};

/// Status flags F_SETFL can set again on a new object (fcntl(2)); O_ASYNC is left
/// out (it needs an owner, F_SETOWN, which is not saved).
const SETFL_MASK: u32 = sys::O_APPEND | sys::O_NONBLOCK | sys::O_DIRECT | sys::O_NOATIME;

/// What every builder needs: the tables, the image and where the temporaries are.
pub struct Cx<'a> {
    pub ctx: &'a Ctx,
    pub t: &'a Tables<'a>,
    /// The image, parked above the temporaries.
    pub img: usize,
    pub base: usize,
}

impl Cx<'_> {
    pub fn temp(&self, i: usize) -> usize {
        self.base + i
    }
}

pub fn kind_name(f: &Fd) -> &'static str {
    FdKind::from_u32(f.kind).map_or("?", |k| k.name())
}

/// Errno names the generic table in out.rs lacks.
pub fn errno(l: &mut Line, e: isize) -> &mut Line {
    let name = match e {
        6 => "ENXIO",
        25 => "ENOTTY",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        111 => "ECONNREFUSED",
        _ => return l.errno(e),
    };
    l.s(name).s(" (errno ").dec(e as u64).s(")")
}

/// "restore fds failed: fd N (KIND): "
pub fn head(f: &Fd) -> Line {
    let mut l = Line::new();
    l.s("restore fds failed: fd ").dec(f.fd as u64).s(" (").s(kind_name(f)).s("): ");
    l
}

/// Report a failed operation on a record and exit with the fds step's code.
pub fn fail(f: &Fd, what: &str, e: isize) -> ! {
    let mut l = head(f);
    l.s(what);
    if e != 0 {
        l.s(": ");
        errno(&mut l, e);
    }
    l.emit();
    sys::exit_group(Step::Fds as i32)
}

/// As [`fail`], naming a path (without its NUL).
pub fn fail_path(f: &Fd, what: &str, path: &[u8], e: isize) -> ! {
    let p = path.strip_suffix(&[0]).unwrap_or(path);
    let mut l = head(f);
    l.s(what).s(" ").b(p).s(": ");
    errno(&mut l, e);
    l.emit();
    sys::exit_group(Step::Fds as i32)
}

pub fn check(f: &Fd, what: &str, r: sys::Res) -> usize {
    match r {
        Ok(v) => v,
        Err(e) => fail(f, what, e),
    }
}

/// Move a freshly created object `x` to record `i`'s temporary.
pub fn to_temp(cx: &Cx, i: usize, x: usize) {
    let tmp = cx.temp(i);
    if x != tmp {
        check(&cx.t.fds[i], "dup3 to a temporary fd", sys::dup3(x, tmp, sys::O_CLOEXEC));
        let _ = sys::close(x);
    }
}

/// Move two fds created together (the ends of a pipe or socket pair) to the
/// temporaries of records `i` and `j`. If `i`'s temporary is where `b` is, `b` is
/// moved aside first (to a number that is neither), so dup3 does not close it.
pub fn to_temps2(cx: &Cx, (i, a): (usize, usize), (j, b): (usize, usize)) {
    let b = if cx.temp(i) == b {
        let n = check(&cx.t.fds[j], "F_DUPFD_CLOEXEC", sys::fcntl(b, sys::F_DUPFD_CLOEXEC, 0));
        let _ = sys::close(b);
        n
    } else {
        b
    };
    to_temp(cx, i, a);
    to_temp(cx, j, b);
}

/// Set the saved status flags (O_NONBLOCK, O_APPEND...) on a new object.
pub fn set_status(f: &Fd, fd: usize) {
    let want = f.flags & SETFL_MASK;
    let cur = check(f, "F_GETFL", sys::fcntl(fd, sys::F_GETFL, 0)) as u32;
    if cur & SETFL_MASK != want {
        check(f, "F_SETFL", sys::fcntl(fd, sys::F_SETFL, ((cur & !SETFL_MASK) | want) as usize));
    }
}

pub fn exists(fd: usize) -> bool {
    sys::fcntl(fd, sys::F_GETFD, 0).is_ok()
}

fn trace_fd(what: &str, f: &Fd) {
    if out::tracing() {
        Line::new().s(what).s(" fd ").dec(f.fd as u64).s(" (").s(kind_name(f)).s(")").emit();
    }
}

/// Raise the soft RLIMIT_NOFILE to `need` if it is lower; returns the old limits
/// when it changed them.
fn raise_nofile(need: u64, highest: i32) -> Option<[u64; 2]> {
    let mut old = [0u64; 2];
    if sys::prlimit(sys::RLIMIT_NOFILE, None, Some(&mut old)).is_err() || old[0] >= need {
        return None;
    }
    if old[1] < need {
        Line::new().s("restore fds failed: fd ").dec(highest as u64)
            .s(" and the temporary fds need an open-file limit of ").dec(need)
            .s(", but the hard RLIMIT_NOFILE is ").dec(old[1]).emit();
        sys::exit_group(Step::Fds as i32);
    }
    let new = [need, old[1]];
    out::check(sys::prlimit(sys::RLIMIT_NOFILE, Some(&new), None), Step::Fds, 0, 0);
    Some(old)
}

/// Build record `i`'s object at its temporary number.
fn build(cx: &Cx, i: usize) {
    let t = cx.t;
    let f = &t.fds[i];
    let tmp = cx.temp(i);
    if exists(tmp) {
        return; // made with an earlier record (the other end of a pipe)
    }
    if f.desc != 0 {
        if let Some(k) = (0..i).find(|&k| t.fds[k].desc == f.desc) {
            let first = &t.fds[k];
            if first.kind != FdKind::Inherit as u32 && !exists(cx.temp(k)) {
                // Built out of fd order (a file in flight sharing this description).
                build(cx, k);
            }
            if first.kind == FdKind::Inherit as u32 && !exists(cx.temp(k)) {
                // The shared description is one of the resumer's stdio fds.
                if let Err(e) = sys::dup3(first.fd as usize, cx.temp(k), sys::O_CLOEXEC) {
                    let mut l = head(f);
                    l.s("it shares the resumer's fd ").dec(first.fd as u64).s(", which is not open: ");
                    errno(&mut l, e).emit();
                    sys::exit_group(Step::Fds as i32);
                }
            }
            check(f, "dup3 of a shared open file", sys::dup3(cx.temp(k), tmp, sys::O_CLOEXEC));
            trace_fd("shared", f);
            return;
        }
    }
    match FdKind::from_u32(f.kind) {
        Some(FdKind::Inherit) if f.fd <= 2 => return,
        Some(FdKind::Inherit) => fail(f, "nothing to inherit: it shares no stdio fd", 0),
        Some(FdKind::Path) => files::path(cx, i),
        Some(FdKind::Deleted | FdKind::Memfd) => files::object(cx, i),
        Some(FdKind::DeletedDir) => files::deleted_dir(cx, i),
        Some(FdKind::Pipe) => objects::pipe(cx, i),
        Some(FdKind::Eventfd) => objects::eventfd(cx, i),
        Some(FdKind::Signalfd) => objects::signalfd(cx, i),
        Some(FdKind::Timerfd) => objects::timerfd(cx, i),
        Some(FdKind::Epoll) => objects::epoll(cx, i),
        Some(FdKind::Inotify) => inotify::inotify(cx, i),
        Some(FdKind::Socket) => sockets::socket(cx, i),
        Some(FdKind::Disconnected) => disconnected::disconnected(cx, i),
        Some(FdKind::Pty) => pty::pty(cx, i),
        // Made by the root of the tree before it forked, at a slot this process
        // inherited.
        Some(FdKind::Tree) if f.aux[2] & ckpt_format::TREE_FD_PTY_PEER != 0 => pty::peer_of_tree_master(cx, i),
        Some(FdKind::Tree) => {
            check(f, "dup3 of the tree's shared object", sys::dup3(f.aux[0] as usize, tmp, sys::O_CLOEXEC));
        }
        None => fail(f, "unknown kind", 0),
    }
    trace_fd("built", f);
}

/// Give record `i` its final number.
fn place(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    if f.kind == FdKind::Inherit as u32 && f.fd <= 2 || f.cloexec & ckpt_format::FD_INFLIGHT != 0 {
        return; // the resumer's own, or a file in flight (sent, never numbered)
    }
    let flags = if f.cloexec & 1 != 0 { sys::O_CLOEXEC } else { 0 };
    check(f, "dup3 to its number", sys::dup3(cx.temp(i), f.fd as usize, flags));
}

fn register_epoll(t: &Tables) {
    for e in t.epoll {
        let ev = sys::EpollEvent { events: e.events, data: e.data };
        if let Err(err) = sys::epoll_ctl(e.epfd as usize, sys::EPOLL_CTL_ADD, e.fd as usize, &ev) {
            let mut l = Line::new();
            l.s("restore fds failed: epoll fd ").dec(e.epfd as u64).s(": cannot register fd ")
                .dec(e.fd as u64).s(": ");
            errno(&mut l, err).emit();
            sys::exit_group(Step::Fds as i32);
        }
        out::trace("epoll registration (epfd, fd)", e.epfd as u64, e.fd as u64);
    }
}

/// The numbers this step uses: its temporaries from `base`, the image at `img_at`.
fn numbers(t: &Tables) -> (usize, usize, i32) {
    let highest = t.fds.iter().map(|f| f.fd).max().unwrap_or(2).max(2);
    let base = highest as usize + 1;
    (base, base + t.fds.len(), highest)
}

/// The first number above everything this step uses (the image may already sit
/// higher than `img_at`): the files of the Files section are parked from there
/// (objects.rs) and survive this step.
pub fn objects_base(ctx: &Ctx, t: &Tables) -> usize {
    numbers(t).1.max(ctx.fd) + 1
}

pub fn restore(ctx: &Ctx, t: &Tables) {
    let n = t.fds.len();
    let (base, img_at, highest) = numbers(t);
    let old_limit = raise_nofile(img_at as u64 + 1, highest);
    let img = if ctx.fd >= img_at {
        ctx.fd
    } else {
        out::check(sys::fcntl(ctx.fd, sys::F_DUPFD_CLOEXEC, img_at), Step::Fds, 0, 0)
    };
    // The fds of a process tree stay until every process has taken its own (tree.rs).
    let keep = |lo, hi| crate::tree::close_range_keep_slots(ctx, lo, hi);
    keep(3, img - 1);
    let objects = objects_base(ctx, t);
    if img + 1 < objects {
        keep(img + 1, objects - 1);
    }
    keep(objects + t.files.len(), u32::MAX as usize);
    let cx = Cx { ctx, t, img, base };

    // Connections waiting to be accepted last, once every accepted one exists
    // ([`unixconn`]); then the fds sharing their descriptions.
    for i in (0..n).filter(|&i| !unixconn::is_waiting(&t.fds[i])) {
        build(&cx, i);
    }
    unixconn::waiting(&cx);
    for i in 0..n {
        build(&cx, i);
    }
    files::removed_dirs_done(&cx);
    pty::finish(&cx);
    // Every socket exists: datagrams queued on bound sockets are sent from their
    // senders, to names not yet removed again.
    dgramqueue::replay(&cx);
    sockopts::restore(&cx);
    unixconn::unlink_deleted(&cx);
    for i in (0..n).filter(|&i| t.fds[i].fd > 2) {
        place(&cx, i);
    }
    for i in (0..n).filter(|&i| t.fds[i].fd <= 2) {
        place(&cx, i);
    }
    if n != 0 {
        let _ = sys::close_range(base, base + n - 1);
    }
    register_epoll(t);
    let _ = sys::close(img);
    // Last: closing a temporary fd of a locked file would drop a POSIX lock.
    locks::restore(t);
    if let Some(old) = old_limit {
        let _ = sys::prlimit(sys::RLIMIT_NOFILE, Some(&old), None);
    }
    out::trace("fds restored (count, highest)", n as u64, highest as u64);
}
