//! Two instruction sequences in the target's own text that let the restorer leave
//! without leaving itself behind: `syscall; ret` (to munmap the restorer, returning
//! into the next gadget) and `mov eax|rax, 15; syscall` (rt_sigreturn; glibc's signal
//! restorer __restore_rt is exactly that). Found by byte search in executable
//! mappings (the patterns' decoding is checked by the unit tests).

use crate::memory::Mem;
use crate::plan::{Pages, PlannedVma};

#[derive(Default, Clone, Copy, Debug)]
pub struct Gadgets {
    pub syscall_ret: u64,
    pub sigreturn: u64,
    /// Any `syscall` instruction (for injecting system calls at freeze time).
    pub syscall: u64,
}

/// `syscall; ret`.
const SYSRET: &[u8] = &[0x0f, 0x05, 0xc3];
/// `mov eax, 15; syscall` (glibc's __restore_rt).
const SIGRET32: &[u8] = &[0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05];
/// `mov rax, 15; syscall`.
const SIGRET64: &[u8] = &[0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05];

/// Search `text` (mapped at `base`) for both gadgets. Each is a fixed byte string
/// that decodes the same wherever it starts (the unit tests decode them): found
/// bytes need no decoding, whose tables would cost every freeze a few hundred
/// microseconds to build.
pub fn search(text: &[u8], base: u64, g: &mut Gadgets) {
    if g.syscall == 0 {
        if let Some(pos) = memchr::memmem::find(text, &crate::regs::SYSCALL) {
            g.syscall = base + pos as u64;
        }
    }
    if g.syscall_ret == 0 {
        if let Some(pos) = memchr::memmem::find(text, SYSRET) {
            g.syscall_ret = base + pos as u64;
        }
    }
    for pat in [SIGRET32, SIGRET64] {
        if g.sigreturn == 0 {
            if let Some(pos) = memchr::memmem::find(text, pat) {
                g.sigreturn = base + pos as u64;
            }
        }
    }
}

/// Find both gadgets in the executable VMAs that will be restored, reading each in
/// chunks (overlapping by a pattern's length) and stopping as soon as both are found.
/// The chunks are read with process_vm_readv (memory.rs), several times faster than
/// /proc/PID/mem, which copies page by page through a bounce buffer
/// (access_remote_vm()): in glibc the `syscall; ret` lies some 400 KiB into the text.
pub fn find(mem: &Mem, vmas: &[PlannedVma]) -> Gadgets {
    const CHUNK: u64 = 256 << 10;
    const OVERLAP: u64 = 16;
    let mut g = Gadgets::default();
    let mut buf = vec![0u8; (CHUNK + OVERLAP) as usize];
    // glibc's text has both (its signal restorer is `mov eax, 15; syscall`), near
    // its start: look there first, before libraries of tens of MiB loaded later at
    // lower addresses (numpy's BLAS), then everywhere else.
    let exec: Vec<&PlannedVma> = vmas.iter().filter(|v| v.map.exec && v.pages != Pages::None).collect();
    let is_libc = |v: &&PlannedVma| v.map.path().is_some_and(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with("libc.so")));
    let order = exec.iter().filter(|v| is_libc(v)).chain(exec.iter().filter(|v| !is_libc(v)));
    'vmas: for v in order {
        let mut at = v.vma.start;
        while at < v.vma.end {
            let n = (v.vma.end - at).min(CHUNK + OVERLAP) as usize;
            // Unreadable pages read as zeros, in which no pattern matches.
            mem.read_segments(&[(at, n)], &mut buf[..n]);
            search(&buf[..n], at, &mut g);
            if g.syscall_ret != 0 && g.sigreturn != 0 {
                break 'vmas;
            }
            at += CHUNK;
        }
    }
    if g.syscall_ret == 0 || g.sigreturn == 0 {
        g = Gadgets { syscall: g.syscall, ..Gadgets::default() };
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_confirms_both_gadgets() {
        let text = [0x90, 0x48, 0xc7, 0xc0, 0x0f, 0, 0, 0, 0x0f, 0x05, 0x90, 0x0f, 0x05, 0xc3];
        let mut g = Gadgets::default();
        search(&text, 0x1000, &mut g);
        assert_eq!(g.sigreturn, 0x1001);
        assert_eq!(g.syscall_ret, 0x100b);
    }

    #[test]
    fn the_patterns_decode_as_their_gadgets() {
        use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
        let decode = |b: &[u8]| {
            let mut d = Decoder::with_ip(64, b, 0x1000, DecoderOptions::NONE);
            let mut v = Vec::new();
            while d.can_decode() {
                v.push(d.decode());
            }
            v
        };
        let i = decode(SYSRET);
        assert!(i.len() == 2 && i[0].mnemonic() == Mnemonic::Syscall && i[1].mnemonic() == Mnemonic::Ret && i[1].op_count() == 0);
        for pat in [SIGRET32, SIGRET64] {
            let i = decode(pat);
            assert_eq!(i.len(), 2);
            assert_eq!(i[0].mnemonic(), Mnemonic::Mov);
            assert!(matches!(i[0].op0_register(), Register::EAX | Register::RAX));
            assert!(matches!(i[0].op1_kind(), OpKind::Immediate32 | OpKind::Immediate32to64));
            assert_eq!(i[0].immediate(1), 15);
            assert_eq!(i[1].mnemonic(), Mnemonic::Syscall);
        }
    }

    #[test]
    fn rejects_other_immediates() {
        let text = [0xb8, 0x0e, 0, 0, 0, 0x0f, 0x05];
        let mut g = Gadgets::default();
        search(&text, 0x1000, &mut g);
        assert_eq!(g.sigreturn, 0);
    }
}
