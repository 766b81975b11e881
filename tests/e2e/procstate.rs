//! Process-wide kernel state (signal dispositions, queued signals, sigaltstack,
//! timers, limits, cwd, umask, comm, prctl flags) survives a freeze.

use crate::util::*;

fn procstate(static_: bool) {
    let dir = TestDir::new("procstate");
    let work = dir.join("work dir");
    std::fs::create_dir(&work).unwrap();
    let work = work.canonicalize().unwrap();
    let gate = dir.gate();
    let mut orig = spawn_fixture("procstate", static_, &[work.to_str().unwrap(), gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("procstate");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let resumed = resume_launch(&img).spawn();
    open_gate(&gate);
    let mut resumed = resumed;
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
}

both_variants!(procstate);
