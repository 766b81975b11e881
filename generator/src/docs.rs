//! Shell completions and man pages, generated from the clap definitions of the
//! command line so they never drift from it (`make install` installs both).

use anyhow::{Context, Result};
use std::path::Path;

/// The completion script of `shell` on stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ckpt", &mut out);
    use std::io::Write;
    std::io::stdout().write_all(&out).context("writing the completions to standard output")
}

/// ckpt.1 and ckpt-SUBCOMMAND.1 for every visible subcommand (nested ones too,
/// e.g. ckpt-binfmt-register.1) in `dir`, which is created if missing.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir).with_context(|| format!("writing man pages into {}", dir.display()))
}
