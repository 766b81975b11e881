//! The resumed process has its own PID, or says loudly that it has not: never a
//! silent change (glibc's raise() and abort() send tgkill to the cached TID with the
//! current PID, and fail with ESRCH under another PID).

use crate::util::*;
use std::os::unix::process::ExitStatusExt;

/// The pidkeep fixture frozen with --leave-running and resumed while the original
/// still runs (its PID taken), so the resume goes into a new user + PID namespace.
struct BesideOriginal {
    _dir: TestDir,
    gate: std::path::PathBuf,
    orig: Proc,
    resumed: Proc,
    /// The host PID of the resumed process, tracked by `resumed`.
    inner: i32,
}

/// None (the test is skipped, saying `why`) unless run as root: as an ordinary
/// user every resume takes the namespace route.
fn resumed_beside_original(name: &str, why: &str) -> Option<BesideOriginal> {
    if !is_root() {
        eprintln!("{name}: skipped ({why})");
        return None;
    }
    let dir = TestDir::new(name);
    let gate = dir.gate();
    let orig = spawn_fixture("pidkeep", false, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("pidkeep");
    freeze_ok(orig.pid(), &img, &["--leave-running"]);
    let mut resumed = resume_launch(&img).spawn();
    // The resumed process's real PID differs from the original's, which still runs;
    // inside its namespace it has the original one.
    let inner = inner_pid(orig.pid());
    resumed.track_pid(inner);
    Some(BesideOriginal { _dir: dir, gate, orig, resumed, inner })
}

/// As root with the original still running (its PID taken): the resume goes into
/// a new user + PID namespace where the PID is free, so getpid() and raise() work.
#[test]
fn taken_pid_goes_to_a_new_namespace() {
    let why = "as an ordinary user every resume takes that route";
    let Some(mut b) = resumed_beside_original("taken_pid_goes_to_a_new_namespace", why) else { return };
    open_gate(&b.gate);
    let fin = b.resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.line_starting("pid now "), format!("pid now {}", b.orig.pid()));
    b.orig.wait_output(RESUME_TIMEOUT).assert_success();
}

/// The host PID of the process whose PID in its own namespace is `inner`
/// (NSpid: host, then namespace), waiting for it to appear.
fn inner_pid(inner: i32) -> i32 {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let found = std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).find(|&p| {
            p != inner
                && std::fs::read_to_string(format!("/proc/{p}/status"))
                    .is_ok_and(|s| s.lines().any(|l| l.starts_with("NSpid:") && l.split_whitespace().nth(2) == Some(&inner.to_string())))
        });
        if let Some(p) = found {
            return p;
        }
        assert!(std::time::Instant::now() < deadline, "no process with NSpid ... {inner} appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// SIGKILL of the PID the resume was started as (which relays signals to the
/// process in its namespace, but cannot relay SIGKILL) ends the process too:
/// nothing of the resume runs on unseen.
#[test]
fn killing_the_resumed_pid_ends_the_namespace() {
    let why = "needs the original's PID taken by a running process";
    let Some(mut b) = resumed_beside_original("killing_the_resumed_pid_ends_the_namespace", why) else { return };
    // SAFETY: kill has no memory-safety preconditions; the PID is our child's.
    assert_eq!(unsafe { libc::kill(b.resumed.pid(), libc::SIGKILL) }, 0);
    let fin = b.resumed.wait_output(RESUME_TIMEOUT);
    assert_eq!(fin.status.signal(), Some(libc::SIGKILL), "{fin}");
    wait_ended(&[b.inner], RESUME_TIMEOUT, "the resumed process after its resumer's PID was killed");
}

/// CKPT_SAME_PID=0: the process runs on under a new PID, and the resume says so.
#[test]
fn same_pid_off_warns() {
    let dir = TestDir::new("pid_off");
    let gate = dir.gate();
    let mut orig = spawn_fixture("pidkeep", false, &[gate.to_str().unwrap(), "any"]);
    orig.wait_ready();
    let img = dir.image("pidkeep");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut resumed = resume_launch(&img).env("CKPT_SAME_PID", "0").spawn();
    open_gate(&gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_ne!(fin.line_starting("pid now "), format!("pid now {}", orig.pid()));
    let err = &fin.stderr;
    assert!(err.contains("warning") && err.contains("CKPT_SAME_PID=0") && err.contains(&orig.pid().to_string()), "no warning naming the pid: {err}");
}

/// As an ordinary user the resume takes the new user + PID namespace route, whose
/// init gives every signal a placeholder handler (pid.rs) that the process forked
/// from it inherits: the resumed process must get its own dispositions back, the
/// default ones too, so a child's exit (SIGCHLD) or another signal ignored by
/// default does not send it into memory that is gone (SIGSEGV).
fn default_dispositions_as_nobody(static_: bool) {
    let Some(fin) = roundtrip_as_nobody_env("sigdefault", static_, &[], |d| vec![d.join("gate").to_str().unwrap().to_owned()]) else {
        return;
    };
    fin.line_starting("ok");
}

both_variants!(default_dispositions_as_nobody);
