//! What `ckpt freeze` tells its caller: the summary of a freeze (the `-v` line, or
//! one JSON object with `--json`), and for a failure the stage it failed in and the
//! exit code that names that stage, so a script can tell "no such process" from
//! "disk full" without reading the message.

use crate::pages::Stats;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where a freeze is; a failure exits with the stage's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Checks before anything is touched: the process exists, may be frozen.
    Check,
    /// Creating the output file in its directory.
    Output,
    /// Stopping every thread (ptrace).
    Seize,
    /// Reading the process: memory layout, fds, kernel and thread state.
    Capture,
    /// Reading the pages and writing the file.
    Write,
    /// fsync and naming the file.
    Commit,
}

/// Exit code of a command line the parser refused (clap's own).
pub const USAGE_CODE: u8 = 2;
/// Exit code of a failure outside a freeze's stages (and of the other commands).
pub const OTHER_CODE: u8 = 1;

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Check => "check",
            Stage::Output => "output",
            Stage::Seize => "seize",
            Stage::Capture => "capture",
            Stage::Write => "write",
            Stage::Commit => "commit",
        }
    }

    /// 3: the process cannot be frozen (missing, not ours, zombie, privileged,
    /// traced); 4: the output cannot be created; 5: reading the process failed (it
    /// exited, or holds state that cannot be saved); 6: writing or syncing failed.
    pub fn code(self) -> u8 {
        match self {
            Stage::Check | Stage::Seize => 3,
            Stage::Output => 4,
            Stage::Capture => 5,
            Stage::Write | Stage::Commit => 6,
        }
    }
}

/// The exit codes, as `--help` and the README list them.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 done; 1 other error; 2 usage; 3 the process cannot be frozen \
(no such process, not permitted, zombie, privileged, traced); 4 the output cannot be created; 5 reading the \
process failed; 6 writing or syncing the output failed. A resume file (or `ckpt resume`) that cannot resume \
exits 100-118, see `ckpt resume --help`.";

/// The restorer's exit codes (restorer-stub/src/out.rs `Step`), for `--help`.
pub const RESTORE_CODES_HELP: &str = "Exit codes of a resume that fails (the restore step, named on stderr with \
the address range and errno): 100 open image, 101 invalid image, 102 CPU lacks xstate features, 103 different \
vdso/kernel, 104 no gap, 105 unmap, 106 move vdso, 107 map VMA, 108 fill pages/checksum, 109 protect, 110 \
PR_SET_MM_MAP, 111 fds, 112 thread state, 113 rt_sigreturn, 114 process state, 115 lock memory, 116 kernel check, 117 process tree (one of its processes failed: every \
process of the tree is killed), 118 terminal input (a pseudo-terminal's queued input could not be typed into its new pair). Once resumed, the process exits as it would have.";

/// A freeze that completed.
#[derive(Debug, Serialize)]
pub struct Report {
    pub pid: i32,
    pub output: PathBuf,
    /// Bytes of the file (or written to the stream).
    pub size: u64,
    pub threads: usize,
    pub vmas: usize,
    pub pages_stored: u64,
    pub zero_pages_skipped: u64,
    pub unreadable_pages: u64,
    pub total_ms: f64,
    pub stopped_ms: f64,
    pub fsync_ms: f64,
    /// What the resume will do differently (each also printed on stderr).
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub exe: Option<String>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(pid: i32, output: PathBuf, size: u64, threads: usize, vmas: usize, stats: Stats, times: [Duration; 3], exe: Option<String>) -> Report {
        Report {
            pid,
            output,
            size,
            threads,
            vmas,
            pages_stored: stats.stored_pages,
            zero_pages_skipped: stats.zero_pages,
            unreadable_pages: stats.unreadable_pages,
            total_ms: ms(times[0]),
            stopped_ms: ms(times[1]),
            fsync_ms: ms(times[2]),
            warnings: Vec::new(),
            exe,
        }
    }

    /// The warnings, on stderr.
    pub fn print_warnings(&self) {
        for w in &self.warnings {
            eprintln!("ckpt: warning: {w}");
        }
    }

    /// The `-v` lines on stderr.
    pub fn print_verbose(&self) {
        if let Some(exe) = &self.exe {
            eprintln!(
                "ckpt: /proc/PID/exe of the resumed process names {exe} only when it is resumed with CAP_SYS_ADMIN \
                 (or CAP_CHECKPOINT_RESTORE) and that file is unchanged; otherwise it names the file that was run"
            );
        }
        eprintln!(
            "ckpt: froze pid {} ({} thread{}) into {} ({} bytes): {} vmas, {} pages stored, {} zero pages skipped, {} unreadable; total {:.3} ms, target stopped {:.3} ms, fsync {:.3} ms",
            self.pid,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.output.display(),
            self.size,
            self.vmas,
            self.pages_stored,
            self.zero_pages_skipped,
            self.unreadable_pages,
            self.total_ms,
            self.stopped_ms,
            self.fsync_ms,
        );
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }
}

/// The JSON object of a failed freeze.
pub fn error_json(error: &str, code: u8, step: &str) -> String {
    serde_json::json!({ "error": error, "code": code, "step": step }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_a_code_past_the_generic_ones() {
        for s in [Stage::Check, Stage::Output, Stage::Seize, Stage::Capture, Stage::Write, Stage::Commit] {
            assert!(s.code() > USAGE_CODE && s.code() < 100, "{s:?}");
            assert!(EXIT_CODES_HELP.contains(&format!(" {} ", s.code())), "{s:?} is documented");
        }
    }

    #[test]
    fn every_restore_code_is_documented() {
        for code in 100..=118 {
            assert!(RESTORE_CODES_HELP.contains(&format!(" {code} ")), "{code}");
        }
    }

    #[test]
    fn error_json_escapes_the_message() {
        let v: serde_json::Value = serde_json::from_str(&error_json("a \"quoted\"\nline", 4, "output")).unwrap();
        assert_eq!(v["error"], "a \"quoted\"\nline");
        assert_eq!(v["code"], 4);
        assert_eq!(v["step"], "output");
    }
}
