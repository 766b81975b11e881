//! A copy-on-write copy of the target's memory, so a `--leave-running` target is
//! stopped only while its state is read, not while its pages are written.
//!
//! Once registers, fds and kernel state are captured, a clone(2) without CLONE_VM
//! is injected into one stopped thread: the child's address space is the parent's at
//! that instant, shared copy-on-write (fork copies the page tables, not the pages:
//! copy_page_range()). With PTRACE_O_TRACECLONE the child starts traced by us, in a
//! PTRACE_EVENT_STOP before its first instruction, and never runs: it is only a
//! frozen address space, read with process_vm_readv while the original runs on.
//!
//! What fork does not copy faithfully is refused here (the caller then keeps the
//! target stopped for the whole freeze): pages of a MADV_DONTFORK range are absent
//! from the child and those of a MADV_WIPEONFORK range read as zero (madvise(2)).
//! Shared mappings need nothing: their contents are stored as objects (fdplan)
//! while the target is still stopped.
//!
//! The child is created with exit signal 0 and CLONE_FILES: its end sends the target
//! no SIGCHLD, a wait(2) of the target without __WALL/__WCLONE never sees it, and it
//! holds no second reference to the target's open files (a pipe's reader still sees
//! its end of file when the target closes the writer). Its zombie is the target's
//! child, though (do_notify_parent() reaps only SIGCHLD children of a parent that
//! ignores them): once the copy is written, the target is stopped once more, briefly,
//! for an injected wait4 that reaps it.

use crate::inject::{checked, Injector};
use crate::plan::{Pages, PlannedVma};
use crate::proc::maps::Mapping;
use crate::ptrace::Seized;
use anyhow::{bail, Context, Result};
use ckpt_format::{VMA_DONTFORK, VMA_WIPEONFORK};
use std::time::{Duration, Instant};

/// The first VMA whose stored pages a fork would not copy, described for a warning.
pub fn obstacle(vmas: &[PlannedVma]) -> Option<String> {
    vmas.iter().find(|v| v.pages != Pages::None && v.vma.flags & (VMA_DONTFORK | VMA_WIPEONFORK) != 0).map(|v| {
        format!(
            "VMA {:x}-{:x} is marked {} (madvise), which a copy-on-write copy does not hold",
            v.vma.start,
            v.vma.end,
            if v.vma.flags & VMA_DONTFORK != 0 { "MADV_DONTFORK" } else { "MADV_WIPEONFORK" }
        )
    })
}

/// VmFlags that fork copies to the child as they are (dup_mmap(); VM_LOCKED,
/// VM_LOCKONFAULT and the userfaultfd flags are cleared in the child, VM_DONTCOPY
/// VMAs left out).
const INHERITED_FLAGS: [&str; 11] = ["rd", "wr", "ex", "sh", "gd", "hg", "nh", "dd", "mg", "wf", "nr"];

/// Check smaps read before the stop against the child's, which is the process at
/// the fork: a VMA whose flags changed in between (madvise without a change of
/// layout) would be planned wrongly, so the freeze fails instead (no file).
pub fn verify_flags(early: &[Mapping], c: &CowCopy) -> Result<()> {
    let now = crate::proc::maps::read_smaps(c.pid).with_context(|| format!("reading the memory map of the copy-on-write child {}", c.pid))?;
    let flags = |m: &Mapping| INHERITED_FLAGS.iter().filter(|f| m.has_flag(f)).copied().collect::<Vec<_>>();
    let mut at = now.iter().peekable();
    for m in early {
        match at.peek() {
            Some(n) if n.start == m.start && n.end == m.end && flags(n) == flags(m) => {
                at.next();
            }
            _ if m.has_flag("dc") => {}
            _ => bail!("VMA {:x}-{:x} {} changed while the process was being stopped; freeze it again", m.start, m.end, m.name),
        }
    }
    if let Some(n) = at.next() {
        bail!("VMA {:x}-{:x} {} appeared while the process was being stopped; freeze it again", n.start, n.end, n.name);
    }
    Ok(())
}

/// The traced child holding the copy. [`CowCopy::finish`] (or the drop) kills it
/// and reaps its zombie from the target.
pub struct CowCopy {
    pub pid: i32,
    /// The process it was cloned from.
    target: i32,
    /// The `syscall` instruction used to inject the clone, used again for the reap.
    syscall_at: u64,
    alive: bool,
    /// Ended and reaped (or tried to), by [`CowCopy::finish`] or the drop.
    reaped: bool,
}

/// Clone the stopped thread `t` (its registers already captured) into a traced
/// child that shares its memory copy-on-write; `writable` as for [`Injector::new`].
pub fn fork(t: &Seized, target: i32, syscall_at: u64, writable: impl Fn(u64, u64) -> bool) -> Result<CowCopy> {
    t.trace_clones().with_context(|| format!("tracing the clone of thread {}", t.pid))?;
    let r = {
        let inj = Injector::new(t, t.regs()?, syscall_at, writable)?;
        // clone(flags, stack 0 = the caller's, ...): the low byte of flags is the
        // exit signal, 0 here (clone(2)).
        let flags = (libc::CLONE_FILES | libc::CLONE_FS | libc::CLONE_SYSVSEM) as u64;
        inj.syscall(libc::SYS_clone, [flags, 0, 0, 0, 0, 0])?
    };
    let pid = checked(r, "the copy-on-write clone(2)", &format!("thread {}", t.pid))? as i32;
    let mut copy = CowCopy { pid, target, syscall_at, alive: true, reaped: false };
    // The auto-attached child reports its first stop to us (ptrace(2), "attaching
    // and detaching"): the kernel queues it before the child can run.
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out-pointer.
        let w = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if w == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            copy.alive = false;
            bail!("waiting for the copy-on-write child {pid} of pid {target}: {e}");
        }
    }
    if !libc::WIFSTOPPED(status) {
        copy.alive = false;
        bail!("the copy-on-write child {pid} of pid {target} ended at once (status {status:#x})");
    }
    Ok(copy)
}

impl CowCopy {
    /// Fail if the child is gone (killed by someone else): its memory would read as
    /// nothing.
    pub fn check_alive(&self) -> Result<()> {
        // SAFETY: signal 0 only checks that the process exists.
        if !self.alive || unsafe { libc::kill(self.pid, 0) } != 0 {
            bail!("the copy-on-write child {} of pid {} was killed while its memory was read", self.pid, self.target);
        }
        let state = crate::group::state_letter(self.pid, self.pid);
        if state == 'Z' as u32 || state == 'X' as u32 {
            bail!("the copy-on-write child {} of pid {} was killed while its memory was read", self.pid, self.target);
        }
        Ok(())
    }

    fn kill(&mut self) {
        if !self.alive {
            return;
        }
        self.alive = false;
        // SAFETY: plain signal delivery to our tracee.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let mut status = 0;
        // As its tracer we are told of its death first (bounded: SIGKILL cannot be
        // blocked). SAFETY: status is a valid out-pointer.
        while unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) } == self.pid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                break;
            }
        }
    }

    /// End the child and reap its zombie from inside the target, which is stopped
    /// for that (the returned time). An error names what failed; the zombie is then
    /// left to the target.
    pub fn finish(mut self) -> Result<Duration> {
        self.end()
    }

    fn end(&mut self) -> Result<Duration> {
        if self.reaped {
            return Ok(Duration::ZERO);
        }
        self.reaped = true;
        self.kill();
        let t0 = Instant::now();
        let tid = crate::proc::threads(self.target)
            .with_context(|| format!("listing the threads of pid {} to reap its copy-on-write child {}", self.target, self.pid))?
            .into_iter()
            .find(|&tid| crate::group::state_letter(self.target, tid) != 'Z' as u32)
            .with_context(|| format!("pid {} has no live thread to reap its copy-on-write child {}", self.target, self.pid))?;
        let mut t = Seized::seize(tid).with_context(|| format!("stopping thread {tid} of pid {} again", self.target))?;
        t.request_stop()?;
        t.wait_stop()?;
        let mut code = [0u8; 2];
        let mem = crate::memory::Mem::open(tid)?;
        if mem.read_exact(self.syscall_at, &mut code).is_err() || code != [0x0f, 0x05] {
            bail!("pid {}: the `syscall` instruction at {:#x} is gone; its copy-on-write child {} stays a zombie", self.target, self.syscall_at, self.pid);
        }
        let maps = writable_ranges(tid);
        let writable = |lo: u64, hi: u64| maps.iter().any(|&(s, e)| s <= lo && hi <= e);
        let r = {
            let inj = Injector::new(&t, t.regs()?, self.syscall_at, writable)?;
            // __WALL: the child's exit signal is not SIGCHLD (wait(2)).
            inj.syscall(libc::SYS_wait4, [self.pid as u64, 0, (libc::WNOHANG | libc::__WALL) as u64, 0, 0, 0])?
        };
        drop(t);
        let r = checked(r, "wait4 for the copy-on-write child", &format!("pid {}", self.target))?;
        if r != self.pid as i64 {
            bail!("pid {}: wait4 did not reap its copy-on-write child {} (returned {r})", self.target, self.pid);
        }
        Ok(t0.elapsed())
    }
}

impl Drop for CowCopy {
    /// A freeze that fails after the fork still ends the child and reaps it.
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// The writable ranges of `tid`'s address space now (/proc/TID/maps, proc(5)).
fn writable_ranges(tid: i32) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/maps")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            if perms.as_bytes().get(1) != Some(&b'w') {
                return None;
            }
            let (s, e) = range.split_once('-')?;
            Some((u64::from_str_radix(s, 16).ok()?, u64::from_str_radix(e, 16).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stack_is_writable() {
        let x = 0u64;
        let a = &x as *const u64 as u64;
        let r = writable_ranges(std::process::id() as i32);
        assert!(r.iter().any(|&(s, e)| s <= a && a + 8 <= e));
    }
}
