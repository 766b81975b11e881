//! Streaming the target's pages into the image: read in batches of up to 8 MiB,
//! drop all-zero pages where allowed, and coalesce consecutive stored pages into page
//! runs (each with its CRC-32C), written one after another at page-aligned offsets.

use crate::memory::Mem;
use crate::pagemap::Pagemap;
use crate::plan::{Pages, PlannedVma};
use anyhow::{Context, Result};
use ckpt_format::{crc32c, PageRun, PAGE_SIZE, RUN_FILE_CLEAN};
use std::io::Write;

const BATCH: usize = 8 << 20;
const MAX_SEGS: usize = 1024;
const PAGE: usize = PAGE_SIZE as usize;

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub stored_pages: u64,
    pub zero_pages: u64,
    pub unreadable_pages: u64,
}

/// Writes page data sequentially and records the runs.
pub struct PageWriter<W: Write> {
    out: W,
    /// Image offset of the next byte written.
    pub pos: u64,
    hw: bool,
    pub runs: Vec<PageRun>,
    cur: Option<PageRun>,
    pub stats: Stats,
}

fn is_zero(page: &[u8]) -> bool {
    let words = page.chunks_exact(8);
    let tail = words.remainder();
    words.fold(0u64, |acc, c| acc | u64::from_ne_bytes(c.try_into().unwrap())) == 0 && tail.iter().all(|&b| b == 0)
}

impl<W: Write> PageWriter<W> {
    pub fn new(out: W, start: u64) -> Self {
        PageWriter { out, pos: start, hw: crc32c::have_hw(), runs: Vec::new(), cur: None, stats: Stats::default() }
    }

    fn close_run(&mut self) {
        if let Some(r) = self.cur.take() {
            self.runs.push(r);
        }
    }

    /// Store `data` (whole pages) for `addr`, extending the current run when it
    /// continues it. One write per span, not per page.
    fn push(&mut self, vma: u32, addr: u64, data: &[u8], flags: u32) -> std::io::Result<()> {
        let len = data.len() as u64;
        match &mut self.cur {
            Some(r) if r.vma == vma && r.addr + r.len == addr && r.flags == flags => {
                r.len += len;
                r.crc = if self.hw {
                    // SAFETY: hw is only true when the CPU has SSE4.2.
                    unsafe { crc32c::update_hw(r.crc, data) }
                } else {
                    crc32c::update_sw(r.crc, data)
                };
            }
            _ => {
                self.close_run();
                self.cur = Some(PageRun { addr, data_off: self.pos, len, crc: crc32c::crc32c(data, self.hw), vma, flags, _pad: 0 });
            }
        }
        self.out.write_all(data)?;
        self.pos += len;
        self.stats.stored_pages += len / PAGE_SIZE;
        Ok(())
    }

    /// Finish the last run and hand back the writer.
    pub fn finish(mut self) -> (W, Vec<PageRun>, Stats, u64) {
        self.close_run();
        (self.out, self.runs, self.stats, self.pos)
    }
}

/// The address ranges of `v` to read.
fn ranges(pm: &mut Pagemap, v: &PlannedVma) -> Result<Vec<(u64, u64)>> {
    Ok(match v.pages {
        Pages::None => Vec::new(),
        Pages::Populated => pm.populated(v.vma.start, v.vma.end).with_context(|| {
            format!("reading the page map of {:x}-{:x}", v.vma.start, v.vma.end)
        })?,
        Pages::All => vec![(v.vma.start, v.vma.end)],
        Pages::Written => pm.private_copies(v.vma.start, v.vma.end).with_context(|| {
            format!("reading the page map of {:x}-{:x}", v.vma.start, v.vma.end)
        })?,
    })
}

/// Read every chosen page of every VMA and stream it into `w`, filling in each
/// VMA's `first_run`/`nruns`.
pub fn dump<W: Write>(mem: &Mem, pm: &mut Pagemap, vmas: &mut [PlannedVma], w: &mut PageWriter<W>) -> Result<()> {
    let mut buf = vec![0u8; BATCH];
    for (i, v) in vmas.iter_mut().enumerate() {
        let skip_zero = !matches!(v.pages, Pages::All | Pages::Written);
        w.close_run();
        v.vma.first_run = w.runs.len() as u32;
        let mut segs: Vec<(u64, usize)> = Vec::new();
        let mut total = 0usize;
        let rs = ranges(pm, v)?;
        // In a whole-stored private file mapping, pages never written are the file's
        // own bytes: marked clean, so a resume that finds the same file maps them
        // from it instead of copying them in.
        let copies = if v.pages == Pages::All {
            Some(pm.private_copies(v.vma.start, v.vma.end).with_context(|| {
                format!("reading the page map of {:x}-{:x}", v.vma.start, v.vma.end)
            })?)
        } else {
            None
        };
        let page_flags = |addr: u64| match &copies {
            Some(c) if !c.iter().any(|&(lo, hi)| lo <= addr && addr < hi) => RUN_FILE_CLEAN,
            _ => 0,
        };
        let mut flush = |segs: &mut Vec<(u64, usize)>, total: &mut usize, w: &mut PageWriter<W>| -> Result<()> {
            if segs.is_empty() {
                return Ok(());
            }
            let b = &mut buf[..*total];
            w.stats.unreadable_pages += mem.read_segments(segs, b) as u64;
            let mut off = 0;
            for &(addr, len) in segs.iter() {
                let seg = &b[off..off + len];
                let io = || format!("writing the pages of {:x}-{:x}", addr, addr + len as u64);
                // Spans of stored pages with the same flags, between skipped zero pages.
                let mut span_start = 0;
                let mut span_flags = page_flags(addr);
                for p in (0..len).step_by(PAGE) {
                    let zero = skip_zero && is_zero(&seg[p..p + PAGE]);
                    let flags = page_flags(addr + p as u64);
                    if (zero || flags != span_flags) && span_start < p {
                        w.push(i as u32, addr + span_start as u64, &seg[span_start..p], span_flags).with_context(io)?;
                        span_start = p;
                    }
                    span_flags = flags;
                    if zero {
                        w.stats.zero_pages += 1;
                        w.close_run();
                        span_start = p + PAGE;
                    }
                }
                if span_start < len {
                    w.push(i as u32, addr + span_start as u64, &seg[span_start..], span_flags).with_context(io)?;
                }
                off += len;
            }
            segs.clear();
            *total = 0;
            Ok(())
        };
        for (lo, hi) in rs {
            let mut a = lo;
            while a < hi {
                let n = ((hi - a) as usize).min(BATCH - total);
                segs.push((a, n));
                total += n;
                a += n as u64;
                if total == BATCH || segs.len() == MAX_SEGS {
                    flush(&mut segs, &mut total, w)?;
                }
            }
        }
        flush(&mut segs, &mut total, w)?;
        w.close_run();
        v.vma.nruns = w.runs.len() as u32 - v.vma.first_run;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_pages_and_splits_on_gaps() {
        let mut w = PageWriter::new(Vec::new(), 4096);
        let p = [7u8; PAGE];
        w.push(0, 0x1000, &p, 0).unwrap();
        w.push(0, 0x2000, &p, 0).unwrap();
        w.push(0, 0x4000, &p, 0).unwrap();
        w.push(1, 0x5000, &p, 0).unwrap();
        w.push(1, 0x6000, &p, RUN_FILE_CLEAN).unwrap();
        let (data, runs, stats, end) = w.finish();
        assert_eq!(data.len(), 5 * PAGE);
        assert_eq!(stats.stored_pages, 5);
        assert_eq!(end, 4096 + 5 * 4096);
        let got: Vec<(u64, u64, u64)> = runs.iter().map(|r| (r.addr, r.len, r.data_off)).collect();
        assert_eq!(got, [(0x1000, 0x2000, 4096), (0x4000, 0x1000, 3 * 4096), (0x5000, 0x1000, 4 * 4096), (0x6000, 0x1000, 5 * 4096)]);
        assert_eq!(runs[3].flags, RUN_FILE_CLEAN, "a change of flags starts a new run");
        assert_eq!(runs[0].crc, crc32c::update_sw(0, &[7u8; 2 * PAGE]));
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; PAGE]));
        let mut p = [0u8; PAGE];
        p[PAGE - 1] = 1;
        assert!(!is_zero(&p));
    }
}
