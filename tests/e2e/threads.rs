//! Multi-threaded processes: every thread is frozen and resumed with its TID, name,
//! registers, signal state and the system call it was blocked in. The mt_*
//! fixtures (tests/fixtures/mt_*.c, 2 to 64 threads) check their own state after
//! the resume; the tests compare the /proc views of every thread (task list,
//! names, SigBlk/SigPnd/ShdPnd) of the frozen and the resumed process and the
//! TIDs the fixture printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::util::*;

/// A gated mt_* fixture frozen once it is ready and resumed.
struct Resumed {
    /// The resume file's process (a proxy parent when the PID came back).
    proc_: Proc,
    /// The process running the resumed program.
    pid: i32,
    /// The TIDs the fixture printed before the freeze, by thread index.
    tids: Vec<i32>,
    /// What the fixture printed before the freeze.
    before: Vec<String>,
    image: std::path::PathBuf,
}

/// Starts fixture `name` (its last argument is `dir.gate()`), checks that the TIDs
/// it prints are its threads, freezes it (with -v, printed), resumes it and waits
/// until the resumed process has the same threads looking the same (`look`).
fn freeze_resume(dir: &TestDir, name: &str, static_: bool, args: &[&str], look: Look) -> Resumed {
    let gate = dir.gate();
    let mut all: Vec<&str> = args.to_vec();
    all.push(gate.to_str().unwrap());
    let mut orig = spawn_fixture(name, static_, &all);
    orig.wait_ready();
    let before_lines = orig.out().snapshot();
    let tids = printed_tids(&before_lines);
    let mut sorted = tids.clone();
    sorted.sort_unstable();
    assert_eq!(task_ids(orig.pid()), sorted, "the printed TIDs are not the threads of {name}\n{}", orig.describe());
    assert_eq!(tids[0], orig.pid(), "thread 0 is not the leader");
    let before = threads_view(orig.pid(), look);

    let image = dir.image(name);
    let t0 = Instant::now();
    let o = freeze_ok(orig.pid(), &image, &["-v"]);
    eprintln!("{name} ({} threads): freeze took {:?}: {}", tids.len(), t0.elapsed(), lossy(&o.stderr).trim());
    orig.expect_killed_by_ckpt();

    let t0 = Instant::now();
    let mut proc_ = resume_launch(&image).spawn();
    let pid = assert_threads_eventually(&mut proc_, &before, look, MAPS_TIMEOUT);
    eprintln!("{name}: resumed with every thread in {:?}", t0.elapsed());
    assert_eq!(pid, tids[0], "the resumed process did not get its PID back");
    Resumed { proc_, pid, tids, before: before_lines, image }
}

impl Resumed {
    /// Opens the gate; the fixture must end successfully and print "ok".
    fn finish(mut self, dir: &TestDir) -> Finished {
        open_gate(&dir.gate());
        let fin = self.proc_.wait_output(RESUME_TIMEOUT);
        fin.assert_success();
        fin.line_starting("ok");
        fin
    }
}

// ---------------------------------------------------------------------------
// Mutexes, condition variables, barriers, __thread data, pthread_kill, names

/// mt_sync with `n` threads, frozen mid-round: the rounds go on after the resume
/// (the fixture checks every count, signal, name and TID); the thread names in
/// /proc are the same.
fn sync_threads(static_: bool, n: usize) {
    let dir = TestDir::new(&format!("mt_sync{n}"));
    let r = freeze_resume(&dir, "mt_sync", static_, &[&n.to_string()], Look::Names);
    assert_eq!(r.tids.len(), n);
    let names: Vec<String> = threads_view(r.pid, Look::Names).into_values().map(|v| v.comm).collect();
    for i in 1..n {
        assert!(names.contains(&format!("w{i}")), "no thread named w{i}: {names:?}");
    }
    let fin = r.finish(&dir);
    fin.line_starting("rounds ");
}

fn sync_2(static_: bool) {
    sync_threads(static_, 2);
}

fn sync_8(static_: bool) {
    sync_threads(static_, 8);
}

fn sync_64(static_: bool) {
    sync_threads(static_, 64);
}

both_variants!(sync_2, sync_8, sync_64);

// ---------------------------------------------------------------------------
// Robust mutexes

/// A robust mutex held across the freeze still belongs to its owner thread (its
/// unlock works, the main thread's gives EPERM, a trylock EBUSY), the thread
/// blocked on it gets it, and a holder that ends makes the next lock EOWNERDEAD.
fn robust_mutex(static_: bool) {
    let dir = TestDir::new("mt_robust");
    let r = freeze_resume(&dir, "mt_robust", static_, &[], Look::Names);
    assert_eq!(r.tids.len(), 4);
    r.finish(&dir);
}

both_variants!(robust_mutex);

// ---------------------------------------------------------------------------
// Threads blocked in system calls

/// System call the mt_blocked fixture's kind waits in.
fn kind_syscall(kind: &str) -> &'static str {
    match kind {
        "cond" | "futex" => "futex",
        "sleep" => "nanosleep",
        "rel" | "abs" => "clock_nanosleep",
        "read" => "read",
        _ => panic!("unknown kind {kind}"),
    }
}

/// Threads blocked in futex waits, nanosleep, clock_nanosleep (relative and
/// absolute) and a pipe read at the freeze: `ckpt info` names each one's system
/// call, and after the resume each returns as it should (woken, or at its
/// deadline).
fn blocked_threads(static_: bool, n: usize) {
    let dir = TestDir::new(&format!("mt_blocked{n}"));
    let r = freeze_resume(&dir, "mt_blocked", static_, &[&n.to_string()], Look::Signals);
    let kinds: BTreeMap<usize, String> = r
        .before
        .iter()
        .filter_map(|l| {
            let mut it = l.strip_prefix("kind ")?.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.to_owned()))
        })
        .collect();
    assert_eq!(kinds.len(), n - 1, "{:?}", r.before);
    let threads = info_threads(&r.image);
    for (i, kind) in &kinds {
        let tid = r.tids[*i];
        let t = threads
            .iter()
            .find(|t| t["tid"] == tid)
            .unwrap_or_else(|| panic!("ckpt info lists no thread {tid}: {threads:?}"));
        assert_eq!(t["syscall"]["name"], kind_syscall(kind), "thread {i} ({kind}): {t}");
        assert_ne!(t["syscall"]["state"], "none", "thread {i} ({kind}): {t}");
    }
    r.finish(&dir);
}

fn blocked_7(static_: bool) {
    blocked_threads(static_, 7);
}

fn blocked_64(static_: bool) {
    blocked_threads(static_, 64);
}

both_variants!(blocked_7, blocked_64);

/// `ckpt info --json FILE`'s "threads" array.
fn info_threads(image: &std::path::Path) -> Vec<serde_json::Value> {
    let mut cmd = std::process::Command::new(ckpt_bin());
    cmd.arg("info").arg("--json").arg(image);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt info");
    assert!(o.status.success(), "ckpt info --json failed\n{}", describe_output(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("ckpt info --json prints JSON");
    let keys: Vec<&String> = v.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    v["threads"].as_array().unwrap_or_else(|| panic!("no threads array in ckpt info --json (keys {keys:?})")).clone()
}

// ---------------------------------------------------------------------------
// Per-thread signal state and timers

/// Per-thread altstacks, blocked masks and thread-directed pending signals (and a
/// process-wide one) are the same in /proc after the resume; each signal is then
/// delivered to its own thread, on its altstack, with its value.
fn signal_state(static_: bool, n: usize) {
    let dir = TestDir::new(&format!("mt_sigstate{n}"));
    let r = freeze_resume(&dir, "mt_sigstate", static_, &[&n.to_string()], Look::Signals);
    // The odd threads have SIGUSR1 (bit 9) pending; the even ones do not.
    let view = threads_view(r.pid, Look::Signals);
    for (i, tid) in r.tids.iter().enumerate() {
        let pnd = u64::from_str_radix(&view[tid].signals.as_ref().unwrap()[1], 16).unwrap();
        assert_eq!(pnd & (1 << 9) != 0, i % 2 == 1, "thread {i} ({tid}): SigPnd {pnd:#x}");
    }
    r.finish(&dir);
}

fn signals_8(static_: bool) {
    signal_state(static_, 8);
}

fn signals_64(static_: bool) {
    signal_state(static_, 64);
}

both_variants!(signals_8, signals_64);

/// A POSIX timer aimed at one thread (SIGEV_THREAD_ID) still signals that
/// thread, and only it, after the resume.
fn thread_timer(static_: bool) {
    let dir = TestDir::new("mt_timer");
    let r = freeze_resume(&dir, "mt_timer", static_, &["4"], Look::Names);
    let target: i32 = r
        .before
        .iter()
        .find_map(|l| l.strip_prefix("target ")?.parse().ok())
        .expect("the fixture names its target thread");
    assert_eq!(target, *r.tids.last().unwrap());
    r.finish(&dir);
}

both_variants!(thread_timer);

// ---------------------------------------------------------------------------
// Registers

/// Every thread spins with its own values in xmm/ymm/zmm, k, MXCSR, x87 and
/// general registers at the freeze and finds them intact after the resume.
fn registers(static_: bool, n: usize) {
    let dir = TestDir::new(&format!("mt_regs{n}"));
    let r = freeze_resume(&dir, "mt_regs", static_, &[&n.to_string()], Look::Names);
    let level = r.before.iter().find_map(|l| l.strip_prefix("level ")).expect("level line").to_owned();
    let fin = r.finish(&dir);
    eprintln!("mt_regs {n}: level {level}: {}", fin.stdout.join(" | "));
}

fn registers_8(static_: bool) {
    registers(static_, 8);
}

fn registers_64(static_: bool) {
    registers(static_, 64);
}

both_variants!(registers_8, registers_64);

// ---------------------------------------------------------------------------
// An exited leader

/// The main thread called pthread_exit: the resumed process shows it exited
/// (zombie leader in /proc/PID/status) and the other threads finish the work with
/// the result of an uninterrupted run.
fn exited_leader(static_: bool) {
    let dir = TestDir::new("mt_leader");
    // Reference: the same work without a freeze.
    let ref_dir = TestDir::new("mt_leader_ref");
    open_gate(&ref_dir.gate());
    let want = spawn_fixture("mt_leader", static_, &["8", ref_dir.gate().to_str().unwrap()])
        .wait_output(RESUME_TIMEOUT)
        .assert_success()
        .line_starting("sum ")
        .to_owned();

    let r = freeze_resume(&dir, "mt_leader", static_, &["8"], Look::Names);
    // The leader runs the restore and exits once it has let the others go.
    let deadline = Instant::now() + MAPS_TIMEOUT;
    while task_state(r.pid, r.pid) != Some('Z') {
        assert!(Instant::now() < deadline, "the resumed leader is in state {:?}, not a zombie", task_state(r.pid, r.pid));
        std::thread::sleep(POLL);
    }
    let st = task_status(r.pid, r.pid, "State").unwrap_or_default();
    assert!(st.starts_with('Z'), "/proc/{}/status State: {st}", r.pid);
    let threads = info_threads(&r.image);
    let leader = threads.iter().find(|t| t["tid"] == r.pid).expect("ckpt info lists the leader");
    assert_eq!(leader["exited"], true, "{leader}");
    let fin = r.finish(&dir);
    assert_eq!(fin.line_starting("leader "), "leader Z");
    assert_eq!(fin.line_starting("sum "), want);
}

both_variants!(exited_leader);

// ---------------------------------------------------------------------------
// Stress

/// The 8-thread mt_sync frozen and resumed CKPT_STRESS_CYCLES times in a row (5
/// unless set; `make stress` runs 100): each resumed process is frozen again, with
/// the same threads each time, and the last one finishes its rounds.
#[test]
fn stress_freeze_resume_cycles() {
    let cycles: usize = std::env::var("CKPT_STRESS_CYCLES")
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("CKPT_STRESS_CYCLES={v} is not a number")))
        .unwrap_or(5);
    let dir = TestDir::new("mt_stress");
    let gate = dir.gate();
    let mut orig = spawn_fixture("mt_sync", false, &["8", gate.to_str().unwrap()]);
    orig.wait_ready();
    let tids = printed_tids(&orig.out().snapshot());
    let view = threads_view(orig.pid(), Look::Names);
    assert_eq!(view.len(), 8, "{view:?}");
    let mut image = dir.image("cycle0");
    freeze_ok(orig.pid(), &image, &[]);
    orig.expect_killed_by_ckpt();
    let started = Instant::now();
    for cycle in 1..=cycles {
        let mut p = resume_launch(&image).label(&format!("resume #{cycle}")).spawn();
        let pid = assert_threads_eventually(&mut p, &view, Look::Names, MAPS_TIMEOUT);
        assert_eq!(pid, tids[0], "cycle {cycle}: the PID did not come back");
        if cycle == cycles {
            open_gate(&gate);
            let fin = p.wait_output(RESUME_TIMEOUT);
            fin.assert_success();
            fin.line_starting("ok");
            break;
        }
        let next = dir.image(&format!("cycle{cycle}"));
        let o = freeze(pid, &next, &[]);
        assert!(o.status.success(), "cycle {cycle}: freeze of the resumed process failed\n{}\n{}", describe_output(&o), p.describe());
        p.expect_killed_by_ckpt();
        std::fs::remove_file(&image).unwrap();
        image = next;
    }
    eprintln!("{cycles} freeze/resume cycles of 8 threads in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// The fixtures themselves

/// Every mt_* fixture passes its own checks without any freeze (a failure here
/// is a fixture bug, not a ckpt bug). Needs no working ckpt.
#[test]
fn mt_fixtures_pass_unfrozen() {
    let dir = TestDir::new("mt_unfrozen");
    let gate = dir.gate();
    let g = gate.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("mt_sync", &["2", g]),
        ("mt_sync", &["8", g]),
        ("mt_robust", &[g]),
        ("mt_blocked", &["7", g]),
        ("mt_sigstate", &["8", g]),
        ("mt_timer", &["4", g]),
        ("mt_regs", &["8", g]),
        ("mt_leader", &["8", g]),
    ];
    for static_ in [false, true] {
        let mut procs: Vec<Proc> = cases.iter().map(|(n, a)| spawn_fixture(n, static_, a)).collect();
        for p in &procs {
            p.wait_ready();
            let lines = p.out().snapshot();
            let mut tids = printed_tids(&lines);
            tids.sort_unstable();
            assert_eq!(task_ids(p.pid()), tids, "{}", p.describe());
        }
        open_gate(&gate);
        for p in &mut procs {
            p.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
        }
        std::fs::remove_file(&gate).unwrap();
    }
}

// ---------------------------------------------------------------------------
// ckpt core

/// `ckpt core` of a frozen mt_blocked: gdb lists every thread by its TID and
/// `thread apply all bt` shows each blocked thread's stack down to its thread
/// function (and main for the leader).
fn core_all_threads(static_: bool) {
    let dir = TestDir::new("mt_core");
    let gate = dir.gate();
    let mut orig = spawn_fixture("mt_blocked", static_, &["7", gate.to_str().unwrap()]);
    orig.wait_ready();
    let tids = printed_tids(&orig.out().snapshot());
    let img = dir.image("mt_blocked");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let core = dir.join("core");
    let mut cmd = std::process::Command::new(ckpt_bin());
    cmd.arg("core").arg(&img).arg("-o").arg(&core);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt core");
    assert!(o.status.success(), "ckpt core failed\n{}", describe_output(&o));

    let mut cmd = std::process::Command::new("gdb");
    cmd.args(["-nx", "-batch", "-iex", "set debuginfod enabled off", "-ex", "info threads", "-ex", "thread apply all bt"])
        .arg(fixture("mt_blocked", static_))
        .arg(&core);
    let o = run_with_timeout(cmd, Duration::from_secs(120)).expect("gdb (install it with scripts/install-deps.sh)");
    let out = lossy(&o.stdout);
    for tid in &tids {
        assert!(out.contains(&format!("LWP {tid}")), "gdb does not list thread {tid}\n{}", describe_output(&o));
    }
    let stacks = out.matches(" blocker (arg=").count();
    assert_eq!(stacks, tids.len() - 1, "gdb shows {stacks} stacks in blocker, want {}\n{}", tids.len() - 1, describe_output(&o));
    assert!(out.contains(" main (argc="), "no stack down to main\n{}", describe_output(&o));
}

both_variants!(core_all_threads);

// ---------------------------------------------------------------------------
// The unprivileged route

/// Every mt_* fixture frozen and resumed by an ordinary user (nobody): the resume
/// gets the PID and every TID back inside a new user + PID namespace, where set_tid
/// is allowed; each fixture then checks its TIDs, robust mutex, blocked calls,
/// signals, timer, registers or exited leader itself.
#[test]
fn mt_fixtures_as_nobody() {
    let d = OpenDir::new("mt-nobody");
    let ck = d.path.join("ckpt");
    std::fs::copy(ckpt_bin(), &ck).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("mt_sync", &["8"]),
        ("mt_robust", &[]),
        ("mt_blocked", &["7"]),
        ("mt_sigstate", &["8"]),
        ("mt_timer", &["4"]),
        ("mt_regs", &["8"]),
        ("mt_leader", &["8"]),
    ];
    for &(name, args) in cases {
        let exe = d.path.join(name);
        std::fs::copy(fixture(name, false), &exe).unwrap();
        let gate = d.path.join(format!("{name}.gate"));
        let img = d.path.join(format!("{name}.resume"));
        let mut orig = d.launch_as_nobody(&exe).args(args).arg(&gate).label(name).spawn();
        orig.wait_ready();
        let mut cmd = d.as_nobody(&ck);
        cmd.arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(&img);
        let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
        assert!(o.status.success(), "freezing {name} as nobody failed\n{}", describe_output(&o));
        orig.expect_killed_by_ckpt();
        let mut res = d.launch_as_nobody(&img).label(name).spawn();
        std::thread::sleep(Duration::from_millis(300));
        open_gate(&gate);
        let fin = res.wait_output(RESUME_TIMEOUT);
        fin.assert_success();
        fin.line_starting("ok");
    }
}
