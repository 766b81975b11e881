//! Objects a process below the root made and passed down to its children: a
//! socket pair whose ends two processes of the tree hold, an eventfd, a timerfd, a
//! file locked or written through one open file description. The root does not
//! hold them, yet only one process may make each at resume, before the others
//! take it: the root makes them too (fdplan/exports.rs: it is given a duplicate
//! of each, which its own plan classifies like any fd, a socket pair with both
//! ends and its queued bytes, a file with its offset and flock), puts each at its
//! tree slot before it forks, and closes its own number for it
//! (`TREE_ROOT_FD_HIDDEN`). Every process that held it takes it from the slot.
//!
//! An epoll instance is not passed this way: its registrations name the fds of
//! the process that made them (shared.rs refuses one shared below the root).

use super::shared::same_description;
use super::walk::Member;
use crate::fdplan;
use crate::proc::fds::{FdInfo, FdTarget};
use ckpt_format::*;
use std::collections::BTreeSet;

/// One open file description held by processes below the root.
struct Desc<'a> {
    holders: BTreeSet<usize>,
    fds: Vec<(usize, &'a FdInfo)>,
}

/// Whether fd `f` of live process `pid` is of a kind the root can make for others.
fn passable(pid: i32, f: &FdInfo) -> bool {
    f.fd > 2
        && match &f.target {
            FdTarget::Socket(_) => true,
            FdTarget::AnonInode(k) => matches!(k.as_str(), "[eventfd]" | "[timerfd]" | "[signalfd]"),
            // A regular file (not a terminal or another device: those stay each
            // process's own, as before).
            FdTarget::File(_) => std::fs::metadata(format!("/proc/{pid}/fd/{}", f.fd)).is_ok_and(|m| m.is_file()),
            _ => false,
        }
}

/// The descriptions the root makes for the processes below it: their tree objects
/// (with `capacity` the index into the returned list, set to the root's made-up
/// fd number once the root is captured) and each holder's `FdKind::Tree` record.
/// Returns, per description, (member, fd) of the first holder, and adds the
/// sockets' inodes to `resolved`.
pub fn plan(
    members: &[Member],
    fds: &[Vec<FdInfo>],
    objects: &mut Vec<TreeObject>,
    extra: &mut [Vec<Fd>],
    slot: &mut u32,
    resolved: &mut BTreeSet<u64>,
) -> Vec<(usize, i32)> {
    let pid_of = |i: usize| members[i].group.as_ref().map(|g| g.reader().pid);
    let mut descs: Vec<Desc> = Vec::new();
    for (i, list) in fds.iter().enumerate().skip(1) {
        let Some(pi) = pid_of(i) else { continue };
        for f in list.iter().filter(|f| passable(pi, f) && !extra[i].iter().any(|e| e.fd == f.fd)) {
            let same = descs.iter_mut().find(|d| {
                let (j, g) = d.fds[0];
                g.link == f.link && g.ino == f.ino && pid_of(j).is_some_and(|pj| same_description(pj, g.fd, pi, f.fd))
            });
            match same {
                Some(d) => {
                    d.holders.insert(i);
                    d.fds.push((i, f));
                }
                None => descs.push(Desc { holders: BTreeSet::from([i]), fds: vec![(i, f)] }),
            }
        }
    }
    // A unix socket whose peer a process of the tree outside its holders has (the
    // root above its stdio, or another process): one end of a pair the tree shares.
    let peer_elsewhere = |d: &Desc| {
        let FdTarget::Socket(ino) = d.fds[0].1.target else { return false };
        let Some(peer) = fdplan::unix_peer(ino) else { return false };
        fds.iter().enumerate().any(|(j, l)| {
            members[j].group.is_some() && !d.holders.contains(&j) && l.iter().any(|o| o.fd > 2 && o.target == FdTarget::Socket(peer))
        })
    };
    let mut firsts = Vec::new();
    for d in descs.iter().filter(|d| d.holders.len() > 1 || peer_elsewhere(d)) {
        let (i0, f0) = d.fds[0];
        if let FdTarget::Socket(ino) = f0.target {
            resolved.insert(ino);
        }
        objects.push(TreeObject {
            kind: TREE_OBJ_ROOT_FD,
            creator: members[0].pid as u32,
            slot: *slot,
            flags: TREE_ROOT_FD_HIDDEN,
            capacity: firsts.len() as u64,
            ino: f0.ino,
            ..Default::default()
        });
        for &(i, f) in &d.fds {
            let mut aux = [0u64; 6];
            aux[0] = *slot as u64;
            aux[1] = f.ino;
            extra[i].push(Fd { fd: f.fd, kind: FdKind::Tree as u32, flags: f.flags & !(libc::O_CLOEXEC as u32), cloexec: f.cloexec() as u32, aux, ..Default::default() });
        }
        firsts.push((i0, f0.fd));
        *slot += tree_object_slots(TREE_OBJ_ROOT_FD);
    }
    firsts
}
