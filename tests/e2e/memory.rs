//! Memory layout: the brk heap, collisions with the resume file's own
//! mappings, sparse regions, VMA flags (locked, advice). Each test also checks
//! that the resumed process has the frozen process's maps (ranges, permissions,
//! names) and every VMA's smaps VmFlags.

use crate::util::*;

mod shared;

/// A fragmented malloc heap; after the resume the kernel brk is the same and
/// the heap grows (brk, mmap-sized blocks, sbrk).
fn heap(static_: bool) {
    let dir = TestDir::new("heap");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "heap", static_, &[gate.to_str().unwrap()]);
    r.resumed.line_starting("ok ");
}

/// Read-write regions where a fresh static-pie executable, its brk, stack
/// and vDSO tend to land, plus everything above the stack.
fn collide_light(static_: bool) {
    let dir = TestDir::new("collide_light");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "collide", static_, &[gate.to_str().unwrap(), "light"]);
    eprintln!("collide light: image {} bytes", r.image_len);
}

/// collide_light plus PROT_NONE reservations over all free space in the top
/// 1056 GiB: wherever the kernel puts the resume file's mappings, they collide.
fn collide_full(static_: bool) {
    let dir = TestDir::new("collide_full");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "collide", static_, &[gate.to_str().unwrap(), "full"]);
    eprintln!("collide full: image {} bytes", r.image_len);
}

/// 64 GiB PROT_NONE + 1 GiB read-write with 4 pages of data: a small image.
fn sparse(static_: bool) {
    let dir = TestDir::new("sparse");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "sparse", static_, &[gate.to_str().unwrap()]);
    assert!(
        r.image_len < 16 << 20,
        "image of the sparse process is {} bytes (limit 16 MiB)",
        r.image_len
    );
}

/// mlock, MAP_LOCKED, MLOCK_ONFAULT, MADV_SEQUENTIAL/RANDOM/MERGEABLE/
/// WIPEONFORK/DONTDUMP/HUGEPAGE/NOHUGEPAGE/DONTFORK: every VMA's VmFlags come back
/// (gated_roundtrip compares them), with VmLck and the pages' content.
fn memflags(static_: bool) {
    let dir = TestDir::new("memflags");
    let gate = dir.gate();
    gated_roundtrip(&dir, "memflags", static_, &[gate.to_str().unwrap()]).resumed.line_starting("ok");
}

both_variants!(heap, collide_light, collide_full, sparse, memflags);

/// --leave-running of a process with MADV_DONTFORK and MADV_WIPEONFORK pages: a
/// copy-on-write copy would not hold them, so the freeze says so and keeps the
/// process stopped until its pages are written; both the original and the resumed
/// copy find every pattern.
#[test]
fn fork_excluded_pages_keep_the_target_stopped() {
    let dir = TestDir::new("memflags_cow");
    let gate = dir.gate();
    let mut orig = spawn_fixture("memflags", false, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("memflags");
    let o = freeze_ok(orig.pid(), &img, &["--leave-running"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("MADV_DONTFORK") || err.contains("MADV_WIPEONFORK"), "no warning naming the fork-excluded range\n{err}");
    assert!(err.contains("stays stopped until its pages are written"), "{err}");
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

/// Locked memory that the resumer may not lock (no CAP_IPC_LOCK, RLIMIT_MEMLOCK
/// of one page) stops the resume with exit 115 and a message naming a locked range
/// and the limit, rather than running unlocked.
#[test]
fn mlock_beyond_the_limit_stops_the_resume() {
    if !is_root() {
        eprintln!("mlock_beyond_the_limit_stops_the_resume: skipped (the fixture locks memory as root)");
        return;
    }
    let dir = TestDir::new("memflags_limit");
    let gate = dir.gate();
    let mut orig = spawn_fixture("memflags", false, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    let locked: Vec<VmaFlags> = read_vmflags(orig.pid()).into_iter().filter(|v| v.flags.iter().any(|f| f == "lo")).collect();
    assert!(!locked.is_empty());
    let img = dir.image("memflags");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let res = Launch::new("setpriv")
        .args(["--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "prlimit", "--memlock=4096:4096"])
        .arg(&img)
        .label("resumed")
        .spawn()
        .wait_output(RESUME_TIMEOUT);
    assert_eq!(res.status.code(), Some(115), "{res}");
    let named = locked.iter().any(|v| res.stderr.contains(&format!("{:#x}-{:#x}", v.start, v.end)));
    assert!(named && res.stderr.contains("RLIMIT_MEMLOCK"), "no message naming a locked range and RLIMIT_MEMLOCK\n{res}");
}
