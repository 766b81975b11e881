//! The exported functions of the target's vdso, read at the freeze from the copy of
//! its [vdso] mapping taken out of the target's memory, so that a resume on a kernel
//! whose vdso is another build can put a jump at each of them (restorer-stub
//! trampoline.rs; the records in format/src/vdso.rs).

use crate::plan::Strings;
use anyhow::{Context, Result};
use ckpt_format::{elf_hash, VdsoSym, MAX_VDSO_NAME, MAX_VDSO_SYMS};
use goblin::elf::{program_header::PT_LOAD, sym::STT_FUNC, Elf};

/// One record per defined function symbol of the vdso image `vdso` (bytes of the
/// mapping), names added to `strings`, in offset order.
pub fn read(vdso: &[u8], strings: &mut Strings) -> Result<Vec<VdsoSym>> {
    let elf = Elf::parse(vdso).context("parsing the target's vdso as ELF")?;
    // The vdso is linked at 0; the mapping starts at its first PT_LOAD.
    let bias = elf.program_headers.iter().find(|p| p.p_type == PT_LOAD).map_or(0, |p| p.p_vaddr.wrapping_sub(p.p_offset));
    let mut out = Vec::new();
    for s in elf.dynsyms.iter() {
        if s.st_type() != STT_FUNC || s.st_shndx == 0 {
            continue;
        }
        let Some(name) = elf.dynstrtab.get_at(s.st_name).filter(|n| !n.is_empty() && n.len() <= MAX_VDSO_NAME as usize) else {
            continue;
        };
        let offset = s.st_value.wrapping_sub(bias);
        if offset.checked_add(s.st_size.max(1)).is_none_or(|e| e > vdso.len() as u64) {
            anyhow::bail!("vdso symbol {name} at {offset:#x} (+{}) lies outside the vdso's {} bytes", s.st_size, vdso.len());
        }
        let (name_off, name_len) = strings.add(name);
        out.push(VdsoSym { name_off, name_len, name_hash: elf_hash(name.as_bytes()), flags: 0, offset, size: s.st_size });
    }
    anyhow::ensure!(out.len() <= MAX_VDSO_SYMS as usize, "the vdso exports {} functions, more than {MAX_VDSO_SYMS}", out.len());
    out.sort_by_key(|s| s.offset);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's own vdso, as the freeze reads a target's.
    fn own_vdso() -> Option<Vec<u8>> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
        let (a, b) = line.split_whitespace().next()?.split_once('-')?;
        let (start, end) = (u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?);
        let f = std::fs::File::open("/proc/self/mem").ok()?;
        let mut v = vec![0u8; (end - start) as usize];
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut v, start).ok()?;
        Some(v)
    }

    #[test]
    fn reads_the_functions_the_restorer_finds() {
        let Some(vdso) = own_vdso() else { return };
        let mut strings = Strings::default();
        let syms = read(&vdso, &mut strings).unwrap();
        let name = |s: &VdsoSym| std::str::from_utf8(&strings.buf[s.name_off as usize..(s.name_off + s.name_len) as usize]).unwrap().to_string();
        let names: Vec<String> = syms.iter().map(name).collect();
        for want in ["clock_gettime", "__vdso_clock_gettime", "gettimeofday", "time"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        // The restorer's own lookup (format::find_symbol) agrees on every offset.
        for s in &syms {
            assert_eq!(ckpt_format::find_symbol(&vdso, name(s).as_bytes()), Some(s.offset), "{}", name(s));
        }
        assert!(read(&vdso[..16], &mut strings).is_err());
    }
}
