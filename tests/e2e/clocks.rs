//! Clocks that never go backwards. A reboot cannot happen in a test, so the
//! image is made to say the process's clocks were ahead of this machine's: the
//! clocks saved in its Kernel section are moved forward (the section and header
//! checksums repaired, as compat.rs edits images), exactly what a resume after a
//! reboot finds. The resumed fixture (clocks_after.c) then reads CLOCK_MONOTONIC,
//! _RAW, _COARSE and CLOCK_BOOTTIME through the vDSO and the system call: each
//! must be at least the saved value, the realtime clock must be this machine's,
//! and its POSIX timer and timerfd keep their remaining time.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use ckpt_format::{
    as_bytes, crc32c::crc32c, header_crc, read_record, Header, KernelState, SectionKind, CLK_BOOTTIME,
    CLK_MONOTONIC, CLK_MONOTONIC_COARSE, CLK_MONOTONIC_RAW, CLK_REALTIME,
};

use crate::util::*;

const AHEAD_NS: u64 = 1000 * 1_000_000_000;

/// The clocks_after fixture frozen into a raw image in `dir`.
fn frozen(dir: &TestDir, static_: bool, gate: &Path) -> PathBuf {
    let mut orig = spawn_fixture("clocks_after", static_, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    thread::sleep(SETTLE);
    let img = dir.join("clocks.ckpt");
    let o = freeze(orig.pid(), &img, &["--image"]);
    assert!(o.status.success(), "freeze --image failed\n{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    img
}

/// A copy of raw image `img` whose saved clocks are `AHEAD_NS` further on (as if
/// this machine had rebooted since): the edited kernel state.
fn clocks_ahead(img: &Path, out: &Path) -> KernelState {
    let mut bytes = fs::read(img).unwrap();
    let mut h: Header = read_record(&bytes).unwrap();
    let s = *h.section(SectionKind::Kernel);
    assert_eq!(s.count, 1, "the image records no kernel state");
    let (lo, hi) = (s.offset as usize, (s.offset + s.size) as usize);
    let mut k: KernelState = read_record(&bytes[lo..hi]).unwrap();
    for i in [CLK_MONOTONIC, CLK_MONOTONIC_RAW, CLK_MONOTONIC_COARSE, CLK_BOOTTIME] {
        k.clocks[i] += AHEAD_NS;
    }
    bytes[lo..hi].copy_from_slice(as_bytes(&k));
    h.sections[SectionKind::Kernel as usize].crc = crc32c(&bytes[lo..hi], false);
    h.header_crc = header_crc(&h);
    bytes[..std::mem::size_of::<Header>()].copy_from_slice(as_bytes(&h));
    fs::write(out, &bytes).unwrap();
    fs::set_permissions(out, fs::Permissions::from_mode(0o755)).unwrap();
    k
}

/// Make the raw image at `path` say its vdso was another kernel build: one byte of
/// the saved copy flipped (checksums repaired), in the middle, where no function
/// starts, so only the comparison with this kernel's vdso sees it.
pub fn other_vdso_build(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let mut h: Header = read_record(&bytes).unwrap();
    let s = *h.section(SectionKind::Vdso);
    assert!(s.size > 0, "the image has no vdso copy");
    let (lo, hi) = (s.offset as usize, (s.offset + s.size) as usize);
    bytes[lo + (hi - lo) / 2] ^= 0x40;
    h.sections[SectionKind::Vdso as usize].crc = crc32c(&bytes[lo..hi], false);
    h.header_crc = header_crc(&h);
    bytes[..std::mem::size_of::<Header>()].copy_from_slice(as_bytes(&h));
    fs::write(path, &bytes).unwrap();
}

/// The numbers of the fixture's line `NAME a b ...`.
fn numbers(res: &Finished, name: &str) -> Vec<u64> {
    res.line_starting(&format!("{name} ")).split_whitespace().skip(1).map(|w| w.parse().unwrap()).collect()
}

/// The resumed fixture's clocks are never below the saved ones, and have not
/// jumped further than the time a test takes.
fn check_clocks(res: &Finished, saved: &KernelState, who: &str) {
    res.assert_success();
    let order = [CLK_MONOTONIC, CLK_MONOTONIC_RAW, CLK_MONOTONIC_COARSE, CLK_BOOTTIME];
    for view in ["vdso", "sys"] {
        for (v, &i) in numbers(res, view).iter().zip(&order) {
            assert!(*v >= saved.clocks[i], "{who}: {view} clock {i} = {v} is below the saved {}\n{res}", saved.clocks[i]);
            assert!(*v < saved.clocks[i] + 300_000_000_000, "{who}: {view} clock {i} = {v} is far past the saved {}\n{res}", saved.clocks[i]);
        }
    }
    // The wall clock is this machine's, never moved.
    let real = numbers(res, "real")[0];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    assert!(real <= now && real + 300_000_000_000 > now && real >= saved.clocks[CLK_REALTIME], "{who}: realtime {real}\n{res}");
    eprintln!("clocks ({who}): {:?} >= saved {:?}", numbers(res, "vdso"), order.map(|i| saved.clocks[i]));
}

fn clocks_continue_after_a_reboot(static_: bool) {
    let dir = TestDir::new(if static_ { "clocks_ahead_static" } else { "clocks_ahead" });
    let gate = dir.gate();
    let img = frozen(&dir, static_, &gate);
    let ahead = dir.join("ahead.ckpt");
    let saved = clocks_ahead(&img, &ahead);

    // `ckpt check` plans a time namespace.
    let o = Command::new(ckpt_bin()).arg("check").arg(&ahead).output().unwrap();
    assert!(o.status.success(), "check refused\n{}", describe_output(&o));
    assert!(lossy(&o.stdout).contains("a time namespace moves CLOCK_MONOTONIC forward"), "{}", describe_output(&o));

    // As root (the real ids), with the gate open once the resumed process runs.
    open_gate(&gate);
    let res = Launch::new(ckpt_bin()).arg("resume").arg(&ahead).label("resumed, clocks behind").spawn().wait_output(RESUME_TIMEOUT);
    check_clocks(&res, &saved, "root");

    // As an ordinary user, in the new user + PID namespace, and with new ids
    // (the time namespace then comes with a user namespace of its own).
    if !is_root() {
        eprintln!("clocks: the resumes as nobody skipped (the test must run as root to switch to nobody)");
        return;
    }
    let open = OpenDir::new(if static_ { "clocks-static" } else { "clocks" });
    let copy = open.path.join("clocks.resume");
    let o = Command::new(ckpt_bin()).arg("convert").arg(&ahead).arg("-o").arg(&copy).output().unwrap();
    assert!(o.status.success(), "convert\n{}", describe_output(&o));
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    for same_pid in ["1", "0"] {
        let res = open.launch_as_nobody(&copy).env("CKPT_SAME_PID", same_pid).label("resumed as nobody").spawn().wait_output(RESUME_TIMEOUT);
        check_clocks(&res, &saved, &format!("nobody, CKPT_SAME_PID={same_pid}"));
    }
}

/// The unedited image needs no time namespace: the clocks here are ahead.
#[test]
fn clocks_ahead_need_no_time_namespace() {
    let dir = TestDir::new("clocks_same");
    let gate = dir.gate();
    let img = frozen(&dir, false, &gate);
    let o = Command::new(ckpt_bin()).arg("check").arg(&img).output().unwrap();
    assert!(o.status.success() && lossy(&o.stdout).contains("clocks: continue as this machine's"), "{}", describe_output(&o));
    open_gate(&gate);
    let res = Launch::new(ckpt_bin()).arg("resume").arg(&img).env("CKPT_TRACE", "1").label("resumed").spawn().wait_output(RESUME_TIMEOUT);
    res.assert_success();
    assert!(!res.stderr.contains("time namespace"), "a time namespace without need\n{res}");
}

both_variants!(clocks_continue_after_a_reboot);

/// A reboot into another kernel: the clocks behind and the vdso another build.
/// The resumed fixture's vdso calls go through the jumps written over its old
/// vdso into this kernel's, inside the time namespace, and every clock rule holds.
fn clocks_continue_on_another_vdso_build(static_: bool) {
    let dir = TestDir::new(if static_ { "clocks_vdso_static" } else { "clocks_vdso" });
    let gate = dir.gate();
    let img = frozen(&dir, static_, &gate);
    let moved = dir.join("moved.ckpt");
    let saved = clocks_ahead(&img, &moved);
    other_vdso_build(&moved);
    let o = Command::new(ckpt_bin()).arg("check").arg(&moved).output().unwrap();
    let said = lossy(&o.stdout);
    assert!(o.status.success(), "check refused\n{}", describe_output(&o));
    assert!(said.contains("vdso: another build than at the freeze") && said.contains("a time namespace"), "{said}");
    assert!(!said.contains(" 0 jump"), "no function of this kernel's vdso was found: {said}");
    open_gate(&gate);
    let res = Launch::new(ckpt_bin()).arg("resume").arg(&moved).env("CKPT_TRACE", "1").label("resumed on another vdso").spawn().wait_output(RESUME_TIMEOUT);
    assert!(res.stderr.contains("vdso function jumps to this kernel's") && res.stderr.contains("old vvar fenced"), "no trampolines\n{res}");
    check_clocks(&res, &saved, "another vdso build");
}

both_variants!(clocks_continue_on_another_vdso_build);
