//! Lazy resume (CKPT_LAZY=1): the fixture reads, writes, forks, MADV_DONTNEEDs,
//! mremaps and mprotects memory that has not arrived yet, passes it to read(),
//! write(), send()/recv() and futex() from several threads at once; its results
//! must equal an eager resume's, and once everything is in, the helper must be gone
//! with nothing of it left in the process.

use std::fs;
use std::time::{Duration, Instant};

use crate::util::*;

/// Whether the helper serving `pid` still runs (it is named ckpt-lazy-PID; a
/// zombie waiting for init to reap it has ended).
fn helper_alive(pid: i32) -> bool {
    let want = format!("(ckpt-lazy-{pid}) ");
    fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()).any(|e| {
        fs::read_to_string(e.path().join("stat"))
            .is_ok_and(|s| s.find(&want).is_some_and(|at| !s[at + want.len()..].starts_with('Z')))
    })
}

/// Freeze the fixture (MIB MiB, THREADS threads), resume it with CKPT_LAZY=`lazy`,
/// and return its output and stderr.
fn run(threads: &str, lazy: &str) -> (Vec<String>, String) {
    run_with(threads, lazy, |_| {})
}

/// As [`run`], calling `meanwhile` with the resume file once the resume started
/// (while the helper streams, for a lazy one).
fn run_with(threads: &str, lazy: &str, meanwhile: impl FnOnce(&std::path::Path)) -> (Vec<String>, String) {
    let dir = TestDir::new("lazy");
    let (g1, g2) = (dir.gate(), dir.join("gate2"));
    let mut orig = spawn_fixture("lazy", false, &["256", threads, g1.to_str().unwrap(), g2.to_str().unwrap()]);
    orig.wait_ready();
    let pid = orig.pid();
    let img = dir.image("lazy");
    freeze_ok(pid, &img, &[]);
    orig.expect_killed_by_ckpt();
    open_gate(&g1);
    let mut resumed = resume_launch(&img).env("CKPT_LAZY", lazy).spawn();
    meanwhile(&img);
    resumed.wait_line_starting("checked", RESUME_TIMEOUT);
    // Population ends (bounded), then nothing of the helper is left in the process.
    let t0 = Instant::now();
    while helper_alive(pid) {
        assert!(t0.elapsed() < Duration::from_secs(60), "the lazy helper of {pid} never ended");
        std::thread::sleep(POLL);
    }
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
    // The fixture's threads were joined before "checked": the helper left no thread.
    assert_eq!(tasks, 1, "threads of the resumed process");
    for fd in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().filter_map(|e| e.ok()) {
        let target = fs::read_link(fd.path()).unwrap_or_default();
        let t = target.to_string_lossy();
        assert!(!t.contains("userfaultfd") && !t.contains("images/lazy"), "fd {:?} -> {t} left in the process", fd.file_name());
    }
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(!maps.contains("images/lazy") && !maps.contains("userfaultfd"), "a mapping of the helper's is left:\n{maps}");
    open_gate(&g2);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    (fin.stdout.clone(), fin.stderr.clone())
}

fn lazy_equals_eager(threads: &str) {
    let (lazy, err) = run(threads, "1");
    let (eager, _) = run(threads, "0");
    assert_eq!(lazy, eager, "lazy and eager resumes differ");
    if is_root() {
        assert!(!err.contains("lazy resume not available"), "root resumed eagerly: {err}");
    }
}

/// Wait (bounded) until the helper serving `pid` runs.
fn wait_helper(pid: i32) {
    let t0 = Instant::now();
    while !helper_alive(pid) {
        assert!(t0.elapsed() < RESUME_TIMEOUT, "no lazy helper for {pid} appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The pid the frozen fixture had (and gets back): the image's header says it.
fn frozen_pid(img: &std::path::Path) -> i32 {
    let o = std::process::Command::new(ckpt_bin()).args(["info", "--json"]).arg(img).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("ckpt info --json");
    v["frozen"]["pid"].as_i64().expect("frozen.pid") as i32
}

/// The resume file removed while its pages stream: the helper keeps its own
/// mapping of it (the inode lives on), and the results equal an eager resume.
#[test]
fn file_deleted_while_streaming() {
    if !is_root() {
        return;
    }
    let (lazy, _) = run_with("2", "1", |img| {
        wait_helper(frozen_pid(img));
        fs::remove_file(img).unwrap();
    });
    let (eager, _) = run("2", "0");
    assert_eq!(lazy, eager, "lazy and eager resumes differ");
}

/// The resume file replaced (rename over it, as a new freeze to the same name
/// does) while its pages stream: the process still gets the pages of the file it
/// started from.
#[test]
fn file_replaced_while_streaming() {
    if !is_root() {
        return;
    }
    let (lazy, _) = run_with("2", "1", |img| {
        wait_helper(frozen_pid(img));
        let other = img.with_extension("other");
        fs::write(&other, vec![0x5a; 1 << 20]).unwrap();
        fs::rename(&other, img).unwrap();
    });
    let (eager, _) = run("2", "0");
    assert_eq!(lazy, eager, "lazy and eager resumes differ");
}

#[test]
fn single_threaded() {
    lazy_equals_eager("0");
}

#[test]
fn multi_threaded() {
    lazy_equals_eager("4");
}

/// An ordinary user has no full userfaultfd here: the resume says so in one line
/// and is eager, with the same results.
fn as_nobody(threads: &str) {
    let Some(fin) = roundtrip_as_nobody_env("lazy", false, &[("CKPT_LAZY", "1")], |d| {
        ["64", threads, d.join("gate").to_str().unwrap(), d.join("gate").to_str().unwrap()].map(String::from).to_vec()
    }) else {
        return;
    };
    assert_eq!(fin.stdout, ["checked", "ok"], "{}", fin.stderr);
    assert!(fin.stderr.contains("lazy resume not available"), "no notice: {}", fin.stderr);
}

#[test]
fn as_nobody_falls_back_to_eager() {
    as_nobody("0");
}

#[test]
fn as_nobody_multi_threaded_falls_back_to_eager() {
    as_nobody("4");
}

/// A flipped byte in the page data of a lazily resumed VMA: the helper finds it
/// when its checksum run ends, kills the process and says which range.
#[test]
fn corrupt_page_data_kills_the_process() {
    if !is_root() {
        return;
    }
    let dir = TestDir::new("lazy_corrupt");
    let (g1, g2) = (dir.gate(), dir.join("gate2"));
    let mut orig = spawn_fixture("lazy", false, &["256", "0", g1.to_str().unwrap(), g2.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("lazy");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    // The middle of the file is the middle of the 256 MiB region, which the
    // fixture does not read before gate2.
    let mut bytes = fs::read(&img).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&img, bytes).unwrap();
    open_gate(&g1);
    let mut resumed = resume_launch(&img).env("CKPT_LAZY", "1").spawn();
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    assert!(!fin.stdout.iter().any(|l| l == "ok"), "ran to the end on corrupt memory: {:?}", fin.stdout);
    assert!(fin.stderr.contains("lazy resume: page data checksum mismatch for 0x"), "{}", fin.stderr);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&fin.status), Some(9), "{}", fin.stderr);
}

fn send(p: &mut Proc, b: &[u8]) {
    use std::io::Write;
    let stdin = p.stdin.as_mut().expect("stdin is piped");
    stdin.write_all(b).and_then(|_| stdin.flush()).expect("writing to the process's stdin");
}

/// Resume `img` with CKPT_LAZY=`lazy` and a byte already waiting on its stdin: the
/// fixture's first instruction returns from read() and counts, with mincore(), the
/// hot pages that are already in. Returns (resident, hot pages); the run goes on to
/// check every word.
fn hot_pages_at_first_instruction(img: &std::path::Path, lazy: &str) -> (u64, u64) {
    let mut p = resume_launch(img).env("CKPT_LAZY", lazy).stdin_piped().label("resumed").spawn();
    send(&mut p, b"x");
    let line = p.wait_line_starting("resident ", RESUME_TIMEOUT);
    p.wait_line_starting("touched", RESUME_TIMEOUT);
    send(&mut p, b"y");
    p.wait_line_starting("ok", RESUME_TIMEOUT);
    p.wait_output(RESUME_TIMEOUT).assert_success();
    let n: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    (n[0], n[1])
}

/// `ckpt profile` records the pages the process touches after its first byte; a
/// lazy resume of the profiled file has every one of them in at its first
/// instruction (mincore), where a lazy resume of the file without the hint has not.
#[test]
fn profile_hint_is_in_before_the_first_instruction() {
    if !is_root() {
        eprintln!("skipped: a lazy resume needs root here (an ordinary user's is eager)");
        return;
    }
    let dir = TestDir::new("lazy_ws");
    let mut orig = Launch::fixture("lazy_ws", false).arg("256").stdin_piped().spawn();
    orig.wait_ready();
    let img = dir.image("lazy_ws");
    let hinted = dir.join("hinted.resume");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();

    // The first byte makes the process touch the hot pages; its end of input ends
    // it, and with it the profile, well within the window.
    let mut prof = Launch::new(ckpt_bin())
        .args(["profile".as_ref(), img.as_os_str(), "-o".as_ref(), hinted.as_os_str(), "--for".as_ref(), "120s".as_ref()])
        .stdin_piped()
        .label("ckpt profile")
        .spawn();
    send(&mut prof, b"x");
    prof.wait_line_starting("touched", RESUME_TIMEOUT);
    let fin = prof.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert!(fin.stderr.contains("ckpt profile: ") && fin.stderr.contains("ranges recorded"), "{}", fin.stderr);
    let info = std::process::Command::new(ckpt_bin()).arg("info").arg(&hinted).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    let ws = info.lines().find(|l| l.trim_start().starts_with("working set")).unwrap_or_else(|| panic!("no working set in:\n{info}"));
    // At least the 64 hot pages, and far from all 65536 of the region.
    let pages: u64 = ws.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap();
    assert!((64..4096).contains(&pages), "{ws}");

    let (resident, hot) = hot_pages_at_first_instruction(&hinted, "1");
    assert_eq!((resident, hot), (64, 64), "hot pages in at the first instruction of the hinted lazy resume");
    // The same check can fail: without the hint they arrive later.
    let (resident, hot) = hot_pages_at_first_instruction(&img, "1");
    assert!(resident < hot, "all {hot} hot pages were in without a hint: the check proves nothing");
    // An eager resume of the profiled file is unchanged by the hint.
    assert_eq!(hot_pages_at_first_instruction(&hinted, "0"), (64, 64));
}
