//! The final jump: a signal frame built in advance and consumed by rt_sigreturn(2),
//! which restores every general register, rip, rflags, the blocked mask, the
//! sigaltstack and the whole FPU/xstate in one system call.
//!
//! Frame layout (arch/x86/include/asm/sigframe.h, uapi asm/sigcontext.h, 64-bit):
//! `struct rt_sigframe { char *pretcode; struct ucontext uc; struct siginfo info; }`,
//! and the kernel reads it at rsp - 8 (the handler's `ret` popped pretcode). The
//! xstate goes in a separate 64-byte aligned area with the FP_XSTATE_MAGIC1 software
//! bytes at offset 464 and FP_XSTATE_MAGIC2 right after the area, or the kernel
//! restores only the legacy FXSAVE part.

use crate::arch;
use crate::ctx::Ctx;
use crate::out::{self, Step};
use ckpt_format::{Tables, Thread, PROT_WRITE, THREAD_EXITED};
use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

#[repr(C)]
#[derive(Default)]
struct SigContext {
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rdi: u64,
    rsi: u64,
    rbp: u64,
    rbx: u64,
    rdx: u64,
    rax: u64,
    rcx: u64,
    rsp: u64,
    rip: u64,
    eflags: u64,
    cs: u16,
    gs: u16,
    fs: u16,
    ss: u16,
    err: u64,
    trapno: u64,
    oldmask: u64,
    cr2: u64,
    fpstate: u64,
    reserved: [u64; 8],
}

#[repr(C)]
#[derive(Default)]
struct UContext {
    flags: u64,
    link: u64,
    ss_sp: u64,
    ss_flags: u32,
    _pad: u32,
    ss_size: u64,
    mcontext: SigContext,
    sigmask: u64,
}

#[repr(C)]
#[derive(Default)]
struct Frame {
    pretcode: u64,
    uc: UContext,
    info: [u64; 16],
}

const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const SW_BYTES_OFFSET: usize = 464;
const MXCSR_OFFSET: usize = 24;
const USER_CS: u16 = 0x33;
const USER_DS: u16 = 0x2b;
const SS_DISABLE: u32 = 2;
/// The System V ABI's red zone below rsp, which the frame must not touch.
const RED_ZONE: u64 = 128;

fn fill_frame(f: &mut Frame, th: &Thread, fpstate: u64) {
    let r = &th.regs;
    f.uc.flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if fpstate != 0 { UC_FP_XSTATE } else { 0 };
    if th.ss_size != 0 {
        f.uc.ss_sp = th.ss_sp;
        f.uc.ss_size = th.ss_size;
        f.uc.ss_flags = th.ss_flags;
    } else {
        f.uc.ss_flags = SS_DISABLE;
    }
    let m = &mut f.uc.mcontext;
    (m.r8, m.r9, m.r10, m.r11, m.r12, m.r13, m.r14, m.r15) = (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15);
    (m.rdi, m.rsi, m.rbp, m.rbx, m.rdx, m.rax, m.rcx) = (r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx);
    (m.rsp, m.rip, m.eflags) = (r.rsp, r.rip, r.eflags);
    m.cs = USER_CS;
    m.ss = USER_DS;
    m.fpstate = fpstate;
    f.uc.sigmask = th.sigmask;
}

const XFEATURE_TILEDATA: u64 = 1 << 18;

/// The xstate features frames carry (the image's, as far as this CPU has them), and
/// the user XSAVE size for them without and with AMX tile data: the same for every
/// thread, worked out once by the leader before any thread is created. CPUID and
/// XGETBV are cheap on bare metal but leave the guest in a VM, once per thread
/// and component otherwise.
static XFEATURES: AtomicU64 = AtomicU64::new(0);
static XSIZE_NO_TILES: AtomicUsize = AtomicUsize::new(0);
static XSIZE_ALL: AtomicUsize = AtomicUsize::new(0);

/// Fill the statics above (the leader, before creating threads).
pub fn init(ctx: &Ctx) {
    let feats = ctx.hdr.xcr0 & arch::xcr0();
    XFEATURES.store(feats, Relaxed);
    XSIZE_NO_TILES.store(arch::xstate_size_for(feats & !XFEATURE_TILEDATA), Relaxed);
    XSIZE_ALL.store(arch::xstate_size_for(feats), Relaxed);
}

fn xfeatures() -> u64 {
    XFEATURES.load(Relaxed)
}

fn xsize_for(feats: u64) -> usize {
    if feats & XFEATURE_TILEDATA != 0 {
        XSIZE_ALL.load(Relaxed)
    } else {
        XSIZE_NO_TILES.load(Relaxed)
    }
}
const ARCH_REQ_XCOMP_PERM: usize = 0x1023;

/// Copy the saved XSAVE area to `dst` (64-byte aligned, `xstate.len() + 4` bytes) and
/// add the software bytes the kernel checks before it uses XRSTOR on it.
///
/// The kernel accepts a frame's xstate only up to the task's own user size
/// (check_xstate_in_sigframe, arch/x86/kernel/fpu/signal.c), else it restores the
/// legacy part alone and the AVX state is lost. ptrace hands out the whole area,
/// AMX tile data included (11 KB here), but a task gets room for tile data only once
/// it asked for it (arch_prctl ARCH_REQ_XCOMP_PERM). So a thread whose tiles are in
/// their initial state gets a frame without them; one that used them asks first.
///
/// # Safety
/// `dst` must be writable for `frame_xstate_len(..) + 4` bytes and 64-byte aligned.
unsafe fn place_xstate(dst: usize, xstate: &[u8], xfeatures: u64) {
    let in_use = u64::from_le_bytes(xstate[512..520].try_into().unwrap_or([0; 8]));
    let mut feats = xfeatures;
    if in_use & XFEATURE_TILEDATA != 0 {
        // SAFETY: integer arguments only.
        let r = unsafe { crate::sys::call(crate::sys::SYS_ARCH_PRCTL, [ARCH_REQ_XCOMP_PERM, 18, 0, 0, 0, 0]) };
        out::check(r, Step::Thread, 0, 0);
    } else {
        feats &= !XFEATURE_TILEDATA;
    }
    let size = xstate.len().min(xsize_for(feats));
    // SAFETY: the caller vouches for the destination.
    unsafe {
        core::ptr::copy_nonoverlapping(xstate.as_ptr(), dst as *mut u8, size);
        let mx = (dst + MXCSR_OFFSET) as *mut u32;
        mx.write(mx.read() & 0xffff); // reserved MXCSR bits would make XRSTOR fault
        let bv = (dst + 512) as *mut u64;
        bv.write_unaligned(bv.read_unaligned() & feats);
        let sw = (dst + SW_BYTES_OFFSET) as *mut u32;
        sw.write(FP_XSTATE_MAGIC1);
        sw.add(1).write(size as u32 + 4); // extended_size
        (sw.add(2) as *mut u64).write_unaligned(feats);
        sw.add(4).write(size as u32); // xstate_size
        for i in 5..12 {
            sw.add(i).write(0);
        }
        ((dst + size) as *mut u32).write_unaligned(FP_XSTATE_MAGIC2);
    }
}

/// Whether `[lo, hi)` lies in one writable VMA of the target.
fn writable_in_target(t: &Tables, lo: u64, hi: u64) -> bool {
    t.vmas.iter().any(|v| v.start <= lo && hi <= v.end && v.prot & PROT_WRITE != 0)
}

fn xstate_of<'a>(t: &Tables<'a>, th: &Thread) -> &'a [u8] {
    &t.xstate[th.xstate_off as usize..th.xstate_off as usize + th.xstate_size as usize]
}

/// Where a thread's frame goes, the xstate 64-byte aligned above it; returns
/// (frame, fpstate). Where the kernel would put a signal frame for a handler with
/// SA_ONSTACK (get_sigframe, arch/x86/kernel/signal.c): at the top of the thread's
/// sigaltstack unless the thread is already running on it, else below the red zone
/// of its stack. The alternate stack matters: a runtime whose threads run on small
/// stacks of their own (Go's goroutine stacks start at a few KiB) gives every thread
/// a sigaltstack so that no signal frame lands there, and neither must ours.
fn target_frame_addr(th: &Thread, xs_len: usize) -> (u64, u64) {
    const SS_DISABLE: u32 = 2;
    let rsp = th.regs.rsp;
    let (ss_lo, ss_hi) = (th.ss_sp, th.ss_sp.wrapping_add(th.ss_size));
    let on_altstack = ss_lo < rsp && rsp <= ss_hi;
    let top = if th.ss_size != 0 && th.ss_flags & SS_DISABLE == 0 && !on_altstack { ss_hi } else { rsp - RED_ZONE };
    let fp = (top - xs_len as u64 - 4) & !63;
    ((fp - core::mem::size_of::<Frame>() as u64) & !15, fp)
}

/// Bytes of xstate the frame carries (place_xstate).
fn frame_xstate_len(xs_len: usize, xs: &[u8], xfeatures: u64) -> usize {
    if xs_len == 0 {
        return 0;
    }
    let in_use = xs.get(512..520).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let feats = if in_use & XFEATURE_TILEDATA != 0 { xfeatures } else { xfeatures & !XFEATURE_TILEDATA };
    xs_len.min(xsize_for(feats))
}

/// Whether every live thread can leave through the target's own instructions with
/// its frame on its own stack, so that nothing of the restorer stays mapped.
pub fn all_leave_through_target(ctx: &Ctx, t: &Tables) -> bool {
    ctx.hdr.gadget_syscall_ret != 0
        && ctx.hdr.gadget_sigreturn != 0
        && t.threads.iter().filter(|th| th.flags & THREAD_EXITED == 0).all(|th| {
            let xs = xstate_of(t, th);
            let n = frame_xstate_len(xs.len(), xs, xfeatures());
            let (frame, fp) = target_frame_addr(th, n);
            writable_in_target(t, frame, fp + n as u64 + 4)
        })
}

/// Write thread `th`'s frame onto its own stack (see [`all_leave_through_target`])
/// and return its address, for [`leave_last`] or [`leave_signalling`].
pub fn place_on_target(ctx: &Ctx, t: &Tables, th: &Thread) -> usize {
    let xs = xstate_of(t, th);
    let (frame, fp) = target_frame_addr(th, frame_xstate_len(xs.len(), xs, xfeatures()));
    let mut f = Frame::default();
    fill_frame(&mut f, th, if xs.is_empty() { 0 } else { fp });
    f.pretcode = ctx.hdr.gadget_sigreturn;
    // SAFETY: [frame, rsp - RED_ZONE) is writable target memory below the thread's
    // red zone (all_leave_through_target), outside the restorer's gap.
    unsafe {
        if !xs.is_empty() {
            place_xstate(fp as usize, xs, xfeatures());
        }
        core::ptr::write(frame as *mut Frame, f);
    }
    frame as usize
}

/// The last thread out: unmap the restorer's gap and rt_sigreturn, both through the
/// target's own instructions.
pub fn leave_last(ctx: &Ctx, frame: usize) -> ! {
    out::trace("rt_sigreturn through the target's text, unmapping the gap", ctx.gap_start as u64, (ctx.gap_start + ctx.gap_len) as u64);
    // SAFETY: the frame was placed by place_on_target; the gadgets were found and
    // decoded in the target's executable text (validated against its VMAs).
    unsafe { arch::unmap_and_sigreturn(frame, ctx.gap_start, ctx.gap_len, ctx.hdr.gadget_syscall_ret as usize) }
}

/// Any other thread: count itself out on `word` (one less) and rt_sigreturn, both
/// through the target's own instructions, so the last thread may unmap the gap as
/// soon as `word` reaches zero.
pub fn leave_signalling(ctx: &Ctx, frame: usize, word: &AtomicU32) -> ! {
    // FUTEX_OP(FUTEX_OP_ADD, -1, FUTEX_OP_CMP_EQ, 0): oparg is 12 bits, sign-extended.
    const OP_ADD_MINUS_ONE: u32 = (1 << 28) | (0xfff << 12);
    // SAFETY: as leave_last; `word` is in the gap, which stays mapped until the
    // last thread sees it reach zero, after this call has changed it.
    unsafe { arch::signal_and_sigreturn(frame, word.as_ptr() as usize, OP_ADD_MINUS_ONE, ctx.hdr.gadget_syscall_ret as usize) }
}

/// Fallback when some thread cannot leave through the target's text: the frame on
/// the calling thread's stack in the gap, which then stays mapped.
pub fn leave_from_gap(ctx: &Ctx, t: &Tables, th: &Thread) -> ! {
    out::trace("rt_sigreturn from the restorer (its gap stays mapped)", ctx.gap_start as u64, (ctx.gap_start + ctx.gap_len) as u64);
    #[repr(C, align(64))]
    struct Area([u8; ckpt_format::MAX_XSTATE as usize + 64]);
    let mut area = Area([0; ckpt_format::MAX_XSTATE as usize + 64]);
    let xs = xstate_of(t, th);
    let mut f = Frame::default();
    let fp = area.0.as_mut_ptr() as u64;
    fill_frame(&mut f, th, if xs.is_empty() { 0 } else { fp });
    if !xs.is_empty() {
        // SAFETY: the area is 64-byte aligned and larger than any valid xstate + 4.
        unsafe { place_xstate(fp as usize, xs, xfeatures()) };
    }
    let uc = &f.uc as *const UContext as usize;
    // SAFETY: the frame is complete and stays on this stack, which remains mapped.
    unsafe { arch::sigreturn(uc) };
    #[allow(unreachable_code)]
    {
        out::fail(Step::Sigreturn, 0, 0, 0)
    }
}
