//! `--leave-running` of processes with much anonymous memory: copied while they
//! run, with the pages written meanwhile copied again at the stop (precopy.rs).
//! The fixture writes without pause during the whole freeze (precopy_writer.c):
//! the resumed copy checks that every page agrees with its ledger, the original
//! that it was left running untouched.

use crate::util::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// Enough to be pre-copied (MIN_TOTAL is 32 MiB) and to take a while to copy.
const MIB: &str = "160";

/// `ckpt freeze PID -o IMG --leave-running` with the phase trace on (CKPT_TRACE=1),
/// run as `cmd` (ckpt, or ckpt as nobody).
fn freeze_traced(mut cmd: Command, pid: i32, img: &Path) -> Output {
    cmd.env("CKPT_TRACE", "1").arg("freeze").arg(pid.to_string()).arg("-o").arg(img).arg("--leave-running");
    run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze")
}

/// The freeze succeeded through the pre-copy (no fork, no fallback).
fn assert_precopied(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "ckpt freeze failed\n{}", describe_output(o));
    assert!(err.contains("taken from the pre-copy"), "the pages were not pre-copied\n{err}");
    assert!(!err.contains("pre-copy not used"), "{err}");
}

/// The original runs on without ckpt's userfaultfd: no VMA registered, the same fds.
fn assert_untouched(pid: i32, fds_before: &[String]) {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    assert!(
        !smaps.lines().any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "uw")),
        "a VMA of pid {pid} is still registered for write-protection"
    );
    assert_eq!(fd_list(pid), fds_before, "the fds of pid {pid} changed");
}

fn fd_list(pid: i32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Freeze the writer with THREADS threads, then check both processes.
fn writer(threads: &str) {
    let dir = TestDir::new(&format!("precopy_writer_{threads}"));
    let gate = dir.gate();
    let mut orig = spawn_fixture("precopy_writer", false, &[MIB, threads, gate.to_str().unwrap()]);
    orig.wait_ready();
    let fds = fd_list(orig.pid());
    let img = dir.image("precopy_writer");
    let o = freeze_traced(Command::new(ckpt_bin()), orig.pid(), &img);
    assert_precopied(&o);
    assert_image(&img);
    assert_untouched(orig.pid(), &fds);
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

#[test]
fn writer_single_thread() {
    writer("1");
}

#[test]
fn writer_four_threads() {
    writer("4");
}

/// The same as user nobody: the injected userfaultfd(2) needs
/// UFFD_USER_MODE_ONLY there (vm.unprivileged_userfaultfd=0).
#[test]
fn writer_as_nobody() {
    if !is_root() {
        eprintln!("writer_as_nobody: skipped (needs root to switch to nobody)");
        return;
    }
    let dir = OpenDir::new("precopy-nobody");
    let base = dir.path.clone();
    let fx = base.join("precopy_writer");
    fs::copy(fixture("precopy_writer", false), &fx).unwrap();
    let ck = base.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let gate = base.join("gate");
    let mut orig = dir.launch_as_nobody(&fx).args([MIB, "2", gate.to_str().unwrap()]).label("precopy_writer").spawn();
    orig.wait_ready();
    let fds = fd_list(orig.pid());
    let img = base.join("x.resume");
    let o = freeze_traced(dir.as_nobody(&ck), orig.pid(), &img);
    assert_precopied(&o);
    assert_untouched(orig.pid(), &fds);
    let mut res = dir.launch_as_nobody(&img).label("resumed as nobody").spawn();
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

/// A process with a userfaultfd of its own is not pre-copied (the trace says
/// why): the copy-on-write path takes over and gives its answer, here the
/// refusal of the userfaultfd's fd, naming it. The process keeps its own
/// registration and runs on to its checks.
#[test]
fn own_userfaultfd_falls_back() {
    let dir = TestDir::new("precopy_own_uffd");
    let gate = dir.gate();
    let mut orig = spawn_fixture("precopy_writer", false, &[MIB, "1", gate.to_str().unwrap(), "uffd"]);
    orig.wait_ready();
    let img = dir.image("precopy_writer");
    let o = freeze_traced(Command::new(ckpt_bin()), orig.pid(), &img);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pre-copy not used") && err.contains("has a userfaultfd of its own"), "{err}");
    assert!(!o.status.success() && err.contains("userfaultfd") && err.contains("fd "), "the fd is not named\n{err}");
    assert!(!img.exists(), "{} left behind by a failed freeze", img.display());
    let smaps = fs::read_to_string(format!("/proc/{}/smaps", orig.pid())).unwrap();
    assert!(smaps.lines().any(|l| l.starts_with("VmFlags:") && l.split_whitespace().any(|f| f == "um")), "the process lost its own registration");
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}
