//! Reading an image back from a file, raw (`.ckpt`) or inside a `.resume`
//! executable, with the same validation the stub applies. Used by `info`, `convert`,
//! `core` and the tests.

use anyhow::{bail, Context, Result};
use ckpt_format::{check_header, tables_span, Header, Tables, MAGIC};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A self-restoring ELF executable.
    Resume,
    /// A raw image.
    Raw,
}

pub struct ImageFile {
    pub path: PathBuf,
    pub kind: FileKind,
    pub file: File,
    /// File offset where the image starts.
    pub offset: u64,
    pub header: Header,
    /// The tables, 8-byte aligned in memory.
    words: Vec<u64>,
    tables_len: usize,
    tables_lo: u64,
}

/// End of the section header table of a 64-bit ELF header (e_shoff + e_shnum *
/// e_shentsize), 0 if `head` is not one.
fn elf_headers_end(head: &[u8]) -> u64 {
    if !head.starts_with(b"\x7fELF") || head.len() < 64 {
        return 0;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as u64;
    let shoff = u64::from_le_bytes(head[0x28..0x30].try_into().unwrap_or([0; 8]));
    shoff.saturating_add(u16_at(0x3a) * u16_at(0x3c))
}

impl ImageFile {
    pub fn open(path: &Path) -> Result<ImageFile> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
        let mut head = vec![0u8; 65536.min(len as usize)];
        file.read_exact_at(&mut head, 0).with_context(|| format!("cannot read {}", path.display()))?;
        // The ELF part ends with its section headers (linker/src/elf.rs): read up to
        // their end, wherever the stub's size puts them.
        let elf_end = elf_headers_end(&head).min(len).min(1 << 24);
        if elf_end > head.len() as u64 {
            head.resize(elf_end as usize, 0);
            file.read_exact_at(&mut head, 0).with_context(|| format!("cannot read {}", path.display()))?;
        }
        let (kind, offset) = if head.starts_with(b"\x7fELF") {
            let (off, _) = ckpt_linker::find_image(&head)
                .with_context(|| format!("{} is an ELF file but not a ckpt resume executable", path.display()))?;
            (FileKind::Resume, off)
        } else if head.starts_with(&MAGIC) {
            (FileKind::Raw, 0)
        } else {
            bail!("{} is neither a ckpt image nor a resume executable", path.display());
        };
        if offset > len {
            bail!("{}: image is truncated: needs {} bytes, file has {len}", path.display(), offset);
        }
        let mut hb = vec![0u8; std::mem::size_of::<Header>().min((len - offset) as usize)];
        file.read_exact_at(&mut hb, offset)?;
        let header = check_header(&hb, len - offset).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let (lo, hi) = tables_span(&header);
        let tables_len = (hi - lo) as usize;
        let mut words = vec![0u64; tables_len.div_ceil(8)];
        let bytes = bytemuck_bytes_mut(&mut words, tables_len);
        file.read_exact_at(bytes, offset + lo).with_context(|| format!("reading the tables of {}", path.display()))?;
        let img = ImageFile { path: path.to_path_buf(), kind, file, offset, header, words, tables_len, tables_lo: lo };
        img.tables()?;
        Ok(img)
    }

    /// The validated tables (checksums verified).
    pub fn tables(&self) -> Result<Tables<'_>> {
        let bytes = ckpt_format::slice_as_bytes(&self.words);
        Tables::parse(&self.header, &bytes[..self.tables_len], self.tables_lo, ckpt_format::crc32c::have_hw())
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.path.display()))
    }

    /// All image bytes (header to last table byte), e.g. for conversion.
    pub fn image_len(&self) -> u64 {
        self.header.image_size
    }
}

/// View the first `len` bytes of a u64 buffer as mutable bytes.
fn bytemuck_bytes_mut(words: &mut [u64], len: usize) -> &mut [u8] {
    assert!(len <= words.len() * 8);
    // SAFETY: u64 has no invalid bit patterns and u8 has alignment 1; the length is
    // within the buffer (asserted above).
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, len) }
}
