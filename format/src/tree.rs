//! Process trees (`ckpt freeze --tree`): which processes the file holds besides the
//! root, and the kernel objects they share.
//!
//! The image of a tree is the root's own image with three more sections; every
//! other process's own image (a complete image, validated on its own) follows the
//! root's, each at a page-aligned offset counted from the end of the root's image
//! rounded up to a page. The root restores as any process does, but first, with
//! its PID back and before its memory exists, it creates the shared objects at fd
//! numbers no process uses (the tree's "slots") and forks its children at their
//! PIDs; each child forks its own, then runs the restorer again on its own image,
//! inheriting the slots. Zombies are children that exit at once with their status.

use crate::PAGE_SIZE;

/// One process of a tree ([`crate::SectionKind::TreeProcs`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeProc {
    pub pid: u32,
    /// The parent's pid: an earlier record's, except for the root (whose parent,
    /// outside the tree, is informational).
    pub ppid: u32,
    /// Process group and session at the freeze.
    pub pgid: u32,
    pub sid: u32,
    /// TREE_* flags.
    pub flags: u32,
    /// A zombie's wait status, as wait(2) would have reported it.
    pub status: u32,
    /// The process's own image: offset from the tree data start (the end of the
    /// root's image rounded up to a page) and length. Zero for the root and zombies.
    pub image_off: u64,
    pub image_len: u64,
    /// The tree's fds at resume, `[slot_base, slot_base + nslots)`: the same in
    /// every record. The first [`TREE_CONTROL_SLOTS`] synchronise the release.
    pub slot_base: u32,
    pub nslots: u32,
    /// For a session leader other than the root with a controlling terminal: the
    /// terminal's foreground process group (a job-control shell's running job),
    /// a group of the tree, set again with TIOCSPGRP once every group exists.
    /// Zero otherwise.
    pub fg_pgid: u32,
    pub _reserved: u32,
}

/// [`TreeProc::flags`]: an exited child its parent had not reaped yet.
pub const TREE_ZOMBIE: u32 = 1;
/// Fds every tree uses below its objects: the "ready" pipe (each process writes
/// one record when restored), the "go" pipe (the root writes one byte per process
/// to release them all), the restorer's executable and the image file (each
/// process runs the one on the other).
pub const TREE_CONTROL_SLOTS: u32 = 6;
/// Most processes in one tree.
pub const MAX_TREE_PROCS: u32 = 1024;
/// Most shared objects in one tree.
pub const MAX_TREE_OBJECTS: u32 = 4096;
/// Most bytes the tree objects carry.
pub const MAX_TREE_DATA: u64 = 64 << 20;

/// A kernel object several processes of the tree share ([`crate::SectionKind::TreeObjects`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeObject {
    /// TREE_OBJ_* kind.
    pub kind: u32,
    /// The process that creates it: the root, before it forks the others.
    pub creator: u32,
    /// Its first fd in the slots (a pipe's read end; its write end is `slot + 1`).
    pub slot: u32,
    /// TREE_PIPE_* bits.
    pub flags: u32,
    /// A pipe's capacity (F_GETPIPE_SZ); memory's size; the root's fd number of
    /// an open file description the root holds.
    pub capacity: u64,
    /// Inode at the freeze (informational).
    pub ino: u64,
    /// Bytes it carries (a pipe's buffered bytes), in the TreeData section.
    pub data_off: u64,
    pub data_len: u64,
}

/// A pipe between processes of the tree.
pub const TREE_OBJ_PIPE: u32 = 1;
/// Memory several processes of the tree map or open (shared anonymous memory
/// created before a fork, a memfd, a deleted file such as a POSIX semaphore's):
/// one memfd of `capacity` bytes, its content from `data_off` (the rest a hole).
/// Their images name it as a file with [`crate::FILE_IN_TREE`].
pub const TREE_OBJ_MEMORY: u32 = 2;
/// An open file description the root holds at fd `capacity` and other processes
/// of the tree share (a listening socket of a pre-forking server, a file whose
/// offset moves for all): the root's own restore makes it, then puts it at the
/// slot before it forks. With [`TREE_ROOT_FD_HIDDEN`] the root did not hold it:
/// another process made it and passed it down (a socket pair, an eventfd, a
/// locked file); the root makes it at a number above its own fds only for the
/// tree and closes that number once the slot has it.
pub const TREE_OBJ_ROOT_FD: u32 = 3;
/// Fds a tree object of this kind takes in the slots.
pub const fn tree_object_slots(kind: u32) -> u32 {
    match kind {
        TREE_OBJ_PIPE => 2,
        TREE_OBJ_MEMORY | TREE_OBJ_ROOT_FD => 1,
        _ => 0,
    }
}
/// [`TreeObject::flags`] of a pipe: its read end was O_NONBLOCK.
pub const TREE_PIPE_READ_NONBLOCK: u32 = 1;
/// [`TreeObject::flags`] of a pipe: its write end was O_NONBLOCK.
pub const TREE_PIPE_WRITE_NONBLOCK: u32 = 2;
/// [`TreeObject::flags`] of a [`TREE_OBJ_ROOT_FD`]: the root holds the fd only for
/// the tree (see there).
pub const TREE_ROOT_FD_HIDDEN: u32 = 4;
/// `aux[2]` of an `FdKind::Tree` record: the slot holds the root's pty master and
/// the fd is a slave of it, opened from the master (TIOCGPTPEER) with `flags`'s
/// access mode: a shell in a terminal emulator's or tmux's pane.
pub const TREE_FD_PTY_PEER: u64 = 1;

/// Where the processes' own images start in the file: the root image's end,
/// rounded up to a page.
pub const fn tree_data_start(root_image_size: u64) -> u64 {
    crate::align_up(root_image_size, PAGE_SIZE)
}

use crate::{FormatError, Tables};

impl Tables<'_> {
    /// The tree sections: the root first and at this image's own pid, parents
    /// before children, distinct pids, one slot range, every object inside it and
    /// its bytes inside the TreeData section.
    pub(crate) fn check_tree(&self) -> Result<(), FormatError> {
        let procs = self.tree_procs;
        if procs.is_empty() {
            if !self.tree_objects.is_empty() || !self.tree_data.is_empty() {
                return Err(FormatError::BadTreeObject { index: 0, what: "tree objects without tree processes" });
            }
            return Ok(());
        }
        let root = procs[0];
        let (base, n) = (root.slot_base as u64, root.nslots as u64);
        for (i, p) in procs.iter().enumerate() {
            let bad = |what| Err(FormatError::BadTree { index: i as u32, what });
            if p.pid == 0 || p.pid >= 1 << 22 || procs[..i].iter().any(|q| q.pid == p.pid) {
                return bad("process id zero, out of range or repeated");
            }
            if p.flags & !crate::TREE_ZOMBIE != 0 {
                return bad("unknown process flags");
            }
            if p._reserved != 0 {
                return bad("reserved field not zero");
            }
            if p.fg_pgid != 0 && (i == 0 || p.sid != p.pid || p.flags != 0 || !procs.iter().any(|q| q.pgid == p.fg_pgid && q.sid == p.sid)) {
                return bad("a foreground group on no session leader, or no group of its session in the tree");
            }
            if (p.slot_base, p.nslots) != (root.slot_base, root.nslots) {
                return bad("slot range differs from the root's");
            }
            if i == 0 {
                if p.flags != 0 || p.image_len != 0 || p.image_off != 0 {
                    return bad("the root is a zombie or has an image of its own");
                }
                if self.threads.first().is_none_or(|t| t.tid != p.pid) {
                    return bad("the root is not the process this image restores");
                }
                continue;
            }
            match procs[..i].iter().find(|q| q.pid == p.ppid) {
                None => return bad("parent not before its child in the tree"),
                Some(q) if q.flags & crate::TREE_ZOMBIE != 0 => return bad("a zombie has children"),
                Some(_) => {}
            }
            let zombie = p.flags & crate::TREE_ZOMBIE != 0;
            if zombie && (p.image_len != 0 || p.image_off != 0) {
                return bad("a zombie with an image");
            }
            if !zombie && (p.image_len < PAGE_SIZE || p.image_off % PAGE_SIZE != 0 || p.image_off.checked_add(p.image_len).is_none()) {
                return bad("process image missing, misaligned or out of range");
            }
        }
        if base < 3 || n < crate::TREE_CONTROL_SLOTS as u64 || base + n > 1 << 20 {
            return Err(FormatError::BadTree { index: 0, what: "slot range below fd 3, too small or out of range" });
        }
        let mut next = base + crate::TREE_CONTROL_SLOTS as u64;
        for (i, o) in self.tree_objects.iter().enumerate() {
            let bad = |what| Err(FormatError::BadTreeObject { index: i as u32, what });
            let k = crate::tree_object_slots(o.kind) as u64;
            if k == 0 {
                return bad("unknown tree object kind");
            }
            if o.slot as u64 != next || next + k > base + n {
                return bad("slot out of order or outside the tree's slots");
            }
            next += k;
            if o.creator != root.pid {
                return bad("created by another process than the root");
            }
            let known = match o.kind {
                TREE_OBJ_PIPE => crate::TREE_PIPE_READ_NONBLOCK | crate::TREE_PIPE_WRITE_NONBLOCK,
                TREE_OBJ_ROOT_FD => TREE_ROOT_FD_HIDDEN,
                _ => 0,
            };
            if o.flags & !known != 0 {
                return bad("unknown object flags");
            }
            if o.kind == TREE_OBJ_MEMORY && (o.capacity == 0 || o.capacity > 1 << 62) {
                return bad("memory of no size or beyond the largest file offset");
            }
            if o.kind == TREE_OBJ_ROOT_FD && (o.data_len != 0 || !self.fds.iter().any(|f| f.fd as u64 == o.capacity && f.fd > 2)) {
                return bad("names no fd above 2 of the root, or carries bytes");
            }
            if o.data_off.checked_add(o.data_len).is_none_or(|e| e > self.tree_data.len() as u64) || o.data_len > o.capacity {
                return bad("bytes outside the tree data or beyond the pipe's capacity");
            }
        }
        Ok(())
    }
}
