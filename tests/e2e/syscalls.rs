//! System calls interrupted by the freeze, and the vDSO after the resume.

use std::io::Write;
use std::thread;
use std::time::Duration;

use crate::util::*;

const SYS_READ: i64 = libc::SYS_read;
const SYS_NANOSLEEP: i64 = libc::SYS_nanosleep;
const SYS_CLOCK_NANOSLEEP: i64 = libc::SYS_clock_nanosleep;
const SYS_WAIT4: i64 = libc::SYS_wait4;

/// clock_gettime/gettimeofday/time through the vDSO and getpid keep working
/// and time does not go back.
fn clock(static_: bool) {
    let dir = TestDir::new("clock");
    let mut orig = spawn_fixture("clock", static_, &["1500"]);
    orig.wait_ready();
    thread::sleep(SETTLE);
    let img = dir.image("clock");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    res.line_starting("ok pid_changes=");
}

/// Frozen while blocked in read(0) on a pipe (-ERESTARTSYS): the read is
/// re-executed on the resumer's stdin and gets the line written later.
fn blockread(static_: bool) {
    let dir = TestDir::new("blockread");
    let mut orig = Launch::fixture("blockread", static_).stdin_piped().spawn();
    orig.wait_ready();
    wait_in_syscall(&orig, &[SYS_READ], READY_TIMEOUT);
    let img = dir.image("blockread");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();

    let mut resumed = resume_launch(&img).stdin_piped().spawn();
    thread::sleep(Duration::from_millis(300));
    resumed
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello\n")
        .expect("write to the resumed stdin");
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.line_starting("got: "), "got: hello", "{fin}");
}

/// Frozen mid-nanosleep(5 s) (-ERESTART_RESTARTBLOCK, so EINTR after the
/// resume): the fixture sleeps the remaining time and wakes.
fn sleeper(static_: bool) {
    let dir = TestDir::new("sleeper");
    let mut orig = spawn_fixture("sleeper", static_, &["5"]);
    orig.wait_ready();
    wait_in_syscall(&orig, &[SYS_NANOSLEEP, SYS_CLOCK_NANOSLEEP], READY_TIMEOUT);
    thread::sleep(Duration::from_millis(300));
    let img = dir.image("sleeper");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let fin = resume_launch(&img)
        .spawn()
        .wait_output(Duration::from_secs(15));
    fin.assert_success();
    fin.line_starting("woke");
}

/// Frozen in wait4(child): re-executed after the resume, where the process
/// has no children, it fails with ECHILD (not a kernel restart code).
fn waiter(static_: bool) {
    let dir = TestDir::new("waiter");
    let mut orig = spawn_fixture("waiter", static_, &["30"]);
    let line = orig.wait_line_starting("child ", READY_TIMEOUT);
    let child: i32 = line["child ".len()..].trim().parse().expect("child pid");
    orig.track_pid(child);
    orig.wait_ready();
    wait_in_syscall(&orig, &[SYS_WAIT4], READY_TIMEOUT);
    let img = dir.image("waiter");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    assert!(res.stdout.iter().any(|l| l == "wait4: ECHILD"), "{res}");
}

both_variants!(clock, blockread, sleeper, waiter);
