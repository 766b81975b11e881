//! Periodic timers keep firing at their interval after a resume, also when the
//! freeze found them expired with their signal still queued (the kernel re-arms
//! ITIMER_REAL and POSIX timers only when that signal is dequeued).

use crate::util::*;

fn periodic_timer_expired_at_freeze(static_: bool) {
    let dir = TestDir::new("periodic");
    let gate = dir.gate();
    freeze_gate_resume(&dir, Launch::fixture("periodic", static_).arg(&gate), "periodic", &gate);
}

both_variants!(periodic_timer_expired_at_freeze);

/// The same with a real program: python driven by setitimer, frozen while its
/// SIGALRM waits in the queue.
#[test]
fn python_periodic_timer_program() {
    let dir = TestDir::new("periodic_py");
    let gate = dir.gate();
    let script = fixtures_src().join("periodic_timer.py");
    freeze_gate_resume(&dir, Launch::new(python3()).arg(&script).arg(&gate).label("periodic python"), "periodic_py", &gate);
}
