//! `ckpt`: turn a running Linux process into a file that *is* the process.

mod binfmt;
mod check;
mod convert;
mod core_file;
mod emit;
mod fdplan;
mod fileref;
mod freeze;
mod group;
mod gadgets;
mod identity;
mod info;
mod inject;
mod inventory;
mod kernel_state;
mod memory;
mod output;
mod pagemap;
mod pages;
mod plan;
mod proc;
mod procstate;
mod ptrace;
mod reader;
mod regs;
mod resume;
mod thread_state;
/// The image writer, shared with the format crate's tests (see its module doc).
#[path = "../../format/src/write.rs"]
mod write;
mod writeback;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ckpt", version, about = "Freeze a running process into a file that resumes it", long_about = None)]
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
    Freeze {
        /// The process to freeze (all its threads).
        pid: i32,
        /// Output file (created owner-only, mode 0700).
        #[arg(short, long)]
        output: PathBuf,
        /// Let the original continue after the dump instead of killing it.
        #[arg(long, conflicts_with = "leave_stopped")]
        leave_running: bool,
        /// Leave the original stopped (SIGSTOP) after the dump instead of killing it.
        #[arg(long)]
        leave_stopped: bool,
        /// Write a raw image (no restorer inside) instead of an executable.
        #[arg(long)]
        image: bool,
        /// Refuse the freeze when an fd's other end is outside the process (half of
        /// a pipe, a connected socket) instead of resuming that fd disconnected.
        #[arg(long)]
        strict_fds: bool,
        /// Accepted for compatibility; the default: an fd whose other end is outside
        /// the process resumes disconnected at its number (it is never closed).
        #[arg(long, hide = true, conflicts_with = "strict_fds")]
        ignore_fds: bool,
        /// Print what was written and how long it took.
        #[arg(short, long)]
        verbose: bool,
        /// Root only: freeze a process running with setuid/setgid/file-capability
        /// privileges (they are not carried into the file; its memory may hold secrets).
        #[arg(long)]
        force: bool,
        /// What the resume does when a file an fd had open is missing or shorter than
        /// its saved offset: `fail` (default) or `ignore` (open /dev/null in its
        /// place, with a warning; also CKPT_MISSING_FILES=ignore at resume).
        #[arg(long, value_name = "fail|ignore", default_value = "fail", value_parser = ["fail", "ignore"])]
        missing_files: String,
        /// Store the pages of mapped files (executable, libraries) in the file too.
        /// By default only the pages the process changed are stored, and the resume
        /// maps the rest from the same files (checked by identity or checksum; a
        /// missing or changed file stops the resume, naming it).
        #[arg(long)]
        embed_files: bool,
    },
    /// Resume a raw image (or a .resume file) without a binfmt_misc registration.
    Resume {
        file: PathBuf,
        /// Ignored by the resumed process; kept for binfmt_misc-style invocations.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
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
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Freeze { pid, output, leave_running, leave_stopped, image, strict_fds, ignore_fds: _, verbose, force, missing_files, embed_files } => {
            let after = if leave_running {
                freeze::After::Continue
            } else if leave_stopped {
                freeze::After::Stop
            } else {
                freeze::After::Kill
            };
            freeze::run(&freeze::Options {
                pid,
                output,
                after,
                raw_image: image,
                strict_fds,
                verbose,
                force,
                missing_files_ignore: missing_files == "ignore",
                embed_files,
            })
        }
        Cmd::Resume { file, args } => resume::run(&file, &args),
        Cmd::Restorer { output } => resume::write_restorer(&output),
        Cmd::Info { file, json } => info::run(&file, json),
        Cmd::Check { file } => match check::run(&file)? {
            true => Ok(()),
            false => std::process::exit(1),
        },
        Cmd::Convert { file, output } => convert::run(&file, &output),
        Cmd::Core { file, output } => core_file::run(&file, &output),
        Cmd::Binfmt { cmd } => binfmt::run(cmd),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckpt: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
