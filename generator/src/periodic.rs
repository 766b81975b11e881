//! Periodic checkpoints of a long job (`ckpt freeze PID --every 10m`, `ckpt run
//! --every 10m -- CMD`): the process keeps running, and at each interval its file
//! is written again and put in place atomically (with `--keep K`, the previous ones
//! rotate to FILE.1..K). A checkpoint that fails leaves the previous file and the
//! process as they were, and the next interval tries again. It ends when the
//! process ends, or on SIGINT/SIGTERM once the checkpoint in progress is complete
//! (the signals are blocked and read from a signalfd, so none cuts one short).

mod events;
mod rotate;

use crate::freeze::{self, After};
use crate::outcome::{Report, Stage};
use anyhow::{Context, Result};
use events::{Event, Events};
use std::cell::Cell;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// `500ms`, `30s`, `10m`, `1h`, `1h30m` (humantime's syntax); more than zero.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (an interval such as 500ms, 30s, 10m, 1h)"))?;
    if d.is_zero() {
        return Err("the interval must be longer than zero".into());
    }
    Ok(d)
}

/// How the checkpoints go.
pub struct Plan {
    pub interval: Duration,
    /// Previous files kept as FILE.1..FILE.keep.
    pub keep: u32,
    pub verbose: bool,
}

/// `ckpt freeze PID --every`: a checkpoint now, then one per interval. Returns the
/// exit code: 0 when the process ended or a signal stopped the checkpoints, the
/// stage's code when the first checkpoint shows the process cannot be frozen.
pub fn freeze_every(opts: freeze::Options, plan: &Plan) -> u8 {
    match Events::new(opts.pid) {
        Ok(ev) => match checkpoints(&ev, opts, plan, true) {
            Ok(_) => 0,
            Err(code) => code,
        },
        Err(e) => {
            eprintln!("ckpt: error: {e:#}");
            Stage::Check.code()
        }
    }
}

/// `ckpt run --every -- CMD ARGS`: start CMD (inheriting stdio), checkpoint it at
/// each interval, and exit as it did (its code, or 128 + the signal that ended it).
pub fn run_command(cmd: &[OsString], output: PathBuf, plan: &Plan) -> Result<u8> {
    let mut child = Command::new(&cmd[0]).args(&cmd[1..]).spawn().with_context(|| format!("cannot run {}", cmd[0].to_string_lossy()))?;
    let pid = child.id() as i32;
    let ev = match Events::new(pid) {
        Ok(ev) => ev,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let opts = options(pid, output);
    match checkpoints(&ev, opts, plan, false) {
        Ok(Event::Signal(sig)) if sig == libc::SIGTERM => {
            // SIGINT from a terminal reached the whole group; SIGTERM was for ckpt
            // alone: pass it on, so the job ends as it would have.
            // SAFETY: plain signal delivery to our own child.
            unsafe { libc::kill(pid, sig) };
        }
        _ => {}
    }
    status_code(&mut child)
}

/// freeze::Options for a checkpoint of a process that keeps running.
pub fn options(pid: i32, output: PathBuf) -> freeze::Options {
    freeze::Options {
        pid,
        output,
        after: After::Continue,
        raw_image: false,
        strict_fds: false,
        progress: false,
        force: false,
        missing_files_ignore: false,
        lazy: false,
        embed_files: false,
        cow: true,
        precopy: true,
        tree: false,
        compress: false,
    }
}

fn status_code(child: &mut Child) -> Result<u8> {
    use std::os::unix::process::ExitStatusExt;
    let st = child.wait().context("waiting for the command")?;
    Ok(match (st.code(), st.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128u8.wrapping_add(s as u8),
        _ => 1,
    })
}

/// The loop: checkpoint, wait an interval (or the end), again. Returns what ended
/// it; Err(code) only when the very first checkpoint finds the process cannot be
/// frozen at all.
fn checkpoints(ev: &Events, mut opts: freeze::Options, plan: &Plan, now: bool) -> Result<Event, u8> {
    let path = opts.output.clone();
    let files = rotate::Files::new(&path, plan.keep);
    opts.output = files.write_to();
    let mut n = 0u64;
    let mut last_warnings: Vec<String> = Vec::new();
    let mut wait_first = !now;
    loop {
        if wait_first {
            match ev.wait(plan.interval) {
                Event::Timeout => {}
                end => return Ok(end),
            }
        }
        wait_first = true;
        n += 1;
        let stage = Cell::new(Stage::Check);
        let r = freeze::run(&opts, &stage).and_then(|rep| files.commit().map(|()| rep));
        match r {
            Ok(mut rep) => {
                if rep.warnings != last_warnings {
                    rep.print_warnings();
                    last_warnings = std::mem::take(&mut rep.warnings);
                }
                if plan.verbose {
                    print_checkpoint(n, &path, &rep);
                }
            }
            Err(e) => {
                if ev.ended() {
                    return Ok(Event::Ended);
                }
                eprintln!(
                    "ckpt: warning: checkpoint {n} of pid {} failed: {e:#}; {}",
                    opts.pid,
                    if n == 1 { "no file written yet".to_owned() } else { format!("{} is the previous one", path.display()) }
                );
                if n == 1 && now && matches!(stage.get(), Stage::Check | Stage::Output | Stage::Seize) {
                    return Err(stage.get().code());
                }
            }
        }
    }
}

fn print_checkpoint(n: u64, path: &std::path::Path, rep: &Report) {
    eprintln!(
        "ckpt: checkpoint {n} of pid {}: {} ({} bytes), target stopped {:.3} ms, total {:.3} ms",
        rep.pid,
        path.display(),
        rep.size,
        rep.stopped_ms,
        rep.total_ms
    );
}
