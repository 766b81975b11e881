//! A CPython interpreter frozen mid-loop computes the same result as an
//! uninterrupted run. python3 is required: the test fails if it is missing.

use std::thread;
use std::time::Duration;

use crate::util::*;

/// Runs `script` once to the end for its `checksum` line, then again, frozen
/// with `freeze_args` after `settle` past its ready line (the original must be
/// killed before it printed its checksum). Returns the file and the line the
/// resumed run must print.
pub(crate) fn frozen_mid_run(dir: &TestDir, script: &str, name: &str, settle: Duration, freeze_args: &[&str]) -> (std::path::PathBuf, String) {
    let script = fixtures_src().join(script);
    let reference = Launch::new(python3()).arg(&script).label(&format!("{name} reference")).spawn().wait_output(RESUME_TIMEOUT);
    reference.assert_success();
    let want = reference.line_starting("checksum ").to_owned();
    let mut orig = Launch::new(python3()).arg(&script).label(name).spawn();
    orig.wait_ready();
    thread::sleep(settle);
    let img = dir.image(name);
    freeze_ok(orig.pid(), &img, freeze_args);
    let before = orig.expect_killed_by_ckpt();
    assert!(!before.iter().any(|l| l.starts_with("checksum")), "{name} finished before the freeze: {before:?}");
    (img, want)
}

#[test]
fn dict_checksum_survives_freeze() {
    let dir = TestDir::new("python");
    let (img, want) = frozen_mid_run(&dir, "dictwork.py", "python", Duration::from_millis(300), &[]);
    let res = resume(&img);
    res.assert_success();
    assert_eq!(res.line_starting("checksum "), want, "{res}");
}

/// An asyncio program with timers (epoll, the loop's self-wakeup socketpair)
/// frozen mid-run finishes the same work as an uninterrupted run.
#[test]
fn asyncio_timer_loop_survives_freeze() {
    let dir = TestDir::new("asyncio");
    let (img, want) = frozen_mid_run(&dir, "asyncio_timers.py", "asyncio", Duration::from_millis(200), &[]);
    let res = resume(&img);
    res.assert_success();
    assert_eq!(res.line_starting("checksum "), want, "{res}");
}

/// Bytes queued on a unix socket pair (both ends in the process) are read again
/// after the resume, each by the end they were queued for.
#[test]
fn socketpair_queued_bytes_survive() {
    let dir = TestDir::new("socketpair");
    let script = fixtures_src().join("socketpair_queue.py");
    let mut orig = Launch::new(python3()).arg(&script).arg("1.0").label("socketpair").spawn();
    orig.wait_ready();
    let img = dir.image("socketpair");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    assert_eq!(res.line_starting("b got "), "b got queued-for-b", "{res}");
    assert_eq!(res.line_starting("a got "), "a got queued-for-a", "{res}");
}

/// As an ordinary user the original PID comes back inside a new user and PID
/// namespace: the asyncio loop (which checks its PID) finishes its work.
#[test]
fn asyncio_as_nobody() {
    if !is_root() {
        eprintln!("asyncio_as_nobody: skipped (needs root to switch to nobody)");
        return;
    }
    let dir = OpenDir::new("asyncio-nobody");
    let base = dir.path.clone();
    // An interpreter nobody may run (the test's own may live under /root).
    let runs = |p: &std::path::Path| dir.as_nobody(p).arg("-c").arg("pass").output().map(|o| o.status.success()).unwrap_or(false);
    let Some(py) = [std::path::PathBuf::from("/usr/bin/python3"), python3().to_path_buf()].into_iter().find(|p| runs(p)) else {
        eprintln!("asyncio_as_nobody: skipped (no python3 that nobody can run)");
        return;
    };
    let python3 = || py.as_path();
    use std::os::unix::fs::PermissionsExt;
    let script = base.join("asyncio_timers.py");
    std::fs::copy(fixtures_src().join("asyncio_timers.py"), &script).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ck = base.join("ckpt");
    std::fs::copy(ckpt_bin(), &ck).unwrap();
    let reference = Launch::new(python3()).arg(&script).label("asyncio reference").spawn().wait_output(RESUME_TIMEOUT);
    let want = reference.line_starting("checksum ").to_owned();

    let mut orig = dir.launch_as_nobody(python3()).arg(&script).label("asyncio as nobody").spawn();
    orig.wait_ready();
    thread::sleep(Duration::from_millis(200));
    let img = base.join("asyncio.resume");
    let mut cmd = dir.as_nobody(&ck);
    cmd.arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(&img);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
    assert!(o.status.success(), "freeze as nobody failed\n{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    let res = dir.launch_as_nobody(&img).label("resumed as nobody").spawn().wait_output(RESUME_TIMEOUT);
    res.assert_success();
    assert_eq!(res.line_starting("checksum "), want, "{res}");
}
