//! `ckpt freeze --tree`: a process and every descendant in one file.
//!
//! Every process is stopped before any is read ([`walk`]); the objects they share
//! are planned once ([`shared`], [`passed`]); each process is captured as a single
//! process is (freeze.rs `capture`), and only then is anything written: the other
//! processes' images first (to unnamed temporary files), then the root's with the
//! tree sections, then the others appended after it ([`assemble`]). A failure
//! anywhere drops every seized process (they all continue as they were) and the
//! unfinished output (with `-o -`, what was streamed so far stays with the
//! reader, as for one process). The originals are killed only once the file is
//! on disk.

mod assemble;
mod passed;
mod shared;
mod walk;

use crate::freeze::{self, After, Captured, Options, Sink};
use crate::outcome::{Report, Stage};
use crate::output::Output;
use crate::proc::{self, fds::FdInfo};
use crate::{fdplan, progress};
use anyhow::{Context, Result};
use ckpt_format::{align_up, TreeProc, PAGE_SIZE, TREE_ROOT_FD_HIDDEN, TREE_ZOMBIE};
use std::cell::Cell;
use std::fs::File;
use std::time::Instant;

/// Mappings of memory without a file of its own: (inodes of the shared ones,
/// how many in all).
fn memory_objects(pid: i32) -> Result<(Vec<u64>, usize)> {
    let maps = proc::maps::read_smaps(pid).with_context(|| format!("reading the mappings of pid {pid}"))?;
    let object = |n: &str| n.starts_with("/dev/zero") || n.starts_with("/memfd:") || n.ends_with(" (deleted)");
    let shared = maps.iter().filter(|m| m.shared && object(&m.name)).map(|m| m.inode).collect();
    Ok((shared, maps.iter().filter(|m| object(&m.name)).count()))
}

/// An unnamed temporary file beside the output (in the temporary directory for
/// `-o -`), for one process's image.
fn scratch(out: Option<&Output>) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = std::env::temp_dir();
    let dir = match out {
        Some(out) => out.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new(".")),
        None => tmp.as_path(),
    };
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

pub fn run(o: &Options, stage: &Cell<Stage>) -> Result<Report> {
    let t0 = Instant::now();
    stage.set(Stage::Check);
    freeze::precheck(o.pid, o.force)?;
    stage.set(Stage::Output);
    // `-o -`: streamed, the other processes' images kept in temporary files until
    // the root's is written.
    let out = if o.output.as_os_str() == "-" { None } else { Some(Output::create(&o.output)?) };
    let bar = progress::Bar::start(o.progress);
    stage.set(Stage::Seize);
    let t_seize = Instant::now();
    let members = walk::seize_all(o.pid, o.after, o.force)?;

    stage.set(Stage::Capture);
    let mut warnings = Vec::new();
    let mut fds: Vec<Vec<FdInfo>> = Vec::new();
    let (mut shm, mut nobj) = (Vec::new(), Vec::new());
    for m in &members {
        let Some(g) = &m.group else {
            fds.push(Vec::new());
            shm.push(Vec::new());
            nobj.push(0);
            continue;
        };
        let pid = g.reader().pid;
        fds.push(proc::fds::read_fds(pid).with_context(|| format!("reading the fds of pid {}", m.pid))?);
        let (s, n) = memory_objects(pid)?;
        shm.push(s);
        nobj.push(n);
    }
    let sh = shared::plan(&members, &fds, &shm, &nobj)?;
    // The root makes what the processes below it passed down: a duplicate of each.
    let mut exports = Vec::new();
    for &(i, fd) in &sh.passed {
        let g = members[i].group.as_ref().expect("a live member");
        exports.push(fdplan::take_fd(g.reader(), fd).with_context(|| format!("taking fd {fd} of pid {} for the root to make", members[i].pid))?);
    }
    let mut caps: Vec<Option<Captured>> = Vec::new();
    for (i, (m, fds)) in members.iter().zip(sh.extra.iter()).enumerate() {
        let extra = freeze::ExtraFds { fds: fds.clone(), exports: if i == 0 { std::mem::take(&mut exports) } else { Vec::new() } };
        caps.push(match &m.group {
            Some(g) => Some(freeze::capture(o, g, extra, None, &mut warnings).with_context(|| format!("pid {} of the tree", m.pid))?),
            None => None,
        });
    }

    warnings.extend(pty_input_left(&members, &sh.extra));

    let mut objects = sh.objects.clone();
    let made = caps[0].as_ref().map(|c| c.exported.clone()).unwrap_or_default();
    for o in objects.iter_mut().filter(|o| o.flags & TREE_ROOT_FD_HIDDEN != 0) {
        o.capacity = made[o.capacity as usize] as u64;
    }
    // A file at the root's fd 0-2 that its descendants share is the root's to
    // reopen; one its plan gives the resumer's fd instead cannot be shared.
    if let Some(c) = caps[0].as_ref() {
        for o in objects.iter().filter(|o| o.kind == ckpt_format::TREE_OBJ_ROOT_FD && o.capacity <= 2) {
            if c.parts.fds.iter().any(|f| f.fd as u64 == o.capacity && f.kind == ckpt_format::FdKind::Inherit as u32) {
                anyhow::bail!("pid {} fd {}: a file its descendants share, but at resume that fd is the resumer's own", o.creator, o.capacity);
            }
        }
    }
    let mut data = sh.data.clone();
    for &(ino, slot) in &sh.memory {
        let files: Vec<(u64, Vec<u8>)> = caps.iter().flatten().filter_map(|c| c.file_content(ino)).collect();
        objects.push(shared::memory_object(o.pid, ino, slot, &files, &mut data)?);
        for c in caps.iter_mut().flatten() {
            c.mark_tree_file(ino, slot);
        }
    }

    stage.set(Stage::Write);
    let mut procs = Vec::new();
    let mut images: Vec<(u64, File)> = Vec::new();
    let mut next = 0u64;
    let mut stats_all = crate::pages::Stats::default();
    let fg = |i: usize, m: &walk::Member| {
        // A session leader below the root whose terminal's foreground group is one
        // of its session's groups in the tree (a job-control shell's job).
        let ok = i > 0 && m.group.is_some() && m.sid == m.pid && m.tpgid > 0 && members.iter().any(|q| q.pgid == m.tpgid && q.sid == m.sid && q.group.is_some());
        if ok { m.tpgid as u32 } else { 0 }
    };
    for (i, (m, c)) in members.iter().zip(caps.iter_mut()).enumerate() {
        let mut rec = TreeProc {
            fg_pgid: fg(i, m),
            pid: m.pid as u32,
            ppid: m.ppid as u32,
            pgid: m.pgid as u32,
            sid: m.sid as u32,
            slot_base: sh.slot_base,
            nslots: sh.nslots,
            ..Default::default()
        };
        match (c, &m.group) {
            (Some(c), Some(g)) if i > 0 => {
                let f = scratch(out.as_ref())?;
                let (st, _, size) = c.write(Sink::File(&f), g, false).with_context(|| format!("writing the image of pid {}", m.pid))?;
                stats_all.add(&st);
                rec.image_off = next;
                rec.image_len = size;
                next = align_up(next + size, PAGE_SIZE);
                images.push((rec.image_off, f));
            }
            (None, _) => {
                rec.flags = TREE_ZOMBIE;
                rec.status = m.status;
            }
            _ => {}
        }
        procs.push(rec);
    }
    let root = caps[0].as_mut().expect("the root is alive");
    root.parts.tree_procs = procs;
    root.parts.tree_objects = objects;
    root.parts.tree_data = data;
    let g0 = members[0].group.as_ref().expect("the root is alive");
    let total = match &out {
        Some(out) => {
            let (st, root_len, root_image) =
                root.write(Sink::File(&out.file), g0, !o.raw_image).with_context(|| format!("writing {}", o.output.display()))?;
            stats_all.add(&st);
            assemble::append(assemble::Dest::File(&out.file), root_len, root_image, images).with_context(|| format!("writing {}", o.output.display()))?
        }
        None => {
            let (st, root_len, root_image) = root.write(Sink::Stdout, g0, !o.raw_image).context("writing the tree to standard output")?;
            stats_all.add(&st);
            let mut w = std::io::stdout().lock();
            assemble::append(assemble::Dest::Stream(&mut w), root_len, root_image, images).context("writing the tree to standard output")?
        }
    };
    for m in members.iter().filter_map(|m| m.group.as_ref()) {
        m.check_alive()?;
    }

    let stopped_early = matches!(o.after, After::Continue | After::Stop);
    let mut groups: Vec<_> = members.into_iter().filter_map(|m| m.group).collect();
    let mut stopped = None;
    if stopped_early {
        groups.clear();
        stopped = Some(t_seize.elapsed());
    }
    stage.set(Stage::Commit);
    progress::syncing();
    let t_sync = Instant::now();
    if let Some(out) = out {
        out.commit()?;
    }
    let fsync = t_sync.elapsed();
    let frozen = t0.elapsed();
    let stopped = stopped.unwrap_or_else(|| t_seize.elapsed());
    let tcp_ends: Vec<_> = caps.iter_mut().flatten().flat_map(|c| std::mem::take(&mut c.tcp_ends)).collect();
    if !groups.is_empty() {
        fdplan::end_with_reset(&tcp_ends);
        // Children first: a parent killed before them would leave them running for a moment.
        while let Some(g) = groups.pop() {
            g.kill();
        }
    }
    drop(tcp_ends);
    drop(bar);
    let nthreads = caps.iter().flatten().map(|c| c.nthreads).sum();
    let nvmas = caps.iter().flatten().map(|c| c.nvmas()).sum();
    let exe = caps[0].as_ref().and_then(|c| c.exe.clone());
    let mut report = Report::new(o.pid, o.output.clone(), total, nthreads, nvmas, stats_all, [frozen, stopped, fsync], exe);
    report.warnings = warnings;
    Ok(report)
}

/// Bytes typed into a pty whose slave only a process below the root holds (the
/// shell in a tmux pane) and that it has not read yet: the root's master is made
/// anew at resume and they are not typed into it again, so each is named here.
/// FIONREAD on a slave is TIOCINQ (n_tty_ioctl()): in canonical mode it counts
/// whole lines only, so a line still being typed is left out of the count.
fn pty_input_left(members: &[walk::Member], extra: &[Vec<ckpt_format::Fd>]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (m, fds) in members.iter().zip(extra) {
        let Some(g) = &m.group else { continue };
        for f in fds.iter().filter(|f| f.kind == ckpt_format::FdKind::Tree as u32 && f.aux[2] & ckpt_format::TREE_FD_PTY_PEER != 0) {
            if !seen.insert(f.aux[1]) {
                continue;
            }
            let Ok(dup) = fdplan::take_fd(g.reader(), f.fd) else { continue };
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int.
            if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&dup), libc::FIONREAD, &mut n) } == 0 && n > 0 {
                out.push(format!(
                    "pid {} fd {}: {n} bytes typed into its terminal and not yet read are not restored (its pty master is the root's, made anew at resume)",
                    m.pid, f.fd
                ));
            }
        }
    }
    out
}
