//! Process trees: the root forks the other processes at their PIDs, each restores
//! itself from its own image, and all of them leave together.
//!
//! The root, with its own PID back and before its memory exists, creates the
//! objects the processes share at the tree's fd "slots" (numbers above every fd
//! any of them uses); once its own fds are restored it puts the descriptions it
//! shares there too (and those it made only for the processes below it, whose
//! own numbers it then closes) and forks its children; each child sets its process group or
//! session, forks its own children the same way and then executes this restorer
//! again on its own image (`CKPT_TREE_AT`), keeping its PID and the slots (they
//! are not close-on-exec). A zombie is a child
//! that exits at once with its saved status and is never waited for.
//!
//! Release: every process, once restored, writes a "ready" record on the control
//! pipe and waits for a byte on the "go" pipe; the root waits for every record,
//! then writes one byte per process. A process that dies on the way shows as a
//! zombie (its parent waits for the go byte, it does not reap): the root kills
//! every process of the tree and fails with the tree step, naming the pid.

use crate::ctx::Ctx;
use crate::out::{self, Line, Step};
use crate::pid;
use crate::startup::Startup;
use crate::sys::{self, call};
use ckpt_format::{Tables, TreeObject, TreeProc, TREE_OBJ_MEMORY, TREE_OBJ_PIPE, TREE_OBJ_ROOT_FD, TREE_PIPE_READ_NONBLOCK, TREE_PIPE_WRITE_NONBLOCK, TREE_ROOT_FD_HIDDEN, TREE_ZOMBIE};

const SYS_SETPGID: usize = 109;
const SYS_SETSID: usize = 112;
const SYS_POLL: usize = 7;
const F_SETFL: usize = 4;
const F_SETPIPE_SZ: usize = 1031;
const O_NONBLOCK: usize = 0o4000;
const SIGKILL: usize = 9;

/// Control slots, from the tree's first slot.
const READY_R: usize = 0;
const READY_W: usize = 1;
const GO_R: usize = 2;
const GO_W: usize = 3;
/// The restorer (this executable) and the file holding the image.
const EXE: usize = 4;
const IMG: usize = 5;
const AT_EMPTY_PATH: usize = 0x1000;
const SYS_EXECVEAT: usize = 322;

/// Phase 1, before the image is opened: a process the root forked finds its
/// image offset and the tree's slots in its environment.
pub fn member_of(st: &Startup, ctx: &mut Ctx) {
    let (Some(at), Some(base), Some(n)) = (st.env_num(b"CKPT_TREE_AT"), st.env_num(b"CKPT_TREE_SLOTS"), st.env_num(b"CKPT_TREE_NSLOTS")) else {
        return;
    };
    if at % ckpt_format::PAGE_SIZE != 0 || base < 3 || n < ckpt_format::TREE_CONTROL_SLOTS as u64 || base + n > 1 << 20 {
        out::fail_msg(Step::Tree, "CKPT_TREE_AT/CKPT_TREE_SLOTS/CKPT_TREE_NSLOTS out of range", b"");
    }
    ctx.tree_member = true;
    ctx.tree_fg = st.env_num(b"CKPT_TREE_FG").filter(|&g| g > 0 && g < 1 << 22).unwrap_or(0) as u32;
    ctx.tree_slot_base = base as usize;
    ctx.tree_nslots = n as usize;
    // From the root image's start (image::open adds it).
    ctx.tree_at = at;
}

/// Phase 1, once the tables are read: the root of a tree notes its slots.
pub fn root_of(ctx: &mut Ctx, t: &Tables) {
    if let Some(root) = t.tree_procs.first() {
        if ctx.tree_member {
            out::fail_msg(Step::Tree, "a process of a tree has an image of a tree", b"");
        }
        ctx.tree_slot_base = root.slot_base as usize;
        ctx.tree_nslots = root.nslots as usize;
    }
}

/// The first and last-plus-one slot, or (0, 0) outside a tree.
pub fn slots(ctx: &Ctx) -> (usize, usize) {
    (ctx.tree_slot_base, ctx.tree_slot_base + ctx.tree_nslots)
}

/// close_range(lo, hi) (inclusive), leaving the tree's slots open.
pub fn close_range_keep_slots(ctx: &Ctx, lo: usize, hi: usize) {
    let (a, b) = slots(ctx);
    if a == b || hi < a || lo >= b {
        let _ = sys::close_range(lo, hi);
        return;
    }
    if lo < a {
        let _ = sys::close_range(lo, a - 1);
    }
    if hi >= b {
        let _ = sys::close_range(b, hi);
    }
}

fn fail(pid: u32, what: &str, e: isize) -> ! {
    let mut l = Line::new();
    l.s("restore process tree failed: pid ").dec(pid as u64).s(": ").s(what);
    if e != 0 {
        l.s(": ").errno(e);
    }
    l.emit();
    sys::exit_group(Step::Tree as i32)
}

/// At `slot`, not close-on-exec: `fd` moved there.
fn park(fd: usize, slot: usize, root: u32) {
    if fd != slot {
        if let Err(e) = sys::dup3(fd, slot, 0) {
            fail(root, "dup3 to a tree slot", e);
        }
        let _ = sys::close(fd);
    }
}

fn make_pipe(slot: usize, root: u32, capacity: u64, flags: u32) -> [usize; 2] {
    let mut p = [0i32; 2];
    if let Err(e) = sys::pipe2(&mut p, 0) {
        fail(root, "pipe2 for a tree pipe", e);
    }
    let (r, w) = (p[0] as usize, p[1] as usize);
    if capacity != 0 {
        // Best effort: a pipe above pipe-max-size keeps the default.
        let _ = sys::fcntl(w, F_SETPIPE_SZ, capacity as usize);
    }
    park(r, slot, root);
    park(w, slot + 1, root);
    if flags & TREE_PIPE_READ_NONBLOCK != 0 {
        let _ = sys::fcntl(slot, F_SETFL, O_NONBLOCK);
    }
    if flags & TREE_PIPE_WRITE_NONBLOCK != 0 {
        let _ = sys::fcntl(slot + 1, F_SETFL, O_NONBLOCK);
    }
    [slot, slot + 1]
}

/// One memfd for memory the processes share, its content written once.
fn make_memory(t: &Tables, o: &TreeObject, root: u32) {
    let fd = sys::memfd_create(b"ckpt-tree\0", 0).unwrap_or_else(|e| fail(root, "memfd_create for shared memory", e));
    if let Err(e) = sys::ftruncate(fd, o.capacity) {
        fail(root, "ftruncate of shared memory", e);
    }
    let data = &t.tree_data[o.data_off as usize..(o.data_off + o.data_len) as usize];
    if let Err(e) = sys::pwrite_all(fd, data, 0) {
        fail(root, "writing shared memory", e);
    }
    park(fd, o.slot as usize, root);
}

/// In the root, before its memory and fds exist: the control fds and the objects
/// it makes for the others (pipes, memory), at their slots.
pub fn prepare(ctx: &Ctx, t: &Tables) {
    let Some(root) = t.tree_procs.first() else { return };
    let base = root.slot_base as usize;
    let need = (base + root.nslots as usize) as u64;
    let mut lim = [0u64; 2];
    if sys::prlimit(sys::RLIMIT_NOFILE, None, Some(&mut lim)).is_ok() && lim[0] < need {
        let new = [need.min(lim[1]), lim[1]];
        let _ = sys::prlimit(sys::RLIMIT_NOFILE, Some(&new), None);
    }
    make_pipe(base + READY_R, root.pid, 0, 0);
    make_pipe(base + GO_R, root.pid, 0, 0);
    // Once the root's mm is restored /proc/self/exe names the target's program.
    let exe = sys::open(b"/proc/self/exe\0", sys::O_RDONLY, 0).unwrap_or_else(|e| fail(root.pid, "opening the restorer", e));
    park(exe, base + EXE, root.pid);
    if let Err(e) = sys::dup3(ctx.fd, base + IMG, 0) {
        fail(root.pid, "dup3 of the image to a tree slot", e);
    }
    for o in t.tree_objects {
        if o.kind == TREE_OBJ_MEMORY {
            make_memory(t, o, root.pid);
        }
        if o.kind == TREE_OBJ_PIPE {
            let [_, w] = make_pipe(o.slot as usize, root.pid, o.capacity, 0);
            let data = &t.tree_data[o.data_off as usize..(o.data_off + o.data_len) as usize];
            if !data.is_empty() && sys::write(w, data) != Ok(data.len()) {
                fail(root.pid, "writing a tree pipe's buffered bytes", 0);
            }
            let r = o.slot as usize;
            if o.flags & TREE_PIPE_READ_NONBLOCK != 0 {
                let _ = sys::fcntl(r, F_SETFL, O_NONBLOCK);
            }
            if o.flags & TREE_PIPE_WRITE_NONBLOCK != 0 {
                let _ = sys::fcntl(w, F_SETFL, O_NONBLOCK);
            }
        }
    }
    out::trace("tree objects made (count, slots)", t.tree_objects.len() as u64, root.nslots as u64);
}

/// In the root, once its own fds are restored: the descriptions it shares at
/// their slots, then every other process of the tree, forked at its PID (the
/// fork shares the root's restored memory copy-on-write until the exec).
/// Returns in the root only.
pub fn fork_all(ctx: &Ctx, t: &Tables) {
    let Some(root) = t.tree_procs.first() else { return };
    for o in t.tree_objects.iter().filter(|o| o.kind == TREE_OBJ_ROOT_FD) {
        if let Err(e) = sys::dup3(o.capacity as usize, o.slot as usize, 0) {
            fail(root.pid, "dup3 of a shared fd to its tree slot", e);
        }
        // Made only for the processes below (a socket pair, an eventfd a child
        // passed down): not one of the root's own fds.
        if o.flags & TREE_ROOT_FD_HIDDEN != 0 {
            let _ = sys::close(o.capacity as usize);
        }
    }
    fork_children(ctx, t, root.pid);
}

/// Fork the children of `parent`, each at its PID; returns in `parent`.
fn fork_children(ctx: &Ctx, t: &Tables, parent: u32) {
    for p in t.tree_procs[1..].iter().filter(|p| p.ppid == parent) {
        match pid::fork_at(p.pid) {
            Ok(0) => become_member(ctx, t, p),
            Ok(_) => {}
            Err(e) => fail(p.pid, "clone3 with its pid", e),
        }
    }
}

/// In the new process `p`: its group and session, its own children, then its
/// own image.
fn become_member(ctx: &Ctx, t: &Tables, p: &TreeProc) -> ! {
    if p.flags & TREE_ZOMBIE != 0 {
        end_as_zombie(p.status);
    }
    // SAFETY: no pointer arguments.
    unsafe {
        if p.sid == p.pid {
            let _ = call(SYS_SETSID, [0; 6]);
        } else if p.pgid == p.pid {
            let _ = call(SYS_SETPGID, [0, 0, 0, 0, 0, 0]);
        } else if let Err(e) = call(SYS_SETPGID, [0, p.pgid as usize, 0, 0, 0, 0]) {
            // The group may be one outside the tree, inherited from the parent.
            if e != sys::EPERM && e != sys::ESRCH {
                fail(p.pid, "setpgid", e);
            }
        }
    }
    fork_children(ctx, t, p.pid);
    exec_own_image(ctx, p)
}

/// Exit now, leaving a zombie with `status` as wait(2) reports it.
fn end_as_zombie(status: u32) -> ! {
    let sig = (status & 0x7f) as usize;
    if sig == 0 {
        sys::exit_group(((status >> 8) & 0xff) as i32);
    }
    let dfl = [0u64; 4];
    let set: u64 = 1 << (sig - 1);
    // SAFETY: default disposition for `sig`, unblock it, and send it to ourselves.
    unsafe {
        let _ = call(sys::SYS_RT_SIGACTION, [sig, dfl.as_ptr() as usize, 0, 8, 0, 0]);
        let _ = call(sys::SYS_RT_SIGPROCMASK, [1, &set as *const u64 as usize, 0, 8, 0, 0]);
        let _ = call(sys::SYS_KILL, [sys::getpid(), sig, 0, 0, 0, 0]);
    }
    sys::exit_group(128 + sig as i32)
}

/// Run this restorer again (the same file, or the restorer with the raw image
/// through its fd) on the process's own image.
fn exec_own_image(ctx: &Ctx, p: &TreeProc) -> ! {
    let mut at = [0u8; 48];
    let mut slots = [0u8; 48];
    let mut n = [0u8; 48];
    let mut img = [0u8; 48];
    let mut fg = [0u8; 48];
    // The processes' images follow the root's, whose size the root knows.
    let off = ckpt_format::tree_data_start(ctx.hdr.image_size) + p.image_off;
    let at = out::cstr(&mut at, &[b"CKPT_TREE_AT="], &[off], b"");
    let slots = out::cstr(&mut slots, &[b"CKPT_TREE_SLOTS="], &[p.slot_base as u64], b"");
    let n = out::cstr(&mut n, &[b"CKPT_TREE_NSLOTS="], &[p.nslots as u64], b"");
    let mut env: [usize; 9] = [0; 9];
    env[0] = at.as_ptr() as usize;
    env[1] = slots.as_ptr() as usize;
    env[2] = n.as_ptr() as usize;
    env[3] = c"CKPT_QUIET=1".as_ptr() as usize;
    let mut k = 4;
    if out::tracing() {
        env[k] = c"CKPT_TRACE=1".as_ptr() as usize;
        k += 1;
    }
    if ctx.missing_ignore {
        env[k] = c"CKPT_MISSING_FILES=ignore".as_ptr() as usize;
        k += 1;
    }
    if p.fg_pgid != 0 {
        env[k] = out::cstr(&mut fg, &[b"CKPT_TREE_FG="], &[p.fg_pgid as u64], b"").as_ptr() as usize;
    }
    let mut argv: [usize; 3] = [c"ckpt-restore".as_ptr() as usize, 0, 0];
    if !ctx.embedded {
        // The raw image, through its slot (open across the exec).
        argv[1] = out::cstr(&mut img, &[b"/proc/self/fd/"], &[(p.slot_base as usize + IMG) as u64], b"").as_ptr() as usize;
    }
    // SAFETY: an empty NUL-terminated path, argv and envp arrays ending with a null
    // pointer; AT_EMPTY_PATH runs the file open at the EXE slot.
    let e = unsafe {
        call(SYS_EXECVEAT, [p.slot_base as usize + EXE, c"".as_ptr() as usize, argv.as_ptr() as usize, env.as_ptr() as usize, AT_EMPTY_PATH, 0])
    };
    fail(p.pid, "executing the restorer for its own image", e.err().unwrap_or(0))
}

/// Before the release: a process of the tree says it is ready and waits for the
/// root; the root waits for all of them and lets them go. Either way the slots
/// are closed after.
pub fn release_together(ctx: &Ctx, t: &Tables) {
    let (base, end) = slots(ctx);
    if base == end {
        return;
    }
    if ctx.tree_member {
        let me = sys::getpid() as u32;
        let mut rec = [b'R', 0, 0, 0, 0, 0, 0, 0];
        rec[4..].copy_from_slice(&me.to_le_bytes());
        if sys::write(base + READY_W, &rec) != Ok(8) {
            fail(me, "telling the root it is ready", 0);
        }
        let mut b = [0u8; 1];
        loop {
            match sys::read(base + GO_R, &mut b) {
                Ok(1) => break,
                Err(sys::EINTR) => {}
                _ => sys::exit_group(Step::Tree as i32),
            }
        }
        if ctx.tree_fg != 0 {
            foreground(me, ctx.tree_fg);
        }
    } else {
        wait_for_all(t, base);
    }
    let _ = sys::close_range(base, end - 1);
    out::trace("tree released (slots)", base as u64, end as u64);
}

/// A session leader: its terminal's foreground group back (tcsetpgrp(3) is
/// TIOCSPGRP on the controlling terminal; every group of the tree exists once it
/// is released). Allowed from outside the foreground group because every signal,
/// SIGTTOU too, is blocked here (tty_check_change()). On failure the leader's
/// own group stays in the foreground, and a warning says so.
fn foreground(me: u32, pgid: u32) {
    const TIOCSPGRP: usize = 0x5410;
    let r = sys::open(b"/dev/tty\0", (sys::O_RDWR | sys::O_NOCTTY) as usize | sys::O_CLOEXEC, 0)
        .and_then(|fd| {
            let r = sys::ioctl_set(fd, TIOCSPGRP, &(pgid as i32));
            let _ = sys::close(fd);
            r
        });
    if let Err(e) = r {
        Line::new().s("ckpt: warning: pid ").dec(me as u64).s(": cannot give its terminal back to process group ")
            .dec(pgid as u64).s(": ").errno(e).s("; its own group stays in the foreground").emit();
    } else {
        out::trace("terminal foreground group set (pid, pgid)", me as u64, pgid as u64);
    }
}

fn wait_for_all(t: &Tables, base: usize) {
    let procs = t.tree_procs;
    let live = procs[1..].iter().filter(|p| p.flags & TREE_ZOMBIE == 0).count();
    let mut got = 0;
    let mut rec = [0u8; 8];
    while got < live {
        let mut pfd = [(base + READY_R) as u32 as u64 | (1u64 << 32)];
        // SAFETY: one struct pollfd (fd, events = POLLIN, revents).
        let r = unsafe { call(SYS_POLL, [pfd.as_mut_ptr() as usize, 1, 200, 0, 0, 0]) };
        if r == Ok(1) {
            if sys::read(base + READY_R, &mut rec) == Ok(8) && rec[0] == b'R' {
                got += 1;
            }
            continue;
        }
        // Nothing yet: has one of them died on the way?
        if let Some(p) = procs[1..].iter().find(|p| p.flags & TREE_ZOMBIE == 0 && (pid::is_zombie(p.pid) || !pid::taken(p.pid))) {
            kill_all(t);
            fail(p.pid, "it ended before it was restored (its own message above says why); every process of the tree was killed", 0);
        }
    }
    let go = [1u8; 64];
    let mut left = live;
    while left > 0 {
        let n = left.min(go.len());
        match sys::write(base + GO_W, &go[..n]) {
            Ok(k) => left -= k,
            Err(sys::EINTR) => {}
            Err(e) => {
                kill_all(t);
                fail(procs[0].pid, "releasing the tree", e);
            }
        }
    }
}

fn kill_all(t: &Tables) {
    for p in &t.tree_procs[1..] {
        // SAFETY: a signal to a process of the tree we made.
        let _ = unsafe { call(sys::SYS_KILL, [p.pid as usize, SIGKILL, 0, 0, 0, 0]) };
    }
}
