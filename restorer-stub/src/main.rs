//! The restorer stub: a `no_std`, static, position-independent program that turns a
//! ckpt image back into the frozen process.
//!
//! Phase 1 runs where the kernel loaded us: find and validate the image, check the
//! CPU and vdso, pick a gap free in both the current and the target layout, and copy
//! ourselves (code, tables, a stack) there. Phase 2 runs in the gap: unmap the old
//! layout, move the vdso/vvar to the saved addresses (or, for another kernel's
//! vdso, write jumps into it over the old one), recreate every VMA and fill its
//! pages (the files of the Files section first, which VMAs may map), set the mm
//! fields, fds and process state, create the other threads, and
//! release every thread at once through `rt_sigreturn` on its prebuilt signal frame,
//! the last one out unmapping the gap on the way when the target's text offers the
//! instructions to do so.
#![no_std]
#![no_main]

#[path = "arch/x86_64.rs"]
mod arch;
mod backing;
mod ctx;
mod decompress;
mod fds;
mod fill;
mod filler;
mod gap;
mod identity;
mod image;
mod lazy;
mod layout;
mod mem;
mod mm;
mod objects;
mod out;
mod pid;
mod probe;
mod procstate;
mod progress;
mod reloc;
mod selfmaps;
mod sigframe;
mod startup;
mod sys;
mod thread;
mod threads;
mod timens;
mod trampoline;
mod tree;
mod unlinked;
mod vdso;

use out::Step;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    out::fail_msg(Step::Validate, "internal error in the restorer", b"")
}

/// The prebuilt libcore is compiled for unwinding, and without LTO (a workspace-wide
/// `cargo build`, not the `stub` profile) the parts of it the stub uses still name
/// the unwinder's personality routine. Nothing unwinds here (panic = "abort"), so it
/// is never called; it only has to exist for the link.
#[no_mangle]
extern "C" fn rust_eh_personality() {}

/// Phase 1, called by `_start` with the initial stack pointer.
///
/// # Safety
/// `sp` must be the process's initial stack pointer (argc, argv, envp, auxv).
#[no_mangle]
pub unsafe extern "C" fn entry(sp: *const usize) -> ! {
    sys::block_all_signals();
    // SAFETY: called once, first, before any relocated data is used.
    unsafe { reloc::relocate_self() };
    // SAFETY: sp is the stack pointer the kernel handed to _start.
    let st = unsafe { startup::Startup::parse(sp) };
    out::set_trace(st.env_flag(b"CKPT_TRACE"));
    progress::init(st.env_flag(b"CKPT_QUIET"), st.env_num(b"CKPT_PROGRESS_DELAY_MS"));
    out::trace("restorer started at", reloc::stub_start() as u64, reloc::stub_end() as u64);

    let mut ctx = ctx::Ctx::zeroed();
    ctx.hw_crc = ckpt_format::crc32c::have_hw();
    ctx.same_pid = !st.env_is(b"CKPT_SAME_PID", b"0");
    tree::member_of(&st, &mut ctx);
    image::open(&st, &mut ctx);
    let tables = image::load(&mut ctx);
    let t = image::parse(&ctx, tables);
    tree::root_of(&mut ctx, &t);
    ctx.missing_ignore = ctx.hdr.flags & ckpt_format::HDR_MISSING_FILES_IGNORE != 0 || st.env_is(b"CKPT_MISSING_FILES", b"ignore");
    ctx.lazy = st.env_flag(b"CKPT_LAZY") || (ctx.hdr.flags & ckpt_format::HDR_LAZY != 0 && !st.env_is(b"CKPT_LAZY", b"0"));
    ctx.profile_fd = st.env_num(b"CKPT_LAZY_PROFILE_FD").filter(|&fd| (3..1 << 20).contains(&fd)).unwrap_or(0) as usize;
    ctx.cur = selfmaps::read_specials();
    let plan = probe::check(&ctx, &t);
    ctx.timens = plan.timens.unwrap_or([0, 0]);
    ctx.vdso_trampolines = plan.vdso == ckpt_format::compat::VdsoPath::Trampolines;
    gap::enter(&mut ctx, &t, tables)
}

/// Phase 2, running from the copy in the gap on the gap's stack: the restore order.
pub(crate) extern "C" fn phase2(ctx: *const ctx::Ctx) -> ! {
    // SAFETY: gap::enter passes a pointer to the Ctx it copied into the gap.
    let ctx = unsafe { &*ctx };
    out::trace("restorer running in gap", ctx.gap_start as u64, (ctx.gap_start + ctx.gap_len) as u64);
    let t = image::parse_moved(ctx, ctx.tables());
    layout::unmap_old(ctx);
    if ctx.vdso_trampolines {
        trampoline::install(ctx, &t);
    } else {
        vdso::move_specials(ctx, &t);
    }
    identity::before_pid(&t);
    // Before the memory exists, so the fork behind it copies next to nothing.
    let same_ids = pid::take_original(ctx, &t, t.process.is_some_and(|p| p.pdeathsig != 0));
    // The root of a tree: the objects it makes for every process of it.
    tree::prepare(ctx, &t);
    // In the process that becomes the target, before its timers and threads exist.
    timens::enter(ctx);
    // Deleted files and memfds before the VMAs that map them; their owner, mode
    // and seals once every fd and mapping of them exists.
    let fd_limit = objects::create(ctx, &t);
    // Lazily: the helper exists before the VMAs (it forks none of their pages) and
    // serves them from here on, before anything of the process touches them.
    let lazy = lazy::begin(ctx, &t);
    layout::create_all(ctx, &t, lazy.as_ref());
    let lazy = lazy.map(lazy::Lazy::go);
    mm::restore(&t);
    fds::restore(ctx, &t);
    // The root of a tree: every other process forked at its pid (each restores
    // itself from its own image).
    tree::fork_all(ctx, &t);
    objects::finish(ctx, &t, fd_limit);
    procstate::restore(&t);
    // Every other thread: created, its own state set, waiting for the release.
    threads::start(ctx, &t, same_ids);
    procstate::posix_timers(&t);
    if t.threads[0].flags & ckpt_format::THREAD_EXITED == 0 {
        thread::restore(&t.threads[0], false);
    }
    // Every process of a tree is restored before any continues.
    tree::release_together(ctx, &t);
    procstate::requeue_signals(&t);
    // The helper streams from here on (before seccomp, which may forbid close).
    if let Some(l) = lazy {
        l.release();
    }
    procstate::seccomp(&t);
    threads::release_and_leave(ctx, &t)
}
