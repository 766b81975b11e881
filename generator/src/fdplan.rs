//! Which file descriptors the resumed process gets, and how (version 1: stdio).
//!
//! Fds 0-2 are inherited from whoever runs the resume file, unless the original was a
//! regular file: that one is reopened by path with its flags and offset. Any other fd
//! is refused naming what it points to, or dropped with --ignore-fds.

use crate::plan::Strings;
use crate::proc::fds::{FdInfo, FdTarget};
use anyhow::{bail, Result};
use ckpt_format::{EpollEntry, Fd, FdKind};

/// What the stub will do for every fd, and the bytes some of them carry.
#[derive(Default)]
pub struct FdPlan {
    pub fds: Vec<Fd>,
    pub epoll: Vec<EpollEntry>,
    /// (index into `fds`, bytes): stored in the data area; emit.rs sets
    /// `data_off`/`data_len`/`data_crc`.
    pub blobs: Vec<(usize, Vec<u8>)>,
}

fn what(f: &FdInfo) -> String {
    match &f.target {
        FdTarget::File(p) => p.display().to_string(),
        _ => f.link.clone(),
    }
}

pub fn plan(pid: i32, fds: &[FdInfo], ignore_others: bool, strings: &mut Strings, warnings: &mut Vec<String>) -> Result<FdPlan> {
    let mut out = Vec::new();
    for f in fds {
        if f.fd > 2 {
            if ignore_others {
                warnings.push(format!("fd {} ({}) is not restored (--ignore-fds)", f.fd, what(f)));
                continue;
            }
            bail!(
                "pid {pid} has fd {} open on {}; only fds 0-2 can be restored yet (use --ignore-fds to close the others at resume)",
                f.fd,
                what(f)
            );
        }
        let mut rec = Fd { fd: f.fd, kind: FdKind::Inherit as u32, ..Default::default() };
        match &f.target {
            FdTarget::File(p) if std::fs::metadata(p).map(|m| m.is_file()).unwrap_or(false) => {
                rec.kind = FdKind::Path as u32;
                rec.flags = f.flags & !(libc::O_CLOEXEC as u32);
                rec.cloexec = f.cloexec() as u32;
                rec.offset = f.pos;
                (rec.path_off, rec.path_len) = strings.add(&p.to_string_lossy());
            }
            FdTarget::DeletedFile(p) => {
                bail!("pid {pid} has fd {} open on the deleted file {}; deleted files are not supported yet", f.fd, p.display())
            }
            _ => {}
        }
        out.push(rec);
    }
    Ok(FdPlan { fds: out, ..Default::default() })
}
