//! The counter fixture: output continuity through pipes and regular files,
//! the freeze modes, repeated resumes and a deleted executable.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Lines the counter prints (about 3 s at 10 ms a line).
const N: u64 = 300;
const N_ARG: &str = "300";

/// Starts the counter for N lines; returns the image path to use and the guard.
fn start_counter(dir: &TestDir, launch: Launch) -> (std::path::PathBuf, Proc) {
    let orig = launch.args([N_ARG]).spawn();
    (dir.image("counter"), orig)
}

/// stdout is a pipe: the original's lines followed by the resumed process's
/// lines are exactly 0..N; a successful resume prints nothing on stderr.
fn counter_pipe(static_: bool) {
    let dir = TestDir::new("counter_pipe");
    let (img, mut orig) = start_counter(&dir, Launch::fixture("counter", static_));
    orig.wait_ready();
    thread::sleep(SETTLE);
    freeze_ok(orig.pid(), &img, &[]);
    let before = orig.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    assert!(
        res.stderr.is_empty(),
        "the resumed process printed on stderr\n{res}"
    );
    assert_counts(
        &[before, res.stdout].concat(),
        N,
        "original + resumed output",
    );
}

/// stdout is a regular file opened like `> log`: reopened with its offset, so
/// the file ends up with 0..N once each; nothing goes to the resumer's stdout.
fn counter_file(static_: bool) {
    let dir = TestDir::new("counter_file");
    let log = dir.join("log");
    let (img, mut orig) = start_counter(
        &dir,
        Launch::fixture("counter", static_).stdout(StdoutTo::File(log.clone())),
    );
    wait_for_file_line(&log, "ready", READY_TIMEOUT);
    thread::sleep(SETTLE);
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    assert!(
        res.stdout.is_empty(),
        "fd 1 was a regular file, yet the resumer's stdout got output\n{res}"
    );
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_counts(&lines, N, "log file");
}

/// stdout opened like `>> log` (O_APPEND) on a file with a header line.
fn counter_file_append(static_: bool) {
    let dir = TestDir::new("counter_file_append");
    let log = dir.join("log");
    fs::write(&log, "header\n").unwrap();
    let (img, mut orig) = start_counter(
        &dir,
        Launch::fixture("counter", static_).stdout(StdoutTo::Append(log.clone())),
    );
    wait_for_file_line(&log, "ready", READY_TIMEOUT);
    thread::sleep(SETTLE);
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    resume(&img).assert_success();
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("header"),
        "log:\n{text}"
    );
    assert_counts(&lines[1..], N, "appended log file");
}

/// One image resumed twice, one run after the other: both continue from the
/// same point.
fn two_resumes(static_: bool) {
    let dir = TestDir::new("two_resumes");
    let (img, mut orig) = start_counter(&dir, Launch::fixture("counter", static_));
    orig.wait_ready();
    thread::sleep(SETTLE);
    freeze_ok(orig.pid(), &img, &[]);
    let before = orig.expect_killed_by_ckpt();
    for run in 1..=2 {
        let res = resume(&img);
        res.assert_success();
        assert_counts(
            &[before.clone(), res.stdout].concat(),
            N,
            &format!("resume #{run}"),
        );
    }
}

/// The fixture's executable is a copy deleted after the freeze: an image made with
/// --embed-files must not need it.
fn deleted_executable(static_: bool) {
    let dir = TestDir::new("deleted_executable");
    let copy = dir.join("counter-copy");
    fs::copy(fixture("counter", static_), &copy).unwrap();
    let (img, mut orig) = start_counter(&dir, Launch::new(&copy));
    orig.wait_ready();
    thread::sleep(SETTLE);
    // The executable's pages must travel in the file (by default they are taken
    // from the executable at resume: formats::referenced_executable_checked_at_resume).
    freeze_ok(orig.pid(), &img, &["--embed-files"]);
    let before = orig.expect_killed_by_ckpt();
    fs::remove_file(&copy).unwrap();
    let res = resume(&img);
    res.assert_success();
    assert_counts(
        &[before, res.stdout].concat(),
        N,
        "output with the executable deleted",
    );
}

/// --leave-running (with -v): the original is not disturbed (same maps, not
/// stopped or traced, prints 0..N and exits 0); the image resumes from the
/// freeze point.
fn leave_running(static_: bool) {
    let dir = TestDir::new("leave_running");
    let (img, mut orig) = start_counter(&dir, Launch::fixture("counter", static_));
    orig.wait_ready();
    thread::sleep(SETTLE);
    let maps = read_maps(orig.pid());
    freeze_ok(orig.pid(), &img, &["--leave-running", "-v"]);
    let maps_after = read_maps(orig.pid());
    assert!(
        maps == maps_after,
        "the freeze changed the original's maps:\n{}",
        maps_diff(&maps, &maps_after)
    );
    orig.assert_running();
    let fin = orig.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_counts(&fin.stdout, N, "output of the original left running");

    let res = resume(&img);
    res.assert_success();
    let first: u64 = res
        .stdout
        .iter()
        .find(|l| *l != "ready")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("resumed counter printed no number\n{res}"));
    assert!(
        first >= 5,
        "the resumed counter restarted from {first}, before ready"
    );
    let before: Vec<String> = (0..first).map(|i| i.to_string()).collect();
    assert_counts(
        &[before, res.stdout].concat(),
        N,
        "resumed output after --leave-running",
    );
}

/// --leave-stopped: the original stays alive and stopped (prints nothing),
/// runs to its end after SIGCONT; the image resumes too.
fn leave_stopped(static_: bool) {
    let dir = TestDir::new("leave_stopped");
    let (img, mut orig) = start_counter(&dir, Launch::fixture("counter", static_));
    orig.wait_ready();
    thread::sleep(SETTLE);
    freeze_ok(orig.pid(), &img, &["--leave-stopped"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(s) = orig.try_status() {
            panic!(
                "the original ended ({s}) after --leave-stopped\n{}",
                orig.describe()
            );
        }
        if matches!(proc_state(orig.pid()), Some('T' | 't')) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the original is not stopped after --leave-stopped\n{}",
            orig.describe()
        );
        thread::sleep(POLL);
    }
    let n = orig.out().snapshot().len();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        orig.out().snapshot().len(),
        n,
        "the original kept printing after --leave-stopped"
    );
    assert!(
        orig.try_status().is_none(),
        "the original ended after --leave-stopped"
    );
    // SAFETY: kill has no memory-safety preconditions; the pid is our live child.
    unsafe { libc::kill(orig.pid(), libc::SIGCONT) };
    let fin = orig.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_counts(&fin.stdout, N, "original continued with SIGCONT");
    resume(&img).assert_success();
}

/// CKPT_TRACE=1 makes the resume print its steps on stderr; it still works.
fn trace_steps(static_: bool) {
    let dir = TestDir::new("trace_steps");
    let (img, mut orig) = start_counter(&dir, Launch::fixture("counter", static_));
    orig.wait_ready();
    thread::sleep(SETTLE);
    freeze_ok(orig.pid(), &img, &[]);
    let before = orig.expect_killed_by_ckpt();
    let res = resume_launch(&img)
        .env("CKPT_TRACE", "1")
        .spawn()
        .wait_output(RESUME_TIMEOUT);
    res.assert_success();
    assert!(
        !res.stderr.trim().is_empty(),
        "CKPT_TRACE=1 printed no steps\n{res}"
    );
    assert_counts(
        &[before, res.stdout].concat(),
        N,
        "output with CKPT_TRACE=1",
    );
}

both_variants!(
    counter_pipe,
    counter_file,
    counter_file_append,
    two_resumes,
    deleted_executable,
    leave_running,
    leave_stopped,
    trace_steps,
);
