//! Lazy resume (CKPT_LAZY=1): the fixture reads, writes, forks, MADV_DONTNEEDs,
//! mremaps and mprotects memory that has not arrived yet, passes it to read(),
//! write(), send()/recv() and futex() from several threads at once; its results
//! must equal an eager resume's, and once everything is in, the helper must be gone
//! with nothing of it left in the process.

use std::fs;
use std::time::{Duration, Instant};

use crate::util::*;

/// Whether the helper serving `pid` still runs (it is named ckpt-lazy-PID).
fn helper_alive(pid: i32) -> bool {
    let want = format!("ckpt-lazy-{pid}");
    fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()).any(|e| {
        fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == want)
    })
}

/// Freeze the fixture (MIB MiB, THREADS threads), resume it with CKPT_LAZY=`lazy`,
/// and return its output and stderr.
fn run(threads: &str, lazy: &str) -> (Vec<String>, String) {
    let dir = TestDir::new("lazy");
    let (g1, g2) = (dir.gate(), dir.join("gate2"));
    let mut orig = spawn_fixture("lazy", false, &["256", threads, g1.to_str().unwrap(), g2.to_str().unwrap()]);
    orig.wait_ready();
    let pid = orig.pid();
    let img = dir.image("lazy");
    freeze_ok(pid, &img, &[]);
    orig.expect_killed_by_ckpt();
    open_gate(&g1);
    let mut resumed = resume_launch(&img).env("CKPT_LAZY", lazy).spawn();
    resumed.wait_line_starting("checked", RESUME_TIMEOUT);
    // Population ends (bounded), then nothing of the helper is left in the process.
    let t0 = Instant::now();
    while helper_alive(pid) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the lazy helper of {pid} never ended");
        std::thread::sleep(POLL);
    }
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    // The fixture's threads were joined before "checked": the helper left no thread.
    assert_eq!(tasks, 1, "threads of the resumed process");
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().filter_map(|e| e.ok()) {
        let target = fs::read_link(fd.path()).unwrap_or_default();
        let t = target.to_string_lossy();
        assert!(!t.contains("userfaultfd") && !t.contains("images/lazy"), "fd {:?} -> {t} left in the process", fd.file_name());
    }
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(!maps.contains("images/lazy") && !maps.contains("userfaultfd"), "a mapping of the helper's is left:\n{maps}");
    open_gate(&g2);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    (fin.stdout.clone(), fin.stderr.clone())
}

fn lazy_equals_eager(threads: &str) {
    let (lazy, err) = run(threads, "1");
    let (eager, _) = run(threads, "0");
    assert_eq!(lazy, eager, "lazy and eager resumes differ");
    if is_root() {
        assert!(!err.contains("lazy resume not available"), "root resumed eagerly: {err}");
    }
}

#[test]
fn single_threaded() {
    lazy_equals_eager("0");
}

#[test]
fn multi_threaded() {
    lazy_equals_eager("4");
}

/// An ordinary user has no full userfaultfd here: the resume says so in one line
/// and is eager, with the same results.
#[test]
fn as_nobody_falls_back_to_eager() {
    let Some(fin) = roundtrip_as_nobody_env("lazy", false, &[("CKPT_LAZY", "1")], |d| {
        ["64", "0", d.join("gate").to_str().unwrap(), d.join("gate").to_str().unwrap()].map(String::from).to_vec()
    }) else {
        return;
    };
    fin.line_starting("ok");
    assert!(fin.stderr.contains("lazy resume not available"), "no notice: {}", fin.stderr);
}
