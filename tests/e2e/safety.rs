//! Safety of a freeze under adverse conditions: the target or ckpt killed
//! mid-freeze, signals during the freeze, a forking target, a full disk, the
//! output directory vanishing, two concurrent freezes, a broken pipe, users
//! and permissions (unprivileged flow, foreign and setuid targets) and the
//! modes of the output while it is written.
//!
//! The mid-freeze tests use one big fixture size (`BIG_MIB`), large enough
//! that a freeze takes a second or more, and act ~200 ms after ckpt has
//! attached (checking that the freeze is indeed still running then). The
//! tests that switch users or mount a filesystem need root and are skipped
//! with a message otherwise.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Size (MiB) of the big fixture: its freeze takes a second or more.
const BIG_MIB: &str = "768";
/// How long after ckpt attached the mid-freeze tests act.
const MID_FREEZE: Duration = Duration::from_millis(200);
/// uid/gid of `nobody`.
const NOBODY: u32 = 65534;
const AS_NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

// ---------------------------------------------------------------------------
// Helpers

/// Sends `sig` to `pid`, a process this test started (or a ckpt it runs).
fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions; pid is a live child
    // of this test (guarded by a Proc, so it has not been reaped yet).
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// `ckpt freeze PID -o OUT EXTRA...` started in the background.
fn spawn_freeze(pid: i32, out: &Path, extra: &[&str]) -> Proc {
    Launch::new(ckpt_bin())
        .arg("freeze")
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .args(extra)
        .label("ckpt freeze")
        .spawn()
}

/// A finished background process as a `std::process::Output`, for
/// `assert_freeze_error` and `describe_output`.
fn as_output(f: &Finished) -> Output {
    let join = |lines: &[String]| -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| l.bytes().chain([b'\n']))
            .collect()
    };
    Output {
        status: f.status,
        stdout: join(&f.stdout),
        stderr: f.stderr.clone().into_bytes(),
    }
}

/// Waits until ckpt has seized `target` and stopped it (TracerPid is ckpt,
/// state `t`). Panics if ckpt ends first or after READY_TIMEOUT.
fn wait_stopped_by(target: i32, ckpt: &mut Proc) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if tracer_pid(target) == Some(ckpt.pid()) && proc_state(target) == Some('t') {
            return;
        }
        if let Some(s) = ckpt.try_status() {
            panic!(
                "ckpt ended ({s}) before it was seen stopping pid {target}\n{}",
                ckpt.describe()
            );
        }
        assert!(
            Instant::now() < deadline,
            "ckpt never stopped pid {target} (TracerPid {:?}, state {:?})\n{}",
            tracer_pid(target),
            proc_state(target),
            ckpt.describe()
        );
        thread::sleep(Duration::from_millis(2));
    }
}

/// The freeze must still be in progress: otherwise the fixture is too small
/// for a mid-freeze test on this machine.
fn assert_still_freezing(ckpt: &mut Proc, target: i32) {
    if let Some(s) = ckpt.try_status() {
        panic!(
            "the freeze ended ({s}) within {MID_FREEZE:?} of the attach; the mid-freeze test \
             did not happen (make BIG_MIB larger)\n{}",
            ckpt.describe()
        );
    }
    assert_eq!(
        tracer_pid(target),
        Some(ckpt.pid()),
        "ckpt no longer traces pid {target} although it still runs\n{}",
        ckpt.describe()
    );
}

/// Only `ckpt: warning: ...` lines (or nothing) on a successful freeze's stderr.
fn assert_only_warnings(stderr: &str, what: &str) {
    for l in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            l.starts_with("ckpt: warning: "),
            "{what}: unexpected stderr line {l:?}\nstderr:\n{stderr}"
        );
    }
}


/// Waits until the kernel has let `pid` go: not traced and not stopped.
fn wait_released(pid: i32) {
    let deadline = Instant::now() + REAP_TIMEOUT;
    loop {
        let (tr, st) = (tracer_pid(pid), proc_state(pid));
        if tr == Some(0) && matches!(st, Some('R' | 'S' | 'D')) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} still traced or stopped {REAP_TIMEOUT:?} after its tracer died \
             (TracerPid {tr:?}, state {st:?})"
        );
        thread::sleep(POLL);
    }
}

/// A big gated fixture, ready.
fn spawn_big(dir: &TestDir) -> Proc {
    let gate = dir.gate();
    let p = spawn_fixture("big", false, &[BIG_MIB, gate.to_str().unwrap()]);
    p.wait_ready();
    p
}

/// Opens the gate of a big fixture that was never frozen: it verifies its
/// whole memory and exits 0.
fn finish_big(dir: &TestDir, p: &mut Proc) {
    p.assert_running();
    open_gate(&dir.gate());
    let fin = p.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.stdout, ["ready", "ok"], "{fin}");
}

fn statvfs_flags(p: &Path) -> Option<u64> {
    let c = CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; zeroed is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated, st is a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_flag as u64)
}

fn have_setpriv() -> bool {
    let mut cmd = Command::new("setpriv");
    cmd.arg("--version");
    run_with_timeout(cmd, Duration::from_secs(10)).is_ok_and(|o| o.status.success())
}

/// Root, with setpriv; otherwise prints why the test is skipped.
fn can_switch_to_nobody(test: &str) -> bool {
    if !is_root() {
        eprintln!("{test}: skipped (needs root to switch to user nobody)");
        return false;
    }
    if !have_setpriv() {
        eprintln!("{test}: skipped (setpriv is not installed)");
        return false;
    }
    true
}

/// `setpriv ... -- program` as user and group nobody, no supplementary groups.
/// Runs `program` as nobody with its own directory as the working directory: the
/// test process's cwd may be one nobody cannot enter, and a resumed process goes
/// back to its saved cwd (failing clearly when it may not).
fn nobody_launch(program: &Path) -> Launch {
    let dir = program.parent().expect("program in a directory");
    Launch::new("setpriv").args(AS_NOBODY).arg("env").arg("-C").arg(dir).arg(program)
}

fn nobody_command(program: &Path) -> Command {
    let dir = program.parent().expect("program in a directory");
    let mut cmd = Command::new("setpriv");
    cmd.args(AS_NOBODY).arg("env").arg("-C").arg(dir).arg(program);
    cmd
}

static NOBODY_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A directory owned by nobody (mode 0700) on an exec-allowed filesystem
/// whose every ancestor nobody can traverse, holding copies of the `ckpt`
/// binary and of fixtures, so that user nobody can run them. Removed on drop.
struct NobodyDir {
    path: PathBuf,
}

impl NobodyDir {
    fn new(name: &str) -> Option<NobodyDir> {
        let candidates = [
            std::env::temp_dir(),
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-tests"),
        ];
        let traversable = |p: &Path| {
            p.ancestors().all(|a| {
                fs::metadata(a).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
            })
        };
        let base = candidates.into_iter().find(|b| {
            traversable(b) && statvfs_flags(b).is_some_and(|f| f & libc::ST_NOEXEC == 0)
        })?;
        let seq = NOBODY_SEQ.fetch_add(1, Ordering::SeqCst);
        let path = base.join(format!("ckpt-safety-{name}-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).expect("create nobody dir");
        let d = NobodyDir { path };
        std::os::unix::fs::chown(&d.path, Some(NOBODY), Some(NOBODY)).expect("chown nobody dir");
        fs::set_permissions(&d.path, fs::Permissions::from_mode(0o700)).unwrap();
        let images = d.images();
        fs::create_dir(&images).unwrap();
        std::os::unix::fs::chown(&images, Some(NOBODY), Some(NOBODY)).unwrap();
        fs::set_permissions(&images, fs::Permissions::from_mode(0o700)).unwrap();
        Some(d)
    }

    /// Copies `src` into the directory as `name`, mode 0755 (owned by root).
    fn install(&self, src: &Path, name: &str) -> PathBuf {
        let to = self.path.join(name);
        fs::copy(src, &to).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
        to
    }

    /// An empty directory owned by nobody for the images.
    fn images(&self) -> PathBuf {
        self.path.join("images")
    }
}

impl Drop for NobodyDir {
    fn drop(&mut self) {
        if std::env::var_os("CKPT_E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A tmpfs mounted on a directory, unmounted on drop.
struct TmpfsMount {
    dir: PathBuf,
}

impl TmpfsMount {
    fn new(dir: &Path, size: &str) -> Result<TmpfsMount, String> {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},mode=0755"))
            .arg("tmpfs")
            .arg(dir);
        match run_with_timeout(cmd, Duration::from_secs(30)) {
            Ok(o) if o.status.success() => Ok(TmpfsMount {
                dir: dir.to_path_buf(),
            }),
            Ok(o) => Err(describe_output(&o)),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        for lazy in [false, true] {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.dir);
            if run_with_timeout(cmd, Duration::from_secs(30)).is_ok_and(|o| o.status.success()) {
                return;
            }
        }
        eprintln!("warning: could not unmount {}", self.dir.display());
    }
}

/// A child started with std's Command: SIGKILLed and reaped on drop.
struct ChildGuard(Child);

impl ChildGuard {
    /// Waits for the end; on timeout kills it and panics.
    fn wait(&mut self, what: &str, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.0.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                panic!("{what} did not end within {timeout:?}");
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// 1-2: someone dies mid-freeze

/// The target is SIGKILLed while ckpt streams its pages: ckpt fails with one
/// error line naming the pid and saying it exited / was killed, and leaves
/// no file (not even a temporary one) in the output directory.
#[test]
fn target_killed_mid_freeze() {
    let dir = TestDir::new("target_killed_mid_freeze");
    let mut target = spawn_big(&dir);
    let pid = target.pid();
    let mut ckpt = spawn_freeze(pid, &dir.image("big"), &[]);
    wait_stopped_by(pid, &mut ckpt);
    thread::sleep(MID_FREEZE);
    assert_still_freezing(&mut ckpt, pid);
    send_signal(pid, libc::SIGKILL);

    let fin = ckpt.wait_output(FREEZE_TIMEOUT);
    let err = assert_freeze_error(&as_output(&fin));
    let lower = err.to_lowercase();
    assert!(
        err.contains(&format!("pid {pid}")),
        "error does not name pid {pid}: {err}"
    );
    assert!(
        lower.contains("exited") || lower.contains("killed"),
        "error does not say that pid {pid} exited or was killed: {err}"
    );
    let st = target.wait_exit(REAP_TIMEOUT);
    assert_eq!(st.signal(), Some(libc::SIGKILL), "target: {st}");
    let left = dir_entries(&dir.join("images"));
    assert!(
        left.is_empty(),
        "files left after the failed freeze: {left:?}"
    );
}

/// ckpt is SIGKILLed mid-freeze: the kernel detaches the target, which runs
/// on (not traced, not stopped) and later verifies its memory and exits 0;
/// the output directory stays empty (the output was an unnamed O_TMPFILE).
#[test]
fn ckpt_killed_mid_freeze() {
    let dir = TestDir::new("ckpt_killed_mid_freeze");
    let mut target = spawn_big(&dir);
    let pid = target.pid();
    let mut ckpt = spawn_freeze(pid, &dir.image("big"), &[]);
    wait_stopped_by(pid, &mut ckpt);
    thread::sleep(MID_FREEZE);
    assert_still_freezing(&mut ckpt, pid);
    send_signal(ckpt.pid(), libc::SIGKILL);
    let st = ckpt.wait_exit(REAP_TIMEOUT);
    assert_eq!(st.signal(), Some(libc::SIGKILL), "ckpt: {st}");

    wait_released(pid);
    target.assert_running();
    let left = dir_entries(&dir.join("images"));
    assert!(left.is_empty(), "files left by the killed ckpt: {left:?}");
    finish_big(&dir, &mut target);
}

// ---------------------------------------------------------------------------
// 3: a signal during the freeze

/// SIGUSR1 sent ~200 ms into a --leave-running --no-cow freeze (while the pages
/// are streamed, after ckpt has read the target's state and queued signals): the
/// target handles it after the freeze (its count goes 0 -> 1) and runs on
/// normally. The image holds the state captured before the signal came
/// (count 0, nothing queued) and resumes correctly.
#[test]
fn signal_during_freeze_leave_running() {
    let dir = TestDir::new("signal_during_freeze");
    let gate = dir.gate();
    let mut target = spawn_fixture("sigcount", false, &[BIG_MIB, gate.to_str().unwrap()]);
    target.wait_ready();
    let pid = target.pid();
    let img = dir.image("sigcount");
    let mut ckpt = spawn_freeze(pid, &img, &["--leave-running", "--no-cow"]);
    wait_stopped_by(pid, &mut ckpt);
    thread::sleep(MID_FREEZE);
    assert_still_freezing(&mut ckpt, pid);
    send_signal(pid, libc::SIGUSR1);
    // Still stopped by ckpt after the kill: the signal came during the freeze.
    assert_still_freezing(&mut ckpt, pid);
    assert_eq!(proc_state(pid), Some('t'), "target left its stop");

    let fin = ckpt.wait_output(FREEZE_TIMEOUT);
    assert!(
        fin.status.success(),
        "ckpt freeze --leave-running failed\n{fin}"
    );
    assert_only_warnings(&fin.stderr, "ckpt freeze --leave-running");
    assert_image(&img);

    target.wait_line_starting("count 1", RESUME_TIMEOUT);
    target.assert_running();
    open_gate(&gate);
    let orig = target.wait_output(RESUME_TIMEOUT);
    orig.assert_success();
    assert_eq!(
        orig.stdout,
        ["ready", "count 1", "final 1"],
        "original\n{orig}"
    );

    let res = resume_launch(&img).spawn().wait_output(BIG_TIMEOUT);
    res.assert_success();
    assert_eq!(res.stdout, ["final 0"], "resumed\n{res}");
}

/// The child processes of `pid`'s main thread (proc(5) .../children).
fn children_of(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// A --leave-running --no-precopy freeze reads the pages from a copy-on-write child: once
/// that child exists the target is no longer traced and runs while ckpt is still
/// writing; it handles a SIGUSR1 then (count 0 -> 1, a write to its memory after
/// the copy was taken). The image holds count 0, the child is gone and reaped
/// once ckpt ends (the target has no child left), and both go on correctly.
#[test]
fn target_runs_while_its_copy_is_written() {
    let dir = TestDir::new("cow_runs");
    let gate = dir.gate();
    let mut target = spawn_fixture("sigcount", false, &[BIG_MIB, gate.to_str().unwrap()]);
    target.wait_ready();
    let pid = target.pid();
    let img = dir.image("sigcount");
    let mut ckpt = spawn_freeze(pid, &img, &["--leave-running", "--no-precopy"]);
    let deadline = Instant::now() + READY_TIMEOUT;
    let copy = loop {
        let kids = children_of(pid);
        if kids.len() == 1 && tracer_pid(pid) == Some(0) {
            break kids[0];
        }
        if let Some(s) = ckpt.try_status() {
            panic!("ckpt ended ({s}) before the target ran beside its copy\n{}", ckpt.describe());
        }
        assert!(Instant::now() < deadline, "no copy-on-write child of pid {pid} appeared\n{}", ckpt.describe());
        thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(tracer_pid(copy), Some(ckpt.pid()), "the copy is not traced by ckpt");
    send_signal(pid, libc::SIGUSR1);
    target.wait_line_starting("count 1", RESUME_TIMEOUT);
    assert!(ckpt.try_status().is_none(), "the target handled the signal only after the freeze\n{}", ckpt.describe());

    let fin = ckpt.wait_output(FREEZE_TIMEOUT);
    assert!(fin.status.success(), "ckpt freeze --leave-running failed\n{fin}");
    assert_only_warnings(&fin.stderr, "ckpt freeze --leave-running");
    assert!(children_of(pid).is_empty(), "the copy-on-write child of pid {pid} was left behind");
    assert_image(&img);
    open_gate(&gate);
    let orig = target.wait_output(RESUME_TIMEOUT);
    orig.assert_success();
    assert_eq!(orig.stdout, ["ready", "count 1", "final 1"], "original\n{orig}");

    let res = resume_launch(&img).spawn().wait_output(BIG_TIMEOUT);
    res.assert_success();
    assert_eq!(res.stdout, ["final 0"], "resumed\n{res}");
}

// ---------------------------------------------------------------------------
// 4: a target that forks and execs

/// A loop of fork + exec /bin/true + waitpid: the freeze either succeeds
/// (stderr holds at most warnings, e.g. about a child) and the resume goes on
/// with the loop (0..N-1 once each over both processes, at most one "lost
/// child" as the resumed process's first line), or fails cleanly and the
/// target finishes by itself.
#[test]
fn forking_target() {
    const N: u64 = 1000;
    let dir = TestDir::new("forking_target");
    let mut target = spawn_fixture("forker", false, &[&N.to_string()]);
    target.wait_ready();
    thread::sleep(SETTLE);
    let pid = target.pid();
    let img = dir.image("forker");
    let o = freeze(pid, &img, &[]);
    if o.status.success() {
        assert_only_warnings(&lossy(&o.stderr), "ckpt freeze of the forker");
        assert_image(&img);
        let before = target.expect_killed_by_ckpt();
        assert!(
            !before.iter().any(|l| l == "lost child"),
            "original lost a child: {before:?}"
        );
        let res = resume(&img);
        res.assert_success();
        let lost = res.stdout.iter().filter(|l| *l == "lost child").count();
        assert!(
            lost == 0 || (lost == 1 && res.stdout[0] == "lost child"),
            "'lost child' only as the resumed process's first line\n{res}"
        );
        let all: Vec<String> = before
            .into_iter()
            .chain(res.stdout.iter().filter(|l| *l != "lost child").cloned())
            .collect();
        assert_counts(&all, N, "forker: original + resumed");
        eprintln!(
            "forking_target: frozen and resumed (lost child: {lost}); ckpt stderr: {}",
            lossy(&o.stderr).trim()
        );
    } else {
        let err = assert_freeze_error(&o);
        assert!(
            dir_entries(&dir.join("images")).is_empty(),
            "files left after a failed freeze"
        );
        target.assert_running();
        let fin = target.wait_output(RESUME_TIMEOUT);
        fin.assert_success();
        assert_counts(&fin.stdout, N, "forker after a failed freeze");
        eprintln!("forking_target: freeze refused: {err}");
    }
}

// ---------------------------------------------------------------------------
// 5-6: the output cannot be written

/// A 4 MiB tmpfs cannot hold a 32 MiB process: ckpt fails naming the output
/// and ENOSPC, nothing remains on the tmpfs, the target runs on and ends
/// normally.
#[test]
fn disk_full() {
    if !is_root() {
        eprintln!("disk_full: skipped (needs root to mount a tmpfs)");
        return;
    }
    let dir = TestDir::new("disk_full");
    let full = dir.join("full");
    fs::create_dir(&full).unwrap();
    let _mnt = match TmpfsMount::new(&full, "4m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("disk_full: skipped (mount -t tmpfs failed: {e})");
            return;
        }
    };
    let gate = dir.gate();
    let mut target = spawn_fixture("big", false, &["32", gate.to_str().unwrap()]);
    target.wait_ready();
    let img = full.join("big.resume");
    let o = freeze(target.pid(), &img, &[]);
    let err = assert_freeze_error(&o);
    assert!(
        err.contains(img.to_str().unwrap()),
        "error does not name the output {}: {err}",
        img.display()
    );
    assert!(
        err.contains("No space left on device"),
        "error does not say 'No space left on device': {err}"
    );
    let left = dir_entries(&full);
    assert!(left.is_empty(), "files left on the full tmpfs: {left:?}");
    finish_big(&dir, &mut target);
}

/// The output directory is removed ~200 ms into the freeze (it is empty: the
/// output has no name yet): ckpt fails naming the path, the directory is not
/// recreated, and the target runs on and ends normally.
#[test]
fn output_dir_removed_mid_freeze() {
    let dir = TestDir::new("output_dir_removed");
    let mut target = spawn_big(&dir);
    let pid = target.pid();
    let images = dir.join("images");
    let img = dir.image("big");
    let mut ckpt = spawn_freeze(pid, &img, &[]);
    wait_stopped_by(pid, &mut ckpt);
    thread::sleep(MID_FREEZE);
    assert_still_freezing(&mut ckpt, pid);
    fs::remove_dir_all(&images).expect("remove the output directory");

    let fin = ckpt.wait_output(FREEZE_TIMEOUT);
    let err = assert_freeze_error(&as_output(&fin));
    assert!(
        err.contains(images.to_str().unwrap()),
        "error does not name {}: {err}",
        images.display()
    );
    assert!(!images.exists(), "{} reappeared", images.display());
    target.assert_running();
    finish_big(&dir, &mut target);
}

// ---------------------------------------------------------------------------
// 7: two freezes at once

/// Two `ckpt freeze` of one pid, started 50 ms apart: exactly one succeeds
/// and kills the target; the other fails with one clear line naming the pid
/// and leaves no file; the image resumes and verifies the whole memory.
#[test]
fn concurrent_freezes() {
    let dir = TestDir::new("concurrent_freezes");
    let mut target = spawn_big(&dir);
    let pid = target.pid();
    let (img_a, img_b) = (dir.image("a"), dir.image("b"));
    let mut a = spawn_freeze(pid, &img_a, &[]);
    thread::sleep(Duration::from_millis(50));
    let mut b = spawn_freeze(pid, &img_b, &[]);
    let fa = a.wait_output(BIG_TIMEOUT);
    let fb = b.wait_output(BIG_TIMEOUT);
    let (winner, loser) = match (fa.status.success(), fb.status.success()) {
        (true, false) => ((&img_a, &fa), &fb),
        (false, true) => ((&img_b, &fb), &fa),
        _ => panic!("exactly one freeze must succeed\n{fa}\n{fb}"),
    };
    assert_only_warnings(&winner.1.stderr, "the successful freeze");
    let err = assert_freeze_error(&as_output(loser));
    let lower = err.to_lowercase();
    assert!(
        lower.contains("already being traced") || lower.contains("not permitted to trace"),
        "the losing freeze does not say the pid is already traced: {err}"
    );
    assert!(
        err.contains(&format!("pid {pid}")),
        "the losing freeze does not name pid {pid}: {err}"
    );
    target.expect_killed_by_ckpt();
    assert_image(winner.0);
    assert_eq!(
        dir_entries(&dir.join("images")),
        [winner.0.file_name().unwrap().to_owned()].into(),
        "files in the output directory"
    );

    open_gate(&dir.gate());
    let res = resume_launch(winner.0).spawn().wait_output(BIG_TIMEOUT);
    res.assert_success();
    assert_eq!(res.stdout, ["ok"], "resumed\n{res}");
}

// ---------------------------------------------------------------------------
// 8: broken pipe

/// `ckpt freeze PID -o - | head -c 1000`: head gets the first 1000 bytes of
/// an ELF, ckpt fails on the broken pipe with one error line, and the target
/// (default mode: killed only after a complete write) keeps running.
#[test]
fn broken_pipe() {
    let mut target = spawn_fixture("counter", false, &["100000"]);
    target.wait_ready();
    let pid = target.pid();
    let mut ckpt = ChildGuard(
        Command::new(ckpt_bin())
            .args(["freeze", &pid.to_string(), "-o", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ckpt"),
    );
    let ckpt_err = Lines::collect(ckpt.0.stderr.take().unwrap());
    let pipe = ckpt.0.stdout.take().unwrap();
    let mut head = ChildGuard(
        Command::new("head")
            .args(["-c", "1000"])
            .stdin(Stdio::from(pipe))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run head"),
    );
    let mut head_out = head.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut b = Vec::new();
        let _ = head_out.read_to_end(&mut b);
        let _ = tx.send(b);
    });
    let hs = head.wait("head -c 1000", FREEZE_TIMEOUT);
    assert!(hs.success(), "head: {hs}");
    let got = rx
        .recv_timeout(REAP_TIMEOUT)
        .expect("head's output did not end");
    assert_eq!(got.len(), 1000, "bytes through head");
    assert_eq!(
        &got[..4],
        b"\x7fELF",
        "the stream does not start with an ELF header"
    );

    let cs = ckpt.wait("ckpt freeze -o -", FREEZE_TIMEOUT);
    let stderr = ckpt_err
        .wait_eof(REAP_TIMEOUT)
        .unwrap_or_else(|l| l)
        .join("\n");
    let o = Output {
        status: cs,
        stdout: Vec::new(),
        stderr: stderr.into_bytes(),
    };
    let err = assert_freeze_error(&o);
    assert!(
        err.to_lowercase().contains("broken pipe"),
        "error does not say 'broken pipe': {err}"
    );
    assert_keeps_printing(&mut target);
}

// ---------------------------------------------------------------------------
// 9-11: users and privileges

/// As user nobody throughout: nobody runs a counter, freezes it (the original
/// is killed), and resumes it; the output continues 0..N-1 exactly; the image
/// is mode 0700 and owned by nobody.
#[test]
fn unprivileged_flow() {
    if !can_switch_to_nobody("unprivileged_flow") {
        return;
    }
    let Some(nd) = NobodyDir::new("unprivileged") else {
        eprintln!("unprivileged_flow: skipped (no directory nobody can reach and exec in)");
        return;
    };
    const N: u64 = 150;
    let counter = nd.install(&fixture("counter", false), "counter");
    let ckpt = nd.install(ckpt_bin(), "ckpt");
    let mut orig = nobody_launch(&counter)
        .arg(N.to_string())
        .label("counter as nobody")
        .spawn();
    orig.wait_ready();
    let pid = orig.pid();
    let st = fs::metadata(format!("/proc/{pid}")).unwrap();
    assert_eq!(st.uid(), NOBODY, "the counter does not run as nobody");
    thread::sleep(SETTLE);

    let img = nd.images().join("counter.resume");
    let mut cmd = nobody_command(&ckpt);
    cmd.arg("freeze").arg(pid.to_string()).arg("-o").arg(&img);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
    assert!(
        o.status.success(),
        "ckpt freeze as nobody failed\n{}",
        describe_output(&o)
    );
    assert_only_warnings(&lossy(&o.stderr), "ckpt freeze as nobody");
    assert_image(&img);
    let md = fs::metadata(&img).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o700, "mode of the image");
    assert_eq!((md.uid(), md.gid()), (NOBODY, NOBODY), "owner of the image");
    let before = orig.expect_killed_by_ckpt();

    let res = nobody_launch(&img)
        .label("resumed as nobody")
        .spawn()
        .wait_output(RESUME_TIMEOUT);
    res.assert_success();
    let all: Vec<String> = before
        .into_iter()
        .chain(res.stdout.iter().cloned())
        .collect();
    assert_counts(&all, N, "counter as nobody: original + resumed");
}

/// As nobody, freezing a root process fails with one line saying it is not
/// permitted and naming the pid; no file; the target sleeps on undisturbed.
#[test]
fn foreign_process_not_permitted() {
    if !can_switch_to_nobody("foreign_process_not_permitted") {
        return;
    }
    let Some(nd) = NobodyDir::new("foreign") else {
        eprintln!(
            "foreign_process_not_permitted: skipped (no directory nobody can reach and exec in)"
        );
        return;
    };
    let ckpt = nd.install(ckpt_bin(), "ckpt");
    let mut target = spawn_fixture("sleeper", false, &["2"]);
    target.wait_ready();
    let pid = target.pid();
    let img = nd.images().join("sleeper.resume");
    let mut cmd = nobody_command(&ckpt);
    cmd.arg("freeze").arg(pid.to_string()).arg("-o").arg(&img);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
    let err = assert_freeze_error(&o);
    assert!(
        err.to_lowercase().contains("not permitted"),
        "error does not say 'not permitted': {err}"
    );
    assert!(
        err.contains(&format!("pid {pid}")),
        "error does not name pid {pid}: {err}"
    );
    assert!(
        dir_entries(&nd.images()).is_empty(),
        "files left after the refused freeze"
    );
    target.assert_running();
    let fin = target.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.stdout, ["ready", "woke eintr=0"], "{fin}");
}

/// A setuid-nobody executable run by root (ruid 0, euid nobody): refused
/// without --force with a message saying setuid and suggesting --force
/// (target untouched); with --force the freeze succeeds and resumes.
#[test]
fn setuid_target_needs_force() {
    if !is_root() {
        eprintln!("setuid_target_needs_force: skipped (needs root to make a setuid file)");
        return;
    }
    let dir = TestDir::new("setuid_target");
    // A directory on a mount that honours setuid bits.
    let tmp_base;
    let base: &Path = if statvfs_flags(dir.path()).is_some_and(|f| f & libc::ST_NOSUID == 0) {
        dir.path()
    } else {
        let t = std::env::temp_dir();
        if statvfs_flags(&t).is_none_or(|f| f & (libc::ST_NOSUID | libc::ST_NOEXEC) != 0) {
            eprintln!("setuid_target_needs_force: skipped (target dir and temp dir are nosuid)");
            return;
        }
        tmp_base = NobodyDir::new("setuid").expect("a directory under the temp dir");
        &tmp_base.path
    };
    let exe = base.join("suid-sleeper");
    fs::copy(fixture("sleeper", false), &exe).unwrap();
    // chown first: it clears the setuid bit.
    std::os::unix::fs::chown(&exe, Some(NOBODY), Some(0)).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o4755)).unwrap();

    let mut target = Launch::new(&exe).arg("3").spawn();
    target.wait_ready();
    let pid = target.pid();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(
        uids,
        ["0", "65534", "65534", "65534"],
        "setuid not in effect"
    );

    let img = dir.image("suid.resume");
    let o = freeze(pid, &img, &[]);
    let err = assert_freeze_error(&o);
    assert!(err.contains("setuid"), "error does not say setuid: {err}");
    assert!(
        err.contains("--force"),
        "error does not suggest --force: {err}"
    );
    assert!(
        err.contains(&format!("pid {pid}")),
        "error does not name pid {pid}: {err}"
    );
    assert!(
        dir_entries(&dir.join("images")).is_empty(),
        "files left after the refused freeze"
    );
    target.assert_running();

    let o = freeze_ok(pid, &img, &["--force"]);
    assert_only_warnings(&lossy(&o.stderr), "ckpt freeze --force");
    target.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    res.line_starting("woke");
}

// ---------------------------------------------------------------------------
// 12: modes of the output

/// While a big freeze runs, the output directory never shows a file that
/// group or others could read (with O_TMPFILE it shows none until the
/// commit names the output); afterwards the output is mode 0700 and alone.
#[test]
fn output_never_readable_by_others() {
    let dir = TestDir::new("output_modes");
    let mut target = spawn_big(&dir);
    let pid = target.pid();
    let images = dir.join("images");
    let img = dir.image("big.resume");
    let name: OsString = img.file_name().unwrap().to_owned();
    let mut ckpt = spawn_freeze(pid, &img, &[]);
    let mut seen: BTreeMap<OsString, u32> = BTreeMap::new();
    let mut samples = 0u32;
    let deadline = Instant::now() + BIG_TIMEOUT;
    while ckpt.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "the freeze did not end within {BIG_TIMEOUT:?}"
        );
        for e in fs::read_dir(&images).unwrap().filter_map(|e| e.ok()) {
            if let Ok(md) = e.metadata() {
                let mode = md.permissions().mode() & 0o7777;
                let m = seen.entry(e.file_name()).or_insert(mode);
                *m |= mode;
            }
        }
        samples += 1;
        thread::sleep(Duration::from_millis(5));
    }
    let fin = ckpt.wait_output(FREEZE_TIMEOUT);
    assert!(fin.status.success(), "ckpt freeze failed\n{fin}");
    assert_only_warnings(&fin.stderr, "ckpt freeze");
    assert!(
        samples >= 20,
        "only {samples} looks at the directory during the freeze"
    );
    for (n, mode) in &seen {
        assert!(
            mode & 0o077 == 0,
            "{n:?} had mode {mode:o} during the freeze (readable by group/others)"
        );
        assert_eq!(
            n, &name,
            "a file other than the output appeared during the freeze"
        );
    }
    target.expect_killed_by_ckpt();
    assert_image(&img);
    assert_eq!(
        fs::metadata(&img).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert_eq!(
        dir_entries(&images),
        [name].into(),
        "files in the output directory"
    );
}
