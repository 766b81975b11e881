//! `ckpt info FILE`: what is inside an image.
use anyhow::{bail, Result};
use std::path::Path;

pub fn run(file: &Path, _json: bool) -> Result<()> {
    let img = crate::reader::ImageFile::open(file)?;
    let _ = img.tables()?;
    bail!("`ckpt info` is not implemented yet")
}
