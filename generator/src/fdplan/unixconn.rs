//! Unix stream and seqpacket connections the process made to one of its own
//! listening sockets: the connecting end, the end accept(2) returned, and
//! connections still waiting in the listener's accept queue.
//!
//! socketpair(2) would give the two ends no names, and bind(2) cannot give the
//! accepted end the listener's name (it is taken by the listener), so the restorer
//! makes the connection as the process did: connect(2) a new socket to the
//! restored listener, then accept(2) it. Accepted connections are made before any
//! waiting one is connected, so each accept returns the right one; waiting ones are
//! connected in their queue order and left for the process to accept.
//!
//! Which sockets wait on a listener: sock_diag's UNIX_DIAG_ICONS, the peers of the
//! embryo sockets in its queue ([`super::unix_diag`]). Bytes a waiting client sent
//! are in its embryo, which has no fd and cannot be peeked: a warning says so.
//!
//! Record layout (the format's `FdKind::Socket`): `aux[2]` [`CONNECTING`],
//! [`ACCEPTED`] or [`WAITING`], `offset` the listener's fd; for the two ends of a
//! connection `aux[3]` the connection's id (the smaller inode), for a waiting one
//! its place in the queue; the connecting end's own bound name, if any, in `path`.

use std::os::fd::OwnedFd;

use super::sockets::{describe, sockaddr_of, unbound, OPT_UNLINK};
use super::target::{getsockopt_int, Target};
use super::unix_diag::{unix_diag, UnixDiag};
use super::{Class, Planned};
use crate::proc::fds::{FdInfo, FdTarget};
use ckpt_format::FdKind;

/// `aux[2]`: the end that called connect(2).
pub const CONNECTING: u64 = 3;
/// `aux[2]`: the end accept(2) returned.
pub const ACCEPTED: u64 = 4;
/// `aux[2]`: a connecting end whose connection waits to be accepted.
pub const WAITING: u64 = 5;
/// `aux[2]`: a datagram socket connected to a bound socket of the process that is
/// not connected back (`offset`: that socket's fd).
pub const DGRAM_TO: u64 = 6;

/// A listening unix socket of the process: its fd, inode and name.
struct Listener {
    fd: i32,
    ino: u64,
    name: Vec<u8>,
}

fn listeners(tg: &Target, all: &[FdInfo], ty: i32) -> Vec<Listener> {
    let mut out = Vec::new();
    for o in all.iter().filter(|o| o.fd > 2) {
        let FdTarget::Socket(ino) = o.target else { continue };
        let Ok(s) = tg.getfd(o.fd) else { continue };
        let q = |opt| getsockopt_int(&s, libc::SOL_SOCKET, opt).unwrap_or(-1);
        if q(libc::SO_DOMAIN) != libc::AF_UNIX || q(libc::SO_TYPE) != ty || q(libc::SO_ACCEPTCONN) != 1 {
            continue;
        }
        if out.iter().any(|l: &Listener| l.ino == ino) {
            continue; // a dup of one already listed
        }
        if let Ok(name) = sockaddr_of(&s, libc::getsockname) {
            out.push(Listener { fd: o.fd, ino, name });
        }
    }
    out
}

/// Whether a unix socket at path `name` was deleted (or replaced) since it was
/// bound: the file at the path is not the socket's (UNIX_DIAG_VFS, sock_diag(7)).
pub fn path_deleted(name: &[u8], d: &UnixDiag) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let p = &name[2..];
    if p.first().is_none_or(|&c| c == 0) || d.vfs_ino == 0 {
        return false; // unnamed or abstract
    }
    let p = &p[..p.iter().position(|&c| c == 0).unwrap_or(p.len())];
    std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(p)).map_or(true, |m| m.ino() != d.vfs_ino as u64)
}

/// A connected unix stream or seqpacket socket (`s`, fd `f`, inode `ino`) whose
/// connection goes through a listener of the process; None when it does not.
pub fn plan(tg: &Target, s: &OwnedFd, f: &FdInfo, ty: i32, all: &[FdInfo], warnings: &mut Vec<String>) -> Option<Class> {
    let FdTarget::Socket(ino) = f.target else { return None };
    let d = unix_diag(ino).ok()?;
    let name = sockaddr_of(s, libc::getsockname).ok()?;
    let peer_name = sockaddr_of(s, libc::getpeername).ok()?;
    if ty == libc::SOCK_DGRAM {
        return dgram_to(f, &d, &name, &peer_name, all, warnings);
    }
    let ls = listeners(tg, all, ty);
    // Waiting in a listener's queue: its peer is the embryo there.
    for l in &ls {
        let Ok(ld) = unix_diag(l.ino) else { continue };
        if let Some(pos) = ld.icons.iter().position(|&i| i as u64 == ino) {
            let mut rec = Planned::new(f, FdKind::Socket);
            if d.wqueue > 0 {
                warnings.push(format!(
                    "fd {}: what it sent on its connection to {}, not yet accepted, is not restored",
                    f.fd,
                    describe(&l.name)
                ));
            }
            own_name(&mut rec, &name, &d);
            rec.offset = l.fd as u64;
            rec.aux = [libc::AF_UNIX as u64, ty as u64, WAITING, pos as u64, rec.aux[4], 0];
            return Some(Class::Plan(rec));
        }
    }
    let peer = d.peer as u64;
    if peer == 0 || !all.iter().any(|o| o.fd > 2 && o.target == FdTarget::Socket(peer)) {
        return None;
    }
    let (role, l) = if let Some(l) = ls.iter().find(|l| !unbound(&name) && l.name == name) {
        (ACCEPTED, l)
    } else if let Some(l) = ls.iter().find(|l| !unbound(&peer_name) && l.name == peer_name) {
        (CONNECTING, l)
    } else {
        return None;
    };
    let mut rec = Planned::new(f, FdKind::Socket);
    if role == CONNECTING {
        own_name(&mut rec, &name, &d);
    }
    rec.offset = l.fd as u64;
    rec.aux = [libc::AF_UNIX as u64, ty as u64, role, ino.min(peer), rec.aux[4], 0];
    Some(Class::Plan(rec))
}

/// A datagram socket connect(2)ed to a named socket of the process that is not
/// connected back to it (a socket pair's ends are each other's peers).
fn dgram_to(f: &FdInfo, d: &UnixDiag, name: &[u8], peer_name: &[u8], all: &[FdInfo], warnings: &mut Vec<String>) -> Option<Class> {
    let peer = d.peer as u64;
    let target = all.iter().find(|o| o.fd > 2 && o.target == FdTarget::Socket(peer))?;
    let FdTarget::Socket(ino) = f.target else { return None };
    if unbound(peer_name) || unix_diag(peer).ok()?.peer as u64 == ino {
        return None;
    }
    let mut rec = Planned::new(f, FdKind::Socket);
    own_name(&mut rec, name, d);
    if d.rqueue > 0 {
        warnings.push(format!("fd {}: the datagrams queued on it are not restored", f.fd));
    }
    rec.offset = target.fd as u64;
    rec.aux = [libc::AF_UNIX as u64, libc::SOCK_DGRAM as u64, DGRAM_TO, 0, rec.aux[4], 0];
    Some(Class::Plan(rec))
}

/// A connecting end's own bound name (bind(2) before connect(2)), to bind again.
fn own_name(rec: &mut Planned, name: &[u8], d: &UnixDiag) {
    if !unbound(name) {
        rec.path = name.to_vec();
        if path_deleted(name, d) {
            rec.aux[4] |= OPT_UNLINK;
        }
    }
}
