//! `ckpt convert`: raw image <-> .resume executable.
use anyhow::{bail, Result};
use std::path::Path;

pub fn run(_file: &Path, _out: &Path) -> Result<()> {
    bail!("`ckpt convert` is not implemented yet")
}
