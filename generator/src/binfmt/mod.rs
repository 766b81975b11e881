//! `ckpt binfmt`: the binfmt_misc registration for raw images.
use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BinfmtCmd {
    /// Register the raw image magic with the installed restorer as interpreter.
    Register,
    /// Remove the registration.
    Unregister,
    /// Show the registration.
    Status,
}

pub fn run(_cmd: BinfmtCmd) -> Result<()> {
    bail!("`ckpt binfmt` is not implemented yet")
}
