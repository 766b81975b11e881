//! `ckpt profile FILE`: record which pages a lazily resumed process touches first
//! and store them in the file as its working-set hint (section WorkingSet), so that
//! later lazy resumes read those pages in before the first instruction.
//!
//! The file is resumed as `ckpt resume` would, with CKPT_LAZY=1 and the write end of
//! a pipe in CKPT_LAZY_PROFILE_FD: its lazy helper streams nothing in the background
//! and writes the address of each page the process faults on to the pipe. After the
//! window (or when the process ends) the pipe is closed, the helper brings in the rest
//! as usual, and the file is rewritten: the same image with the hint appended (a hint
//! already there is replaced), marked to resume lazily (HDR_LAZY; CKPT_LAZY=0 still
//! resumes it eagerly). The process runs on, with the terminal it was given, and
//! `ckpt profile` exits as it does.

use crate::output::Output;
use crate::reader::{FileKind, ImageFile};
use anyhow::{bail, Context, Result};
use ckpt_format::crc32c::{crc32c, have_hw};
use ckpt_format::*;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Run FILE for `window`, then write the hint to `out` (FILE itself by default);
/// returns the process's exit code.
pub fn run(file: &Path, out: Option<&Path>, window: Duration) -> Result<i32> {
    let img = ImageFile::open(file)?;
    if !img.tables()?.tree_procs.is_empty() {
        bail!("{}: a process tree (freeze --tree); ckpt profile takes the file of one process", file.display());
    }
    if img.header.flags & ckpt_format::HDR_COMPRESSED != 0 {
        bail!("{}: its pages are compressed (freeze --compress), and only a lazy resume, which reads them in place, can be profiled", file.display());
    }
    let (rd, wr) = profile_pipe()?;
    let exe = std::env::current_exe().context("cannot find the ckpt executable")?;
    let mut child = Command::new(exe)
        .arg("resume")
        .arg(file)
        .env("CKPT_LAZY", "1")
        .env("CKPT_LAZY_PROFILE_FD", wr.as_raw_fd().to_string())
        .spawn()
        .with_context(|| format!("cannot resume {}", file.display()))?;
    drop(wr);
    let addrs = record(&rd, &mut child, window)?;
    drop(rd);
    let t = img.tables()?;
    let ws = hint(&t, &addrs);
    if ws.is_empty() {
        let status = child.wait().context("waiting for the resumed process")?;
        bail!(
            "{}: no page was recorded (the resume was not lazy: see its message; {status}); the file is unchanged",
            file.display()
        );
    }
    let out = out.unwrap_or(file);
    rewrite(&img, &ws, out)?;
    let pages: u64 = ws.iter().map(|r| r.len / PAGE_SIZE).sum();
    eprintln!(
        "ckpt profile: {pages} pages ({:.1} MiB) in {} ranges recorded; {} resumes lazily with them read in first",
        (pages * PAGE_SIZE) as f64 / (1 << 20) as f64,
        ws.len(),
        out.display()
    );
    let status = child.wait().context("waiting for the resumed process")?;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    })
}

/// A pipe whose write end the resumed process inherits (the read end is
/// close-on-exec).
fn profile_pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe for the profile");
    }
    // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: clears FD_CLOEXEC on a descriptor we own.
    if unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe for the profile");
    }
    Ok((rd, wr))
}

/// The faulting addresses, in order, until the window closes, the process exits or
/// the helper closes its end.
fn record(rd: &OwnedFd, child: &mut std::process::Child, window: Duration) -> Result<Vec<u64>> {
    let deadline = Instant::now() + window;
    let mut pipe = std::fs::File::from(rd.try_clone()?);
    let (mut buf, mut bytes) = (vec![0u8; 1 << 16], Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd { fd: rd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(100) as i32) };
        if n > 0 {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => bytes.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading the profile"),
            }
        } else if child.try_wait()?.is_some() {
            break;
        }
    }
    Ok(bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// The recorded pages that have stored data, as sorted ranges each inside one VMA.
pub fn hint(t: &Tables, addrs: &[u64]) -> Vec<WorkingSetRange> {
    let mut pages: Vec<u64> = addrs.iter().map(|a| a & !(PAGE_SIZE - 1)).collect();
    pages.sort_unstable();
    pages.dedup();
    let mut out: Vec<WorkingSetRange> = Vec::new();
    for p in pages {
        let r = t.runs.partition_point(|r| r.addr + r.len <= p);
        let Some(run) = t.runs.get(r).filter(|r| r.addr <= p) else { continue };
        let vma = &t.vmas[run.vma as usize];
        match out.last_mut() {
            Some(last) if last.end() == p && last.start >= vma.start => last.len += PAGE_SIZE,
            _ => out.push(WorkingSetRange { start: p, len: PAGE_SIZE }),
        }
    }
    out
}

/// Write the image of `img` with `ws` as its hint to `out` (replacing it at once).
fn rewrite(img: &ImageFile, ws: &[WorkingSetRange], out: &Path) -> Result<()> {
    let h = img.header;
    let old = *h.section(SectionKind::WorkingSet);
    // The hint goes after the image, in place of an old one that ends it.
    let keep = if old.size != 0 && old.offset + old.size == h.image_size { old.offset } else { h.image_size };
    let at = align_up(keep, 8);
    let bytes = slice_as_bytes(ws);
    let mut nh = h;
    nh.sections[SectionKind::WorkingSet as usize] =
        Section { offset: at, size: bytes.len() as u64, count: ws.len() as u32, crc: crc32c(bytes, have_hw()) };
    nh.image_size = at + bytes.len() as u64;
    nh.flags |= HDR_LAZY;
    nh.header_crc = header_crc(&nh);
    let o = Output::create(out)?;
    let io = || format!("writing {}", out.display());
    let mut dst = &o.file;
    if img.kind == FileKind::Resume {
        let prefix = ckpt_linker::resume_prefix(ckpt_linker::STUB, nh.image_size)?;
        dst.write_all(&prefix).with_context(io)?;
    }
    let hlen = std::mem::size_of::<Header>() as u64;
    dst.write_all(as_bytes(&nh)).with_context(io)?;
    let mut src = &img.file;
    src.seek(SeekFrom::Start(img.offset + hlen)).with_context(|| format!("reading {}", img.path.display()))?;
    let want = keep - hlen;
    let copied = std::io::copy(&mut src.take(want), &mut dst).with_context(io)?;
    if copied != want {
        bail!("{}: image is truncated: needs {keep} bytes", img.path.display());
    }
    dst.write_all(&vec![0u8; (at - keep) as usize]).with_context(io)?;
    dst.write_all(bytes).with_context(io)?;
    dst.flush().with_context(io)?;
    o.commit()?;
    // What a resume reads back must validate.
    ImageFile::open(out).map(|_| ())
}
