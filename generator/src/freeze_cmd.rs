//! The `ckpt freeze` command line: its options, turned into one freeze (or periodic
//! ones, `--every`), and the outcome told the way the caller asked: quietly, with
//! `-v`, or as one JSON object on stdout (`--json`), exiting with the code of the
//! stage that failed (outcome.rs).

use crate::freeze::{self, After};
use crate::outcome::{self, Stage};
use crate::periodic;
use crate::progress;
use clap::Args;
use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct FreezeArgs {
    /// The process to freeze (all its threads).
    pub pid: i32,
    /// Output file (created owner-only, mode 0700); `-` streams it to stdout.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Let the original continue after the dump instead of killing it.
    #[arg(long, conflicts_with = "leave_stopped")]
    pub leave_running: bool,
    /// With --leave-running, keep the original stopped until every page is written,
    /// instead of reading its pages from a copy-on-write copy while it runs on.
    #[arg(long, requires = "leave_running")]
    pub no_cow: bool,
    /// With --leave-running, take the copy-on-write copy even of a process with
    /// much anonymous memory, instead of copying that memory while it runs and
    /// only the pages it wrote meanwhile while it is stopped.
    #[arg(long, requires = "leave_running", conflicts_with = "no_cow")]
    pub no_precopy: bool,
    /// Leave the original stopped (SIGSTOP) after the dump instead of killing it.
    #[arg(long)]
    pub leave_stopped: bool,
    /// Write a raw image (no restorer inside) instead of an executable.
    #[arg(long)]
    pub image: bool,
    /// Refuse the freeze when an fd's other end is outside the process (half of
    /// a pipe, a connected socket) instead of resuming that fd disconnected.
    #[arg(long)]
    pub strict_fds: bool,
    /// Accepted for compatibility; the default: an fd whose other end is outside
    /// the process resumes disconnected at its number (it is never closed).
    #[arg(long, hide = true, conflicts_with = "strict_fds")]
    pub ignore_fds: bool,
    /// Print what was written and how long it took.
    #[arg(short, long)]
    pub verbose: bool,
    /// No progress bar (it is drawn only on a terminal, for freezes over a second).
    #[arg(short, long)]
    pub quiet: bool,
    /// Print one JSON object on stdout: the summary (pid, output, size, pages_stored,
    /// threads, total_ms, stopped_ms, fsync_ms, ...) or the failure (error, code,
    /// step).
    #[arg(long)]
    pub json: bool,
    /// Root only: freeze a process running with setuid/setgid/file-capability
    /// privileges (they are not carried into the file; its memory may hold secrets).
    #[arg(long)]
    pub force: bool,
    /// What the resume does when a file an fd had open is missing or shorter than
    /// its saved offset: `fail` (default) or `ignore` (open /dev/null in its
    /// place, with a warning; also CKPT_MISSING_FILES=ignore at resume).
    #[arg(long, value_name = "fail|ignore", default_value = "fail", value_parser = ["fail", "ignore"])]
    pub missing_files: String,
    /// Store the pages of mapped files (executable, libraries) in the file too.
    /// By default only the pages the process changed are stored, and the resume
    /// maps the rest from the same files (checked by identity or checksum; a
    /// missing or changed file stops the resume, naming it).
    #[arg(long)]
    pub embed_files: bool,
    /// Make the file resume lazily by default: the process runs before its
    /// anonymous memory has arrived (userfaultfd; CKPT_LAZY=0 at resume forces an
    /// eager resume, CKPT_LAZY=1 makes any file's resume lazy).
    #[arg(long)]
    pub lazy: bool,
    /// Freeze the process together with every descendant (children, their
    /// children, zombies not yet reaped) into one file, and kill them all after:
    /// the resume brings the whole tree back with its PIDs, process groups,
    /// sessions and the pipes between its processes.
    #[arg(long)]
    pub tree: bool,
    /// Store the memory compressed (LZ4): a smaller file for a slow disk or a
    /// copy to another machine, at the cost of CPU time at freeze and resume.
    /// Not with --lazy or --tree.
    #[arg(long, conflicts_with_all = ["lazy", "tree"])]
    pub compress: bool,
    #[command(flatten)]
    pub every: EveryArgs,
}

/// Periodic checkpoints, shared by `freeze` and `run`.
#[derive(Args)]
pub struct EveryArgs {
    /// Keep the process running and write the file again at this interval (500ms,
    /// 30s, 10m, 1h), each time replacing it atomically, until the process ends
    /// (or SIGINT/SIGTERM, after the checkpoint in progress). A failed checkpoint
    /// leaves the previous file.
    #[arg(long, value_name = "INTERVAL", value_parser = periodic::parse_interval)]
    pub every: Option<Duration>,
    /// With --every: also keep the last K files as FILE.1 (newest) .. FILE.K.
    #[arg(long, value_name = "K", requires = "every", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keep: Option<u32>,
}


impl FreezeArgs {
    pub fn options(&self) -> freeze::Options {
        freeze::Options {
            pid: self.pid,
            output: self.output.clone(),
            after: if self.leave_running {
                After::Continue
            } else if self.leave_stopped {
                After::Stop
            } else {
                After::Kill
            },
            raw_image: self.image,
            strict_fds: self.strict_fds,
            progress: progress::wanted(self.quiet),
            force: self.force,
            missing_files_ignore: self.missing_files == "ignore",
            lazy: self.lazy,
            embed_files: self.embed_files,
            cow: !self.no_cow,
            precopy: !self.no_precopy,
            tree: self.tree,
            compress: self.compress,
        }
    }
}

/// Run `ckpt freeze`; returns the exit code.
pub fn run(a: FreezeArgs) -> u8 {
    crate::trace::mark("command line read");
    if let Some(interval) = a.every.every {
        if a.output.as_os_str() == "-" || a.leave_stopped || a.json {
            return usage(a.json, "--every writes a file again and again: it takes neither `-o -`, --leave-stopped nor --json");
        }
        let mut opts = a.options();
        opts.after = After::Continue;
        opts.progress = false;
        let plan = periodic::Plan { interval, keep: a.every.keep.unwrap_or(0), verbose: a.verbose };
        return periodic::freeze_every(opts, &plan);
    }
    if a.json && a.output.as_os_str() == "-" {
        return usage(true, "--json prints on stdout, where `-o -` streams the file");
    }
    let stage = Cell::new(Stage::Check);
    match freeze::run(&a.options(), &stage) {
        Ok(report) => {
            report.print_warnings();
            if a.verbose {
                report.print_verbose();
            }
            if a.json {
                println!("{}", report.json());
            }
            0
        }
        Err(e) => {
            let msg = format!("{e:#}");
            let s = stage.get();
            if a.json {
                println!("{}", outcome::error_json(&msg, s.code(), s.name()));
            }
            eprintln!("ckpt: error: {msg}");
            s.code()
        }
    }
}

/// A command line that is refused after parsing.
fn usage(json: bool, msg: &str) -> u8 {
    if json {
        println!("{}", outcome::error_json(msg, outcome::USAGE_CODE, "usage"));
    }
    eprintln!("ckpt: error: {msg}");
    outcome::USAGE_CODE
}
