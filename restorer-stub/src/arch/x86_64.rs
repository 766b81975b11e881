//! Every piece of assembly the stub needs besides raw system calls: the entry point,
//! the switch onto the relocated copy's stack, the CPU feature queries, and the two
//! ways of leaving for the target (a plain `rt_sigreturn`, or a chain through the
//! target's own `syscall; ret` and `rt_sigreturn` instructions that unmaps the stub).

use core::arch::asm;

/// Process entry: the kernel leaves argc at [rsp], then argv, envp and auxv (execve(2),
/// "System V ABI AMD64" 3.4.1). Hand that pointer to `entry` on an aligned stack.
#[unsafe(naked)]
#[no_mangle]
#[link_section = ".text._start"]
pub unsafe extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "xor ebp, ebp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym crate::entry,
    );
}

/// Continue on a new stack by calling `f(arg)`; never returns.
///
/// # Safety
/// `stack_top` must be the 16-byte aligned top of writable memory and `f` a function
/// in mapped, executable memory.
pub unsafe fn call_on_stack(stack_top: usize, f: usize, arg: usize) -> ! {
    // SAFETY: the caller vouches for the stack and the function address.
    unsafe {
        asm!("mov rsp, {st}", "xor ebp, ebp", "call {f}", "ud2",
             st = in(reg) stack_top, f = in(reg) f, in("rdi") arg, options(noreturn));
    }
}

/// XCR0: the XSAVE features the OS enabled (0 when XSAVE is off).
pub fn xcr0() -> u64 {
    let c = core::arch::x86_64::__cpuid(1);
    if c.ecx & (1 << 27) == 0 {
        return 0; // no OSXSAVE: xgetbv would fault
    }
    let (lo, hi): (u32, u32);
    // SAFETY: OSXSAVE is set, so xgetbv with ecx=0 is allowed in user mode.
    unsafe { asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}

/// Leave through `rt_sigreturn` with rsp at the frame's `uc` field.
///
/// # Safety
/// `uc` must point at a complete, valid rt_sigframe (after its pretcode).
pub unsafe fn sigreturn(uc: usize) -> ! {
    // SAFETY: the caller built the frame; rt_sigreturn reads it from rsp - 8.
    unsafe {
        asm!("mov rsp, {uc}", "syscall", "ud2", uc = in(reg) uc, in("rax") 15usize, options(noreturn));
    }
}

/// Unmap `[start, start+len)` (the running stub) and `rt_sigreturn`, both through
/// instructions in the target's own text: jump to its `syscall; ret` with
/// rax=SYS_munmap; `ret` pops the address of its `mov eax, 15; syscall`, which then
/// finds the frame at rsp - 8.
///
/// # Safety
/// `frame` points at [address of the sigreturn gadget][ucontext...] outside the range
/// being unmapped; both gadget addresses are mapped and executable.
pub unsafe fn unmap_and_sigreturn(frame: usize, start: usize, len: usize, syscall_ret: usize) -> ! {
    // SAFETY: the caller vouches for the gadgets and the frame; nothing of the
    // unmapped range is touched after the jump.
    unsafe {
        asm!("mov rsp, {fr}", "jmp {g}",
             fr = in(reg) frame, g = in(reg) syscall_ret, in("rax") 11usize, in("rdi") start, in("rsi") len,
             options(noreturn));
    }
}

/// Start a thread with clone3(2): `args` is a struct clone_args whose stack the child
/// runs on; the child calls `f(arg)` there and never returns to this frame. Returns
/// the child's TID (in the parent) or the negative errno.
///
/// # Safety
/// `args` must describe a valid clone3 call with CLONE_VM and a stack of its own; `f`
/// must never return.
pub unsafe fn clone3_thread(args: usize, size: usize, f: usize, arg: usize) -> isize {
    let ret: isize;
    // SAFETY: the child starts on its own stack with the parent's registers; f and
    // arg are in callee-saved registers the kernel preserves, so the child uses
    // nothing of the parent's stack. rcx/r11 are clobbered by syscall.
    unsafe {
        asm!("syscall", "test rax, rax", "jnz 2f", "xor ebp, ebp", "mov rdi, r12", "call r13", "ud2", "2:",
             inlateout("rax") 435isize => ret, in("rdi") args, in("rsi") size, in("r12") arg, in("r13") f,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// Like [`unmap_and_sigreturn`], but the system call made from the target's text is
/// `futex(word, FUTEX_WAKE_OP_PRIVATE, 1, 0, word, op)`, which atomically adds `op`'s
/// operand to `*word` and wakes one waiter on it: the thread says "I have left the
/// restorer" only from outside the restorer's code (futex(2), FUTEX_WAKE_OP).
///
/// # Safety
/// As [`unmap_and_sigreturn`]; `word` stays mapped until the call has returned.
pub unsafe fn signal_and_sigreturn(frame: usize, word: usize, op: u32, syscall_ret: usize) -> ! {
    const FUTEX_WAKE_OP_PRIVATE: usize = 5 | 128;
    // SAFETY: the caller vouches for the gadgets, the frame and the word.
    unsafe {
        asm!("mov rsp, {fr}", "jmp {g}",
             fr = in(reg) frame, g = in(reg) syscall_ret, in("rax") 202usize, in("rdi") word,
             in("rsi") FUTEX_WAKE_OP_PRIVATE, in("rdx") 1usize, in("r10") 0usize, in("r8") word, in("r9") op as usize,
             options(noreturn));
    }
}

/// The size of the user XSAVE area (standard format) that holds the features in
/// `xfeatures`: the end of the furthest component (CPUID leaf 0xD, sub-leaf i gives
/// size in eax and offset in ebx; Intel SDM vol. 1, 13.2), at least the legacy area
/// and header (576 bytes).
pub fn xstate_size_for(xfeatures: u64) -> usize {
    let mut end = 576usize;
    for i in 2..63 {
        if xfeatures & (1 << i) != 0 {
            let c = core::arch::x86_64::__cpuid_count(0xd, i);
            end = end.max(c.ebx as usize + c.eax as usize);
        }
    }
    end
}
