//! Streaming the target's pages into the image: read in batches of up to 1 MiB,
//! drop all-zero pages where allowed, and coalesce consecutive stored pages into page
//! runs (each with its CRC-32C), written one after another at page-aligned offsets.

use crate::memory::Mem;
use crate::pagemap::Pagemap;
use crate::plan::{Pages, PlannedVma};
use anyhow::{Context, Result};
use ckpt_format::{crc32c, PageRun, PAGE_SIZE, RUN_FILE_CLEAN};
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes of one batch. Each buffer is fresh memory, paid for by a page fault and
/// a zeroing per page (and freed at the end): three 8 MiB buffers cost a python
/// process's 18 MiB freeze some 6,000 faults. A 1 MiB batch keeps that at 768
/// faults, while a GiB still takes only 1,024 batches (a hand-over each).
const BATCH: usize = 1 << 20;
const MAX_SEGS: usize = 1024;
const PAGE: usize = PAGE_SIZE as usize;

#[derive(Default, Debug, Clone, Copy)]
pub struct Stats {
    pub stored_pages: u64,
    pub zero_pages: u64,
    pub unreadable_pages: u64,
}

impl Stats {
    /// Count another image's pages too (a process tree).
    pub fn add(&mut self, o: &Stats) {
        self.stored_pages += o.stored_pages;
        self.zero_pages += o.zero_pages;
        self.unreadable_pages += o.unreadable_pages;
    }
}

/// Writes page data sequentially and records the runs.
pub struct PageWriter<W: Write> {
    out: W,
    /// Image offset of the next byte written.
    pub pos: u64,
    pub runs: Vec<PageRun>,
    cur: Option<PageRun>,
    pub stats: Stats,
    /// With `--compress`: the runs' bytes go out as compressed chunks.
    pack: Option<crate::compress::Packer>,
}

/// CRC-32C of page data continued from `crc`: the crc32c crate interleaves three
/// streams of the SSE4.2 instruction (three times the single-stream rate of the
/// format crate's, which the no_std restorer uses to check the same value).
fn page_crc(crc: u32, data: &[u8], hw: bool) -> u32 {
    if hw {
        ::crc32c::crc32c_append(crc, data)
    } else {
        crc32c::update_sw(crc, data)
    }
}

/// Whether a page is all zeros. Checked 64 bytes at a time (the OR of eight
/// words, which the compiler vectorizes) and left at the first block with a set
/// bit: a page of data usually has one in its first block, so only zero pages
/// are read whole.
fn is_zero(page: &[u8]) -> bool {
    let blocks = page.chunks_exact(64);
    let tail = blocks.remainder();
    blocks.into_iter().all(|b| b.chunks_exact(8).fold(0u64, |acc, c| acc | u64::from_ne_bytes(c.try_into().unwrap())) == 0)
        && tail.iter().all(|&b| b == 0)
}

impl<W: Write> PageWriter<W> {
    pub fn new(out: W, start: u64) -> Self {
        PageWriter { out, pos: start, runs: Vec::new(), cur: None, stats: Stats::default(), pack: None }
    }

    /// Store the page data compressed (compress.rs): the runs' `data_off` is 0.
    pub fn compressing(mut self, on: bool) -> Self {
        self.pack = on.then(|| crate::compress::Packer::new(crc32c::have_hw()));
        self
    }

    /// The chunks of a compressed image once every page is in, and (raw, stored)
    /// bytes; the page data then ends page aligned. None when not compressing.
    pub fn end_chunks(&mut self) -> std::io::Result<Option<(Vec<ckpt_format::PageChunk>, u64, u64)>> {
        let Some(mut p) = self.pack.take() else { return Ok(None) };
        p.flush(&mut self.out, &mut self.pos)?;
        let end = ckpt_format::align_up(self.pos, PAGE_SIZE);
        self.out.write_all(&vec![0u8; (end - self.pos) as usize])?;
        self.pos = end;
        Ok(Some((p.chunks, p.raw_bytes, p.stored_bytes)))
    }

    fn close_run(&mut self) {
        if let Some(r) = self.cur.take() {
            self.runs.push(r);
        }
    }

    /// Store `data` (whole pages) for `addr`, extending the current run when it
    /// continues it. One write per span, not per page.
    #[cfg(test)]
    fn push(&mut self, vma: u32, addr: u64, data: &[u8], flags: u32) -> std::io::Result<()> {
        let crc = page_crc(0, data, crc32c::have_hw());
        self.push_span(vma, addr, data, flags, crc)
    }

    /// [`Self::push`] with the CRC-32C of `data` computed already (by the reading
    /// thread): a run that goes on takes it with crc32c_combine, which costs
    /// a few dozen multiplications, not a pass over the bytes.
    fn push_span(&mut self, vma: u32, addr: u64, data: &[u8], flags: u32, crc: u32) -> std::io::Result<()> {
        let len = data.len() as u64;
        match &mut self.cur {
            Some(r) if r.vma == vma && r.addr + r.len == addr && r.flags == flags => {
                r.len += len;
                r.crc = ::crc32c::crc32c_combine(r.crc, crc, data.len());
            }
            _ => {
                self.close_run();
                let data_off = if self.pack.is_some() { 0 } else { self.pos };
                self.cur = Some(PageRun { addr, data_off, len, crc, vma, flags, _pad: 0 });
            }
        }
        if let Some(p) = &mut self.pack {
            // The run being extended is the next one of `runs`.
            p.add(&mut self.out, &mut self.pos, self.runs.len() as u32, addr, data)?;
        } else {
            self.out.write_all(data)?;
            self.pos += len;
        }
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

/// Pages of a batch to store as one piece: `buf[off..off + len]`, for `addr`,
/// with their run flags and CRC-32C.
struct Span {
    off: usize,
    addr: u64,
    len: usize,
    flags: u32,
    crc: u32,
}

/// What the reading thread hands to the writing one, in order.
enum Msg {
    /// The pages of VMA `vma` follow.
    Vma { vma: usize },
    /// `buf` holds the spans to store (all-zero pages left out, `zero` of them).
    Batch { spans: Vec<Span>, buf: Vec<u8>, zero: u64, unreadable: usize },
}

/// Where the reading side gets its buffers and hands its messages: the writing
/// thread through channels, or the writer itself for a small image.
trait Feed {
    /// A buffer to read a batch into; None once the writer has stopped.
    fn buffer(&mut self) -> Option<Vec<u8>>;
    /// Hand `m` over; false once the writer has stopped (its error is the one
    /// reported).
    fn send(&mut self, m: Msg) -> bool;
}

/// The writing thread at the other end of two channels.
struct Channels<'a> {
    tx: &'a SyncSender<Msg>,
    free: &'a Receiver<Vec<u8>>,
}

impl Feed for Channels<'_> {
    fn buffer(&mut self) -> Option<Vec<u8>> {
        self.free.recv().ok()
    }
    fn send(&mut self, m: Msg) -> bool {
        self.tx.send(m).is_ok()
    }
}

/// The writer called in place, with one buffer going round.
struct Inline<'a, W: Write> {
    store: Storing<'a, W>,
    spare: Option<Vec<u8>>,
    result: Result<()>,
}

impl<W: Write> Feed for Inline<'_, W> {
    fn buffer(&mut self) -> Option<Vec<u8>> {
        self.result.is_ok().then(|| self.spare.take().unwrap_or_default())
    }
    fn send(&mut self, m: Msg) -> bool {
        match self.store.take(m) {
            Ok(buf) => {
                self.spare = buf;
                true
            }
            Err(e) => {
                self.result = Err(e);
                false
            }
        }
    }
}

/// The reading side: process_vm_readv batches of the ranges `all` (one list per
/// VMA), each batch in a buffer the writer gives back once written.
fn read_all(mem: &Mem, pm: &mut Pagemap, vmas: &[PlannedVma], all: Vec<Vec<(u64, u64)>>, feed: &mut dyn Feed) -> Result<()> {
    let hw = crc32c::have_hw();
    for ((i, v), rs) in vmas.iter().enumerate().zip(all) {
        let pages = v.pages;
        let copies = if pages == Pages::All {
            Some(pm.private_copies(v.vma.start, v.vma.end).with_context(|| {
                format!("reading the page map of {:x}-{:x}", v.vma.start, v.vma.end)
            })?)
        } else {
            None
        };
        let skip_zero = !matches!(pages, Pages::All | Pages::Written);
        if !feed.send(Msg::Vma { vma: i }) {
            return Ok(()); // the writer stopped; its error is the one reported
        }
        let mut segs: Vec<(u64, usize)> = Vec::new();
        let mut total = 0usize;
        let mut send = |segs: &mut Vec<(u64, usize)>, total: &mut usize| -> bool {
            if segs.is_empty() {
                return true;
            }
            let Some(mut buf) = feed.buffer() else { return false };
            // Buffers grow to what a batch needs: a small process never pays for
            // (and faults in) three full-size batches.
            if buf.len() < *total {
                buf.resize(*total, 0);
            }
            let unreadable = mem.read_segments(segs, &mut buf[..*total]);
            crate::progress::add_done(*total as u64);
            let (spans, zero) = spans(skip_zero, &copies, segs, &buf[..*total], hw);
            segs.clear();
            let ok = feed.send(Msg::Batch { spans, buf, zero, unreadable });
            *total = 0;
            ok
        };
        for (lo, hi) in rs {
            let mut a = lo;
            while a < hi {
                let n = ((hi - a) as usize).min(BATCH - total);
                segs.push((a, n));
                total += n;
                a += n as u64;
                if (total == BATCH || segs.len() == MAX_SEGS) && !send(&mut segs, &mut total) {
                    return Ok(());
                }
            }
        }
        if !send(&mut segs, &mut total) {
            return Ok(());
        }
    }
    Ok(())
}

/// Cut one batch into spans of pages with the same flags, between skipped zero
/// pages, each with its checksum: the reading thread does this CPU work (a pass
/// over the bytes each) while the writing one copies the previous batch into
/// the file, so that the two halves of the pipeline take about as long.
/// Returns the spans and the number of zero pages left out.
fn spans(skip_zero: bool, copies: &Option<Vec<(u64, u64)>>, segs: &[(u64, usize)], b: &[u8], hw: bool) -> (Vec<Span>, u64) {
    let page_flags = |addr: u64| match copies {
        Some(c) if !c.iter().any(|&(lo, hi)| lo <= addr && addr < hi) => RUN_FILE_CLEAN,
        _ => 0,
    };
    let mut out = Vec::new();
    let mut zeros = 0;
    let mut span = |off: usize, addr: u64, data: &[u8], flags: u32| {
        out.push(Span { off, addr, len: data.len(), flags, crc: page_crc(0, data, hw) });
    };
    let mut off = 0;
    for &(addr, len) in segs {
        let seg = &b[off..off + len];
        let mut span_start = 0;
        let mut span_flags = page_flags(addr);
        for p in (0..len).step_by(PAGE) {
            let zero = skip_zero && is_zero(&seg[p..p + PAGE]);
            let flags = page_flags(addr + p as u64);
            if (zero || flags != span_flags) && span_start < p {
                span(off + span_start, addr + span_start as u64, &seg[span_start..p], span_flags);
                span_start = p;
            }
            span_flags = flags;
            if zero {
                zeros += 1;
                span_start = p + PAGE;
            }
        }
        if span_start < len {
            span(off + span_start, addr + span_start as u64, &seg[span_start..], span_flags);
        }
        off += len;
    }
    (out, zeros)
}

/// The writing side's state: the VMA whose batches are being stored.
struct Storing<'a, W: Write> {
    w: &'a mut PageWriter<W>,
    vmas: &'a mut [PlannedVma],
    /// The index of the VMA whose batches are being stored.
    cur: Option<usize>,
}

impl<W: Write> Storing<'_, W> {
    /// Store one message; the buffer of a batch comes back to be used again.
    fn take(&mut self, m: Msg) -> Result<Option<Vec<u8>>> {
        match m {
            Msg::Vma { vma } => {
                self.finish_vma();
                self.w.close_run();
                self.vmas[vma].vma.first_run = self.w.runs.len() as u32;
                self.cur = Some(vma);
                Ok(None)
            }
            Msg::Batch { spans, buf, zero, unreadable } => {
                self.w.stats.unreadable_pages += unreadable as u64;
                self.w.stats.zero_pages += zero;
                let vma = self.cur.expect("a batch follows its vma") as u32;
                for sp in spans {
                    let data = &buf[sp.off..sp.off + sp.len];
                    self.w.push_span(vma, sp.addr, data, sp.flags, sp.crc).with_context(|| {
                        format!("writing the pages of {:x}-{:x}", sp.addr, sp.addr + sp.len as u64)
                    })?;
                }
                Ok(Some(buf))
            }
        }
    }

    fn finish_vma(&mut self) {
        if let Some(i) = self.cur.take() {
            self.w.close_run();
            self.vmas[i].vma.nruns = self.w.runs.len() as u32 - self.vmas[i].vma.first_run;
        }
    }
}

/// Images up to this many bytes of pages are read and written by one thread:
/// handing a few batches between two threads costs more (a wake-up each, a
/// time slice on a busy machine) than the overlap saves.
const INLINE_MAX: u64 = 4 << 20;

/// Read every chosen page of every VMA and stream it into `w`, filling in each
/// VMA's `first_run`/`nruns`.
///
/// Two stages overlap: a thread reads the target's memory (process_vm_readv,
/// kernel copies) into one of `BUFFERS` batch buffers while this thread checks the
/// previous batch for zero pages, checksums it and writes it, so reading,
/// computing and writing use both cores and the disk at once. A small image is
/// done by this thread alone ([`INLINE_MAX`]).
pub fn dump<W: Write>(mem: &Mem, pm: &mut Pagemap, vmas: &mut [PlannedVma], w: &mut PageWriter<W>) -> Result<()> {
    const BUFFERS: usize = 3;
    // Every range first (page map walks), so the progress knows how much is to come.
    let all = vmas.iter().map(|v| ranges(pm, v)).collect::<Result<Vec<_>>>()?;
    let total: u64 = all.iter().flatten().map(|(lo, hi)| hi - lo).sum();
    crate::progress::add_total(total);
    let ro: Vec<PlannedVma> = vmas.iter().map(|v| PlannedVma { vma: v.vma, pages: v.pages, map: v.map.clone() }).collect();
    if total <= INLINE_MAX {
        let mut feed = Inline { store: Storing { w, vmas, cur: None }, spare: None, result: Ok(()) };
        let read = read_all(mem, pm, &ro, all, &mut feed);
        feed.store.finish_vma();
        return feed.result.and(read);
    }
    let (tx, rx) = sync_channel::<Msg>(BUFFERS);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        free_tx.send(Vec::new()).expect("the channel has room for every buffer");
    }
    std::thread::scope(|s| {
        let reader = s.spawn(move || read_all(mem, pm, &ro, all, &mut Channels { tx: &tx, free: &free_rx }));
        let mut st = Storing { w, vmas, cur: None };
        let mut result = Ok(());
        for msg in rx.iter() {
            match st.take(msg) {
                Ok(Some(buf)) => {
                    let _ = free_tx.send(buf);
                }
                Ok(None) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        st.finish_vma();
        drop(rx);
        drop(free_tx);
        let read = reader.join().map_err(|_| anyhow::anyhow!("the page reading thread panicked"))?;
        result.and(read)
    })
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
    fn page_crc_is_the_format_crcs() {
        let data: Vec<u8> = (0..3 * PAGE + 5).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = crc32c::update_sw(0, &data);
        assert_eq!(page_crc(0, &data, true), whole);
        assert_eq!(page_crc(page_crc(0, &data[..PAGE], true), &data[PAGE..], true), whole);
        assert_eq!(page_crc(0, &data, false), whole);
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; PAGE]));
        for at in [0, 63, 64, 2049, PAGE - 1] {
            let mut p = [0u8; PAGE];
            p[at] = 1;
            assert!(!is_zero(&p), "a set byte at {at}");
        }
    }
}
