//! "Where it stopped" in words: the ELF file mapped at an address, its load bias,
//! the closest symbol at or before the address, and its build-id.
//!
//! The ELF comes from the mapped file when it still exists and its page at the
//! address equals the stored one; otherwise from the image's stored pages of that
//! file (a private file mapping is stored whole, ELF header and `.dynsym`
//! included, though `.symtab` is never mapped), or from the saved vdso.

use super::memory::ImageMemory;
use ckpt_format::{Vma, VmaKind, PAGE_SIZE};
use goblin::elf::{program_header, sym, Elf};

/// A symbol at its link-time address (add the module's bias for the run-time one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    pub size: u64,
    pub name: String,
    /// Ordering among symbols at the same address; lower is preferred.
    rank: (bool, bool, u8, usize),
}

impl Symbol {
    fn new(addr: u64, size: u64, name: &str, st_type: u8, st_bind: u8) -> Symbol {
        let bind = match st_bind {
            sym::STB_GLOBAL => 0,
            sym::STB_WEAK => 1,
            _ => 2,
        };
        // Prefer functions, then public-looking names (`pause` over `__libc_pause`),
        // then global over weak over local, then the shorter name.
        let rank = (st_type != sym::STT_FUNC, name.starts_with('_'), bind, name.len());
        Symbol { addr, size, name: name.to_owned(), rank }
    }
}

#[derive(Clone, Copy, Debug)]
struct Load {
    vaddr: u64,
    offset: u64,
    filesz: u64,
}

/// What `info` needs from one ELF file.
#[derive(Debug)]
pub struct ElfImage {
    pub e_type: u16,
    loads: Vec<Load>,
    /// Sorted by address, preferred name first among equal addresses.
    symbols: Vec<Symbol>,
    pub build_id: Option<String>,
}

/// The ELF header and program headers (64-bit little endian, as on x86_64).
fn headers(bytes: &[u8]) -> Result<(u16, Vec<program_header::ProgramHeader>), String> {
    let h = Elf::parse_header(bytes).map_err(|e| format!("not an ELF file: {e}"))?;
    let ph = program_header::ProgramHeader::parse(
        bytes,
        h.e_phoff as usize,
        h.e_phnum as usize,
        goblin::container::Ctx::default(),
    )
    .map_err(|e| format!("bad program headers: {e}"))?;
    Ok((h.e_type, ph))
}

/// NT_GNU_BUILD_ID from the PT_NOTE segments, as hex.
fn build_id(bytes: &[u8], phdrs: &[program_header::ProgramHeader]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    for ph in phdrs.iter().filter(|p| p.p_type == program_header::PT_NOTE) {
        let Some(mut n) = bytes.get(ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize) else { continue };
        let align = if ph.p_align == 8 { 8 } else { 4 };
        let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        while n.len() >= 12 {
            let (namesz, descsz, ty) = (word(n, 0), word(n, 4), word(n, 8) as u32);
            let name_end = 12 + namesz;
            let desc_start = name_end.next_multiple_of(align);
            let desc_end = desc_start + descsz;
            if desc_end > n.len() {
                break;
            }
            if ty == NT_GNU_BUILD_ID && &n[12..name_end] == b"GNU\0" {
                return Some(n[desc_start..desc_end].iter().map(|b| format!("{b:02x}")).collect());
            }
            n = &n[desc_end.next_multiple_of(align).min(n.len())..];
        }
    }
    None
}

impl ElfImage {
    /// Parse an ELF file (or a reconstruction of its mapped parts). Symbols come
    /// from `.symtab` and `.dynsym` when goblin can read them; the program headers
    /// and build-id are enough to be useful without them.
    pub fn parse(bytes: &[u8]) -> Result<ElfImage, String> {
        let (e_type, phdrs) = headers(bytes)?;
        let loads = phdrs
            .iter()
            .filter(|p| p.p_type == program_header::PT_LOAD)
            .map(|p| Load { vaddr: p.p_vaddr, offset: p.p_offset, filesz: p.p_filesz })
            .collect();
        let mut symbols = Vec::new();
        if let Ok(elf) = Elf::parse(bytes) {
            for (tab, strs) in [(&elf.syms, &elf.strtab), (&elf.dynsyms, &elf.dynstrtab)] {
                for s in tab.iter() {
                    let ty = s.st_type();
                    let code = matches!(ty, sym::STT_FUNC | sym::STT_NOTYPE | sym::STT_GNU_IFUNC);
                    if !code || s.st_shndx == 0 || s.st_value == 0 {
                        continue;
                    }
                    match strs.get_at(s.st_name) {
                        Some(n) if !n.is_empty() && !n.starts_with('$') && !n.starts_with(".L") => {
                            symbols.push(Symbol::new(s.st_value, s.st_size, n, ty, s.st_bind()))
                        }
                        _ => {}
                    }
                }
            }
        }
        symbols.sort_by(|a, b| a.addr.cmp(&b.addr).then(a.rank.cmp(&b.rank)).then(a.name.cmp(&b.name)));
        symbols.dedup_by(|b, a| a.addr == b.addr && a.name == b.name);
        Ok(ElfImage { e_type, loads, symbols, build_id: build_id(bytes, &phdrs) })
    }

    /// Run-time address minus link-time address for a VMA mapping this file at
    /// `file_offset`: vma.start - file_offset - (p_vaddr - p_offset) of the PT_LOAD
    /// covering that offset; 0 for ET_EXEC.
    pub fn bias(&self, vma_start: u64, file_offset: u64) -> u64 {
        if self.e_type == goblin::elf::header::ET_EXEC {
            return 0;
        }
        let covering = self.loads.iter().find(|l| {
            let lo = l.offset & !(PAGE_SIZE - 1);
            (lo..l.offset + l.filesz.max(1)).contains(&file_offset)
        });
        let delta = covering.map_or(0, |l| l.vaddr.wrapping_sub(l.offset));
        vma_start.wrapping_sub(file_offset).wrapping_sub(delta)
    }

    /// The closest symbol at or before link-time address `vaddr`, and the offset.
    pub fn lookup(&self, vaddr: u64) -> Option<(&Symbol, u64)> {
        let i = self.symbols.partition_point(|s| s.addr <= vaddr);
        let last = self.symbols.get(i.checked_sub(1)?)?;
        let first = self.symbols.partition_point(|s| s.addr < last.addr);
        let s = &self.symbols[first];
        Some((s, vaddr - s.addr))
    }

    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    fn vaddr_mapped(&self, a: u64) -> bool {
        self.loads.iter().any(|l| (l.vaddr..l.vaddr + l.filesz).contains(&a))
    }
}

/// Where the module's ELF was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    File,
    StoredPages,
    Vdso,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::StoredPages => "stored pages",
            Source::Vdso => "vdso",
        }
    }
}

/// The ELF mapped at an address.
pub struct Module {
    pub path: String,
    pub source: Source,
    pub elf: ElfImage,
    pub bias: u64,
    /// Why the file on disk was not used, if it was not.
    pub note: Option<String>,
}

impl Module {
    /// The symbol at or before run-time address `addr`, as `name+0xoff`.
    pub fn describe(&self, addr: u64) -> Option<(String, u64, u64)> {
        let (s, off) = self.elf.lookup(addr.wrapping_sub(self.bias))?;
        Some((s.name.clone(), off, s.addr.wrapping_add(self.bias)))
    }
}

/// The ELF file mapped at `addr`, or why there is none.
pub fn module_at(mem: &ImageMemory, addr: u64) -> Result<Module, String> {
    let v = mem.vma_at(addr).ok_or_else(|| format!("{addr:#x} is not inside any VMA"))?;
    match VmaKind::from_u32(v.kind) {
        Some(VmaKind::Vdso) => {
            let elf = ElfImage::parse(mem.t.vdso).map_err(|e| format!("vdso: {e}"))?;
            let bias = elf.bias(v.start, 0);
            Ok(Module { path: "[vdso]".into(), source: Source::Vdso, elf, bias, note: None })
        }
        Some(VmaKind::FilePrivate | VmaKind::SharedFile) => file_module(mem, v, addr),
        k => Err(format!(
            "{addr:#x} is in {} memory, not in a file",
            k.map_or("unknown", |k| k.name())
        )),
    }
}

fn file_module(mem: &ImageMemory, v: &Vma, addr: u64) -> Result<Module, String> {
    let path = mem.vma_name(v);
    let page = addr & !(PAGE_SIZE - 1);
    let stored = mem.read(page, PAGE_SIZE as usize);
    let note = match std::fs::read(&path) {
        Ok(disk) => {
            let off = (v.file_offset + (page - v.start)) as usize;
            let mut same = disk.get(off..).unwrap_or_default().iter().take(PAGE_SIZE as usize).copied().collect::<Vec<_>>();
            same.resize(PAGE_SIZE as usize, 0);
            if stored.is_empty() || stored == same {
                match ElfImage::parse(&disk) {
                    Ok(elf) => {
                        let bias = elf.bias(v.start, v.file_offset);
                        return Ok(Module { path, source: Source::File, elf, bias, note: None });
                    }
                    Err(e) => format!("{path}: {e}"),
                }
            } else {
                format!("{path} changed since the freeze")
            }
        }
        Err(e) => format!("{path}: {e}"),
    };
    let (elf, bias) = from_stored_pages(mem, v)?;
    Ok(Module { path, source: Source::StoredPages, elf, bias, note: Some(note) })
}

/// Rebuild the mapped parts of the file behind `v` at their file offsets from the
/// stored pages of every VMA mapping it, then parse that. Section headers are not
/// mapped, so they are dropped; `.dynamic` pointers that the dynamic loader moved
/// by the load bias are moved back so `.dynsym` can be found.
fn from_stored_pages(mem: &ImageMemory, v: &Vma) -> Result<(ElfImage, u64), String> {
    const MAX: u64 = 512 << 20;
    let name = mem.t.string(v.name_off, v.name_len);
    let same: Vec<&Vma> = mem
        .t
        .vmas
        .iter()
        .filter(|w| w.kind == v.kind && mem.t.string(w.name_off, w.name_len) == name)
        .collect();
    let len = same.iter().map(|w| w.file_offset + (w.end - w.start)).max().unwrap_or(0).min(MAX);
    let mut buf = vec![0u8; len as usize];
    for w in &same {
        for r in mem.runs_of(w) {
            let at = w.file_offset + (r.addr - w.start);
            if at + r.len > len {
                continue;
            }
            let b = mem.read(r.addr, r.len as usize);
            buf[at as usize..at as usize + b.len()].copy_from_slice(&b);
        }
    }
    if buf.len() < 64 || &buf[..4] != b"\x7fELF" {
        return Err(format!("{}: no ELF header among the stored pages", String::from_utf8_lossy(name)));
    }
    // e_shoff (0x28), e_shnum (0x3c), e_shstrndx (0x3e): the section headers are
    // not in memory.
    buf[0x28..0x30].fill(0);
    buf[0x3c..0x40].fill(0);
    let first = ElfImage::parse(&buf)?;
    let bias = first.bias(v.start, v.file_offset);
    if bias != 0 && unrelocate_dynamic(&mut buf, &first, bias) {
        let elf = ElfImage::parse(&buf)?;
        return Ok((elf, bias));
    }
    Ok((first, bias))
}

/// ld.so adds the load bias to the address entries of a writable `.dynamic`
/// (glibc's elf_get_dynamic_info). Subtract it again where an entry points outside
/// the file's segments but inside them once unbiased. Returns whether any changed.
fn unrelocate_dynamic(buf: &mut [u8], elf: &ElfImage, bias: u64) -> bool {
    use goblin::elf::dynamic::*;
    let Ok((_, phdrs)) = headers(buf) else { return false };
    let Some(d) = phdrs.iter().find(|p| p.p_type == program_header::PT_DYNAMIC) else { return false };
    let (start, end) = (d.p_offset as usize, (d.p_offset + d.p_filesz) as usize);
    if end > buf.len() {
        return false;
    }
    let tags = [DT_HASH, DT_GNU_HASH, DT_STRTAB, DT_SYMTAB, DT_RELA, DT_REL, DT_JMPREL, DT_PLTGOT, DT_VERSYM];
    let mut changed = false;
    for e in (start..end).step_by(16).take_while(|e| e + 16 <= end) {
        let tag = u64::from_le_bytes(buf[e..e + 8].try_into().unwrap());
        if tag == DT_NULL {
            break;
        }
        let val = u64::from_le_bytes(buf[e + 8..e + 16].try_into().unwrap());
        let orig = val.wrapping_sub(bias);
        if tags.contains(&tag) && !elf.vaddr_mapped(val) && elf.vaddr_mapped(orig) {
            buf[e + 8..e + 16].copy_from_slice(&orig.to_le_bytes());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(addr: u64, name: &str, ty: u8, bind: u8) -> Symbol {
        Symbol::new(addr, 0, name, ty, bind)
    }

    fn image(mut symbols: Vec<Symbol>) -> ElfImage {
        symbols.sort_by(|a, b| a.addr.cmp(&b.addr).then(a.rank.cmp(&b.rank)));
        ElfImage { e_type: goblin::elf::header::ET_DYN, loads: Vec::new(), symbols, build_id: None }
    }

    #[test]
    fn lookup_takes_the_closest_preceding_and_prefers_plain_names() {
        let e = image(vec![
            sym(0x1000, "__libc_pause", sym::STT_FUNC, sym::STB_GLOBAL),
            sym(0x1000, "pause", sym::STT_FUNC, sym::STB_WEAK),
            sym(0x2000, "other", sym::STT_FUNC, sym::STB_GLOBAL),
        ]);
        let (s, off) = e.lookup(0x1010).unwrap();
        assert_eq!((s.name.as_str(), off), ("pause", 0x10));
        assert_eq!(e.lookup(0x2000).unwrap().0.name, "other");
        assert!(e.lookup(0xfff).is_none());
    }

    #[test]
    fn bias_uses_the_covering_load() {
        let mut e = image(Vec::new());
        e.loads = vec![
            Load { vaddr: 0, offset: 0, filesz: 0x1000 },
            Load { vaddr: 0x2000, offset: 0x1000, filesz: 0x3000 },
        ];
        assert_eq!(e.bias(0x7f00_0000_0000, 0), 0x7f00_0000_0000);
        // The second segment is mapped at bias + 0x2000 from file offset 0x1000.
        assert_eq!(e.bias(0x7f00_0000_2000, 0x1000), 0x7f00_0000_0000);
        e.e_type = goblin::elf::header::ET_EXEC;
        assert_eq!(e.bias(0x40_1000, 0x1000), 0);
    }

    #[test]
    fn reads_our_own_executable() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let e = ElfImage::parse(&exe).unwrap();
        assert!(!e.loads.is_empty());
        // Test binaries keep their .symtab: the C entry point is always there, while
        // any one Rust function may be inlined away.
        assert!(e.symbols().iter().any(|s| s.name == "main"), "no `main` in our own .symtab");
        assert!(e.symbols().len() > 1000, "only {} symbols in our own .symtab", e.symbols().len());
    }
}
