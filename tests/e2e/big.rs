//! A 1 GiB process: prints freeze time, resume time and image size (no
//! assertion on times).

use std::fs;
use std::time::Instant;

use crate::util::*;

#[test]
fn one_gib_process() {
    let dir = TestDir::new("big");
    let gate = dir.gate();
    let mut orig = spawn_fixture("big", false, &["1024", gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("big");

    let t0 = Instant::now();
    freeze_ok_with_timeout(orig.pid(), &img, &[], BIG_TIMEOUT);
    let freeze_time = t0.elapsed();
    orig.expect_killed_by_ckpt();
    let size = fs::metadata(&img).unwrap().len();

    open_gate(&gate);
    let t1 = Instant::now();
    let fin = resume_launch(&img).spawn().wait_output(BIG_TIMEOUT);
    let resume_time = t1.elapsed();
    fin.assert_success();
    fin.line_starting("ok");
    eprintln!(
        "one_gib_process: freeze {:.3} s, resume + verify {:.3} s, image {} bytes ({:.1} MiB)",
        freeze_time.as_secs_f64(),
        resume_time.as_secs_f64(),
        size,
        size as f64 / (1 << 20) as f64
    );
}
