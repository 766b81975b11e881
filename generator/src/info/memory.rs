//! The frozen address space as the image stores it: look up the VMA or page run at
//! an address and read the bytes the image holds there. `info` reads a few bytes
//! around rip and the ELF pages of a mapped file through this; `core` streams whole
//! VMAs. Stored pages, the vdso blob and the pages of file mappings the image
//! references instead of storing (VMA_FILE_REF: read from the file as it is now)
//! are readable; anything else is a gap.

use crate::reader::ImageFile;
use anyhow::{bail, Context, Result};
use ckpt_format::crc32c;
use ckpt_format::{FileKind, PageRun, Tables, Vma, VmaKind, VMA_FILE_REF};
use std::os::unix::fs::FileExt;

pub struct ImageMemory<'a> {
    pub img: &'a ImageFile,
    pub t: Tables<'a>,
}

impl<'a> ImageMemory<'a> {
    pub fn new(img: &'a ImageFile, t: Tables<'a>) -> ImageMemory<'a> {
        ImageMemory { img, t }
    }

    /// Index of the VMA holding `addr`.
    pub fn vma_index_at(&self, addr: u64) -> Option<usize> {
        let i = self.t.vmas.partition_point(|v| v.end <= addr);
        self.t.vmas.get(i).filter(|v| v.start <= addr).map(|_| i)
    }

    pub fn vma_at(&self, addr: u64) -> Option<&'a Vma> {
        self.vma_index_at(addr).map(|i| &self.t.vmas[i])
    }

    /// The page run holding `addr` (runs are sorted and disjoint, checked on read).
    pub fn run_at(&self, addr: u64) -> Option<&'a PageRun> {
        let i = self.t.runs.partition_point(|r| r.addr + r.len <= addr);
        self.t.runs.get(i).filter(|r| r.addr <= addr)
    }

    /// The runs of one VMA.
    pub fn runs_of(&self, v: &Vma) -> &'a [PageRun] {
        &self.t.runs[v.first_run as usize..(v.first_run + v.nruns) as usize]
    }

    /// The vdso bytes and where they were mapped, if the image has both.
    fn vdso(&self) -> Option<(u64, &'a [u8])> {
        let v = self.t.vmas.iter().find(|v| v.kind == VmaKind::Vdso as u32)?;
        (!self.t.vdso.is_empty()).then_some((v.start, self.t.vdso))
    }

    /// Up to `len` bytes from `addr` on, stopping at the first byte the image does
    /// not hold. Page data is read without its checksum (informational use).
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut cur = addr;
        while out.len() < len {
            let want = (len - out.len()) as u64;
            if let Some((start, blob)) = self.vdso() {
                if cur >= start && cur < start + blob.len() as u64 {
                    let from = (cur - start) as usize;
                    let n = want.min((blob.len() - from) as u64) as usize;
                    out.extend_from_slice(&blob[from..from + n]);
                    cur += n as u64;
                    continue;
                }
            }
            let Some(r) = self.run_at(cur) else {
                // A referenced file page, up to the next stored run or the VMA's end.
                let Some(v) = self.vma_at(cur).filter(|v| v.flags & VMA_FILE_REF != 0) else { break };
                let next = self.t.runs.get(self.t.runs.partition_point(|r| r.addr + r.len <= cur)).map_or(v.end, |r| r.addr.min(v.end));
                let n = want.min(next - cur) as usize;
                let at = out.len();
                out.resize(at + n, 0);
                if !self.read_file_ref(v, cur, &mut out[at..]) {
                    out.truncate(at);
                    break;
                }
                cur += n as u64;
                continue;
            };
            let n = want.min(r.addr + r.len - cur) as usize;
            let at = out.len();
            out.resize(at + n, 0);
            if self.run_bytes(r, cur - r.addr, &mut out[at..]).is_err() {
                out.truncate(at);
                break;
            }
            cur += n as u64;
        }
        out
    }

    /// Fills `buf` with the bytes of referenced file mapping `v` at `addr` from the
    /// file (zeros past its end, as the mapping shows them); false if the file
    /// cannot be read.
    pub fn read_file_ref(&self, v: &Vma, addr: u64, buf: &mut [u8]) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::OsStr::from_bytes(self.t.string(v.name_off, v.name_len));
        let Ok(f) = std::fs::File::open(path) else { return false };
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], v.file_offset + (addr - v.start) + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(_) => return false,
            }
        }
        buf[done..].fill(0);
        true
    }

    /// The ranges of referenced file mapping `v` that no run covers.
    pub fn file_ref_gaps(&self, v: &Vma) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = v.start;
        for r in self.runs_of(v) {
            if r.addr > at {
                gaps.push((at, r.addr));
            }
            at = r.addr + r.len;
        }
        if at < v.end {
            gaps.push((at, v.end));
        }
        gaps
    }

    /// The bytes of run `r` from `off` on, stored as they are or compressed.
    fn run_bytes(&self, r: &PageRun, off: u64, buf: &mut [u8]) -> Result<()> {
        if self.t.chunks.is_empty() {
            return Ok(self.img.file.read_exact_at(buf, self.img.offset + r.data_off + off)?);
        }
        crate::compress::read_pages(&self.img.file, self.img.offset, self.t.chunks, r.addr + off, buf)
    }

    /// Stream one page run in chunks to `sink(offset_in_run, bytes)`, verifying its
    /// CRC-32C; a mismatch is an error naming the range.
    pub fn for_each_chunk(&self, r: &PageRun, mut sink: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        const CHUNK: u64 = 4 << 20;
        let hw = crc32c::have_hw();
        let mut crc = 0u32;
        let mut buf = vec![0u8; CHUNK.min(r.len) as usize];
        let mut done = 0u64;
        while done < r.len {
            let n = CHUNK.min(r.len - done) as usize;
            let b = &mut buf[..n];
            self.run_bytes(r, done, b)
                .with_context(|| format!("{}: reading pages {:#x}-{:#x}", self.img.path.display(), r.addr, r.addr + r.len))?;
            crc = if hw {
                // SAFETY: hw is true only when the CPU has SSE4.2 (have_hw above).
                unsafe { crc32c::update_hw(crc, b) }
            } else {
                crc32c::update_sw(crc, b)
            };
            sink(done, b)?;
            done += n as u64;
        }
        if crc != r.crc {
            bail!(
                "{}: page data checksum mismatch for {:#x}-{:#x} (corrupted image)",
                self.img.path.display(),
                r.addr,
                r.addr + r.len
            );
        }
        Ok(())
    }

    /// Name of a VMA: its file path, the kernel's bracketed name, or "" for
    /// anonymous memory.
    pub fn vma_name(&self, v: &Vma) -> String {
        let s = self.t.string(v.name_off, v.name_len);
        if !s.is_empty() {
            return String::from_utf8_lossy(s).into_owned();
        }
        match VmaKind::from_u32(v.kind) {
            Some(VmaKind::Heap) => "[heap]",
            Some(VmaKind::Stack) => "[stack]",
            Some(VmaKind::Vdso) => "[vdso]",
            Some(VmaKind::Vvar) => "[vvar]",
            Some(VmaKind::VvarVclock) => "[vvar_vclock]",
            Some(VmaKind::SharedAnon) => "/dev/zero (deleted)",
            Some(VmaKind::SharedObject | VmaKind::PrivateObject) => return self.object_name(v.object),
            _ => "",
        }
        .to_owned()
    }

    /// How /proc/PID/maps names a mapping of file `object` (index + 1).
    fn object_name(&self, object: u32) -> String {
        let Some(o) = self.t.files.get(object as usize - 1) else { return String::new() };
        let name = String::from_utf8_lossy(self.t.string(o.name_off, o.name_len));
        match FileKind::from_u32(o.kind) {
            Some(FileKind::Shmem) => "/dev/zero (deleted)".to_owned(),
            Some(FileKind::Memfd) => format!("/memfd:{name} (deleted)"),
            _ => format!("{name} (deleted)"),
        }
    }
}
