//! The PT_NOTE contents of a core file, byte for byte as Linux writes them for an
//! x86_64 process (fs/binfmt_elf.c, fill_note_info), so gdb, lldb, eu-readelf
//! and `file` read them as they read a kernel core dump.
//!
//! Layouts (checked against glibc's <sys/procfs.h> on this machine, see the tests):
//! - NT_PRSTATUS, `struct elf_prstatus` (include/uapi/linux/elfcore.h and
//!   include/linux/elfcore.h): elf_siginfo {si_signo, si_code, si_errno: i32} at 0,
//!   pr_cursig i16 at 12, pr_sigpend u64 at 16, pr_sighold u64 at 24, pr_pid,
//!   pr_ppid, pr_pgrp, pr_sid i32 at 32..48, four struct timeval (16 bytes each)
//!   at 48..112, pr_reg = user_regs_struct (27 x u64, arch/x86/include/asm/user_64.h)
//!   at 112, pr_fpvalid i32 at 328; 336 bytes.
//! - NT_PRPSINFO, `struct elf_prpsinfo`: pr_state, pr_sname, pr_zomb, pr_nice (u8)
//!   at 0..4, pr_flag u64 at 8, pr_uid, pr_gid u32 at 16, pr_pid, pr_ppid, pr_pgrp,
//!   pr_sid i32 at 24..40, pr_fname[16] at 40, pr_psargs[80] at 56; 136 bytes.
//! - NT_FILE (fill_files_note): count, page size, then count x (start, end, file
//!   offset in pages), all u64, then the paths, each NUL terminated.
//! - NT_AUXV: the auxv words; NT_PRFPREG: the 512-byte FXSAVE area (the start of
//!   the XSAVE area); NT_X86_XSTATE (name "LINUX"): the XSAVE area as
//!   PTRACE_GETREGSET returns it, with XCR0 in its first software-reserved word
//!   (byte 464, arch/x86/include/asm/user.h), where gdb looks for it.

use ckpt_format::{as_bytes, Regs, PAGE_SIZE};

pub const NT_PRSTATUS: u32 = 1;
pub const NT_PRFPREG: u32 = 2;
pub const NT_PRPSINFO: u32 = 3;
pub const NT_AUXV: u32 = 6;
pub const NT_FILE: u32 = 0x4649_4c45;
pub const NT_X86_XSTATE: u32 = 0x202;

pub const PRSTATUS_SIZE: usize = 336;
pub const PRPSINFO_SIZE: usize = 136;
/// Offset of XCR0 in the XSAVE area's software-reserved bytes (ptrace's copy).
const XSTATE_XCR0_OFFSET: usize = 464;
const FXSAVE_SIZE: usize = 512;
const SIGSTOP: i32 = 19;

/// One note: header, name padded to 4 bytes, descriptor padded to 4 bytes.
pub fn note(name: &str, ty: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::with_capacity(12 + name.len() + 4 + desc.len() + 3);
    n.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&ty.to_le_bytes());
    n.extend_from_slice(name.as_bytes());
    n.push(0);
    n.resize(n.len().next_multiple_of(4), 0);
    n.extend_from_slice(desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// NT_PRSTATUS of a task that stopped for SIGSTOP (a freeze is a stop, not a crash).
pub fn prstatus(pid: u32, sighold: u64, regs: &Regs, fpvalid: bool) -> [u8; PRSTATUS_SIZE] {
    let mut b = [0u8; PRSTATUS_SIZE];
    put(&mut b, 0, &SIGSTOP.to_le_bytes()); // pr_info.si_signo
    put(&mut b, 12, &(SIGSTOP as i16).to_le_bytes()); // pr_cursig
    put(&mut b, 24, &sighold.to_le_bytes()); // pr_sighold
    put(&mut b, 32, &pid.to_le_bytes()); // pr_pid
    put(&mut b, 112, as_bytes(regs)); // pr_reg
    put(&mut b, 328, &(fpvalid as i32).to_le_bytes()); // pr_fpvalid
    b
}

/// NT_PRPSINFO: `fname` is the command name (15 bytes kept), `args` the command
/// line joined by spaces (79 bytes kept), the state 'T' (stopped).
pub fn prpsinfo(pid: u32, uid: u32, gid: u32, fname: &[u8], args: &[u8]) -> [u8; PRPSINFO_SIZE] {
    let mut b = [0u8; PRPSINFO_SIZE];
    b[0] = 3; // pr_state: index of 'T' in the kernel's "RSDTZW"
    b[1] = b'T'; // pr_sname
    put(&mut b, 16, &uid.to_le_bytes());
    put(&mut b, 20, &gid.to_le_bytes());
    put(&mut b, 24, &pid.to_le_bytes());
    put(&mut b, 40, &fname[..fname.len().min(15)]);
    put(&mut b, 56, &args[..args.len().min(79)]);
    b
}

/// One mapped file of NT_FILE.
pub struct MappedFile<'a> {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: &'a [u8],
}

/// The NT_FILE descriptor.
pub fn file_note(files: &[MappedFile]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&(files.len() as u64).to_le_bytes());
    d.extend_from_slice(&PAGE_SIZE.to_le_bytes());
    for f in files {
        for v in [f.start, f.end, f.file_offset / PAGE_SIZE] {
            d.extend_from_slice(&v.to_le_bytes());
        }
    }
    for f in files {
        d.extend_from_slice(f.path);
        d.push(0);
    }
    d
}

/// The auxv words as bytes.
pub fn auxv(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The XSAVE area for NT_X86_XSTATE, with XCR0 filled in if the saved copy lacks it.
pub fn xstate(area: &[u8], xcr0: u64) -> Vec<u8> {
    let mut x = area.to_vec();
    if let Some(w) = x.get_mut(XSTATE_XCR0_OFFSET..XSTATE_XCR0_OFFSET + 8) {
        if w.iter().all(|&b| b == 0) {
            w.copy_from_slice(&xcr0.to_le_bytes());
        }
    }
    x
}

/// The FXSAVE part of the XSAVE area for NT_PRFPREG, if the area has one.
pub fn fpregs(area: &[u8]) -> Option<&[u8]> {
    area.get(..FXSAVE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn notes_are_padded_to_four_bytes() {
        let n = note("CORE", NT_AUXV, &[1, 2, 3, 4, 5]);
        assert_eq!(u32_at(&n, 0), 5); // "CORE\0"
        assert_eq!(u32_at(&n, 4), 5);
        assert_eq!(u32_at(&n, 8), NT_AUXV);
        assert_eq!(&n[12..17], b"CORE\0");
        assert_eq!(&n[20..25], &[1, 2, 3, 4, 5]);
        assert_eq!(n.len(), 28);
        let l = note("LINUX", NT_X86_XSTATE, &[0; 8]);
        assert_eq!(l.len(), 12 + 8 + 8);
    }

    #[test]
    fn prstatus_places_registers_where_gdb_reads_them() {
        let regs = Regs { rip: 0x401000, rsp: 0x7ffc_0000_1000, r15: 7, gs: 9, ..Default::default() };
        let b = prstatus(42, 1 << 9, &regs, true);
        assert_eq!(b.len(), 336);
        assert_eq!(u32_at(&b, 0), 19);
        assert_eq!(u64_at(&b, 24), 1 << 9);
        assert_eq!(u32_at(&b, 32), 42);
        assert_eq!(u64_at(&b, 112), 7); // r15 first
        assert_eq!(u64_at(&b, 112 + 16 * 8), 0x401000); // rip
        assert_eq!(u64_at(&b, 112 + 19 * 8), 0x7ffc_0000_1000); // rsp
        assert_eq!(u64_at(&b, 112 + 26 * 8), 9); // gs last
        assert_eq!(u32_at(&b, 328), 1);
    }

    #[test]
    fn prpsinfo_truncates_names() {
        let b = prpsinfo(7, 1000, 100, b"a-very-long-command-name", &[b'x'; 100]);
        assert_eq!(b.len(), 136);
        assert_eq!((b[0], b[1]), (3, b'T'));
        assert_eq!((u32_at(&b, 16), u32_at(&b, 20), u32_at(&b, 24)), (1000, 100, 7));
        assert_eq!(&b[40..56], b"a-very-long-com\0");
        assert_eq!(b[56 + 78], b'x');
        assert_eq!(b[56 + 79], 0);
    }

    #[test]
    fn file_note_layout() {
        let files = [
            MappedFile { start: 0x400000, end: 0x401000, file_offset: 0, path: b"/bin/a" },
            MappedFile { start: 0x401000, end: 0x403000, file_offset: 0x1000, path: b"/bin/a" },
            MappedFile { start: 0x7f00_0000_0000, end: 0x7f00_0000_2000, file_offset: 0x3000, path: b"/lib/c.so" },
        ];
        let d = file_note(&files);
        assert_eq!(u64_at(&d, 0), 3);
        assert_eq!(u64_at(&d, 8), 4096);
        assert_eq!((u64_at(&d, 16), u64_at(&d, 24), u64_at(&d, 32)), (0x400000, 0x401000, 0));
        assert_eq!(u64_at(&d, 16 + 24 + 16), 1); // second entry: page 1
        assert_eq!(u64_at(&d, 16 + 48 + 16), 3); // third entry: page 3
        assert_eq!(&d[16 + 72..], b"/bin/a\0/bin/a\0/lib/c.so\0");
    }

    #[test]
    fn xstate_gets_xcr0_only_when_missing() {
        let area = vec![0u8; 576];
        assert_eq!(u64_at(&xstate(&area, 0x7), 464), 0x7);
        let mut set = area.clone();
        set[464] = 0xe7;
        assert_eq!(u64_at(&xstate(&set, 0x7), 464), 0xe7);
        assert_eq!(fpregs(&area).map(<[u8]>::len), Some(512));
        assert!(fpregs(&area[..100]).is_none());
    }
}
