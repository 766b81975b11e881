//! Launching processes under test and the `Proc` guard that kills them.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Where a launched process's stdout goes.
pub enum StdoutTo {
    Pipe,
    /// Created/truncated, like `> file`.
    File(PathBuf),
    /// Appended to, like `>> file`.
    Append(PathBuf),
}

/// Most fds one [`Launch`] passes ([`Launch::pass_fd`]).
const MAX_PASSED: usize = 8;

/// Builder for a process under test (fixture or resume file): stdin is
/// /dev/null unless piped, stderr is always piped, and every fd above 2 is
/// closed at exec so the process starts with exactly fds 0-2 (and the fds given
/// with [`Launch::pass_fd`]).
pub struct Launch {
    program: PathBuf,
    /// (our fd, its number in the new process), kept open until the spawn.
    pass: Vec<(std::os::fd::OwnedFd, i32)>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin_piped: bool,
    stdout: StdoutTo,
    label: String,
}

impl Launch {
    pub fn new(program: impl AsRef<Path>) -> Launch {
        let program = program.as_ref().to_path_buf();
        let label = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Launch {
            program,
            args: Vec::new(),
            pass: Vec::new(),
            env: Vec::new(),
            stdin_piped: false,
            stdout: StdoutTo::Pipe,
            label,
        }
    }

    pub fn fixture(name: &str, static_: bool) -> Launch {
        Launch::new(fixture(name, static_))
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Launch {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Launch {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Launch {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The new process inherits `fd` at number `at` (above 2), as a process a
    /// shell or a CI runner starts inherits fds it never asked for.
    pub fn pass_fd(mut self, fd: impl Into<std::os::fd::OwnedFd>, at: i32) -> Launch {
        assert!(at > 2, "pass_fd is for fds above 2");
        self.pass.push((fd.into(), at));
        self
    }

    pub fn stdin_piped(mut self) -> Launch {
        self.stdin_piped = true;
        self
    }

    pub fn stdout(mut self, to: StdoutTo) -> Launch {
        self.stdout = to;
        self
    }

    pub fn label(mut self, l: &str) -> Launch {
        self.label = l.to_owned();
        self
    }

    pub fn spawn(self) -> Proc {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(if self.stdin_piped {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let stdout = match &self.stdout {
            StdoutTo::Pipe => Stdio::piped(),
            StdoutTo::File(p) => Stdio::from(fs::File::create(p).expect("create stdout file")),
            StdoutTo::Append(p) => Stdio::from(
                fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(p)
                    .expect("open stdout file"),
            ),
        };
        cmd.stdout(stdout).stderr(Stdio::piped());
        let pass: Vec<(i32, i32)> = self
            .pass
            .iter()
            .map(|(fd, at)| (std::os::fd::AsRawFd::as_raw_fd(fd), *at))
            .collect();
        assert!(pass.len() <= MAX_PASSED, "at most {MAX_PASSED} fds can be passed");
        let above = pass.iter().map(|p| p.1).max().unwrap_or(0) + 1;
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe system calls (close_range, fcntl, dup2), no allocation.
        unsafe {
            cmd.pre_exec(move || {
                // Mark fds >= 3 close-on-exec (CLOSE_RANGE_CLOEXEC, Linux 5.11)
                // rather than closing them: std's exec-error pipe must survive
                // until the exec.
                if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 4u32) != 0 {
                    for fd in 3..1024 {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                }
                // Every source is first moved above every target, so no dup2
                // overwrites a source still to be passed.
                let mut moved = [0i32; MAX_PASSED];
                for (k, &(from, _)) in pass.iter().enumerate() {
                    moved[k] = libc::fcntl(from, libc::F_DUPFD_CLOEXEC, above);
                    if moved[k] < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (k, &(_, at)) in pass.iter().enumerate() {
                    // dup2 leaves the new fd without FD_CLOEXEC: it survives exec.
                    if libc::dup2(moved[k], at) != at {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = spawn_retrying(&mut cmd).unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({}): {e}",
                self.label,
                self.program.display()
            )
        });
        let stdout = child.stdout.take().map(Lines::collect);
        let stderr = child.stderr.take().map(Lines::collect);
        let stdin = child.stdin.take();
        Proc {
            label: self.label,
            child,
            stdout,
            stderr,
            stdin,
            tracked: Vec::new(),
            status: None,
        }
    }
}

/// Starts a fixture with stdout piped and stdin /dev/null.
pub fn spawn_fixture(name: &str, static_: bool, args: &[&str]) -> Proc {
    Launch::fixture(name, static_).args(args).spawn()
}

/// How a waited-for process ended, with everything it printed.
pub struct Finished {
    pub label: String,
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// Panics unless the process exited 0 and printed no FAIL line.
    pub fn assert_success(&self) -> &Finished {
        assert!(
            self.status.success() && !self.stdout.iter().any(|l| l.starts_with("FAIL")),
            "{} did not succeed\n{self}",
            self.label
        );
        self
    }

    /// The first stdout line starting with `prefix`; panics if none.
    pub fn line_starting(&self, prefix: &str) -> &str {
        self.stdout
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{}: no line starting with {prefix:?}\n{self}", self.label))
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}\nstdout:\n{}\nstderr:\n{}",
            self.label,
            self.status,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

/// Guard of a process the test started: Drop SIGKILLs and reaps it (bounded),
/// and SIGKILLs every extra PID registered with `track_pid` that is still the
/// same process (checked by its start time).
pub struct Proc {
    pub label: String,
    child: Child,
    pub stdout: Option<Lines>,
    pub stderr: Option<Lines>,
    pub stdin: Option<ChildStdin>,
    tracked: Vec<(i32, u64)>,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn out(&self) -> &Lines {
        self.stdout.as_ref().expect("stdout is not piped")
    }

    /// stdout and stderr so far, for failure messages.
    pub fn describe(&self) -> String {
        let out = self
            .stdout
            .as_ref()
            .map(Lines::text)
            .unwrap_or_else(|| "(not piped)".into());
        let err = self.stderr.as_ref().map(Lines::text).unwrap_or_default();
        format!(
            "{} (pid {}):\nstdout:\n{out}\nstderr:\n{err}",
            self.label,
            self.pid()
        )
    }

    /// Waits for the fixture's "ready" line on its piped stdout.
    pub fn wait_ready(&self) {
        if let Err(e) = self.out().wait_for(|l| l == "ready", READY_TIMEOUT) {
            panic!("{} never said ready ({e})\n{}", self.label, self.describe());
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns it.
    pub fn wait_line_starting(&self, prefix: &str, timeout: Duration) -> String {
        self.out()
            .wait_for(|l| l.starts_with(prefix), timeout)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: no line {prefix:?} ({e})\n{}",
                    self.label,
                    self.describe()
                )
            })
    }

    /// Registers another PID (e.g. a fixture's own child) to kill on drop.
    pub fn track_pid(&mut self, pid: i32) {
        if let Some(start) = proc_starttime(pid) {
            self.tracked.push((pid, start));
        }
    }

    /// Exit status if the process has ended (reaping it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the process to end; on timeout kills it and panics.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return s;
            }
            if Instant::now() >= deadline {
                self.kill_and_reap();
                panic!(
                    "{} did not end within {timeout:?}\n{}",
                    self.label,
                    self.describe()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for the end and for the ends of its output pipes.
    pub fn wait_output(&mut self, timeout: Duration) -> Finished {
        self.stdin = None;
        let status = self.wait_exit(timeout);
        let drain = |l: &Option<Lines>| {
            l.as_ref()
                .map(|l| l.wait_eof(REAP_TIMEOUT).unwrap_or_else(|partial| partial))
                .unwrap_or_default()
        };
        Finished {
            label: self.label.clone(),
            status,
            stdout: drain(&self.stdout),
            stderr: drain(&self.stderr).join("\n"),
        }
    }

    /// After a default freeze, ckpt has SIGKILLed the original: reap it (it
    /// is still the test's child), check it died by SIGKILL and return what
    /// it printed before.
    pub fn expect_killed_by_ckpt(&mut self) -> Vec<String> {
        let fin = self.wait_output(REAP_TIMEOUT);
        assert_eq!(
            fin.status.signal(),
            Some(libc::SIGKILL),
            "the frozen original was not SIGKILLed\n{fin}"
        );
        fin.stdout
    }

    /// Panics unless the process is alive and neither stopped nor traced.
    pub fn assert_running(&mut self) {
        assert!(
            self.try_status().is_none(),
            "{} has exited\n{}",
            self.label,
            self.describe()
        );
        let st = proc_state(self.pid());
        assert!(
            matches!(st, Some('R' | 'S' | 'D')),
            "{} is in state {st:?}\n{}",
            self.label,
            self.describe()
        );
        assert_eq!(
            tracer_pid(self.pid()),
            Some(0),
            "{} is still traced",
            self.label
        );
    }

    fn kill_and_reap(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let _ = self.child.kill();
        let deadline = Instant::now() + REAP_TIMEOUT;
        while self.try_status().is_none() {
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: {} (pid {}) not reaped after SIGKILL",
                    self.label,
                    self.pid()
                );
                return;
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        self.kill_and_reap();
        for &(pid, start) in &self.tracked {
            if proc_starttime(pid) == Some(start) {
                // SAFETY: kill has no memory-safety preconditions; the start
                // time check makes sure the PID is still the process we saw.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The counter keeps printing: it is neither stopped nor killed.
pub fn assert_keeps_printing(p: &mut Proc) {
    p.assert_running();
    let n = p.out().snapshot().len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.out().snapshot().len() <= n + 2 {
        assert!(
            Instant::now() < deadline,
            "the target stopped printing after a failed freeze\n{}",
            p.describe()
        );
        thread::sleep(POLL);
    }
}

/// setpriv(1) arguments that run a program as user and group nobody.
pub const AS_NOBODY_ARGS: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// A world-writable directory under the system temp dir (the test's own dirs may sit
/// under a path user nobody cannot enter), removed on drop; programs started with
/// [`OpenDir::as_nobody`] run there as nobody.
pub struct OpenDir {
    pub path: PathBuf,
}

impl OpenDir {
    pub fn new(name: &str) -> OpenDir {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("ckpt-{name}-{}", std::process::id()));
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        OpenDir { path }
    }

    /// `program` run as nobody with this directory as its working directory.
    pub fn as_nobody(&self, program: &Path) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(AS_NOBODY_ARGS).arg("env").arg("-C").arg(&self.path).arg(program);
        cmd
    }

    /// The same, as a [`Launch`] (a tracked, killed-on-drop process).
    pub fn launch_as_nobody(&self, program: &Path) -> Launch {
        Launch::new("setpriv").args(AS_NOBODY_ARGS).arg("env").arg("-C").arg(&self.path).arg(program)
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
