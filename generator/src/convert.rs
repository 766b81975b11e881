//! `ckpt convert FILE -o OUT`: a raw image becomes a `.resume` executable (the
//! linker's ELF prefix, then the image bytes unchanged) and a `.resume` becomes a
//! raw image (its image bytes alone). The image is position independent inside the
//! file (every offset in it is relative to its header), so converting back and
//! forth gives back the same bytes. Every checksum is verified before anything is
//! written, so a corrupted file is refused rather than copied; the output is
//! created like freeze's (owner-only, fsynced, named only when complete).

use crate::info::memory::ImageMemory;
use crate::output::Output;
use crate::reader::{FileKind, ImageFile};
use anyhow::{Context, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub fn run(file: &Path, out: &Path) -> Result<()> {
    let img = ImageFile::open(file)?;
    let t = img.tables()?;
    let mem = ImageMemory::new(&img, t);
    for r in t.runs {
        mem.for_each_chunk(r, |_, _| Ok(()))?;
    }
    let size = img.image_len();
    let o = Output::create(out)?;
    let io = || format!("writing {}", out.display());
    let mut dst = &o.file;
    if img.kind == FileKind::Raw {
        let prefix = ckpt_linker::resume_prefix(ckpt_linker::STUB, size)?;
        dst.write_all(&prefix).with_context(io)?;
    }
    let mut src = &img.file;
    src.seek(SeekFrom::Start(img.offset)).with_context(|| format!("reading {}", file.display()))?;
    let copied = std::io::copy(&mut src.take(size), &mut dst).with_context(io)?;
    if copied != size {
        anyhow::bail!("{}: image is truncated: needs {size} bytes, copied {copied}", file.display());
    }
    dst.flush().with_context(io)?;
    o.commit()
}
