//! Writing the captured process: to a file in one pass (pages first, then tables,
//! then going back for the header and the ELF part), or to a stream such as a pipe
//! in two passes (the first reads every page to learn the run layout and checksums,
//! so the header and tables can precede the pages; the target is stopped, so the
//! second pass reads the same bytes, which is checked).

use crate::write::{self, ImageParts};
use crate::memory::Mem;
use crate::pagemap::Pagemap;
use crate::pages::{self, PageWriter, Stats};
use crate::plan::PlannedVma;
use crate::group::Group;
use crate::cow::CowCopy;
use anyhow::{bail, Result};
use ckpt_format::{align_up, as_bytes, Header, DATA_START};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

pub struct Source<'a> {
    pub mem: &'a Mem,
    pub pm: &'a mut Pagemap,
    pub vmas: &'a mut Vec<PlannedVma>,
    pub parts: &'a mut ImageParts,
    /// Bytes carried by fds (index into parts.fds, bytes), stored after the pages.
    pub blobs: &'a [(usize, Vec<u8>)],
    /// The bytes of each extent of parts.extents, stored after the fd blobs.
    pub extent_data: &'a [Vec<u8>],
    /// Write a .resume executable (ELF part first), not a raw image.
    pub resume_exe: bool,
    /// Checksums of referenced files, still being computed (fileref.rs).
    pub file_crcs: Option<crate::fileref::Pending>,
    /// Store the pages compressed (compress.rs, HDR_COMPRESSED).
    pub compress: bool,
}

/// Place the fd blobs, then the file extents, from image offset `at` (page aligned
/// each), filling in their records; returns the end offset. With `w`, also write
/// them (padding included).
fn place_blobs<W: Write>(src: &mut Source, at: u64, mut w: Option<&mut W>) -> std::io::Result<u64> {
    let hw = ckpt_format::crc32c::have_hw();
    let mut pos = at;
    let mut place = |data: &[u8], w: Option<&mut W>| -> std::io::Result<(u64, u32)> {
        let at = pos;
        let padded = align_up(data.len() as u64, ckpt_format::PAGE_SIZE);
        if let Some(w) = w {
            w.write_all(data)?;
            w.write_all(&vec![0u8; (padded - data.len() as u64) as usize])?;
        }
        pos += padded;
        Ok((at, ckpt_format::crc32c::crc32c(data, hw)))
    };
    for (i, data) in src.blobs {
        let f = &mut src.parts.fds[*i];
        (f.data_off, f.data_crc) = place(data, w.as_deref_mut())?;
        f.data_len = data.len() as u64;
    }
    for (e, data) in src.parts.extents.iter_mut().zip(src.extent_data) {
        (e.data_off, e.crc) = place(data, w.as_deref_mut())?;
    }
    Ok(pos)
}

fn prefix(src: &Source, image_size: u64) -> Result<Vec<u8>> {
    Ok(if src.resume_exe { ckpt_linker::resume_prefix(ckpt_linker::STUB, image_size)? } else { Vec::new() })
}

fn layout(src: &mut Source, runs: Vec<ckpt_format::PageRun>, chunks: Chunks, data_end: u64) -> Result<(Header, Vec<u8>)> {
    if let Some(c) = src.file_crcs.take() {
        crate::trace::mark("pages written");
        c.apply(src.vmas)?;
        crate::trace::mark("file checksums joined");
    }
    src.parts.runs = runs;
    if let Some((chunks, raw, stored)) = chunks {
        src.parts.chunks = chunks;
        src.parts.flags |= ckpt_format::HDR_COMPRESSED;
        crate::trace::mark(&format!("pages compressed: {raw} bytes stored in {stored}"));
    }
    src.parts.vmas = src.vmas.iter().map(|v| v.vma).collect();
    Ok(write::finish(src.parts, data_end, ckpt_format::crc32c::have_hw()))
}

/// The chunks of compressed page data, and the bytes before and after.
type Chunks = Option<(Vec<ckpt_format::PageChunk>, u64, u64)>;

/// What the pages are read from, checked after reading: a read from a process
/// that died mid-freeze fails in unhelpful ways, or reads nothing.
pub trait Alive {
    fn alive(&self) -> Result<()>;
}

impl Alive for Group {
    fn alive(&self) -> Result<()> {
        Ok(self.check_alive()?)
    }
}

impl Alive for CowCopy {
    fn alive(&self) -> Result<()> {
        self.check_alive()
    }
}

/// Stream the pages; a failure while the target died mid-freeze is reported as that
/// (reads of a dead process's memory or page map fail in unhelpful ways).
fn dump<W: Write>(src: &mut Source, w: &mut PageWriter<W>, t: &dyn Alive) -> Result<()> {
    let r = pages::dump(src.mem, src.pm, src.vmas, w);
    t.alive()?;
    r
}

/// One pass into a seekable file. Returns the stats and the file size.
pub fn to_file(src: &mut Source, file: &File, t: &dyn Alive) -> Result<(Stats, u64, u64)> {
    let prefix_len = prefix(src, 0)?.len() as u64;
    let mut bw = BufWriter::with_capacity(1 << 20, crate::writeback::Writeback::new(file));
    bw.seek(SeekFrom::Start(prefix_len + DATA_START))?;
    let mut pw = PageWriter::new(bw, DATA_START).compressing(src.compress);
    dump(src, &mut pw, t)?;
    let chunks = pw.end_chunks()?;
    let (mut bw, runs, stats, pages_end) = pw.finish();
    let data_end = place_blobs(src, pages_end, Some(&mut bw))?;
    let (hdr, tables) = layout(src, runs, chunks, data_end)?;
    bw.seek(SeekFrom::Start(prefix_len + align_up(data_end, 64)))?;
    bw.write_all(&tables)?;
    bw.seek(SeekFrom::Start(prefix_len))?;
    bw.write_all(as_bytes(&hdr))?;
    bw.seek(SeekFrom::Start(0))?;
    bw.write_all(&prefix(src, hdr.image_size)?)?;
    bw.flush()?;
    drop(bw);
    file.set_len(prefix_len + hdr.image_size)?;
    t.alive()?;
    Ok((stats, prefix_len + hdr.image_size, hdr.image_size))
}

/// Counts what passes through, so padding can be computed on a stream.
struct Counted<W: Write> {
    w: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(b)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

fn pad_to<W: Write>(w: &mut Counted<W>, at: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; (at - w.n) as usize];
    w.write_all(&zeros)
}

/// Two passes into a sequential stream. Returns the stats and the bytes written.
pub fn to_stream<W: Write>(src: &mut Source, out: W, t: &dyn Alive) -> Result<(Stats, u64, u64)> {
    let mut probe = PageWriter::new(std::io::sink(), DATA_START).compressing(src.compress);
    dump(src, &mut probe, t)?;
    let chunks = probe.end_chunks()?;
    let (_, runs, _, pages_end) = probe.finish();
    let data_end = place_blobs::<std::io::Sink>(src, pages_end, None)?;
    let (hdr, tables) = layout(src, runs.clone(), chunks.clone(), data_end)?;
    let pre = prefix(src, hdr.image_size)?;
    let mut w = Counted { w: BufWriter::with_capacity(1 << 20, out), n: 0 };
    w.write_all(&pre)?;
    w.write_all(as_bytes(&hdr))?;
    pad_to(&mut w, pre.len() as u64 + DATA_START)?;
    let mut pw = PageWriter::new(w, DATA_START).compressing(src.compress);
    dump(src, &mut pw, t)?;
    let chunks2 = pw.end_chunks()?;
    let (mut w, runs2, stats, pages_end2) = pw.finish();
    if runs2 != runs || pages_end2 != pages_end || chunks2 != chunks {
        bail!("the target's memory changed between the two passes of the stream");
    }
    place_blobs(src, pages_end, Some(&mut w))?;
    t.alive()?;
    pad_to(&mut w, pre.len() as u64 + align_up(data_end, 64))?;
    w.write_all(&tables)?;
    w.flush()?;
    Ok((stats, w.n, hdr.image_size))
}
