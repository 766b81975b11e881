//! Deciding, per VMA, what the stub will do with it: its kind, flags, which pages
//! to read, and whether it can be restored at all. Anything that cannot be restored
//! yet is refused here, at freeze time, naming the VMA.

use crate::proc::maps::Mapping;
use anyhow::{bail, Result};
use ckpt_format::*;

/// The Strings section under construction.
#[derive(Default)]
pub struct Strings {
    pub buf: Vec<u8>,
}

impl Strings {
    pub fn add(&mut self, s: &str) -> (u32, u32) {
        let off = self.buf.len() as u32;
        self.buf.extend_from_slice(s.as_bytes());
        (off, s.len() as u32)
    }
}

/// Which pages of a VMA are read from the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pages {
    /// None (kernel-provided, or nothing can be there).
    None,
    /// Only populated pages (pagemap), all-zero pages skipped.
    Populated,
    /// Every page, zero pages kept: a private file mapping is stored whole so the
    /// image does not depend on the file, and a zero page must not come back as the
    /// file's (possibly changed) content.
    All,
    /// Only the pages the process wrote (its private copies), zero pages kept: a
    /// private mapping of a file the image holds gets the others from that file.
    Written,
}

pub struct PlannedVma {
    pub vma: Vma,
    pub pages: Pages,
    pub map: Mapping,
}

fn flags_of(m: &Mapping) -> u32 {
    let mut f = 0;
    for (vm, bit) in [
        ("gd", VMA_GROWSDOWN),
        ("hg", VMA_HUGEPAGE),
        ("nh", VMA_NOHUGEPAGE),
        ("dc", VMA_DONTFORK),
        ("dd", VMA_DONTDUMP),
        ("lo", VMA_LOCKED),
        ("nr", VMA_NORESERVE),
        ("sr", VMA_SEQ_READ),
        ("rr", VMA_RAND_READ),
        ("mg", VMA_MERGEABLE),
        ("wf", VMA_WIPEONFORK),
        ("lf", VMA_LOCKONFAULT),
    ] {
        if m.has_flag(vm) {
            f |= bit;
        }
    }
    if m.shared && m.has_flag("mw") {
        f |= VMA_MAYWRITE;
    }
    f
}

fn describe(m: &Mapping) -> String {
    format!(
        "{:x}-{:x} {}{}{}{} {}",
        m.start,
        m.end,
        if m.read { 'r' } else { '-' },
        if m.write { 'w' } else { '-' },
        if m.exec { 'x' } else { '-' },
        if m.shared { 's' } else { 'p' },
        if m.name.is_empty() { "(anonymous)" } else { &m.name }
    )
}

/// Classify every mapping; refuse what cannot be restored yet.
pub fn plan(maps: &[Mapping], strings: &mut Strings) -> Result<Vec<PlannedVma>> {
    let mut out = Vec::new();
    // A library is mapped in four or five VMAs: one stat(2) per file, not per VMA.
    let mut stats: std::collections::HashMap<&str, Option<std::fs::Metadata>> = std::collections::HashMap::new();
    for m in maps {
        if m.name == "[vsyscall]" {
            continue; // fixed by the kernel; cannot be mapped or unmapped
        }
        if m.has_flag("ss") {
            bail!("VMA {} is a CET shadow stack, which cannot be recreated with mmap", describe(m));
        }
        let (kind, pages) = match m.name.as_str() {
            "[vdso]" => (VmaKind::Vdso, Pages::None),
            "[vvar]" => (VmaKind::Vvar, Pages::None),
            "[vvar_vclock]" => (VmaKind::VvarVclock, Pages::None),
            "[heap]" if !m.shared => (VmaKind::Heap, Pages::Populated),
            "[stack]" if !m.shared => (VmaKind::Stack, Pages::Populated),
            // SysV shared memory (shmat(2)) would need its segment made again.
            n if m.shared && n.starts_with("/SYSV") => bail!(
                "VMA {} is System V shared memory, which cannot be restored yet",
                describe(m)
            ),
            // Shared anonymous memory, a memfd, a deleted file: a file the image
            // holds (its object is set by fdplan, with the fds of the same file).
            n if m.shared && n.starts_with('/') && m.is_deleted() => (VmaKind::SharedObject, Pages::None),
            n if m.shared && n.starts_with('/') => (VmaKind::SharedFile, Pages::None),
            n if m.shared => bail!(
                "VMA {} is a shared mapping of {}, which cannot be restored yet",
                describe(m),
                if n.is_empty() { "anonymous memory" } else { n }
            ),
            "" => (VmaKind::Anon, Pages::Populated),
            n if n.starts_with("[anon:") => (VmaKind::Anon, Pages::Populated),
            n if n.starts_with('/') => (VmaKind::FilePrivate, Pages::All),
            n => bail!("VMA {} ({n}) is a kind of mapping ckpt cannot restore yet", describe(m)),
        };
        let mut vma = Vma {
            start: m.start,
            end: m.end,
            prot: ((m.read as u32) * PROT_READ) | ((m.write as u32) * PROT_WRITE) | ((m.exec as u32) * PROT_EXEC),
            kind: kind as u32,
            flags: flags_of(m),
            ..Default::default()
        };
        if matches!(kind, VmaKind::FilePrivate | VmaKind::SharedFile) {
            let path = m.path().unwrap_or_default();
            (vma.name_off, vma.name_len) = strings.add(path);
            vma.file_offset = m.offset;
            // The mapped file is the one with the maps line's device and inode; the
            // path may name another file by now (then mtime stays 0: no match).
            vma.file_dev = libc::makedev(m.dev_major, m.dev_minor);
            vma.file_ino = m.inode;
            if let Some(md) = stats.entry(path).or_insert_with(|| std::fs::metadata(path).ok()) {
                use std::os::unix::fs::MetadataExt;
                vma.file_size = md.len();
                if md.dev() == vma.file_dev && md.ino() == vma.file_ino {
                    vma.file_mtime_ns = (md.mtime() as u64).wrapping_mul(1_000_000_000).wrapping_add(md.mtime_nsec() as u64);
                }
            }
        }
        let pages = if !m.read && !m.write && !m.exec && m.rss == 0 && m.swap == 0 { Pages::None } else { pages };
        if kind == VmaKind::SharedObject {
            vma.file_offset = m.offset;
        }
        out.push(PlannedVma { vma, pages, map: m.clone() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::maps::parse_smaps;

    const MAPS: &str = "\
55d4c0a00000-55d4c0a01000 r--p 00000000 fe:00 1234 /usr/bin/cat
55d4c1000000-55d4c1021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 ---p 00000000 00:00 0
7f0000100000-7f0000200000 rw-s 00000000 00:01 77 /dev/zero (deleted)
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
7ffc00100000-7ffc00104000 r--p 00000000 00:00 0 [vvar]
7ffc00104000-7ffc00106000 r--p 00000000 00:00 0 [vvar_vclock]
7ffc00106000-7ffc00108000 r-xp 00000000 00:00 0 [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";

    #[test]
    fn classifies_each_kind() {
        let maps = parse_smaps(MAPS).unwrap();
        let mut s = Strings::default();
        let p = plan(&maps, &mut s).unwrap();
        let kinds: Vec<u32> = p.iter().map(|v| v.vma.kind).collect();
        use VmaKind::*;
        assert_eq!(
            kinds,
            [FilePrivate, Heap, Anon, SharedObject, Stack, Vvar, VvarVclock, Vdso].map(|k| k as u32)
        );
        assert_eq!(p[0].pages, Pages::All);
        assert_eq!(p[2].pages, Pages::None, "PROT_NONE with no resident pages reads nothing");
        assert_eq!(s.buf, b"/usr/bin/cat");
    }

    #[test]
    fn shared_mappings_of_files_without_a_path_map_objects() {
        let maps = parse_smaps(
            "7f0000000000-7f0000001000 rw-s 00003000 fe:00 9 /tmp/data (deleted)\n\
             7f0000001000-7f0000002000 r--s 00000000 00:01 7 /memfd:buf (deleted)\n",
        )
        .unwrap();
        let p = plan(&maps, &mut Strings::default()).unwrap();
        assert!(p.iter().all(|v| v.vma.kind == VmaKind::SharedObject as u32 && v.pages == Pages::None));
        assert_eq!(p[0].vma.file_offset, 0x3000);
    }

    #[test]
    fn refuses_system_v_shared_memory_naming_it() {
        let maps = parse_smaps("7f0000000000-7f0000001000 rw-s 00000000 00:01 9 /SYSV00000000 (deleted)\n").unwrap();
        let e = plan(&maps, &mut Strings::default()).err().unwrap().to_string();
        assert!(e.contains("7f0000000000-7f0000001000 rw-s /SYSV00000000 (deleted)"), "{e}");
        assert!(e.contains("System V shared memory"), "{e}");
    }
}
