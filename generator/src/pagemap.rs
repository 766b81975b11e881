//! Which pages of a range hold data, so only those are read.
//!
//! PAGEMAP_SCAN (ioctl on /proc/PID/pagemap, Linux 6.7, unprivileged) returns whole
//! ranges of present or swapped pages and flags the shared zero page (PAGE_IS_PFNZERO),
//! so a 64 GiB reservation with one page costs one ioctl, not 16 M pagemap entries.
//! Older kernels: fall back to the 8-byte-per-page /proc/PID/pagemap entries
//! (bit 63 present, bit 62 swapped; proc(5)).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

const PAGE: u64 = 4096;
/// _IOWR('f', 16, struct pm_scan_arg) (include/uapi/linux/fs.h).
pub(crate) const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
pub(crate) const PAGE_IS_WRITTEN: u64 = 1 << 1;
pub(crate) const PAGE_IS_PRESENT: u64 = 1 << 3;
pub(crate) const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub(crate) const PAGE_IS_PFNZERO: u64 = 1 << 5;

/// struct pm_scan_arg (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
pub(crate) struct PmScanArg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// struct page_region (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub(crate) struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// What a PAGEMAP_SCAN asks for: its flags, the categories of which a page
/// must have one (`anyof`) or all (`all`), and those reported.
#[derive(Clone, Copy)]
pub(crate) struct ScanMasks {
    pub flags: u64,
    pub anyof: u64,
    pub all: u64,
    pub report: u64,
}

/// PAGEMAP_SCAN over `[start, end)` of the page map `file`, each reported region
/// handed to `each` in order. A call that filled its buffer may report again, in
/// the next call, the region it stopped in: only what lies past the last region
/// handed on counts.
pub(crate) fn scan_regions(file: &File, start: u64, end: u64, want: ScanMasks, mut each: impl FnMut(&PageRegion)) -> io::Result<()> {
    let mut regions = vec![PageRegion::default(); 1024];
    let mut at = start;
    let mut done = start;
    while at < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags: want.flags,
            start: at,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_mask: want.all,
            category_anyof_mask: want.anyof,
            return_mask: want.report,
            ..Default::default()
        };
        // SAFETY: arg is a complete pm_scan_arg whose vec points at `regions`
        // (vec_len entries), which the kernel fills.
        let n = unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN, &mut arg as *mut PmScanArg) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for r in &regions[..n as usize] {
            let from = r.start.max(done);
            if from < r.end {
                each(&PageRegion { start: from, ..*r });
                done = r.end;
            }
        }
        if arg.walk_end <= at {
            break;
        }
        at = arg.walk_end;
    }
    Ok(())
}

/// Answers recorded while the process was stopped, given instead of reading
/// its live page map once it runs on (a pre-copied freeze, precopy.rs): per
/// VMA `(start, end)`, the ranges [`Pagemap::populated`] and
/// [`Pagemap::private_copies`] return.
#[derive(Default)]
pub struct Recorded {
    pub populated: std::collections::HashMap<(u64, u64), Vec<(u64, u64)>>,
    pub copies: std::collections::HashMap<(u64, u64), Vec<(u64, u64)>>,
}

fn recorded(m: &std::collections::HashMap<(u64, u64), Vec<(u64, u64)>>, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    m.get(&(start, end))
        .cloned()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no pages were recorded for {start:x}-{end:x} at the stop")))
}

pub struct Pagemap {
    file: File,
    scan_works: bool,
    recorded: Option<std::sync::Arc<Recorded>>,
}

impl Pagemap {
    pub fn open(pid: i32) -> io::Result<Pagemap> {
        Ok(Pagemap { file: File::open(format!("/proc/{pid}/pagemap"))?, scan_works: true, recorded: None })
    }

    /// A page map that answers from `r` (recorded at the stop) instead of the
    /// process's live page map.
    pub fn recorded(pid: i32, r: std::sync::Arc<Recorded>) -> io::Result<Pagemap> {
        Ok(Pagemap { recorded: Some(r), ..Pagemap::open(pid)? })
    }

    /// Ranges of `[start, end)` holding data (present or swapped), in order,
    /// excluding pages that map the shared zero page.
    pub fn populated(&mut self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        if let Some(r) = &self.recorded {
            return recorded(&r.populated, start, end);
        }
        if self.scan_works {
            match self.scan(start, end) {
                Ok(v) => return Ok(v),
                Err(e) if e.raw_os_error() == Some(libc::ENOTTY) || e.raw_os_error() == Some(libc::EINVAL) => {
                    self.scan_works = false;
                }
                Err(e) => return Err(e),
            }
        }
        self.entries(start, end)
    }

    fn scan(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
        let want = ScanMasks { flags: 0, anyof, all: 0, report: anyof | PAGE_IS_PFNZERO };
        scan_regions(&self.file, start, end, want, |r| {
            if r.categories & PAGE_IS_PFNZERO != 0 {
                return;
            }
            match out.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        })?;
        Ok(out)
    }

    /// Ranges of `[start, end)` whose pages are private anonymous copies (written by
    /// the process, or swapped out, which only anonymous pages are in a private file
    /// mapping): pagemap bit 63 present without bit 61 file-page, or bit 62 swapped.
    pub fn private_copies(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        if let Some(r) = &self.recorded {
            return recorded(&r.copies, start, end);
        }
        self.scan_entries(start, end, |v| (v & (1 << 63) != 0 && v & (1 << 61) == 0) || v & (1 << 62) != 0)
    }

    fn entries(&self, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
        self.scan_entries(start, end, |v| v & (3 << 62) != 0)
    }

    fn scan_entries(&self, start: u64, end: u64, want: impl Fn(u64) -> bool) -> io::Result<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let chunk_pages = 65536u64;
        // Sized to the range: most VMAs are a few pages, and a zeroed buffer is paid
        // for page by page.
        let mut buf = vec![0u8; (((end.saturating_sub(start)) / PAGE).min(chunk_pages) * 8) as usize];
        let mut at = start;
        while at < end {
            let n = ((end - at) / PAGE).min(chunk_pages);
            let b = &mut buf[..(n * 8) as usize];
            self.file.read_exact_at(b, at / PAGE * 8)?;
            for (i, e) in b.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(e.try_into().unwrap());
                if !want(v) {
                    continue;
                }
                let a = at + i as u64 * PAGE;
                match out.last_mut() {
                    Some(last) if last.1 == a => last.1 = a + PAGE,
                    _ => out.push((a, a + PAGE)),
                }
            }
            at += n * PAGE;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_touched_pages_of_a_sparse_mapping() {
        let len = 64 * PAGE as usize;
        // SAFETY: a fresh private anonymous mapping, unmapped at the end.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        } as *mut u8;
        assert!(!p.is_null());
        // SAFETY: offsets inside the mapping.
        unsafe {
            *p.add(5 * PAGE as usize) = 1;
            *p.add(6 * PAGE as usize) = 1;
            *p.add(40 * PAGE as usize) = 1;
        }
        let base = p as u64;
        let mut pm = Pagemap::open(std::process::id() as i32).unwrap();
        let want = vec![(base + 5 * PAGE, base + 7 * PAGE), (base + 40 * PAGE, base + 41 * PAGE)];
        assert_eq!(pm.populated(base, base + len as u64).unwrap(), want);
        assert_eq!(pm.entries(base, base + len as u64).unwrap(), want);
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(p.cast(), len) };
    }
}
