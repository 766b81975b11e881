//! The frozen process's vdso symbols, and what replaces them on a kernel whose vdso
//! is another build.
//!
//! A process keeps pointers into its vdso (glibc caches `clock_gettime` and friends
//! at start; a Go binary parses the vdso itself), so a resume on another kernel must
//! leave working code at every one of those addresses. The freeze stores the old
//! vdso's exported functions (name, offset, size) in the VdsoSyms section; at resume
//! the restorer looks each name up in the running vdso ([`find_symbol`]) and writes,
//! at the old address, a jump to it ([`jump`]), or a system call doing the same work
//! where the running vdso lacks it ([`syscall_stub`]). Nothing else is read from the
//! old vdso, and its data pages (vvar) are never readable.

/// One exported function of the frozen process's vdso (SectionKind::VdsoSyms).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsoSym {
    /// Name in the Strings section.
    pub name_off: u32,
    pub name_len: u32,
    /// [`elf_hash`] of the name (checked on read: a stale or corrupted name shows).
    pub name_hash: u32,
    pub flags: u32,
    /// Offset of the function from the start of the vdso mapping.
    pub offset: u64,
    /// st_size of the symbol (0 if the vdso did not say).
    pub size: u64,
}

/// Longest vdso symbol name kept ("__vdso_sgx_enter_enclave" is 24).
pub const MAX_VDSO_NAME: u32 = 64;
/// Most symbols kept (a vdso exports about a dozen).
pub const MAX_VDSO_SYMS: u32 = 256;

/// The SysV ELF hash (the System V ABI's `elf_hash`, used by DT_HASH).
pub const fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    let mut i = 0;
    while i < name.len() {
        h = (h << 4).wrapping_add(name[i] as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
        i += 1;
    }
    h
}

/// The system call a vdso function stands in for (`mov eax, NR; syscall; ret` takes
/// the same arguments in the same registers), by name with or without `__vdso_`.
/// None for functions without one (e.g. `__vdso_sgx_enter_enclave`).
pub fn syscall_for(name: &[u8]) -> Option<u32> {
    let base = name.strip_prefix(b"__vdso_").unwrap_or(name);
    Some(match base {
        b"clock_gettime" => 228,
        b"gettimeofday" => 96,
        b"time" => 201,
        b"getcpu" => 309,
        b"clock_getres" => 229,
        // vgetrandom(buf, len, flags, state, state_len): the system call ignores
        // the last two.
        b"getrandom" => 318,
        _ => return None,
    })
}

/// What is written at an old symbol's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patch {
    /// A jump to this address in the running vdso.
    Jump(u64),
    /// The system call of this number, then `ret`.
    Syscall(u32),
    /// `mov rax, -ENOSYS; ret`: neither exists here.
    Enosys,
}

/// Bytes of the longest patch ([`jump`] with an absolute target).
pub const MAX_PATCH: usize = 14;
const ENOSYS: u32 = 38;

/// The patch for `sym` at `at`, written to `out`; returns its length.
pub fn encode(p: Patch, at: u64, out: &mut [u8; MAX_PATCH]) -> usize {
    match p {
        Patch::Jump(to) => jump(at, to, out),
        Patch::Syscall(nr) => syscall_stub(nr, out),
        Patch::Enosys => {
            // mov rax, imm32 (sign-extended): 48 c7 c0 imm32; ret
            out[..3].copy_from_slice(&[0x48, 0xc7, 0xc0]);
            out[3..7].copy_from_slice(&(ENOSYS as i32).wrapping_neg().to_le_bytes());
            out[7] = 0xc3;
            8
        }
    }
}

/// `jmp rel32` (5 bytes) when `to` is within reach of `at`, else
/// `jmp [rip+0]; .quad to` (14 bytes). Neither touches a register, so the callee
/// sees the caller's arguments and returns straight to the caller.
pub fn jump(at: u64, to: u64, out: &mut [u8; MAX_PATCH]) -> usize {
    let rel = (to as i64).wrapping_sub(at.wrapping_add(5) as i64);
    if rel >= i32::MIN as i64 && rel <= i32::MAX as i64 {
        out[0] = 0xe9;
        out[1..5].copy_from_slice(&(rel as i32).to_le_bytes());
        5
    } else {
        out[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
        out[6..14].copy_from_slice(&to.to_le_bytes());
        14
    }
}

/// `mov eax, nr; syscall; ret` (8 bytes). The vdso functions take their arguments
/// in rdi, rsi, rdx, as the system calls do; `syscall` clobbers only rcx and r11,
/// which the calling convention lets a callee clobber.
pub fn syscall_stub(nr: u32, out: &mut [u8; MAX_PATCH]) -> usize {
    out[0] = 0xb8;
    out[1..5].copy_from_slice(&nr.to_le_bytes());
    out[5..8].copy_from_slice(&[0x0f, 0x05, 0xc3]);
    8
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;
const STT_FUNC: u8 = 2;

/// The offset from the mapping's start of the function `name` exported by the vdso
/// image `elf` (the bytes of a [vdso] mapping), found through its section headers
/// (the kernel's vdso images keep them). None if it has no such function or is not
/// a well-formed 64-bit ELF; every read is bounds-checked.
pub fn find_symbol(elf: &[u8], name: &[u8]) -> Option<u64> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    // The vdso is linked at 0 with its first PT_LOAD at file offset 0; a bias is
    // allowed for all the same.
    let (phoff, phent, phnum) = (u64_at(elf, 0x20)? as usize, u16_at(elf, 0x36)? as usize, u16_at(elf, 0x38)? as usize);
    let bias = (0..phnum.min(64)).find_map(|i| {
        let p = phoff.checked_add(i.checked_mul(phent)?)?;
        if u32_at(elf, p)? != PT_LOAD {
            return None;
        }
        Some(u64_at(elf, p + 16)?.wrapping_sub(u64_at(elf, p + 8)?))
    })?;
    let (shoff, shent, shnum) = (u64_at(elf, 0x28)? as usize, u16_at(elf, 0x3a)? as usize, u16_at(elf, 0x3c)? as usize);
    let sh = |i: usize| shoff.checked_add(i.checked_mul(shent)?);
    for i in 0..shnum.min(256) {
        let s = sh(i)?;
        if u32_at(elf, s + 4)? != SHT_DYNSYM {
            continue;
        }
        let (symoff, symsize, link) = (u64_at(elf, s + 0x18)? as usize, u64_at(elf, s + 0x20)? as usize, u32_at(elf, s + 0x28)?);
        let strs = sh(link as usize)?;
        let (stroff, strsize) = (u64_at(elf, strs + 0x18)? as usize, u64_at(elf, strs + 0x20)? as usize);
        let strtab = elf.get(stroff..stroff.checked_add(strsize)?)?;
        for k in 0..symsize / 24 {
            let e = symoff.checked_add(k * 24)?;
            let (st_name, info, shndx) = (u32_at(elf, e)? as usize, *elf.get(e + 4)?, u16_at(elf, e + 6)?);
            if info & 0xf != STT_FUNC || shndx == 0 {
                continue;
            }
            let rest = strtab.get(st_name..)?;
            let n = rest.iter().position(|&c| c == 0)?;
            if &rest[..n] == name {
                return Some(u64_at(elf, e + 8)?.wrapping_sub(bias));
            }
        }
    }
    None
}

/// The patch for an old symbol, given the running vdso `elf` mapped at `new_base`
/// (`elf` empty when this kernel maps none).
pub fn patch_for(name: &[u8], elf: &[u8], new_base: u64) -> Patch {
    match find_symbol(elf, name) {
        Some(off) if (off as usize) < elf.len() => Patch::Jump(new_base + off),
        _ => syscall_for(name).map_or(Patch::Enosys, Patch::Syscall),
    }
}
