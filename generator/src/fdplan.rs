//! Which file descriptors the resumed process gets, and how: every fd number comes
//! back as it was (gaps and high numbers too), pointing at an equivalent object.
//!
//! Each fd is classified by what its `/proc/PID/fd/N` link names:
//! - fds 0-2 on a pipe, a socket, a terminal or another character device are
//!   `Inherit`: the resumer's own stdio takes their place;
//! - a path: `Path` (regular files, directories, devices; reopened with the same
//!   flags and offset) — see [`files`];
//! - a deleted file or a memfd: `Deleted` / `Memfd`, naming its file in the Files
//!   section, stored once with the mappings of it ([`objects`]); a removed
//!   directory: `DeletedDir`;
//! - a pipe with both ends in the process: `Pipe`, buffered bytes stored ([`pipes`]);
//! - eventfd, signalfd, timerfd, epoll ([`anon`]), inotify ([`inotify`]);
//! - a bound or listening socket, or one end of a unix socket pair whose other end
//!   is in the process too: `Socket` ([`sockets`]);
//! - half of a pipe, or a connected socket, whose other end is outside the process
//!   (inherited from a shell, a CI runner, make): `Disconnected`, the same kind of
//!   object whose peer has gone away ([`disconnected`]), with one warning line
//!   each; refused instead with `--strict-fds`.
//!
//! Anything else (io_uring, pidfds, FIFOs...) is refused naming the fd and the
//! reason. No fd is ever left closed: its number would be free for the next open.
//!
//! Fds that share one open file description (dup(2), inheritance) must still share
//! it after the resume, or a seek through one would no longer move the other. kcmp(2)
//! KCMP_FILE finds them ([`target`]); they get the same non-zero `desc`, and only the
//! first (lowest fd) is described in full: the stub opens it and duplicates it for
//! the others. An fd above 2 that shares an inherited stdio fd's description is
//! `Inherit` with that `desc`: the stub duplicates the resumer's fd.
//!
//! The file locks held through the fds are planned last ([`locks`]).

mod anon;
mod dgramqueue;
mod disconnected;
mod exports;
mod files;
mod inflight;
mod inet_diag;
mod inotify;
mod locks;
mod objects;
mod pipes;
mod pty;
mod ptyinput;
mod ptyqueue;
mod sockets;
mod sockopts;
mod sockqueue;
mod sockstate;
mod target;
mod tcp_sendq;
mod tcppair;
mod unix_diag;
mod unixconn;
mod unixpair;

use std::collections::HashMap;

use crate::memory::Mem;
use crate::plan::{PlannedVma, Strings};
use crate::proc::fds::{FdInfo, FdTarget};
use crate::ptrace::Seized;
use anyhow::{bail, Result};
use ckpt_format::{EpollEntry, Extent, Fd, FdKind, FileObject};
use target::Target;

/// What the stub will do for every fd, and the bytes some of them carry.
#[derive(Default)]
pub struct FdPlan {
    pub fds: Vec<Fd>,
    pub epoll: Vec<EpollEntry>,
    /// (index into `fds`, bytes): stored in the data area; emit.rs sets
    /// `data_off`/`data_len`/`data_crc`.
    pub blobs: Vec<(usize, Vec<u8>)>,
    /// File locks to take again, through the fds above ([`locks`]).
    pub locks: Vec<ckpt_format::FileLock>,
    /// The Files section and its extents, with each extent's bytes (emit.rs sets
    /// the extents' `data_off` and `crc`).
    pub files: Vec<FileObject>,
    pub extents: Vec<Extent>,
    pub extent_data: Vec<Vec<u8>>,
    /// Socket options and shutdown states, in fd order ([`sockstate`]).
    pub sockets: Vec<ckpt_format::SocketState>,
    /// Integer socket options, by fd ([`sockopts`]).
    pub sockopts: Vec<ckpt_format::SockOpt>,
    /// The TCP ends made anew at resume, held until the original is killed
    /// ([`tcppair::end_with_reset`]).
    pub tcp_ends: Vec<std::os::fd::OwnedFd>,
    /// The made-up numbers of [`Sources::exports`], in their order.
    pub exported: Vec<i32>,
}

pub use tcppair::end_with_reset;
pub use locks::needs_proc_locks;

/// One fd's record before its strings and data are placed.
#[derive(Clone)]
pub(crate) struct Planned {
    kind: FdKind,
    fd: i32,
    flags: u32,
    cloexec: bool,
    offset: u64,
    /// Bytes for the Strings section (path, memfd name, inotify watches).
    path: Vec<u8>,
    aux: [u64; 6],
    blob: Option<Vec<u8>>,
    /// A socket's options and shutdown state, when not a new socket's.
    sock: Option<ckpt_format::SocketState>,
    /// Its other integer options, when not a new socket's ([`sockopts`]).
    opts: Vec<sockopts::Captured>,
}

impl Planned {
    fn new(f: &FdInfo, kind: FdKind) -> Planned {
        Planned {
            kind,
            fd: f.fd,
            flags: f.flags & !(libc::O_CLOEXEC as u32),
            cloexec: f.cloexec(),
            offset: f.pos,
            path: Vec::new(),
            aux: [0; 6],
            blob: None,
            sock: None,
            opts: Vec::new(),
        }
    }
}

/// The verdict on one fd.
pub(crate) enum Class {
    /// Keep the resumer's fd (stdio), or share its description (above 2).
    Inherit,
    Plan(Planned),
    /// Its other end is outside the process: resumes disconnected. With what it
    /// was and what it becomes, for the warning line.
    Disconnect(Planned, String, String),
    /// Cannot be restored; the reason completes "fd N (LINK): ...".
    Refuse(String),
}

/// Open file descriptions shared by several fds: `desc[i]` for `fds[i]`, 0 when
/// the fd shares its description with no other fd.
fn descriptions(tg: &Target, fds: &[FdInfo], warnings: &mut Vec<String>) -> Vec<u32> {
    let n = fds.len();
    let mut rep: Vec<usize> = (0..n).collect();
    let mut kcmp_ok = true;
    for i in 0..n {
        // Only fds naming the same object can share a description.
        for j in (0..i).filter(|&j| rep[j] == j && fds[j].link == fds[i].link && fds[j].ino == fds[i].ino) {
            if !kcmp_ok {
                break;
            }
            match tg.same_description(fds[j].fd, fds[i].fd) {
                Ok(true) => {
                    rep[i] = j;
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    kcmp_ok = false;
                    warnings.push(format!(
                        "kcmp(2) is not available ({e}): fds sharing one open file are restored as separate opens"
                    ));
                }
            }
        }
    }
    let mut desc = vec![0u32; n];
    let mut next = 1;
    for i in 0..n {
        if rep[i] == i && rep.iter().filter(|&&r| r == i).count() > 1 {
            for k in (i..n).filter(|&k| rep[k] == i) {
                desc[k] = next;
            }
            next += 1;
        }
    }
    desc
}

/// Per pipe inode: capacity, and the buffered bytes until the read end takes them.
#[derive(Default)]
struct PipeState {
    captured: HashMap<u64, (u64, Option<Vec<u8>>)>,
}

fn classify_pipe(tg: &Target, f: &FdInfo, ino: u64, all: &[FdInfo], st: &mut PipeState) -> Class {
    if f.fd <= 2 {
        return Class::Inherit;
    }
    let ends: Vec<&FdInfo> = all.iter().filter(|o| o.target == FdTarget::Pipe(ino)).collect();
    let mode = |o: &FdInfo| o.access_mode();
    if ends.iter().any(|o| mode(o) == libc::O_RDWR as u32) {
        return Class::Refuse(format!("it is pipe:[{ino}] opened read-write, which cannot be recreated"));
    }
    // An end at fd 0-2 is the resumer's stdio after the resume: outside, too.
    let ends: Vec<&FdInfo> = ends.into_iter().filter(|o| o.fd > 2).collect();
    let first_read = ends.iter().find(|o| mode(o) == libc::O_RDONLY as u32);
    let has_write = ends.iter().any(|o| mode(o) == libc::O_WRONLY as u32);
    let Some(first_read) = first_read.filter(|_| has_write) else {
        return disconnected::pipe_end(tg, f);
    };
    let entry = match st.captured.entry(ino) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => match pipes::capture(tg, first_read.fd) {
            Ok((bytes, size)) => v.insert((size, Some(bytes))),
            Err(e) => return Class::Refuse(format!("its buffered bytes cannot be read: {e}")),
        },
    };
    let mut rec = Planned::new(f, FdKind::Pipe);
    let read = f.access_mode() == libc::O_RDONLY as u32;
    rec.aux[0] = ino;
    rec.aux[1] = !read as u64;
    rec.aux[2] = entry.0;
    rec.offset = 0;
    if f.fd == first_read.fd {
        rec.blob = entry.1.take().filter(|b| !b.is_empty());
    }
    Class::Plan(rec)
}

/// What classifying the fds accumulates besides the verdicts.
struct State<'a> {
    pipes: PipeState,
    epoll: Vec<EpollEntry>,
    objects: objects::Objects,
    dirs: files::RemovedDirs,
    strings: &'a mut Strings,
}

fn classify(tg: &Target, f: &FdInfo, all: &[FdInfo], st: &mut State, warnings: &mut Vec<String>) -> Class {
    match &f.target {
        FdTarget::File(p) => pty::classify(tg, f, all, warnings).unwrap_or_else(|| files::path(tg, f, p, warnings)),
        FdTarget::DeletedFile(p) => files::deleted(tg, f, p, &mut st.objects, &mut st.dirs, st.strings),
        FdTarget::Pipe(ino) => classify_pipe(tg, f, *ino, all, &mut st.pipes),
        FdTarget::Socket(_) => sockets::socket(tg, f, all, warnings),
        FdTarget::AnonInode(k) => match k.as_str() {
            "[eventfd]" => anon::eventfd(f, warnings),
            "[signalfd]" => anon::signalfd(f),
            "[timerfd]" => anon::timerfd(f),
            "[eventpoll]" => {
                let (c, entries) = anon::epoll(tg, f, all);
                st.epoll.extend(entries);
                c
            }
            "inotify" => {
                let queued = tg.getfd(f.fd).and_then(|d| target::bytes_readable(&d)).unwrap_or(0);
                inotify::inotify(tg.pid, f, warnings, queued)
            }
            other => Class::Refuse(format!("anon_inode:{other} objects cannot be restored")),
        },
        FdTarget::Other(_) if f.fd <= 2 => Class::Inherit,
        FdTarget::Other(_) => Class::Refuse("this kind of file cannot be restored".into()),
    }
}

/// A later fd of a shared description: the same object as `first`, described by
/// the first fd's record (the stub duplicates it).
fn copy_of(first: &Class, first_fd: i32, f: &FdInfo) -> Class {
    match first {
        Class::Inherit => Class::Inherit,
        Class::Plan(p) => Class::Plan(Planned { fd: f.fd, cloexec: f.cloexec(), blob: None, sock: None, opts: Vec::new(), ..p.clone() }),
        Class::Disconnect(p, was, becomes) => Class::Disconnect(
            Planned { fd: f.fd, cloexec: f.cloexec(), blob: None, sock: None, opts: Vec::new(), ..p.clone() },
            format!("{was} (the same open file as fd {first_fd})"),
            becomes.clone(),
        ),
        Class::Refuse(r) => Class::Refuse(format!("it shares fd {first_fd}'s open file, which cannot be restored: {r}")),
    }
}

fn inflight_flag(tg: &Target, fd: i32) -> u32 {
    if tg.is_inflight(fd) {
        ckpt_format::FD_INFLIGHT
    } else {
        0
    }
}

pub(crate) fn add_bytes(strings: &mut Strings, b: &[u8]) -> (u32, u32) {
    let off = strings.buf.len() as u32;
    strings.buf.extend_from_slice(b);
    (off, b.len() as u32)
}

/// Plan every fd of the target stopped under `t` (we are its tracer: pidfd_getfd
/// and kcmp need that access), and the files without a path behind its fds and
/// mappings (`vmas`, whose object mappings get their file). `strict`: refuse fds
/// whose other end is outside the process instead of resuming them disconnected.
/// What the fd plan is made from: the fds' /proc entries, and /proc/locks being
/// read meanwhile.
pub struct Sources<'a> {
    pub fds: &'a [FdInfo],
    pub locks: crate::proc::locks::Prefetch,
    /// Files of other processes of a tree this plan makes ([`exports`]).
    pub exports: Vec<std::os::fd::OwnedFd>,
}

pub fn plan(
    t: &Seized,
    src: Sources,
    vmas: &mut [PlannedVma],
    mem: &Mem,
    strict: bool,
    strings: &mut Strings,
    warnings: &mut Vec<String>,
) -> Result<FdPlan> {
    let Sources { fds, locks: all_locks, exports } = src;
    let tg = Target::new(t, fds.last().map_or(2, |f| f.fd));
    let pid = tg.pid;
    let mut all = fds.to_vec();
    let exported = exports::adopt(&tg, exports, &mut all).map_err(|e| anyhow::anyhow!("pid {pid}: {e}"))?;
    // The fds whose locks are taken again: the process's own and the tree's.
    let real = all.clone();
    if let Err(e) = inflight::discover(&tg, &mut all) {
        bail!("pid {pid}: {e}");
    }
    let fds = &all[..];
    crate::trace::mark("fds: in flight");
    let desc = descriptions(&tg, fds, warnings);
    crate::trace::mark("fds: descriptions");
    let mut st = State {
        pipes: PipeState::default(),
        epoll: Vec::new(),
        objects: objects::Objects::default(),
        dirs: files::RemovedDirs::new(pid),
        strings,
    };
    let mut classes: Vec<Class> = Vec::with_capacity(fds.len());
    for (i, f) in fds.iter().enumerate() {
        let first = (desc[i] != 0).then(|| (0..i).find(|&j| desc[j] == desc[i])).flatten();
        let c = match first {
            Some(j) => copy_of(&classes[j], fds[j].fd, f),
            None => classify(&tg, f, fds, &mut st, warnings),
        };
        classes.push(c);
    }
    crate::trace::mark("fds: classified");
    objects::map_vmas(pid, &mut st.objects, vmas, mem, st.strings, warnings)?;
    crate::trace::mark("fds: mapped objects");
    let State { epoll, objects, strings, .. } = st;

    let mut problems = Vec::new();
    let mut strict_refusals = false;
    let name = |f: &FdInfo| {
        if tg.is_inflight(f.fd) {
            format!("fd {} ({}, a file in flight: passed in a queued message)", f.fd, f.link)
        } else if tg.is_exported(f.fd) {
            format!("fd {} ({}, shared by other processes of the tree)", f.fd, f.link)
        } else {
            format!("fd {} ({})", f.fd, f.link)
        }
    };
    for (f, c) in fds.iter().zip(classes.iter_mut()) {
        match c {
            Class::Refuse(why) if f.fd <= 2 => {
                warnings.push(format!("fd {} ({}): {why}; the resumer's fd {} is used instead", f.fd, f.link, f.fd));
                *c = Class::Inherit;
            }
            Class::Refuse(why) => problems.push(format!("{}: {why}", name(f))),
            Class::Disconnect(_, was, _) if strict => {
                problems.push(format!("{}: its other end is not in the process: it is {was}", name(f)));
                strict_refusals = true;
            }
            Class::Disconnect(_, was, becomes) => {
                warnings.push(format!("{}: {was}; it resumes disconnected: {becomes}", name(f)));
            }
            _ => {}
        }
    }
    if !problems.is_empty() {
        bail!(
            "pid {pid}: cannot restore {}{}",
            problems.join("; "),
            if strict_refusals { " (without --strict-fds, an fd whose other end is outside the process resumes disconnected)" } else { "" }
        );
    }

    let mut out = FdPlan::default();
    for ((f, c), &d) in fds.iter().zip(classes).zip(desc.iter()) {
        let p = match c {
            Class::Refuse(_) => continue,
            Class::Inherit => {
                // cloexec matters above 2 (a duplicate of the resumer's stdio); fds
                // 0-2 stay as the resumer has them.
                let cloexec = (f.fd > 2 && f.cloexec()) as u32 | inflight_flag(&tg, f.fd);
                out.fds.push(Fd { fd: f.fd, kind: FdKind::Inherit as u32, desc: d, cloexec, ..Default::default() });
                continue;
            }
            Class::Plan(p) | Class::Disconnect(p, ..) => p,
        };
        let (path_off, path_len) = if p.path.is_empty() { (0, 0) } else { add_bytes(strings, &p.path) };
        if let Some(b) = p.blob {
            out.blobs.push((out.fds.len(), b));
        }
        if let Some(st) = p.sock {
            out.sockets.push(ckpt_format::SocketState { fd: p.fd, ..st });
        }
        if p.kind == FdKind::Socket {
            for c in &p.opts {
                let (data_off, data_len) = if c.data.is_empty() { (0, 0) } else { add_bytes(strings, &c.data) };
                out.sockopts.push(ckpt_format::SockOpt { fd: p.fd, data_off, data_len, ..c.opt });
            }
        }
        out.fds.push(Fd {
            fd: p.fd,
            kind: p.kind as u32,
            flags: p.flags,
            cloexec: p.cloexec as u32 | inflight_flag(&tg, p.fd),
            offset: p.offset,
            path_off,
            path_len,
            desc: d,
            aux: p.aux,
            ..Default::default()
        });
    }
    out.epoll = epoll;
    crate::trace::mark("fds: records");
    out.locks = locks::plan(pid, &real, &out, all_locks)?;
    crate::trace::mark("fds: locks");
    out.files = objects.files;
    out.extents = objects.extents;
    out.extent_data = objects.data;
    out.tcp_ends = tg.take_tcp_ends();
    out.exported = exported;
    Ok(out)
}

/// A duplicate of fd `fd` of the process stopped under `t` (pidfd_getfd(2)).
pub fn take_fd(t: &Seized, fd: i32) -> std::io::Result<std::os::fd::OwnedFd> {
    Target::new(t, fd).getfd(fd)
}

/// The inode of the peer of unix socket `ino` (sock_diag(7)), if connected.
pub fn unix_peer(ino: u64) -> Option<u64> {
    unix_diag::unix_diag(ino).ok().map(|d| d.peer as u64).filter(|&p| p != 0)
}

/// The buffered bytes and capacity of the pipe whose read end is `fd` in the
/// process stopped under `t`, read without consuming them (process trees: a pipe
/// between two processes).
pub fn pipe_bytes(t: &Seized, fd: i32) -> Result<(Vec<u8>, u64), String> {
    let tg = Target::new(t, fd);
    pipes::capture(&tg, fd)
}
