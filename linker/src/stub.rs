//! What the linker needs to know about the stub ELF: its entry point, its loadable
//! segments, and where `CKPT_IMAGE_OFFSET` sits in the file.

use crate::LinkError;
use goblin::elf::{program_header::*, Elf};

#[derive(Debug, Clone)]
pub struct Segment {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

#[derive(Debug, Clone)]
pub struct StubInfo {
    pub entry: u64,
    pub e_type: u16,
    /// PT_LOAD headers, in file order. (PT_DYNAMIC is dropped: the stub relocates
    /// itself through linker symbols, and a dynamic segment without a .dynamic
    /// section and string table only confuses readelf.)
    pub segments: Vec<Segment>,
    /// File offset of the 8-byte `CKPT_IMAGE_OFFSET` variable.
    pub param_offset: u64,
    /// End of the last segment's bytes in the file.
    pub file_end: u64,
}

impl StubInfo {
    pub fn parse(bytes: &[u8]) -> Result<StubInfo, LinkError> {
        let bad = |m: String| LinkError::BadStub(m);
        let elf = Elf::parse(bytes).map_err(|e| bad(e.to_string()))?;
        if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
            return Err(bad("not an x86_64 ELF64 file".into()));
        }
        if elf.interpreter.is_some() {
            return Err(bad("has an interpreter; the stub must be static".into()));
        }
        let segments: Vec<Segment> = elf
            .program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| Segment {
                p_type: p.p_type,
                flags: p.p_flags,
                offset: p.p_offset,
                vaddr: p.p_vaddr,
                filesz: p.p_filesz,
                memsz: p.p_memsz,
                align: p.p_align,
            })
            .collect();
        let loads: Vec<&Segment> = segments.iter().filter(|s| s.p_type == PT_LOAD).collect();
        if loads.is_empty() || loads[0].offset < 0x1000 {
            return Err(bad("its first PT_LOAD must start at file offset 0x1000 or later".into()));
        }
        let sym = elf
            .syms
            .iter()
            .find(|s| elf.strtab.get_at(s.st_name) == Some("CKPT_IMAGE_OFFSET"))
            .ok_or_else(|| bad("no CKPT_IMAGE_OFFSET symbol".into()))?;
        let seg = loads
            .iter()
            .find(|s| s.vaddr <= sym.st_value && sym.st_value + 8 <= s.vaddr + s.filesz)
            .ok_or_else(|| bad("CKPT_IMAGE_OFFSET is not in a loaded segment".into()))?;
        let param_offset = seg.offset + (sym.st_value - seg.vaddr);
        let file_end = loads.iter().map(|s| s.offset + s.filesz).max().unwrap_or(0);
        Ok(StubInfo { entry: elf.entry, e_type: elf.header.e_type, segments, param_offset, file_end })
    }
}
