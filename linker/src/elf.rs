//! Writing the `.resume` ELF around an image, and finding the image in one.

use crate::stub::StubInfo;
use crate::LinkError;
use ckpt_format::{align_up, NOTE_NAME, NOTE_TYPE_IMAGE, PAGE_SIZE};
use object::elf;
use object::write::elf::{FileHeader, ProgramHeader, SectionHeader, Writer};
use object::Endianness;

/// Note payload: image offset and size, both u64.
const NOTE_DESC_LEN: usize = 16;

fn note_bytes(image_offset: u64, image_size: u64) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&(NOTE_NAME.len() as u32 + 1).to_le_bytes());
    n.extend_from_slice(&(NOTE_DESC_LEN as u32).to_le_bytes());
    n.extend_from_slice(&NOTE_TYPE_IMAGE.to_le_bytes());
    n.extend_from_slice(NOTE_NAME);
    n.push(0);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n.extend_from_slice(&image_offset.to_le_bytes());
    n.extend_from_slice(&image_size.to_le_bytes());
    n
}

/// The ELF part of a `.resume` file: headers, the stub's segments (with the image
/// offset patched in), the CKPT note and section headers. The image must follow at
/// offset `prefix.len()` (page aligned). The length does not depend on `image_size`.
pub fn resume_prefix(stub: &[u8], image_size: u64) -> Result<Vec<u8>, LinkError> {
    let info = StubInfo::parse(stub)?;
    let werr = |e: object::write::Error| LinkError::Write(e.to_string());
    let mut buf = Vec::new();
    let mut w = Writer::new(Endianness::Little, true, &mut buf);

    // Reserve, in file order: header, program headers, stub segments, note, section
    // names, section headers; then the image at the next page boundary.
    w.reserve_file_header();
    let nph = info.segments.len() + 2; // + PT_NOTE + PT_GNU_STACK
    w.reserve_program_headers(nph as u32);
    w.reserve_until(info.segments.iter().map(|s| s.offset).min().unwrap_or(0) as usize);
    w.reserve_until(info.file_end as usize);
    let note_len = note_bytes(0, 0).len();
    let note_off = w.reserve(note_len, 4) as u64;
    let name_text = w.add_section_name(b".text");
    let name_data = w.add_section_name(b".data");
    let name_note = w.add_section_name(b".note.ckpt");
    let name_image = w.add_section_name(b".ckpt.image");
    w.reserve_null_section_index();
    let loads: Vec<_> = info.segments.iter().filter(|s| s.p_type == elf::PT_LOAD).collect();
    for _ in &loads {
        w.reserve_section_index();
    }
    w.reserve_section_index(); // note
    w.reserve_section_index(); // image
    w.reserve_shstrtab_section_index();
    w.reserve_shstrtab();
    w.reserve_section_headers();
    let image_offset = align_up(w.reserved_len() as u64, PAGE_SIZE);

    w.write_file_header(&FileHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: info.e_type,
        e_machine: elf::EM_X86_64,
        e_entry: info.entry,
        e_flags: 0,
    })
    .map_err(werr)?;
    w.write_align_program_headers();
    for s in &info.segments {
        w.write_program_header(&ProgramHeader {
            p_type: s.p_type,
            p_flags: s.flags,
            p_offset: s.offset,
            p_vaddr: s.vaddr,
            p_paddr: s.vaddr,
            p_filesz: s.filesz,
            p_memsz: s.memsz,
            p_align: s.align,
        });
    }
    w.write_program_header(&ProgramHeader {
        p_type: elf::PT_NOTE,
        p_flags: elf::PF_R,
        p_offset: note_off,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: note_len as u64,
        p_memsz: 0,
        p_align: 4,
    });
    w.write_program_header(&ProgramHeader {
        p_type: elf::PT_GNU_STACK,
        p_flags: elf::PF_R | elf::PF_W,
        p_offset: 0,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: 0,
        p_memsz: 0,
        p_align: 16,
    });
    let mut body = stub[..info.file_end as usize].to_vec();
    let p = info.param_offset as usize;
    body[p..p + 8].copy_from_slice(&image_offset.to_le_bytes());
    let first = info.segments.iter().map(|s| s.offset).min().unwrap_or(0) as usize;
    w.pad_until(first);
    w.write(&body[first..]);
    w.write_align(4);
    w.write(&note_bytes(image_offset, image_size));
    w.write_shstrtab();
    w.write_null_section_header();
    for s in &loads {
        let exec = s.flags & elf::PF_X != 0;
        w.write_section_header(&SectionHeader {
            name: Some(if exec { name_text } else { name_data }),
            sh_type: elf::SHT_PROGBITS,
            sh_flags: (elf::SHF_ALLOC | if exec { elf::SHF_EXECINSTR } else { elf::SHF_WRITE }) as u64,
            sh_addr: s.vaddr,
            sh_offset: s.offset,
            sh_size: s.filesz,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 16,
            sh_entsize: 0,
        });
    }
    w.write_section_header(&SectionHeader {
        name: Some(name_note),
        sh_type: elf::SHT_NOTE,
        sh_flags: 0,
        sh_addr: 0,
        sh_offset: note_off,
        sh_size: note_len as u64,
        sh_link: 0,
        sh_info: 0,
        sh_addralign: 4,
        sh_entsize: 0,
    });
    w.write_section_header(&SectionHeader {
        name: Some(name_image),
        sh_type: elf::SHT_PROGBITS,
        sh_flags: 0,
        sh_addr: 0,
        sh_offset: image_offset,
        sh_size: image_size,
        sh_link: 0,
        sh_info: 0,
        sh_addralign: PAGE_SIZE,
        sh_entsize: 0,
    });
    w.write_shstrtab_section_header();
    drop(w);
    buf.resize(image_offset as usize, 0);
    Ok(buf)
}

/// Where the image lies in a `.resume` file: `(offset, size)` from its CKPT note.
/// `head` must hold the file's ELF part (its first bytes up to the image).
pub fn find_image(head: &[u8]) -> Result<(u64, u64), LinkError> {
    let bad = |m: &str| LinkError::NotResume(m.to_string());
    let e = goblin::elf::Elf::parse(head).map_err(|e| LinkError::NotResume(e.to_string()))?;
    let notes = e.iter_note_headers(head).ok_or_else(|| bad("no notes"))?;
    for n in notes {
        let n = n.map_err(|e| LinkError::NotResume(e.to_string()))?;
        if n.name.as_bytes() == NOTE_NAME && n.n_type == NOTE_TYPE_IMAGE && n.desc.len() == NOTE_DESC_LEN {
            let off = u64::from_le_bytes(n.desc[..8].try_into().unwrap());
            let size = u64::from_le_bytes(n.desc[8..].try_into().unwrap());
            return Ok((off, size));
        }
    }
    Err(bad("no CKPT note"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_length_does_not_depend_on_image_size() {
        let a = resume_prefix(crate::STUB, 0).unwrap();
        let b = resume_prefix(crate::STUB, 1 << 40).unwrap();
        assert_eq!(a.len(), b.len());
        assert_eq!(a.len() as u64 % PAGE_SIZE, 0);
    }

    #[test]
    fn note_round_trips_and_param_is_patched() {
        let p = resume_prefix(crate::STUB, 12345).unwrap();
        let (off, size) = find_image(&p).unwrap();
        assert_eq!((off, size), (p.len() as u64, 12345));
        let info = StubInfo::parse(crate::STUB).unwrap();
        let at = info.param_offset as usize;
        assert_eq!(u64::from_le_bytes(p[at..at + 8].try_into().unwrap()), off);
        // The stub itself carries 0: it reads a raw image from argv or AT_EXECFD.
        assert_eq!(u64::from_le_bytes(crate::STUB[at..at + 8].try_into().unwrap()), 0);
    }

    #[test]
    fn plain_stub_has_no_image_note() {
        assert!(find_image(crate::STUB).is_err());
    }
}
