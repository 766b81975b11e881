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
use ckpt_format::{Tables, Thread, PROT_WRITE};

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

/// Copy the saved XSAVE area to `dst` (64-byte aligned, `size + 4` bytes) and add the
/// software bytes the kernel checks before it uses XRSTOR on it.
///
/// # Safety
/// `dst` must be writable for `xstate.len() + 4` bytes and 64-byte aligned.
unsafe fn place_xstate(dst: usize, xstate: &[u8], xfeatures: u64) {
    let size = xstate.len();
    // SAFETY: the caller vouches for the destination.
    unsafe {
        core::ptr::copy_nonoverlapping(xstate.as_ptr(), dst as *mut u8, size);
        let mx = (dst + MXCSR_OFFSET) as *mut u32;
        mx.write(mx.read() & 0xffff); // reserved MXCSR bits would make XRSTOR fault
        let sw = (dst + SW_BYTES_OFFSET) as *mut u32;
        sw.write(FP_XSTATE_MAGIC1);
        sw.add(1).write(size as u32 + 4); // extended_size
        (sw.add(2) as *mut u64).write_unaligned(xfeatures);
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

pub fn leave(ctx: &Ctx, t: &Tables) -> ! {
    let th = &t.threads[0];
    let xs = &t.xstate[th.xstate_off as usize..th.xstate_off as usize + th.xstate_size as usize];
    let xfeatures = ctx.hdr.xcr0 & arch::xcr0();
    let frame_size = core::mem::size_of::<Frame>() as u64;
    let (g_sys, g_ret) = (ctx.hdr.gadget_syscall_ret, ctx.hdr.gadget_sigreturn);

    // Preferred: the frame on the target's stack below its red zone, and the exit
    // through the target's own instructions, so the gap can be unmapped on the way.
    let fp = (th.regs.rsp - RED_ZONE - xs.len() as u64 - 4) & !63;
    let frame = (fp - frame_size) & !15;
    if g_sys != 0 && g_ret != 0 && writable_in_target(t, frame, th.regs.rsp) {
        let mut f = Frame::default();
        fill_frame(&mut f, th, if xs.is_empty() { 0 } else { fp });
        f.pretcode = g_ret;
        out::trace("rt_sigreturn through the target's text, unmapping the gap", ctx.gap_start as u64, (ctx.gap_start + ctx.gap_len) as u64);
        // SAFETY: [frame, rsp - RED_ZONE) is writable target memory outside the gap;
        // the gadgets were found and decoded in the target's executable text.
        unsafe {
            if !xs.is_empty() {
                place_xstate(fp as usize, xs, xfeatures);
            }
            core::ptr::write(frame as *mut Frame, f);
            arch::unmap_and_sigreturn(frame as usize, ctx.gap_start, ctx.gap_len, g_sys as usize)
        }
    }

    // Fallback: frame on the gap's own stack; the gap stays mapped.
    out::trace("rt_sigreturn from the restorer (its gap stays mapped)", ctx.gap_start as u64, (ctx.gap_start + ctx.gap_len) as u64);
    #[repr(C, align(64))]
    struct Area([u8; ckpt_format::MAX_XSTATE as usize + 64]);
    let mut area = Area([0; ckpt_format::MAX_XSTATE as usize + 64]);
    let mut f = Frame::default();
    let fp = area.0.as_mut_ptr() as u64;
    fill_frame(&mut f, th, if xs.is_empty() { 0 } else { fp });
    if !xs.is_empty() {
        // SAFETY: the area is 64-byte aligned and larger than any valid xstate + 4.
        unsafe { place_xstate(fp as usize, xs, xfeatures) };
    }
    let uc = &f.uc as *const UContext as usize;
    // SAFETY: the frame is complete and stays on this stack, which remains mapped.
    unsafe { arch::sigreturn(uc) };
    #[allow(unreachable_code)]
    {
        out::fail(Step::Sigreturn, 0, 0, 0)
    }
}
