//! Private file mappings whose clean pages stay in their file.
//!
//! Most of a process's file mappings are its executable and libraries, and most of
//! their pages were never written: they are the file's own bytes. Storing them makes
//! every resume file carry its libraries (2 MiB for a small C program, 50 MiB for
//! python with numpy). By default such a mapping is a *reference*: the image keeps
//! only the pages the process wrote (its private copies), plus the file's identity
//! (device, inode, size, mtime) and a CRC-32C of the mapped bytes. At resume the
//! file is mapped again; if its identity differs (another machine, a reinstalled
//! package) the checksum decides whether it still has the same bytes, and a file that
//! is missing or changed stops the resume with a message naming it.
//! The checksums are remembered between freezes (crc_cache.rs), so a library is
//! read once, not at every freeze.
//! `ckpt freeze --embed-files` stores the clean pages instead, for a file that depends
//! on nothing but the kernel.

use crate::crc_cache;
use crate::plan::{Pages, PlannedVma};
use anyhow::{Context, Result};
use ckpt_format::{align_up, crc32c, VmaKind, PAGE_SIZE, VMA_FILE_REF};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Checksums being computed on another thread while the pages are read: the
/// target's memory is what keeps it stopped, the files' bytes can be read meanwhile.
pub struct Pending(std::thread::JoinHandle<Result<Vec<(usize, u32)>>>);

impl Pending {
    /// Wait for the checksums and put them into their VMAs.
    pub fn apply(self, vmas: &mut [PlannedVma]) -> Result<()> {
        let crcs = self.0.join().map_err(|_| anyhow::anyhow!("the file checksum thread panicked"))??;
        for (i, crc) in crcs {
            vmas[i].vma.file_crc = crc;
        }
        Ok(())
    }
}

/// CRC-32C of `file`'s bytes in `[from, to)`.
fn crc_of(file: &File, path: &str, from: u64, to: u64, buf: &mut [u8], hw: bool) -> Result<u32> {
    let mut crc = 0u32;
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at).with_context(|| format!("reading {path} at {at:#x} to check it at resume"))?;
        crc = if hw { ::crc32c::crc32c_append(crc, &buf[..n]) } else { crc32c::update_sw(crc, &buf[..n]) };
        at += n as u64;
    }
    Ok(crc)
}

/// Turn every private mapping of an unchanged regular file into a reference; the
/// checksums of their bytes follow through the returned [`Pending`].
pub fn reference(vmas: &mut [PlannedVma], strings: &[u8]) -> Pending {
    let mut files: HashMap<String, Option<File>> = HashMap::new();
    let mut work: Vec<(usize, String, u64, u64)> = Vec::new();
    for (i, v) in vmas.iter_mut().enumerate() {
        // plan.rs sets the mtime only when the path still leads to the mapped inode.
        if v.vma.kind != VmaKind::FilePrivate as u32 || v.pages != Pages::All || v.vma.file_mtime_ns == 0 {
            continue;
        }
        // A mapping reaching past the file's last page has pages no file can give
        // back (they would fault with SIGBUS): stored whole.
        if align_up(v.vma.file_size, PAGE_SIZE) < v.vma.file_offset + (v.vma.end - v.vma.start) {
            continue;
        }
        let path = String::from_utf8_lossy(&strings[v.vma.name_off as usize..(v.vma.name_off + v.vma.name_len) as usize]).into_owned();
        let file = files.entry(path.clone()).or_insert_with(|| {
            let f = File::open(&path).ok()?;
            let md = f.metadata().ok()?;
            (md.is_file() && md.dev() == v.vma.file_dev && md.ino() == v.vma.file_ino && md.len() == v.vma.file_size).then_some(f)
        });
        if file.is_none() {
            continue;
        }
        v.vma.flags |= VMA_FILE_REF;
        v.pages = Pages::Written;
        let end = (v.vma.file_offset + (v.vma.end - v.vma.start)).min(v.vma.file_size);
        work.push((i, path, v.vma.file_offset, end));
    }
    let files: HashMap<String, File> = files.into_iter().filter_map(|(p, f)| Some((p, f?))).collect();
    Pending(std::thread::spawn(move || {
        let hw = crc32c::have_hw();
        let mut buf = Vec::new();
        let wanted = files.values().filter_map(|f| f.metadata().ok()).map(|md| crc_cache::Key::file(&md)).collect();
        let mut cache = crc_cache::Cache::load(&wanted);
        crate::trace::mark("file checksums: cache read");
        let mut out = Vec::with_capacity(work.len());
        for (i, path, from, to) in work {
            let file = &files[&path];
            let key = file.metadata().ok().map(|md| crc_cache::Key::new(&md, from, to));
            let crc = match key.and_then(|k| cache.get(&k)) {
                Some(crc) => crc,
                None => {
                    buf.resize(1 << 20, 0);
                    let crc = crc_of(file, &path, from, to, &mut buf, hw)?;
                    if let Some(k) = key {
                        cache.put(k, crc);
                    }
                    crc
                }
            };
            out.push((i, crc));
        }
        cache.save();
        crate::trace::mark("file checksums: done");
        Ok(out)
    }))
}
