//! A CPython interpreter frozen mid-loop computes the same result as an
//! uninterrupted run. python3 is required: the test fails if it is missing.

use std::thread;
use std::time::Duration;

use crate::util::*;

#[test]
fn dict_checksum_survives_freeze() {
    let dir = TestDir::new("python");
    let script = fixtures_src().join("dictwork.py");

    let reference = Launch::new(python3())
        .arg(&script)
        .label("python reference")
        .spawn()
        .wait_output(RESUME_TIMEOUT);
    reference.assert_success();
    let want = reference.line_starting("checksum ").to_owned();

    let mut orig = Launch::new(python3()).arg(&script).label("python").spawn();
    orig.wait_ready();
    thread::sleep(Duration::from_millis(300));
    let img = dir.image("python");
    freeze_ok(orig.pid(), &img, &[]);
    let before = orig.expect_killed_by_ckpt();
    assert!(
        !before.iter().any(|l| l.starts_with("checksum")),
        "python finished before the freeze: {before:?}"
    );
    let res = resume(&img);
    res.assert_success();
    assert_eq!(res.line_starting("checksum "), want, "{res}");
}

/// An asyncio program with timers (epoll, the loop's self-wakeup socketpair)
/// frozen mid-run finishes the same work as an uninterrupted run.
#[test]
fn asyncio_timer_loop_survives_freeze() {
    let dir = TestDir::new("asyncio");
    let script = fixtures_src().join("asyncio_timers.py");
    let reference = Launch::new(python3()).arg(&script).label("asyncio reference").spawn().wait_output(RESUME_TIMEOUT);
    reference.assert_success();
    let want = reference.line_starting("checksum ").to_owned();

    let mut orig = Launch::new(python3()).arg(&script).label("asyncio").spawn();
    orig.wait_ready();
    thread::sleep(Duration::from_millis(200));
    let img = dir.image("asyncio");
    freeze_ok(orig.pid(), &img, &[]);
    let before = orig.expect_killed_by_ckpt();
    assert!(!before.iter().any(|l| l.starts_with("checksum")), "asyncio finished before the freeze: {before:?}");
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
