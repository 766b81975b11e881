//! The kernel objects the processes of a tree share, and what each process's own
//! image says about them.
//!
//! Pipes between processes of the tree become tree objects: created once by the
//! root before it forks, with their buffered bytes, at the tree's "slots" (fd
//! numbers above anything a process uses at resume); each fd of one becomes an
//! `FdKind::Tree` record naming its slot. A pipe on the root's stdio (fds 0-2) is
//! the resumer's: the processes that inherited it keep the resumer's fd there.
//! Memory several processes map or open (shared anonymous memory made before a
//! fork, memfds, deleted files such as POSIX semaphores) becomes one memfd the
//! root makes, which every image's file of that inode names (`FILE_IN_TREE`).
//! Sockets and files a process shares with one of the root's fds (a pre-forking
//! server's listening socket) are made by the root's own restore and taken from
//! it; those a process below the root made and passed down are made by the root
//! too ([`super::passed`]). Objects shared in the tree that it cannot recreate
//! shared are refused by name (an epoll instance shared below the root), so
//! nothing loses its sharing silently.

use super::walk::Member;
use crate::fdplan;
use crate::proc::fds::{FdInfo, FdTarget};
use anyhow::{bail, Result};
use ckpt_format::*;
use std::collections::{BTreeMap, BTreeSet};

/// The tree's shared objects and each member's fds of them.
pub struct Shared {
    pub objects: Vec<TreeObject>,
    pub data: Vec<u8>,
    /// Per member (tree order): its `FdKind::Tree` records.
    pub extra: Vec<Vec<Fd>>,
    pub slot_base: u32,
    pub nslots: u32,
    /// Memory several processes share (inode, slot): its tree object is made once
    /// every process is captured ([`memory_object`]), from their images' files.
    pub memory: Vec<(u64, u32)>,
    /// (member, fd) of each description the root makes for the processes below
    /// it ([`super::passed`]); the `capacity` of its object is its index here.
    pub passed: Vec<(usize, i32)>,
}

/// Members holding each object named by `key`.
fn holders<K: Ord + Copy>(fds: &[Vec<FdInfo>], key: impl Fn(&FdInfo) -> Option<K>) -> BTreeMap<K, BTreeSet<usize>> {
    let mut m: BTreeMap<K, BTreeSet<usize>> = BTreeMap::new();
    for (i, list) in fds.iter().enumerate() {
        for f in list {
            if let Some(k) = key(f) {
                m.entry(k).or_default().insert(i);
            }
        }
    }
    m
}

/// `fds[i]`: the fds of member `i` (empty for a zombie); `shm[i]`: the inodes of
/// its shared mappings of memory with no file (shared anonymous memory, memfds,
/// deleted files); `nobj[i]`: its mappings of such memory, shared or not (the
/// restorer parks each file at an fd number of its own).
pub fn plan(members: &[Member], fds: &[Vec<FdInfo>], shm: &[Vec<u64>], nobj: &[usize]) -> Result<Shared> {
    let root_stdio: BTreeSet<u64> = fds[0]
        .iter()
        .filter(|f| f.fd <= 2)
        .filter_map(|f| if let FdTarget::Pipe(ino) = f.target { Some(ino) } else { None })
        .collect();
    let pipes = holders(fds, |f| match f.target {
        FdTarget::Pipe(ino) if !root_stdio.contains(&ino) => Some(ino),
        _ => None,
    });
    let tree_pipes: Vec<u64> = pipes.iter().filter(|(_, m)| m.len() > 1).map(|(ino, _)| *ino).collect();

    // Above every fd, temporary fd and parked file of every process at resume.
    let slot_base = fds
        .iter()
        .zip(nobj)
        .map(|(l, n)| l.iter().map(|f| f.fd).max().unwrap_or(2) as u64 + 2 * l.len() as u64 + *n as u64 + 64)
        .max()
        .unwrap_or(64) as u32;
    let mut objects = Vec::new();
    let mut data = Vec::new();
    let mut extra: Vec<Vec<Fd>> = vec![Vec::new(); members.len()];
    let mut slot = slot_base + TREE_CONTROL_SLOTS;
    for ino in tree_pipes {
        let ends: Vec<(usize, &FdInfo)> = fds
            .iter()
            .enumerate()
            .flat_map(|(i, l)| l.iter().filter(move |f| f.target == FdTarget::Pipe(ino)).map(move |f| (i, f)))
            .collect();
        if let Some((i, f)) = ends.iter().find(|(_, f)| f.access_mode() == libc::O_RDWR as u32) {
            bail!("pid {} fd {} ({}): a pipe opened read-write, shared in the tree, cannot be recreated", members[*i].pid, f.fd, f.link);
        }
        let reader = ends.iter().find(|(i, f)| f.access_mode() == libc::O_RDONLY as u32 && members[*i].group.is_some());
        let (bytes, capacity) = match reader {
            Some((i, f)) => {
                let g = members[*i].group.as_ref().expect("a live member");
                fdplan::pipe_bytes(g.reader(), f.fd).map_err(|e| {
                    anyhow::anyhow!("pid {} fd {} ({}): its buffered bytes cannot be read: {e}", members[*i].pid, f.fd, f.link)
                })?
            }
            None => (Vec::new(), 0),
        };
        let nonblock = |mode: i32| ends.iter().any(|(_, f)| f.access_mode() == mode as u32 && f.flags & libc::O_NONBLOCK as u32 != 0);
        let flags = (nonblock(libc::O_RDONLY) as u32 * TREE_PIPE_READ_NONBLOCK) | (nonblock(libc::O_WRONLY) as u32 * TREE_PIPE_WRITE_NONBLOCK);
        objects.push(TreeObject {
            kind: TREE_OBJ_PIPE,
            creator: members[0].pid as u32,
            slot,
            flags,
            capacity,
            ino,
            data_off: data.len() as u64,
            data_len: bytes.len() as u64,
        });
        data.extend_from_slice(&bytes);
        for (i, f) in ends {
            let write = f.access_mode() == libc::O_WRONLY as u32;
            let mut aux = [0u64; 6];
            aux[0] = (slot + write as u32) as u64;
            aux[1] = ino;
            extra[i].push(Fd {
                fd: f.fd,
                kind: FdKind::Tree as u32,
                flags: f.flags & !(libc::O_CLOEXEC as u32),
                cloexec: f.cloexec() as u32,
                aux,
                ..Default::default()
            });
        }
        slot += tree_object_slots(TREE_OBJ_PIPE);
    }
    let mut resolved = root_descriptions(members, fds, &mut objects, &mut extra, &mut slot);
    let passed = super::passed::plan(members, fds, &mut objects, &mut extra, &mut slot, &mut resolved);
    refuse_shared(members, fds, &extra, &resolved)?;
    let mut memory = Vec::new();
    for ino in shared_memory(fds, shm) {
        memory.push((ino, slot));
        slot += tree_object_slots(TREE_OBJ_MEMORY);
    }
    if objects.len() > MAX_TREE_OBJECTS as usize || data.len() as u64 > MAX_TREE_DATA {
        bail!("the tree shares {} pipes holding {} bytes, more than the format's {MAX_TREE_OBJECTS} / {MAX_TREE_DATA}", objects.len(), data.len());
    }
    Ok(Shared { objects, data, extra, slot_base, nslots: slot - slot_base, memory, passed })
}

/// kcmp(2) KCMP_FILE: whether fd `a` of `pa` and fd `b` of `pb` are one open file
/// description (we trace both, which PTRACE_MODE_READ asks for).
pub(super) fn same_description(pa: i32, a: i32, pb: i32, b: i32) -> bool {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: kcmp takes integers only.
    unsafe { libc::syscall(libc::SYS_kcmp, pa as libc::c_long, pb as libc::c_long, KCMP_FILE, a as libc::c_long, b as libc::c_long) == 0 }
}

/// Sockets, files, eventfds and epoll instances the other processes share with one
/// of the root's fds above 2 (inherited through fork: a pre-forking server's
/// listening socket, an eventfd passed down): the root's restore makes them, each
/// other process takes the root's. Returns the inodes of the sockets handled so.
fn root_descriptions(members: &[Member], fds: &[Vec<FdInfo>], objects: &mut Vec<TreeObject>, extra: &mut [Vec<Fd>], slot: &mut u32) -> BTreeSet<u64> {
    let mut resolved = BTreeSet::new();
    let Some(root_g) = members[0].group.as_ref() else { return resolved };
    let rpid = root_g.reader().pid;
    for r in fds[0].iter().filter(|r| r.fd > 2 && (matches!(r.target, FdTarget::Socket(_) | FdTarget::File(_)) || shareable_anon(r))) {
        let mut users: Vec<(usize, &FdInfo)> = Vec::new();
        for (i, list) in fds.iter().enumerate().skip(1) {
            let Some(g) = members[i].group.as_ref() else { continue };
            for f in list.iter().filter(|f| f.link == r.link && f.ino == r.ino && !extra[i].iter().any(|e| e.fd == f.fd)) {
                if same_description(rpid, r.fd, g.reader().pid, f.fd) {
                    users.push((i, f));
                }
            }
        }
        if users.is_empty() {
            continue;
        }
        if let FdTarget::Socket(ino) = r.target {
            resolved.insert(ino);
        }
        objects.push(TreeObject { kind: TREE_OBJ_ROOT_FD, creator: members[0].pid as u32, slot: *slot, capacity: r.fd as u64, ino: r.ino, ..Default::default() });
        for (i, f) in users {
            let mut aux = [0u64; 6];
            aux[0] = *slot as u64;
            aux[1] = r.ino;
            extra[i].push(Fd { fd: f.fd, kind: FdKind::Tree as u32, flags: f.flags & !(libc::O_CLOEXEC as u32), cloexec: f.cloexec() as u32, aux, ..Default::default() });
        }
        *slot += tree_object_slots(TREE_OBJ_ROOT_FD);
    }
    pty_peers(members, fds, objects, extra, slot, rpid);
    resolved
}

/// The pty index of the root's fd `fd`, when it is a pty master (proc(5): the
/// fdinfo of /dev/ptmx has a "tty-index:" line).
fn master_index(pid: i32, fd: i32) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    info.lines().find_map(|l| l.strip_prefix("tty-index:")).and_then(|v| v.trim().parse().ok())
}

/// Slaves of the root's pty masters held by the other processes (the shell in a
/// tmux pane, whose terminal it is): each opened at resume from the root's new
/// master, wherever its index lands, and so the controlling terminal of a session
/// leader that opens it.
fn pty_peers(members: &[Member], fds: &[Vec<FdInfo>], objects: &mut Vec<TreeObject>, extra: &mut [Vec<Fd>], slot: &mut u32, rpid: i32) {
    for r in fds[0].iter().filter(|r| r.fd > 2 && r.link.ends_with("ptmx")) {
        let Some(n) = master_index(rpid, r.fd) else { continue };
        let slave = format!("/dev/pts/{n}");
        let mut used = false;
        for (i, list) in fds.iter().enumerate().skip(1) {
            if members[i].group.is_none() {
                continue;
            }
            let taken: Vec<i32> = extra[i].iter().map(|e| e.fd).collect();
            for f in list.iter().filter(|f| f.link == slave && !taken.contains(&f.fd)) {
                let mut aux = [0u64; 6];
                aux[0] = *slot as u64;
                aux[1] = r.ino;
                aux[2] = TREE_FD_PTY_PEER;
                extra[i].push(Fd { fd: f.fd, kind: FdKind::Tree as u32, flags: f.flags & !(libc::O_CLOEXEC as u32), cloexec: f.cloexec() as u32, aux, ..Default::default() });
                used = true;
            }
        }
        if used {
            objects.push(TreeObject { kind: TREE_OBJ_ROOT_FD, creator: members[0].pid as u32, slot: *slot, capacity: r.fd as u64, ino: r.ino, ..Default::default() });
            *slot += tree_object_slots(TREE_OBJ_ROOT_FD);
        }
    }
}

/// Inodes of memory mapped or opened by more than one process: shared mappings of
/// memory without a file of its own, memfds, deleted files.
fn shared_memory(fds: &[Vec<FdInfo>], shm: &[Vec<u64>]) -> Vec<u64> {
    let mut mem = holders(fds, |f| if let FdTarget::DeletedFile(_) = f.target { Some(f.ino) } else { None });
    for (i, inos) in shm.iter().enumerate() {
        for ino in inos {
            mem.entry(*ino).or_default().insert(i);
        }
    }
    mem.into_iter().filter(|(_, s)| s.len() > 1).map(|(ino, _)| ino).collect()
}

/// The tree object of shared memory `ino` at `slot`, its bytes appended to `data`:
/// its size and content as the processes' images hold it (the largest size any
/// of them saw; the content of the first that has it).
pub fn memory_object(root: i32, ino: u64, slot: u32, files: &[(u64, Vec<u8>)], data: &mut Vec<u8>) -> Result<TreeObject> {
    let Some(size) = files.iter().map(|f| f.0).max() else {
        bail!("memory (inode {ino}) shared in the tree is in no image");
    };
    let content = &files[0].1;
    let o = TreeObject {
        kind: TREE_OBJ_MEMORY,
        creator: root as u32,
        slot,
        flags: 0,
        capacity: size,
        ino,
        data_off: data.len() as u64,
        data_len: content.len() as u64,
    };
    data.extend_from_slice(content);
    if data.len() as u64 > MAX_TREE_DATA {
        bail!("the tree's shared objects hold more than the format's {MAX_TREE_DATA} bytes");
    }
    Ok(o)
}

/// Objects several processes share that the resume cannot share again yet: each
/// process would get its own copy, so the freeze refuses, naming them.
/// An eventfd or epoll instance: every one shows the same anonymous inode in
/// fdinfo (anon_inode_getfile()), so only kcmp(2) tells whether two are one.
fn shareable_anon(f: &FdInfo) -> bool {
    matches!(&f.target, FdTarget::AnonInode(k) if k == "[eventfd]" || k == "[eventpoll]")
}

fn refuse_shared(members: &[Member], fds: &[Vec<FdInfo>], extra: &[Vec<Fd>], resolved: &BTreeSet<u64>) -> Result<()> {
    let mut problems = Vec::new();
    let pid_of = |i: usize| members[i].group.as_ref().map(|g| g.reader().pid);
    // Epoll instances not taken from the root's (eventfds are, see passed.rs): one
    // shared by two other processes cannot be made once and given to both.
    let anon: Vec<(usize, &FdInfo)> = fds
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().filter(move |f| shareable_anon(f) && !extra[i].iter().any(|e| e.fd == f.fd)).map(move |f| (i, f)))
        .collect();
    for (n, (i, f)) in anon.iter().enumerate() {
        for (j, g) in anon[n + 1..].iter().filter(|(j, g)| j != i && g.link == f.link) {
            let (Some(pi), Some(pj)) = (pid_of(*i), pid_of(*j)) else { continue };
            if same_description(pi, f.fd, pj, g.fd) {
                problems.push(format!("{} (pid {} fd {}) is shared with pid {} fd {}", f.link, members[*i].pid, f.fd, members[*j].pid, g.fd));
            }
        }
    }
    let sockets = holders(fds, |f| if let FdTarget::Socket(ino) = f.target { Some(ino) } else { None });
    let name = |set: &BTreeSet<usize>| set.iter().map(|&i| members[i].pid.to_string()).collect::<Vec<_>>().join(", ");
    for (ino, set) in sockets.iter().filter(|(ino, s)| s.len() > 1 && !resolved.contains(ino)) {
        problems.push(format!("socket:[{ino}] is shared by pids {}", name(set)));
    }
    if !problems.is_empty() {
        bail!(
            "the processes of the tree share objects a resume cannot share again yet: {}",
            problems.join("; ")
        );
    }
    Ok(())
}
