//! Failed freezes: one `ckpt: error: ...` line, a non-zero exit, no file left
//! behind, and the target left running untouched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::util::*;


fn assert_no_image(dir: &TestDir) {
    let left = dir_entries(&dir.join("images"));
    assert!(
        left.is_empty(),
        "files left after a failed freeze: {left:?}"
    );
}

#[test]
fn no_such_pid() {
    let dir = TestDir::new("no_such_pid");
    let pid = unused_pid();
    let o = freeze(pid, &dir.image("x"), &[]);
    let line = assert_freeze_error(&o).to_lowercase();
    assert!(
        line.contains(&pid.to_string()),
        "error does not name pid {pid}: {line}"
    );
    assert!(
        line.contains("no such process"),
        "error does not say 'no such process': {line}"
    );
    assert_no_image(&dir);
}

#[test]
fn zombie_target() {
    let dir = TestDir::new("zombie");
    let gate = dir.gate();
    let mut parent = spawn_fixture("zombie", false, &[gate.to_str().unwrap()]);
    let line = parent.wait_line_starting("child ", READY_TIMEOUT);
    let zombie: i32 = line["child ".len()..].trim().parse().expect("child pid");
    parent.wait_ready();
    wait_state(zombie, |s| s == Some('Z'), READY_TIMEOUT);
    let o = freeze(zombie, &dir.image("x"), &[]);
    let err = assert_freeze_error(&o).to_lowercase();
    assert!(err.contains("zombie"), "error does not say zombie: {err}");
    assert_no_image(&dir);
    open_gate(&gate);
    parent.wait_output(RESUME_TIMEOUT).assert_success();
}

/// Three threads, frozen while both workers tick: every thread resumes, the workers
/// see the stop flag set after the gate and the main thread joins both.
fn threads_target(static_: bool) {
    let dir = TestDir::new("threads");
    let gate = dir.gate();
    let mut p = spawn_fixture("threads", static_, &[gate.to_str().unwrap()]);
    p.wait_ready();
    let img = dir.image("threads");
    let o = freeze_ok(p.pid(), &img, &[]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains("not supported"), "threads refused: {err}");
    p.expect_killed_by_ckpt();
    open_gate(&gate);
    let res = resume(&img);
    res.assert_success();
    res.line_starting("ok");
}

/// Half a pipe at fd 3 with --strict-fds: refused; the target keeps its fd.
fn extra_fd_refused(static_: bool) {
    let dir = TestDir::new("extra_fd_refused");
    let gate = dir.gate();
    let mut p = spawn_fixture("fds", static_, &[gate.to_str().unwrap()]);
    p.wait_ready();
    let o = freeze(p.pid(), &dir.image("x"), &["--strict-fds"]);
    let err = assert_freeze_error(&o).to_lowercase();
    assert!(
        err.contains("fd") && err.contains('3'),
        "error does not name fd 3: {err}"
    );
    assert_no_image(&dir);
    p.assert_running();
    open_gate(&gate);
    let fin = p.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.line_starting("fd3 "), "fd3 open");
}

/// By default the same target freezes and resumes with fd 3 still open, a pipe
/// read end as before (and --ignore-fds, the old name of the default, agrees).
fn extra_fd_disconnected(static_: bool) {
    for flags in [&[][..], &["--ignore-fds"]] {
        let dir = TestDir::new("extra_fd_disconnected");
        let gate = dir.gate();
        let mut p = spawn_fixture("fds", static_, &[gate.to_str().unwrap()]);
        p.wait_ready();
        let img = dir.image("fds");
        freeze_ok(p.pid(), &img, flags);
        p.expect_killed_by_ckpt();
        open_gate(&gate);
        let res = resume(&img);
        res.assert_success();
        assert_eq!(res.line_starting("fd3 "), "fd3 open");
        assert_eq!(res.line_starting("fds"), "fds 3:fifo:r");
    }
}

both_variants!(threads_target, extra_fd_refused, extra_fd_disconnected);

#[test]
fn missing_output_dir() {
    let dir = TestDir::new("missing_output_dir");
    let mut p = spawn_fixture("counter", false, &["100000"]);
    p.wait_ready();
    let before = dir_entries(dir.path());
    let missing = dir.join("no/such/dir");
    let o = freeze(p.pid(), &missing.join("img"), &[]);
    let err = assert_freeze_error(&o);
    assert!(
        err.contains(missing.to_str().unwrap()),
        "error does not name {}: {err}",
        missing.display()
    );
    assert_eq!(
        dir_entries(dir.path()),
        before,
        "files created by a failed freeze"
    );
    assert_keeps_printing(&mut p);
}

/// The output directory cannot be written: as a non-root user a 0555
/// directory; as root (which ignores modes) a read-only tmpfs mounted over it
/// in a private mount namespace that only the ckpt process sees. Skipped if
/// neither is possible.
#[test]
fn unwritable_output_dir() {
    let dir = TestDir::new("unwritable_output_dir");
    let ro = dir.join("ro");
    fs::create_dir(&ro).unwrap();
    let mut p = spawn_fixture("counter", false, &["100000"]);
    p.wait_ready();
    let img = ro.join("img");
    let root = is_root();
    let o = if root {
        let mut probe = Command::new("unshare");
        probe.args(["--mount", "--propagation", "private", "true"]);
        if !run_with_timeout(probe, Duration::from_secs(30)).is_ok_and(|o| o.status.success()) {
            eprintln!(
                "unwritable_output_dir: skipped (root, and unshare --mount does not work here)"
            );
            return;
        }
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(&ro)
            .arg(ckpt_bin())
            .args(["freeze", &p.pid().to_string(), "-o"])
            .arg(&img);
        run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze in a mount namespace")
    } else {
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let o = freeze(p.pid(), &img, &[]);
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
        o
    };
    let err = assert_freeze_error(&o);
    assert!(
        err.contains(ro.to_str().unwrap()),
        "error does not name {}: {err}",
        ro.display()
    );
    assert!(
        dir_entries(&ro).is_empty(),
        "files left in {}",
        ro.display()
    );
    assert_keeps_printing(&mut p);
}
