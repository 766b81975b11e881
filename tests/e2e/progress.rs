//! Progress of long freezes and resumes: on a terminal (a tmux pane) a line counts
//! the bytes while the work runs and is gone when it ends; into a pipe nothing of
//! it is written. The line waits a second before its first draw; the tests that
//! must see it set that wait to 0 (CKPT_PROGRESS_DELAY_MS), so they do not depend
//! on how fast this machine is, and one checks that a short freeze draws nothing.

use std::process::Command;

use crate::util::*;

const MIB: u64 = 1536;
const NO_DELAY: &str = "CKPT_PROGRESS_DELAY_MS=0";

/// The pane's screens while `cmd` ran and once it ended (`cmd` must succeed).
fn in_pane(t: &Tmux, window: &str, cmd: &str) -> Watched {
    let marker = "exit-status=";
    t.cmd(&["new-window", "-d", "-t", window, &format!("sh -c '{cmd}; echo {marker}$?; sleep 600'")]);
    let w = t.watch_until(window, marker, BIG_TIMEOUT);
    assert!(w.last.contains(&format!("{marker}0")), "{cmd} failed:\n{}", w.last);
    w
}

/// Shown during the run, counting MiB, and gone at its end.
fn assert_shown_then_cleared(w: &Watched, what: &str, label: &str) {
    let lines = || w.screens.iter().flat_map(|s| s.lines()).filter(|l| l.contains(what));
    assert!(lines().next().is_some(), "{label} showed no {what:?} line; last screen:\n{}", w.last);
    // Bytes done of the total ("512.00 MiB/1.50 GiB"), once there are some.
    let counting = lines().find(|l| l.contains("iB/"));
    let line = counting.unwrap_or_else(|| panic!("{label}: no line counted bytes done/total: {:?}", lines().collect::<Vec<_>>()));
    assert!(line.contains("iB/s") && line.contains("left"), "{label}: the line says the rate and time left: {line:?}");
    assert!(!w.last.contains(what), "{label}: the line stayed after the end:\n{}", w.last);
}

/// No progress in what a pipe got.
fn assert_no_progress(stderr: &[u8], label: &str) {
    let s = lossy(stderr);
    assert!(!s.contains('\r') && !s.contains("freezing") && !s.contains("resuming"), "{label} wrote progress into a pipe:\n{s}");
}

#[test]
fn progress_on_a_terminal_only() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed (scripts/install-deps.sh installs it)");
    }
    let dir = TestDir::new("progress");
    let gate = dir.gate();
    let mut orig = spawn_fixture("big", false, &[&MIB.to_string(), gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("big");
    let ckpt = ckpt_bin().display().to_string();
    let t = Tmux::new("progress");
    t.cmd(&["new-session", "-d", "-s", "s", "-x", "160", "-y", "12", "sleep 600"]);

    // On a terminal, leaving the original to be frozen again into a pipe.
    let w = in_pane(&t, "s:1", &format!("{NO_DELAY} {ckpt} freeze {} -o {}.tty --leave-running", orig.pid(), img.display()));
    assert_shown_then_cleared(&w, "freezing", "freeze on a terminal");
    // With -q, nothing.
    let w = in_pane(&t, "s:2", &format!("{NO_DELAY} {ckpt} freeze {} -o {}.quiet -q --leave-running", orig.pid(), img.display()));
    assert!(!w.ever_showed("freezing") && !w.last.contains("freezing"), "-q drew the line:\n{}", w.last);

    let mut cmd = Command::new(ckpt_bin());
    cmd.env("CKPT_PROGRESS_DELAY_MS", "0").arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(&img);
    let o = run_with_timeout(cmd, BIG_TIMEOUT).unwrap();
    assert!(o.status.success(), "{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    assert_no_progress(&o.stderr, "freeze");

    open_gate(&gate);
    let w = in_pane(&t, "s:3", &format!("{NO_DELAY} {}", img.display()));
    assert_shown_then_cleared(&w, "resuming", "resume on a terminal");
    assert!(w.last.lines().any(|l| l.trim() == "ok"), "the resumed process checked its memory:\n{}", w.last);

    let fin = resume_launch(&img).env("CKPT_PROGRESS_DELAY_MS", "0").spawn().wait_output(BIG_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    assert_no_progress(fin.stderr.as_bytes(), "resume");

    // `ckpt resume -q` (CKPT_QUIET=1 for the restorer): nothing.
    let w = in_pane(&t, "s:4", &format!("{NO_DELAY} {ckpt} resume -q {}", img.display()));
    assert!(!w.ever_showed("resuming") && !w.last.contains("resuming"), "resume -q drew the line:\n{}", w.last);
}

/// With the default wait, work shorter than a second draws nothing.
#[test]
fn short_freeze_draws_nothing() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed (scripts/install-deps.sh installs it)");
    }
    let dir = TestDir::new("progress-short");
    let gate = dir.gate();
    let mut orig = spawn_fixture("big", false, &["1", gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("small");
    let t = Tmux::new("progress-short");
    t.cmd(&["new-session", "-d", "-s", "s", "-x", "160", "-y", "12", "sleep 600"]);
    let w = in_pane(&t, "s:1", &format!("{} freeze {} -o {} --leave-running", ckpt_bin().display(), orig.pid(), img.display()));
    assert!(!w.ever_showed("freezing") && !w.last.contains("freezing"), "a short freeze drew the line:\n{}", w.last);
    assert_image(&img);
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success();
}
