//! Process-wide kernel state (signal dispositions, queued signals, sigaltstack,
//! timers, limits, cwd, umask, comm, prctl flags) survives a freeze.

use crate::util::*;

fn procstate(static_: bool) {
    let dir = TestDir::new("procstate");
    let work = dir.join("work dir");
    std::fs::create_dir(&work).unwrap();
    let work = work.canonicalize().unwrap();
    let gate = dir.gate();
    freeze_gate_resume_ok(&dir, "procstate", static_, &[work.to_str().unwrap(), gate.to_str().unwrap()], &gate);
}

/// Start a fixture, freeze it once ready, resume it, open its gate: it must check
/// its state and print "ok".
fn freeze_gate_resume_ok(dir: &TestDir, name: &str, static_: bool, args: &[&str], gate: &std::path::Path) {
    freeze_gate_resume(dir, Launch::fixture(name, static_).args(args), name, gate);
}

both_variants!(procstate);

/// Every signal's disposition (handler, SIG_IGN or SIG_DFL, sa_mask, SA_RESTART,
/// SA_SIGINFO, SA_ONSTACK, SA_NODEFER, SA_RESETHAND, restorer) reads back the same
/// after the resume, and SIGTRAP (which the freeze's own system calls must not
/// disturb) runs its handler, or stays ignored.
fn sigactions(static_: bool) {
    for mode in ["handler", "ign"] {
        let dir = TestDir::new("sigactions");
        let gate = dir.gate();
        freeze_gate_resume_ok(&dir, "sigactions", static_, &[gate.to_str().unwrap(), mode], &gate);
    }
}

both_variants!(sigactions);

/// oom_score_adj, I/O priority, supplementary groups (set as root) and the
/// private expedited membarrier registration come back; an unregistered membarrier
/// command still fails.
fn identity(static_: bool) {
    let dir = TestDir::new("identity");
    let gate = dir.gate();
    freeze_gate_resume_ok(&dir, "identity", static_, &[gate.to_str().unwrap()], &gate);
}

both_variants!(identity);

/// A resumer that cannot set the saved supplementary groups (an ordinary user)
/// stops with exit 114 and a message naming them, rather than run with others.
#[test]
fn other_groups_stop_the_resume() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        eprintln!("other_groups_stop_the_resume: skipped (the fixture sets its groups as root)");
        return;
    }
    let dir = TestDir::new("identity_groups");
    let gate = dir.gate();
    let mut orig = spawn_fixture("identity", false, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("identity");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let open = OpenDir::new("identity-groups");
    let copy = open.path.join("identity.resume");
    std::fs::copy(&img, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let res = open.launch_as_nobody(&copy).label("resumed as nobody").spawn().wait_output(RESUME_TIMEOUT);
    assert_eq!(res.status.code(), Some(114), "{res}");
    assert!(
        res.stderr.contains("supplementary groups (1234 5678 40000)") && res.stderr.contains("CAP_SETGID"),
        "no message naming the groups\n{res}"
    );
}

/// --leave-running: the original keeps every disposition too (SIGTRAP included).
#[test]
fn sigactions_left_running() {
    let dir = TestDir::new("sigactions_leave");
    let gate = dir.gate();
    let mut orig = spawn_fixture("sigactions", false, &[gate.to_str().unwrap(), "ign"]);
    orig.wait_ready();
    freeze_ok(orig.pid(), &dir.image("x"), &["--leave-running"]);
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

/// A seccomp filter comes back (freezing it needs root: CI runs as root).
fn seccomp(static_: bool) {
    if !is_root() {
        eprintln!("seccomp: skipped (reading seccomp filters needs root)");
        return;
    }
    let dir = TestDir::new("seccomp");
    let gate = dir.gate();
    freeze_gate_resume_ok(&dir, "seccomp", static_, &[gate.to_str().unwrap()], &gate);
}

both_variants!(seccomp);

/// Without CAP_SYS_ADMIN the filters cannot be read: the freeze is refused, naming
/// the reason, and the target runs on.
#[test]
fn seccomp_refused_without_privilege() {
    if let Some(err) = freeze_refused_as_nobody("seccomp", &[], &["gate"]) {
        assert!(err.contains("seccomp") && err.contains("CAP_SYS_ADMIN"), "{err}");
    }
}

/// A process in strict seccomp mode (any system call but read, write, exit and
/// rt_sigreturn kills it) is refused before anything runs inside it; it keeps
/// running and finishes normally.
#[test]
fn strict_seccomp_refused() {
    let dir = TestDir::new("seccomp_strict");
    let mut p = Launch::fixture("seccomp_strict", false).stdin_piped().spawn();
    p.wait_ready();
    let err = assert_freeze_error(&freeze(p.pid(), &dir.image("x"), &[]));
    assert!(err.contains("strict seccomp mode"), "{err}");
    assert!(!dir.image("x").exists(), "a failed freeze left a file");
    p.assert_running();
    use std::io::Write;
    p.stdin.as_mut().unwrap().write_all(b"\n").expect("write to the fixture's stdin");
    let fin = p.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.line_starting("ok"), "ok");
}

/// A MAP_SHARED file mapping is mapped from the file again: writes after the
/// resume reach the file.
fn shared_file_mapping(static_: bool) {
    let dir = TestDir::new("shmfile");
    let gate = dir.gate();
    let file = dir.join("shared.dat");
    freeze_gate_resume_ok(&dir, "shmfile", static_, &[file.to_str().unwrap(), gate.to_str().unwrap()], &gate);
}

both_variants!(shared_file_mapping);

/// System V shared memory (shmat(2)) is refused, naming the mapping; the target
/// runs on. (Shared mappings of memfds, deleted files and shared anonymous memory
/// are restored: memory::shared.)
#[test]
fn system_v_shared_memory_refused() {
    let dir = TestDir::new("shm_sysv");
    let mut orig = spawn_fixture("shm_sysv", false, &[]);
    orig.wait_ready();
    let o = freeze(orig.pid(), &dir.image("x"), &[]);
    let err = assert_freeze_error(&o);
    assert!(err.contains("/SYSV") && err.contains("rw-s") && err.contains("System V shared memory"), "{err}");
    assert!(!dir.image("x").exists());
    orig.assert_running();
}
