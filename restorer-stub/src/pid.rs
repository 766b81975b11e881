//! Getting the frozen process's own PID (and its threads' TIDs) back.
//!
//! Programs keep their PID and TID in memory (glibc's struct pthread, asyncio's
//! running-loop check, lock owner words, robust futexes), so a resumed process with
//! a new PID misbehaves: glibc's raise() and abort() send tgkill to the cached TID
//! with the current PID and fail with ESRCH. clone3(2) with `set_tid` creates a
//! process or thread with a chosen id when the caller has CAP_CHECKPOINT_RESTORE (or
//! CAP_SYS_ADMIN) over the PID namespace and the id is free. The restorer, once its
//! old layout is gone (before the target's memory exists, so the fork copies almost
//! nothing), forks itself that way; the child (with the old PID) does the whole
//! restore and later creates the threads with their TIDs (threads.rs), and the
//! parent stays as a small proxy: it drops everything, forwards signals to the child
//! and exits the way the child does, so whoever ran the file sees one process.
//!
//! Without the privilege, or when the PID or a TID is taken here, the same happens
//! inside a new user + PID namespace made for the process, where every id is free.
//! If that fails too the resume stops: it never continues silently under another
//! PID. `CKPT_SAME_PID=0` opts out: the process continues under a new PID (and its
//! threads under new TIDs), with a warning.

use crate::ctx::Ctx;
use crate::out;
use crate::sys::{self, call, CloneArgs};
use ckpt_format::Tables;

const SYS_CLONE3: usize = 435;
const SYS_WAIT4: usize = 61;
const SYS_RT_SIGTIMEDWAIT: usize = 128;
const SYS_GETPPID: usize = 110;
const SIGCHLD: u64 = 17;
const SIGKILL: usize = 9;
const PR_SET_PDEATHSIG: usize = 1;
const WNOHANG: usize = 1;
const WALL: usize = 0x4000_0000;


/// fork(2) by clone3, optionally with a chosen PID in the innermost PID namespace.
pub(crate) fn fork_as(tid: Option<i32>) -> sys::Res {
    let t = tid.unwrap_or(0);
    let args = CloneArgs {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: SIGCHLD,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: if tid.is_some() { &t as *const i32 as u64 } else { 0 },
        set_tid_size: tid.is_some() as u64,
        cgroup: 0,
    };
    // SAFETY: a fork-like clone3 (no CLONE_VM): the child continues on its own copy
    // of this stack; `t` outlives the call.
    unsafe { call(SYS_CLONE3, [&args as *const CloneArgs as usize, core::mem::size_of::<CloneArgs>(), 0, 0, 0, 0]) }
}

/// In the new process: the proxy's death must not leave it running unseen.
fn child_setup(keep_pdeathsig: bool, parent: usize, want: u32) {
    if !keep_pdeathsig {
        // SAFETY: integer arguments.
        let _ = unsafe { sys::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0) };
        // SAFETY: no arguments.
        if unsafe { call(SYS_GETPPID, [0; 6]) } != Ok(parent) {
            sys::exit_group(1);
        }
    }
    out::trace("continuing with the original pid", want as u64, 0);
}

/// Whether some process or thread other than a zombie of ours holds id `tid`
/// (kill(2) with signal 0 answers ESRCH only for an id nobody has).
pub(crate) fn taken(tid: u32) -> bool {
    // SAFETY: signal 0 only checks that the id exists.
    let r = unsafe { call(sys::SYS_KILL, [tid as usize, 0, 0, 0, 0, 0]) };
    r != Err(sys::ESRCH)
}

/// Continue as the process with the saved PID (returns in it, with true), in a new
/// PID namespace when that is the only way; or, with `CKPT_SAME_PID=0`, in this
/// process (false, with a warning). Never returns in the proxy.
pub fn take_original(ctx: &Ctx, t: &Tables, keep_pdeathsig: bool) -> bool {
    let want = t.threads[0].tid;
    if !ctx.same_pid {
        if sys::getpid() != want as usize {
            out::Line::new().s("ckpt: warning: CKPT_SAME_PID=0: the process continues as pid ").dec(sys::getpid() as u64)
                .s(", not its own ").dec(want as u64).s("; programs that keep their pid or thread ids may misbehave").emit();
        }
        return false;
    }
    if sys::getpid() == want as usize {
        return true;
    }
    let parent = sys::getpid();
    // The threads' ids must be free too; the original's threads were reaped by the
    // freeze, so one still in use belongs to someone else.
    if let Some(th) = t.threads[1..].iter().find(|th| taken(th.tid)) {
        out::trace("a thread id is taken here; using a new pid namespace", th.tid as u64, 0);
        return in_new_namespace(ctx, want, keep_pdeathsig);
    }
    match fork_at(want) {
        Ok(0) => {
            child_setup(keep_pdeathsig, parent, want);
            true
        }
        Ok(child) => proxy(ctx, child),
        Err(sys::EPERM) | Err(sys::EEXIST) => in_new_namespace(ctx, want, keep_pdeathsig),
        Err(e) => no_pid(want, "clone3 with set_tid", e),
    }
}

/// fork(2) at PID `want`. The original, killed by the freeze, may still be a
/// zombie waiting for its parent (an orphan is reaped by init only every few
/// seconds): wait for that.
pub(crate) fn fork_at(want: u32) -> sys::Res {
    let mut r = fork_as(Some(want as i32));
    let mut tries = 0;
    // A zombie is waited for (its parent reaps it); a PID no task shows is one being
    // released (release_task() frees the number after the task is unhashed, as for
    // the page filler's thread id): a short while only.
    while r == Err(sys::EEXIST) && (tries < 400 && is_zombie(want) || tries < 25 && !exists(want)) {
        let ts = [0u64, 20_000_000];
        // SAFETY: a valid timespec.
        let _ = unsafe { call(35 /* nanosleep */, [ts.as_ptr() as usize, 0, 0, 0, 0, 0]) };
        tries += 1;
        r = fork_as(Some(want as i32));
    }
    r
}

/// The resume cannot have its PID: stop, saying how to go on without it.
fn no_pid(want: u32, what: &str, e: isize) -> ! {
    out::Line::new().s("restore process state failed: cannot get pid ").dec(want as u64).s(" back (").s(what).s(": ")
        .errno(e).s("); CKPT_SAME_PID=0 resumes it under a new pid").emit();
    sys::exit_group(out::Step::Process as i32)
}

/// Write `text` to a /proc/self file (uid_map, gid_map, setgroups).
pub(crate) fn write_proc(path: &[u8], text: &[u8]) -> bool {
    let Ok(fd) = sys::open(path, 1 /* O_WRONLY */ | sys::O_CLOEXEC, 0) else { return false };
    let ok = sys::write(fd, text) == Ok(text.len());
    let _ = sys::close(fd);
    ok
}

/// Without the privilege in the initial namespaces: a new user namespace (mapping
/// only our own uid and gid, user_namespaces(7)) owning a new PID namespace, where
/// set_tid is allowed. A PID other than 1 needs the namespace's init to exist, so
/// the first child is that init (a proxy) and the second, with the original PID,
/// goes on with the restore. Inside, the process sees its old PID; its parent is
/// PID 1; files of other users show as the overflow uid.
fn in_new_namespace(ctx: &Ctx, want: u32, keep_pdeathsig: bool) -> bool {
    const SYS_UNSHARE: usize = 272;
    const CLONE_NEWUSER: usize = 0x1000_0000;
    const CLONE_NEWPID: usize = 0x2000_0000;
    const CLONE_NEWNS: usize = 0x0002_0000;
    // SAFETY: no arguments.
    let (uid, gid) = unsafe { (call(102, [0; 6]).unwrap_or(0), call(104, [0; 6]).unwrap_or(0)) };
    // A mount namespace too, so /proc can show the new PID namespace (own_proc).
    // SAFETY: unshare takes flags only.
    if let Err(e) = unsafe { call(SYS_UNSHARE, [CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS, 0, 0, 0, 0, 0]) } {
        no_pid(want, "a new user and pid namespace", e);
    }
    // Only our own uid and gid can be mapped from inside (user_namespaces(7): a
    // process in the new namespace has no CAP_SETUID over its parent), so files of
    // other users show as the overflow uid there, even for root.
    let mut ubuf = [0u8; 48];
    let mut gbuf = [0u8; 48];
    let umap = out::cstr(&mut ubuf, &[b"", b" "], &[uid as u64, uid as u64], b" 1");
    let gmap = out::cstr(&mut gbuf, &[b"", b" "], &[gid as u64, gid as u64], b" 1");
    let mapped = write_proc(b"/proc/self/uid_map\0", &umap[..umap.len() - 1])
        && write_proc(b"/proc/self/setgroups\0", b"deny")
        && write_proc(b"/proc/self/gid_map\0", &gmap[..gmap.len() - 1]);
    if !mapped {
        out::fail_msg(out::Step::Process, "cannot map this user into the new user namespace for the original pid", b"");
    }
    out::trace("continuing in a new user and pid namespace", want as u64, 0);
    match fork_as(None) {
        Ok(0) => {
            // The namespace's init dies with the resumer's process (the PID the user
            // started and may kill): when an init ends, the kernel kills every other
            // process of its namespace (zap_pid_ns_processes()), so nothing is left
            // running unseen. Its parent, outside the namespace, reads as 0 from here
            // (getppid(2)), so the race with a parent already gone cannot be checked
            // as child_setup() does; the window is the few instructions since fork.
            // SAFETY: integer arguments.
            let _ = unsafe { sys::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0) };
            own_proc();
            // PID 1 of the new namespace. Signals with the default action never reach
            // a namespace init (pid_namespaces(7)): give every one a handler, so the
            // ones relayed to it queue (they stay blocked and are taken by sigwait).
            let act = [init_handler as *const () as u64, SA_RESTORER, init_handler as *const () as u64, 0];
            for sig in 1..=64usize {
                if sig != SIGKILL && sig != 19 {
                    // SAFETY: a valid struct sigaction; the handler never runs.
                    let _ = unsafe { call(sys::SYS_RT_SIGACTION, [sig, act.as_ptr() as usize, 0, 8, 0, 0]) };
                }
            }
            match fork_as(Some(want as i32)) {
                Ok(0) => {
                    child_setup(keep_pdeathsig, 1, want);
                    true
                }
                Ok(child) => proxy(ctx, child),
                Err(e) => no_pid(want, "clone3 with set_tid in a new pid namespace", e),
            }
        }
        Ok(child) => proxy(ctx, child),
        Err(e) => no_pid(want, "fork into a new pid namespace", e),
    }
}

/// In the new namespaces' init: a /proc of the new PID namespace over the old one, so
/// /proc/PID of the process's own PID and TIDs is itself (a procfs instance shows
/// the PID namespace of whoever mounted it, proc(5); a user namespace that owns
/// the PID namespace may mount it, mount_namespaces(7)). Mounts are made private
/// first, so nothing leaks back to the namespace the resumer came from. Failing
/// that, /proc stays the resumer's, and a warning says so.
fn own_proc() {
    const SYS_MOUNT: usize = 165;
    const MS_NOSUID: usize = 2;
    const MS_NODEV: usize = 4;
    const MS_NOEXEC: usize = 8;
    const MS_REC: usize = 0x4000;
    const MS_PRIVATE: usize = 1 << 18;
    // SAFETY: NUL-terminated strings; no data argument.
    let r = unsafe {
        call(SYS_MOUNT, [0, c"/".as_ptr() as usize, 0, MS_REC | MS_PRIVATE, 0, 0]).and_then(|_| {
            call(SYS_MOUNT, [c"proc".as_ptr() as usize, c"/proc".as_ptr() as usize, c"proc".as_ptr() as usize,
                             MS_NOSUID | MS_NODEV | MS_NOEXEC, 0, 0])
        })
    };
    match r {
        Ok(_) => out::trace("/proc shows the new pid namespace", 0, 0),
        Err(e) => out::Line::new().s("ckpt: warning: /proc still shows the resumer's pid namespace (mounting one for the new namespace failed: ")
            .errno(e).s("); /proc/PID of the process's own ids names other processes").emit(),
    }
}

const SA_RESTORER: u64 = 0x0400_0000;

/// Installed in the namespace init so relayed signals are queued; never runs (every
/// signal stays blocked there).
extern "C" fn init_handler(_: i32) {}

/// Whether a task with id `pid` shows in /proc.
fn exists(pid: u32) -> bool {
    let mut buf = [0u8; 32];
    let path = crate::out::cstr(&mut buf, &[b"/proc/"], &[pid as u64], b"/stat");
    match sys::open(path, sys::O_RDONLY | sys::O_CLOEXEC, 0) {
        Ok(fd) => {
            let _ = sys::close(fd);
            true
        }
        Err(e) => e != sys::ENOENT,
    }
}

/// Whether process `pid` exists only as a zombie (state Z or X in /proc/PID/stat).
pub(crate) fn is_zombie(pid: u32) -> bool {
    let mut buf = [0u8; 32];
    let path = crate::out::cstr(&mut buf, &[b"/proc/"], &[pid as u64], b"/stat");
    let Ok(fd) = sys::open(path, sys::O_RDONLY | sys::O_CLOEXEC, 0) else { return false };
    let mut buf = [0u8; 512];
    let len = sys::read(fd, &mut buf).unwrap_or(0);
    let _ = sys::close(fd);
    let text = &buf[..len];
    match text.iter().rposition(|&c| c == b')') {
        Some(i) => matches!(text.get(i + 2), Some(b'Z') | Some(b'X')),
        None => false,
    }
}

/// The parent left behind: no memory of the target, no fds; relays signals to the
/// child and ends as it ends.
fn proxy(ctx: &Ctx, child: usize) -> ! {
    let _ = sys::close_range(0, u32::MAX as usize);
    let (gap_lo, gap_hi) = (ctx.gap_start, ctx.gap_start + ctx.gap_len);
    // SAFETY: the proxy runs only from the gap; everything else is the child's copy.
    unsafe {
        let _ = sys::munmap(ckpt_format::PAGE_SIZE as usize, gap_lo - ckpt_format::PAGE_SIZE as usize);
        let _ = sys::munmap(gap_hi, ckpt_format::USER_TOP as usize - gap_hi);
    }
    let all: u64 = !0;
    let mut info = [0u64; 16];
    let timeout = [1u64, 0u64];
    loop {
        // SAFETY: valid set, info buffer and timespec; every signal is blocked here.
        let sig = unsafe { call(SYS_RT_SIGTIMEDWAIT, [&all as *const u64 as usize, info.as_mut_ptr() as usize, timeout.as_ptr() as usize, 8, 0, 0]) };
        if let Ok(s) = sig {
            if s as u64 != SIGCHLD {
                // SAFETY: forwarding a signal to our child.
                let _ = unsafe { call(sys::SYS_KILL, [child, s, 0, 0, 0, 0]) };
            }
        }
        let mut status: i32 = 0;
        // SAFETY: status is a valid out-pointer.
        let r = unsafe { call(SYS_WAIT4, [child, &mut status as *mut i32 as usize, WNOHANG | WALL, 0, 0, 0]) };
        if r == Ok(child) {
            end_like(status);
        }
    }
}

/// Exit with the child's status, or die of the signal that killed it.
fn end_like(status: i32) -> ! {
    let sig = (status & 0x7f) as usize;
    if sig == 0 {
        sys::exit_group((status >> 8) & 0xff);
    }
    let dfl = [0u64; 4];
    let set: u64 = 1 << (sig - 1);
    // SAFETY: default disposition for `sig`, unblock it, and send it to ourselves.
    unsafe {
        let _ = call(sys::SYS_RT_SIGACTION, [sig, dfl.as_ptr() as usize, 0, 8, 0, 0]);
        let _ = call(sys::SYS_RT_SIGPROCMASK, [1 /* SIG_UNBLOCK */, &set as *const u64 as usize, 0, 8, 0, 0]);
        let _ = call(sys::SYS_KILL, [sys::getpid(), sig, 0, 0, 0, 0]);
    }
    sys::exit_group(128 + sig as i32)
}
