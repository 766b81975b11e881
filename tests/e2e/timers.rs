//! Periodic timers keep firing at their interval after a resume, also when the
//! freeze found them expired with their signal still queued (the kernel re-arms
//! ITIMER_REAL and POSIX timers only when that signal is dequeued).

use crate::util::*;

fn periodic_timer_expired_at_freeze(static_: bool) {
    let dir = TestDir::new("periodic");
    let gate = dir.gate();
    let mut orig = spawn_fixture("periodic", static_, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("periodic");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut resumed = resume_launch(&img).spawn();
    open_gate(&gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
}

both_variants!(periodic_timer_expired_at_freeze);

/// The same with a real program: python driven by setitimer, frozen while its
/// SIGALRM waits in the queue.
#[test]
fn python_periodic_timer_program() {
    let dir = TestDir::new("periodic_py");
    let gate = dir.gate();
    let script = fixtures_src().join("periodic_timer.py");
    let mut orig = Launch::new(python3()).arg(&script).arg(&gate).label("periodic python").spawn();
    orig.wait_ready();
    let img = dir.image("periodic_py");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut resumed = resume_launch(&img).spawn();
    open_gate(&gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
}
