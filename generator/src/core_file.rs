//! `ckpt core`: an ELF core file of the frozen state.
use anyhow::{bail, Result};
use std::path::Path;

pub fn run(_file: &Path, _out: &Path) -> Result<()> {
    bail!("`ckpt core` is not implemented yet")
}
