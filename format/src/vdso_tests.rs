//! The VdsoSyms records, their validation, the patches written over an old vdso and
//! the lookup in a running one (this test process's own vdso).

extern crate std;

use crate::tests::{build, valid_parts, validate, Parts};
use crate::*;
use std::io::Read;
use std::vec::Vec;

#[test]
fn record_size_is_pinned() {
    assert_eq!(core::mem::size_of::<VdsoSym>(), 32);
}

#[test]
fn elf_hash_matches_the_abi() {
    // Values from the System V ABI's algorithm.
    assert_eq!(elf_hash(b"printf"), 0x077905a6);
    assert_eq!(elf_hash(b""), 0);
}

#[test]
fn patches_are_the_intended_instructions() {
    let mut b = [0u8; MAX_PATCH];
    // Within reach: jmp rel32 from the end of the 5-byte instruction.
    assert_eq!(jump(0x1000, 0x2000, &mut b), 5);
    assert_eq!(&b[..5], &[0xe9, 0xfb, 0x0f, 0, 0]);
    assert_eq!(jump(0x2000, 0x1000, &mut b), 5);
    assert_eq!(i32::from_le_bytes(b[1..5].try_into().unwrap()), 0x1000 - 0x2005);
    // Out of reach: jmp [rip+0] and the absolute address.
    assert_eq!(jump(0x7fff_0000_0000, 0x1000, &mut b), 14);
    assert_eq!(&b[..6], &[0xff, 0x25, 0, 0, 0, 0]);
    assert_eq!(u64::from_le_bytes(b[6..14].try_into().unwrap()), 0x1000);
    assert_eq!(encode(Patch::Syscall(228), 0, &mut b), 8);
    assert_eq!(&b[..8], &[0xb8, 228, 0, 0, 0, 0x0f, 0x05, 0xc3]);
    assert_eq!(encode(Patch::Enosys, 0, &mut b), 8);
    assert_eq!(&b[..8], &[0x48, 0xc7, 0xc0, 0xda, 0xff, 0xff, 0xff, 0xc3]);
    assert_eq!(syscall_for(b"__vdso_gettimeofday"), Some(96));
    assert_eq!(syscall_for(b"time"), Some(201));
    assert_eq!(syscall_for(b"__vdso_sgx_enter_enclave"), None);
}

/// This process's [vdso] bytes and address (from /proc/self/maps and /proc/self/mem).
pub fn own_vdso() -> Option<(u64, Vec<u8>)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
    let (a, b) = line.split_whitespace().next()?.split_once('-')?;
    let (start, end) = (u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?);
    let mut f = std::fs::File::open("/proc/self/mem").ok()?;
    let mut bytes = std::vec![0u8; (end - start) as usize];
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start)).ok()?;
    f.read_exact(&mut bytes).ok()?;
    Some((start, bytes))
}

#[test]
fn finds_functions_in_the_running_vdso() {
    let Some((_, elf)) = own_vdso() else {
        std::eprintln!("no vdso in this process: lookup test skipped");
        return;
    };
    let a = find_symbol(&elf, b"__vdso_clock_gettime").expect("__vdso_clock_gettime");
    let b = find_symbol(&elf, b"clock_gettime").expect("clock_gettime");
    assert_eq!(a, b, "the alias and the function are one");
    assert!((a as usize) < elf.len());
    assert!(find_symbol(&elf, b"no_such_function").is_none());
    assert_eq!(patch_for(b"clock_gettime", &elf, 0x10_0000), Patch::Jump(0x10_0000 + a));
    // Without a vdso every patch is a system call.
    assert_eq!(patch_for(b"clock_gettime", &[], 0), Patch::Syscall(228));
    assert_eq!(patch_for(b"__vdso_sgx_enter_enclave", &[], 0), Patch::Enosys);
    // Truncated or damaged images are read without a fault.
    for n in [0, 6, 64, 0x40 + 56, elf.len() / 2] {
        let _ = find_symbol(&elf[..n], b"clock_gettime");
    }
    let mut bad = elf.clone();
    bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(find_symbol(&bad, b"clock_gettime").is_none());
}

/// The valid image with a saved vdso and two symbols in it.
pub fn with_syms() -> Parts {
    let mut p = valid_parts();
    p.vdso = (0..0x2000).map(|i| i as u8).collect();
    p.vdso_syms.clear();
    for (name, offset) in [(&b"__vdso_clock_gettime"[..], 0x700u64), (b"clock_gettime", 0x700), (b"__vdso_time", 0x800)] {
        let off = p.strings.len() as u32;
        p.strings.extend_from_slice(name);
        p.vdso_syms.push(VdsoSym { name_off: off, name_len: name.len() as u32, name_hash: elf_hash(name), flags: 0, offset, size: 0x40 });
    }
    p
}

#[test]
fn symbols_are_validated_on_read() {
    assert_eq!(validate(&build(&with_syms())), Ok(()));
    let bad = |f: fn(&mut VdsoSym), what| {
        let mut p = with_syms();
        f(&mut p.vdso_syms[1]);
        assert_eq!(validate(&build(&p)), Err(FormatError::BadVdsoSym { index: 1, what }));
    };
    bad(|s| s.name_hash ^= 1, "name hash does not match its name");
    bad(|s| s.name_off = 1 << 30, "name out of the strings section or of a bad length");
    bad(|s| s.name_len = 0, "name out of the strings section or of a bad length");
    bad(|s| s.offset = 0x2000, "function lies outside the saved vdso");
    bad(|s| s.size = u64::MAX, "function lies outside the saved vdso");
    bad(|s| s.flags = 1, "unknown flags");
    // Symbols with no saved vdso cannot lie inside it.
    let mut p = with_syms();
    p.vdso.clear();
    assert_eq!(validate(&build(&p)), Err(FormatError::BadVdsoSym { index: 0, what: "function lies outside the saved vdso" }));
}
