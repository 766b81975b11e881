//! The regs fixture: vector, mask, control and general registers survive a
//! freeze taken while the process spins in user code (no system call).

use std::thread;

use crate::util::*;

fn regs_at(static_: bool, level: &str) {
    let dir = TestDir::new(&format!("regs_{level}"));
    let mut orig = spawn_fixture("regs", static_, &["2", level]);
    orig.wait_ready();
    thread::sleep(SETTLE);
    let img = dir.image("regs");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    res.line_starting("ok ");
}

/// The widest state the CPU has: zmm0-31 + k0-7 with AVX-512, else ymm or xmm.
fn regs_widest(static_: bool) {
    regs_at(static_, "auto");
}

/// Only xmm0-15 (and the general registers, MXCSR, FCW) in use.
fn regs_sse(static_: bool) {
    regs_at(static_, "sse");
}

/// ymm0-15 (falls back to SSE on a CPU without AVX).
fn regs_avx(static_: bool) {
    regs_at(static_, "avx");
}

both_variants!(regs_widest, regs_sse, regs_avx);
