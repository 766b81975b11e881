//! Lazy resume: the process runs before its anonymous memory has arrived.
//!
//! With `CKPT_LAZY=1` (or a file frozen with `--lazy`, unless `CKPT_LAZY=0`), the
//! private anonymous VMAs (heap, stacks, anonymous mappings) are created empty and
//! registered with a userfaultfd for missing-page faults instead of being read in.
//! A helper process serves them: it is made by a double fork before the VMAs exist
//! (so it is not the process's child and its own memory holds none of the process's
//! pages), keeps its own mapping of the image file and the userfaultfd, answers each
//! fault with UFFDIO_COPY from the file, and streams every other page in file order
//! in the background. Once everything is in it closes the userfaultfd, which ends the
//! registration (userfaultfd_release()), and exits: the process is left with plain
//! anonymous memory and no thread, fd or mapping of the helper. The process's own
//! copy of the userfaultfd is closed before its first instruction.
//!
//! The helper must also see fork(), mremap(), madvise(MADV_DONTNEED) and munmap()
//! in the process (non-cooperative events), and system calls that touch a missing
//! page must wait for it rather than fail: both need full userfaultfd, which the
//! kernel gives only with CAP_SYS_PTRACE in the initial user namespace
//! (vm.unprivileged_userfaultfd=0; UFFD_USER_MODE_ONLY makes such a system call fail
//! with EFAULT). Without it the resume is eager, with a one-line notice saying so.

mod pages;
mod prefetch;
mod server;
mod uffd;

use crate::ctx::Ctx;
use crate::out::{self, Line, Step};
use crate::sys::{self, call, CloneArgs};
use ckpt_format::{Tables, Vma, VmaKind, PAGE_SIZE, VMA_LOCKED};

const SYS_WAIT4: usize = 61;
const WALL: usize = 0x4000_0000;

/// The stub's side of a lazy resume while the VMAs are created.
pub struct Lazy {
    uffd: usize,
    /// Write end of the pipe the helper waits on before it serves anything.
    go: usize,
    /// `ckpt profile`'s fd (the helper's copy writes to it), or 0.
    profile_fd: usize,
    /// The intermediate child of the double fork, reaped in [`Lazy::go`]: by then
    /// it has long exited, so the restore does not wait for it to be scheduled.
    intermediate: usize,
}

/// Whether a VMA's pages are left to the helper: private anonymous memory with
/// pages to bring, accessible (a fault on PROT_NONE is SIGSEGV, not a missing page),
/// and not locked (mlock(2) would fault it all in at once anyway).
pub fn eligible(v: &Vma) -> bool {
    matches!(VmaKind::from_u32(v.kind), Some(VmaKind::Anon | VmaKind::Heap | VmaKind::Stack))
        && v.prot != 0
        && v.flags & VMA_LOCKED == 0
        && v.nruns != 0
}

fn eager(why: &str, e: isize) -> Option<Lazy> {
    let mut l = Line::new();
    l.s("lazy resume not available (").s(why);
    if e != 0 {
        l.s(": ").errno(e);
    }
    l.s("); resuming eagerly").emit();
    None
}

/// Decide on a lazy resume and start its helper, which waits for [`Lazy::go`].
/// The process keeps no copy of `ckpt profile`'s fd either way.
pub fn begin(ctx: &Ctx, t: &Tables) -> Option<Lazy> {
    let l = start(ctx, t);
    if l.is_none() && ctx.profile_fd != 0 {
        let _ = sys::close(ctx.profile_fd);
    }
    l
}

fn start(ctx: &Ctx, t: &Tables) -> Option<Lazy> {
    if !ctx.lazy || !t.vmas.iter().any(eligible) {
        return None;
    }
    if ctx.hdr.flags & ckpt_format::HDR_COMPRESSED != 0 {
        // The helper reads pages in place from the image; compressed ones are not.
        return eager("the file's pages are compressed (ckpt freeze --compress)", 0);
    }
    if !ctx.image_base.is_multiple_of(PAGE_SIZE) {
        return eager("the image is not page aligned in its file", 0);
    }
    let fd = match uffd::open() {
        Ok(fd) => fd,
        Err(sys::EPERM) => {
            return eager("userfaultfd with fork and remap events needs CAP_SYS_PTRACE; system calls into missing pages would fail", sys::EPERM)
        }
        Err(e) => return eager("userfaultfd", e),
    };
    let mut p = [0i32; 2];
    if let Err(e) = sys::pipe2(&mut p, sys::O_CLOEXEC) {
        let _ = sys::close(fd);
        return eager("pipe", e);
    }
    let (rd, wr) = (p[0] as usize, p[1] as usize);
    let pid = sys::getpid();
    match fork() {
        Ok(0) => {
            // The intermediate child: fork the helper and end, so that the helper is
            // nobody's child here (reparented to init or the nearest subreaper).
            if let Ok(0) = fork() {
                server::run(ctx, t, pid, fd, rd)
            }
            sys::exit_thread(0)
        }
        Ok(child) => {
            let _ = sys::close(rd);
            out::trace("lazy resume: helper started", 0, 0);
            Some(Lazy { uffd: fd, go: wr, profile_fd: ctx.profile_fd, intermediate: child })
        }
        Err(e) => {
            let _ = sys::close(fd);
            let _ = sys::close(rd);
            let _ = sys::close(wr);
            eager("fork of the helper", e)
        }
    }
}

/// fork(2) by clone3 with no exit signal: neither the intermediate child nor the
/// helper sends SIGCHLD, which would otherwise be left pending for the process.
fn fork() -> sys::Res {
    let args = CloneArgs {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: 0,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: 0,
    };
    // SAFETY: a fork-like clone3 (no CLONE_VM): the child continues on its own copy
    // of this stack.
    unsafe { call(sys::SYS_CLONE3, [&args as *const CloneArgs as usize, core::mem::size_of::<CloneArgs>(), 0, 0, 0, 0]) }
}

impl Lazy {
    /// Register a freshly created eligible VMA instead of filling it (but for the
    /// pages of the working-set hint, unless this resume records a new one).
    pub fn register(&self, ctx: &Ctx, t: &Tables, v: &Vma) {
        if self.profile_fd == 0 {
            prefetch::fill(ctx, t, v);
        }
        out::trace("lazy: registered with userfaultfd", v.start, v.end);
        out::check(uffd::register(self.uffd, v.start, v.end - v.start), Step::MapVma, v.start, v.end);
    }

    /// Every VMA exists: let the helper serve faults, and drop the process's own
    /// copy of the userfaultfd (the helper's keeps the registration alive).
    pub fn go(self) -> Serving {
        let mut status = 0i32;
        // SAFETY: status is a live int; no rusage.
        let _ = unsafe { call(SYS_WAIT4, [self.intermediate, &mut status as *mut i32 as usize, WALL, 0, 0, 0]) };
        let _ = sys::write(self.go, b"g");
        let _ = sys::close(self.uffd);
        if self.profile_fd != 0 {
            let _ = sys::close(self.profile_fd);
        }
        Serving { go: self.go }
    }
}

/// The helper serves faults; it streams nothing until [`Serving::release`] (or
/// the process's end, or a time limit), so that the rest of the restore does not
/// share the CPU and the mm's lock with the stream (UFFDIO_COPY holds mmap_lock
/// for reading; mmap, mprotect and clone take it for writing).
pub struct Serving {
    go: usize,
}

impl Serving {
    /// The process is about to continue: the helper sees the end of the go pipe
    /// (close-on-exec, so a process of a tree that executes the restorer holds no
    /// copy) and starts streaming.
    pub fn release(self) {
        let _ = sys::close(self.go);
    }
}
