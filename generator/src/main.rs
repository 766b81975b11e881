//! `ckpt`: turn a running Linux process into a file that *is* the process.

mod binfmt;
mod check;
mod compress;
mod convert;
mod docs;
mod core_file;
mod cow;
mod crc_cache;
mod emit;
mod fdplan;
mod fileref;
mod freeze;
mod freeze_cmd;
mod group;
mod gadgets;
mod identity;
mod info;
mod inject;
mod inventory;
mod kernel_state;
mod memory;
mod outcome;
mod output;
mod pagemap;
mod pages;
mod periodic;
mod plan;
mod precopy;
mod proc;
mod procstate;
mod profile;
mod progress;
mod ptrace;
mod reader;
mod regs;
mod resume;
mod stash;
mod syscall_batch;
mod thread_state;
mod trace;
mod uffd_wp;
mod vdso_syms;
mod wp_scan;
mod tree;
/// The image writer, shared with the format crate's tests (see its module doc).
#[path = "../../format/src/write.rs"]
mod write;
mod writeback;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ckpt", version, about = "Freeze a running process into a file that resumes it", long_about = None, after_help = all_exit_codes_help())]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Stop a process, write it to a self-restoring executable, then kill the original.
    ///
    /// Run the output file to continue the process where it stopped. Every thread is
    /// stopped before any is read, and each is resumed with its registers, signal
    /// mask, pending signals, sigaltstack, rseq, robust list, name and scheduling.
    ///
    /// Process and thread ids: the resumed process gets its original PID and every
    /// thread its original TID (glibc, mutex owners, robust lists, the Go runtime and
    /// timers hold them). As root, when those ids are free, they are the real ones;
    /// otherwise (an ordinary user, or an id taken by another process) the process
    /// runs in a new user + PID namespace made for it, where it has them (its parent
    /// is then that namespace's init). If neither works the resume stops with a
    /// message and exit code 114; it never runs on silently under other ids. With
    /// CKPT_SAME_PID=0 in the resumer's environment it runs under new ids instead,
    /// with a warning: raise(), abort(), pthread_kill and error-checking or robust
    /// mutexes held across the freeze may then fail.
    #[command(after_help = outcome::EXIT_CODES_HELP)]
    Freeze(freeze_cmd::FreezeArgs),
    /// Run a command and checkpoint it at an interval while it runs.
    ///
    /// CMD starts as a child of ckpt (inheriting stdin, stdout and stderr); every
    /// INTERVAL its resume file is written again and replaces FILE atomically, while
    /// it keeps running. ckpt exits as CMD does (its exit code, or 128 + the signal
    /// that ended it); on SIGTERM it finishes the checkpoint in progress and passes
    /// the signal on. If the job dies, `./FILE` continues it from the last checkpoint.
    Run {
        /// The interval (500ms, 30s, 10m, 1h).
        #[arg(long, value_name = "INTERVAL", value_parser = periodic::parse_interval)]
        every: std::time::Duration,
        /// The resume file, replaced at each checkpoint.
        #[arg(short, long)]
        output: PathBuf,
        /// Also keep the last K files as FILE.1 (newest) .. FILE.K.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=1000))]
        keep: Option<u32>,
        /// Say when each checkpoint is written and how long the job was stopped.
        #[arg(short, long)]
        verbose: bool,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// Resume a raw image (or a .resume file) without a binfmt_misc registration.
    #[command(after_help = outcome::RESTORE_CODES_HELP)]
    Resume {
        /// No progress counter (as CKPT_QUIET=1 in the environment of a resume file).
        #[arg(short, long)]
        quiet: bool,
        file: PathBuf,
        /// Ignored by the resumed process; kept for binfmt_misc-style invocations.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Record the pages a lazy resume of FILE touches first and store them in the
    /// file as its working-set hint.
    ///
    /// FILE is resumed lazily (CKPT_LAZY=1) with this terminal; every page the process
    /// touches during the window (or until it ends) is recorded in order, then the
    /// file is rewritten with those pages as its hint (replacing one it had) and marked
    /// to resume lazily: later lazy resumes read the hinted pages in before the first
    /// instruction. The process runs on; ckpt profile exits as it does. Needs what
    /// a lazy resume needs (root here: see CKPT_LAZY in the README).
    #[command(after_help = outcome::RESTORE_CODES_HELP)]
    Profile {
        file: PathBuf,
        /// Write the profiled file here instead of replacing FILE.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// How long to record (500ms, 2s, 1m).
        #[arg(long = "for", value_name = "DURATION", default_value = "2s", value_parser = periodic::parse_interval)]
        window: std::time::Duration,
    },
    /// Show what is inside a .resume or raw image file.
    Info {
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Say whether this machine can resume a file (without running it) and, if not,
    /// every reason; exit status 0 when it can.
    Check { file: PathBuf },
    /// Convert between a raw image and a .resume executable (the kind of the output
    /// is the opposite of the input's).
    Convert {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Write an ELF core file of the frozen state (for gdb).
    Core {
        file: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Manage the binfmt_misc registration that runs raw images directly.
    Binfmt {
        #[command(subcommand)]
        cmd: binfmt::BinfmtCmd,
    },
    /// Write the plain restorer executable (the binfmt_misc interpreter) to a file.
    Restorer {
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print the completions of a shell (bash, zsh, fish, ...) on stdout (`make install`).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Write the man pages, ckpt(1) and one per subcommand, into DIR (`make install`).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// Both tables of exit codes, for `ckpt --help`.
fn all_exit_codes_help() -> String {
    format!("{}\n\n{}", outcome::EXIT_CODES_HELP, outcome::RESTORE_CODES_HELP)
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Freeze(_) | Cmd::Run { .. } => unreachable!("main runs freeze and run itself"),
        Cmd::Resume { quiet, file, args } => resume::run(&file, &args, quiet),
        Cmd::Restorer { output } => resume::write_restorer(&output),
        Cmd::Profile { file, output, window } => {
            let code = profile::run(&file, output.as_deref(), window)?;
            std::process::exit(code)
        }
        Cmd::Info { file, json } => info::run(&file, json),
        Cmd::Check { file } => match check::run(&file)? {
            true => Ok(()),
            false => std::process::exit(1),
        },
        Cmd::Convert { file, output } => convert::run(&file, &output),
        Cmd::Core { file, output } => core_file::run(&file, &output),
        Cmd::Binfmt { cmd } => binfmt::run(cmd),
        Cmd::Completions { shell } => docs::completions(Cli::command(), shell),
        Cmd::Man { dir } => docs::man_pages(Cli::command(), &dir),
    }
}

/// A command line clap refused: its usual message and exit code 2, and for
/// `freeze --json` also the JSON object a script waits for.
fn refused(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let json = {
        let args: Vec<String> = std::env::args().collect();
        args.iter().any(|a| a == "freeze") && args.iter().any(|a| a == "--json")
    };
    if json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let text = e.to_string();
        // The first paragraph, on one line.
        let para: Vec<&str> = text.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
        let joined = para.join(" ");
        let msg = joined.trim_start_matches("error: ");
        println!("{}", outcome::error_json(msg, outcome::USAGE_CODE, "usage"));
    }
    e.exit()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    match cli.cmd {
        Cmd::Freeze(a) => ExitCode::from(freeze_cmd::run(a)),
        Cmd::Run { every, output, keep, verbose, command } => {
            let plan = periodic::Plan { interval: every, keep: keep.unwrap_or(0), verbose };
            match periodic::run_command(&command, output, &plan) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("ckpt: error: {e:#}");
                    ExitCode::from(outcome::OTHER_CODE)
                }
            }
        }
        cmd => match run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ckpt: error: {e:#}");
                ExitCode::from(outcome::OTHER_CODE)
            }
        },
    }
}
