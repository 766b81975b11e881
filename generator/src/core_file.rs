//! `ckpt core FILE -o CORE`: an ELF core file (ET_CORE) of the frozen process, so
//! the usual tools can look at it without resuming it: `gdb EXE CORE` shows the
//! backtrace, variables and memory as they were at the freeze.
//!
//! Layout, as Linux writes a core dump: ELF header, program headers (one PT_NOTE,
//! then one PT_LOAD per VMA in address order), the notes (notes.rs), then each
//! VMA's bytes at a page-aligned offset. Every live thread has its own
//! NT_PRSTATUS and register notes, so `thread apply all bt` shows every stack.
//! Contents come from the page runs (zero where none, left as holes so the file
//! stays sparse) and the saved vdso; vvar pages are kernel data and left out.
//! Mappings whose contents are not in the image get p_filesz 0 (their size stays
//! in p_memsz): shared file mappings (the file holds the data) and inaccessible
//! reservations without stored pages (a 64 GiB PROT_NONE reservation would
//! otherwise be 64 GiB of zeros).

mod notes;

use crate::info::memory::ImageMemory;
use crate::output::Output;
use crate::reader::ImageFile;
use anyhow::{bail, Context, Result};
use ckpt_format::*;
use notes::MappedFile;
use object::elf;
use object::write::elf::{FileHeader, ProgramHeader, Writer};
use object::Endianness;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// One PT_LOAD.
struct Segment<'a> {
    vma: &'a Vma,
    offset: u64,
    filesz: u64,
}

fn dumped_size(v: &Vma) -> u64 {
    match VmaKind::from_u32(v.kind) {
        Some(VmaKind::SharedFile) => 0,
        _ if v.prot == 0 && v.nruns == 0 => 0,
        _ => v.end - v.start,
    }
}

fn p_flags(prot: u32) -> u32 {
    let mut f = 0;
    if prot & PROT_READ != 0 {
        f |= elf::PF_R;
    }
    if prot & PROT_WRITE != 0 {
        f |= elf::PF_W;
    }
    if prot & PROT_EXEC != 0 {
        f |= elf::PF_X;
    }
    f
}

/// The XSAVE area of one thread (empty if none was saved).
fn xstate_of<'a>(t: &Tables<'a>, th: &Thread) -> &'a [u8] {
    t.xstate.get(th.xstate_off as usize..(th.xstate_off + th.xstate_size as u64) as usize).unwrap_or_default()
}

/// The notes of every live thread and of the process, in the kernel's order
/// (fs/binfmt_elf.c, write_note_info): each thread's NT_PRSTATUS (its TID as
/// pr_pid) followed by its NT_PRFPREG and NT_X86_XSTATE, the process-wide notes
/// (NT_PRPSINFO, NT_AUXV, NT_FILE) right after the first thread's NT_PRSTATUS.
/// gdb makes one thread of each NT_PRSTATUS and gives it the register notes that
/// follow. A leader that had exited is left out, as the kernel leaves out threads
/// that are gone; the first live thread is the one gdb selects.
fn all_notes(img: &ImageFile, t: &Tables) -> Result<Vec<u8>> {
    let h = &img.header;
    let m = t.mm;
    let cmdline = t.string(m.cmdline_off, m.cmdline_len);
    let exe = t.string(m.exe_off, m.exe_len);
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let name_src = if exe.is_empty() { argv0 } else { exe };
    let fname = name_src.rsplit(|&b| b == b'/').next().unwrap_or_default();
    let args: Vec<u8> = cmdline.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    // The freezer's uid/gid are not in the image; the image file's owner is the
    // best guess (usually who froze the process).
    let md = img.file.metadata().context("stat of the image")?;

    let files: Vec<MappedFile> = t
        .vmas
        .iter()
        .filter(|v| matches!(VmaKind::from_u32(v.kind), Some(VmaKind::FilePrivate | VmaKind::SharedFile)))
        .map(|v| MappedFile { start: v.start, end: v.end, file_offset: v.file_offset, path: t.string(v.name_off, v.name_len) })
        .collect();

    let mut n = Vec::new();
    let live = t.threads.iter().filter(|th| th.flags & THREAD_EXITED == 0);
    for (i, th) in live.enumerate() {
        let area = xstate_of(t, th);
        n.extend(notes::note("CORE", notes::NT_PRSTATUS, &notes::prstatus(th.tid, th.sigmask, &th.regs, !area.is_empty())));
        if i == 0 {
            n.extend(notes::note("CORE", notes::NT_PRPSINFO, &notes::prpsinfo(h.pid, md.uid(), md.gid(), fname, &args)));
            n.extend(notes::note("CORE", notes::NT_AUXV, &notes::auxv(&m.auxv[..m.auxv_words as usize])));
            n.extend(notes::note("CORE", notes::NT_FILE, &notes::file_note(&files)));
        }
        if let Some(fx) = notes::fpregs(area) {
            n.extend(notes::note("CORE", notes::NT_PRFPREG, fx));
            n.extend(notes::note("LINUX", notes::NT_X86_XSTATE, &notes::xstate(area, h.xcr0)));
        }
    }
    Ok(n)
}

pub fn run(file: &Path, out: &Path) -> Result<()> {
    let img = ImageFile::open(file)?;
    let t = img.tables()?;
    let mem = ImageMemory::new(&img, t);
    let notes = all_notes(&img, &t)?;
    let vmas: Vec<&Vma> =
        t.vmas.iter().filter(|v| !matches!(VmaKind::from_u32(v.kind), Some(VmaKind::Vvar | VmaKind::VvarVclock))).collect();
    if vmas.len() + 1 >= elf::PN_XNUM as usize {
        bail!("{} has {} mappings; a core file holds at most {}", file.display(), vmas.len(), elf::PN_XNUM - 2);
    }

    // Headers and notes through object's writer; the segment data, which may be
    // large and is mostly holes, is placed after them and written directly.
    let mut head = Vec::new();
    let mut w = Writer::new(Endianness::Little, true, &mut head);
    w.reserve_file_header();
    w.reserve_program_headers(1 + vmas.len() as u32);
    let note_off = w.reserve(notes.len(), 4) as u64;
    let mut at = align_up(w.reserved_len() as u64, PAGE_SIZE);
    let segs: Vec<Segment> = vmas
        .iter()
        .map(|&v| {
            let filesz = dumped_size(v);
            let s = Segment { vma: v, offset: at, filesz };
            at += filesz;
            s
        })
        .collect();
    let total = at;
    w.write_file_header(&FileHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: elf::ET_CORE,
        e_machine: elf::EM_X86_64,
        e_entry: 0,
        e_flags: 0,
    })
    .map_err(|e| anyhow::anyhow!("writing the ELF header: {e}"))?;
    w.write_align_program_headers();
    w.write_program_header(&ProgramHeader {
        p_type: elf::PT_NOTE,
        p_flags: 0,
        p_offset: note_off,
        p_vaddr: 0,
        p_paddr: 0,
        p_filesz: notes.len() as u64,
        p_memsz: 0,
        p_align: 4,
    });
    for s in &segs {
        w.write_program_header(&ProgramHeader {
            p_type: elf::PT_LOAD,
            p_flags: p_flags(s.vma.prot),
            p_offset: s.offset,
            p_vaddr: s.vma.start,
            p_paddr: 0,
            p_filesz: s.filesz,
            p_memsz: s.vma.end - s.vma.start,
            p_align: PAGE_SIZE,
        });
    }
    w.write_align(4);
    w.write(&notes);
    drop(w);

    let o = Output::create(out)?;
    let io = || format!("writing {}", out.display());
    o.file.write_all_at(&head, 0).with_context(io)?;
    for s in segs.iter().filter(|s| s.filesz != 0) {
        let v = s.vma;
        if v.kind == VmaKind::Vdso as u32 {
            let n = t.vdso.len().min((v.end - v.start) as usize);
            o.file.write_all_at(&t.vdso[..n], s.offset).with_context(io)?;
            continue;
        }
        for r in mem.runs_of(v) {
            let base = s.offset + (r.addr - v.start);
            mem.for_each_chunk(r, |off, bytes| o.file.write_all_at(bytes, base + off).with_context(io))?;
        }
        // Pages the image references in their file: the file's bytes as they are now.
        if v.flags & VMA_FILE_REF != 0 {
            for (lo, hi) in mem.file_ref_gaps(v) {
                let mut buf = vec![0u8; (hi - lo) as usize];
                if !mem.read_file_ref(v, lo, &mut buf) {
                    bail!("{}: cannot read {} for {lo:#x}-{hi:#x}", file.display(), mem.vma_name(v));
                }
                o.file.write_all_at(&buf, s.offset + (lo - v.start)).with_context(io)?;
            }
        }
    }
    o.file.set_len(total).with_context(io)?;
    o.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_dumped() {
        let v = |kind: VmaKind, prot, nruns| Vma { start: 0x1000, end: 0x5000, kind: kind as u32, prot, nruns, ..Default::default() };
        assert_eq!(dumped_size(&v(VmaKind::Anon, PROT_READ | PROT_WRITE, 0)), 0x4000);
        assert_eq!(dumped_size(&v(VmaKind::Anon, 0, 0)), 0);
        assert_eq!(dumped_size(&v(VmaKind::Anon, 0, 1)), 0x4000);
        assert_eq!(dumped_size(&v(VmaKind::SharedFile, PROT_READ, 0)), 0);
        assert_eq!(dumped_size(&v(VmaKind::Vdso, PROT_READ | PROT_EXEC, 0)), 0x4000);
        assert_eq!(p_flags(PROT_READ | PROT_EXEC), elf::PF_R | elf::PF_X);
    }

    /// A raw image of `parts` without page data, opened as `ckpt core` opens one.
    fn image_file(parts: &crate::write::ImageParts, name: &str) -> ImageFile {
        let (h, tables) = crate::write::finish(parts, DATA_START, false);
        let mut bytes = as_bytes(&h).to_vec();
        bytes.resize(align_up(DATA_START, 64) as usize, 0);
        bytes.extend(tables);
        let path = std::env::temp_dir().join(format!("ckpt-core-test-{}-{name}", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let img = ImageFile::open(&path);
        let _ = std::fs::remove_file(&path);
        img.unwrap()
    }

    /// (type, descriptor) of each note.
    fn note_list(mut b: &[u8]) -> Vec<(u32, &[u8])> {
        let word = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let mut out = Vec::new();
        while !b.is_empty() {
            let (namesz, descsz, ty) = (word(b, 0) as usize, word(b, 4) as usize, word(b, 8));
            let desc = 12 + namesz.next_multiple_of(4);
            out.push((ty, &b[desc..desc + descsz]));
            b = &b[desc + descsz.next_multiple_of(4)..];
        }
        out
    }

    /// An exited leader and two live threads: one NT_PRSTATUS per live thread with
    /// its TID, each followed by its own FPU and xstate notes; the process-wide
    /// notes once, after the first.
    #[test]
    fn one_prstatus_per_live_thread() {
        let live = |tid, off, rip| Thread {
            tid,
            regs: Regs { rip, rsp: 0x7ffc_0000_0000, ..Default::default() },
            xstate_size: 576,
            xstate_off: off,
            syscall_nr: -1,
            ..Default::default()
        };
        let mut xstate = vec![0u8; 1152];
        xstate[0] = 0x7f; // thread 101's FCW low byte
        xstate[576] = 0x3f; // thread 102's
        let parts = crate::write::ImageParts {
            threads: vec![
                Thread { tid: 100, flags: THREAD_EXITED, syscall_nr: -1, ..Default::default() },
                live(101, 0, 0x401000),
                live(102, 576, 0x402000),
            ],
            xstate,
            xstate_size: 576,
            xcr0: 0x7,
            pid: 100,
            ..Default::default()
        };
        let img = image_file(&parts, "threads");
        let t = img.tables().unwrap();
        let n = all_notes(&img, &t).unwrap();
        use notes::*;
        let list = note_list(&n);
        let pr_pid = |d: &[u8]| u32::from_le_bytes(d[32..36].try_into().unwrap());
        let kinds: Vec<(u32, u32)> = list.iter().map(|&(ty, d)| (ty, if ty == NT_PRSTATUS { pr_pid(d) } else { 0 })).collect();
        assert_eq!(
            kinds,
            [
                (NT_PRSTATUS, 101),
                (NT_PRPSINFO, 0),
                (NT_AUXV, 0),
                (NT_FILE, 0),
                (NT_PRFPREG, 0),
                (NT_X86_XSTATE, 0),
                (NT_PRSTATUS, 102),
                (NT_PRFPREG, 0),
                (NT_X86_XSTATE, 0),
            ]
        );
        // Each thread's FPU note is its own area.
        let fcw: Vec<u8> = list.iter().filter(|(ty, _)| *ty == NT_PRFPREG).map(|(_, d)| d[0]).collect();
        assert_eq!(fcw, [0x7f, 0x3f]);
    }
}
