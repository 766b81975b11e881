//! `ckpt info FILE [--json]`: what is inside a `.resume` or raw image, without
//! running it. Answers the questions one has about a frozen process before
//! resuming it (or after a resume failed): when and where was it frozen, what
//! CPU does it need, where did it stop (code and symbol), what memory and fds will
//! come back. The file is validated as the restorer would (reader.rs), so a
//! corrupted file gets the same one-line error.

mod decode;
mod disasm;
pub(crate) mod memory;
mod report;
mod symbols;
mod text;
mod threads;
mod time;
mod xfeatures;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

pub fn run(file: &Path, json: bool) -> Result<()> {
    let img = crate::reader::ImageFile::open(file)?;
    let report = report::build(&img)?;
    let out = if json {
        let mut s = serde_json::to_string_pretty(&report).context("encoding the report as JSON")?;
        s.push('\n');
        s
    } else {
        text::render(&report)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
        // `ckpt info x | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}
