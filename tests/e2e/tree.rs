//! Process trees (`ckpt freeze --tree`): a process frozen with every descendant and
//! resumed as the same tree — PIDs, parents, zombies, pipes between its processes
//! with their buffered bytes — as root and as an ordinary user (inside the PID
//! namespace the resume makes), objects passed down by any process of it;
//! objects it cannot share again are refused by name; one process failing at
//! resume fails the whole tree (exit 117).
//!
//! Each test prints its freeze and resume times (`--nocapture` shows them).

use crate::util::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// Exit code of a resume whose tree failed (restorer-stub out.rs Step::Tree).
const EXIT_TREE: i32 = 117;

/// The PIDs of the children a tree_basic fixture printed ("children Z W").
fn children_of(p: &Proc) -> Vec<i32> {
    let line = p.wait_line_starting("children ", READY_TIMEOUT);
    line["children ".len()..].split_whitespace().map(|s| s.parse().expect("a pid")).collect()
}

/// `ckpt freeze --tree` of `pid` as the caller, checked; returns how long it took.
fn freeze_tree(pid: i32, img: &Path) -> Duration {
    let t = Instant::now();
    freeze_ok(pid, img, &["--tree"]);
    t.elapsed()
}

fn report(what: &str, freeze: Duration, resume: Duration) {
    eprintln!("tree {what}: freeze {:.1} ms, resume to the end {:.1} ms", freeze.as_secs_f64() * 1e3, resume.as_secs_f64() * 1e3);
}

/// A parent with a zombie child and a child writing into a pipe to it: after the
/// resume the pipe carries the bytes buffered at the freeze and the ones written
/// after, once each; the zombie is reaped with its status; PIDs are the same.
#[test]
fn zombie_and_pipe() {
    let dir = TestDir::new("tree_basic");
    let gate = dir.gate();
    let mut orig = spawn_fixture("tree_basic", false, &[gate.to_str().unwrap()]);
    let kids = children_of(&orig);
    orig.wait_ready();
    let img = dir.image("tree_basic");
    let tf = freeze_tree(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    // `ckpt info` lists the processes, the zombie with the status it exited with.
    let mut info = std::process::Command::new(ckpt_bin());
    info.arg("info").arg(&img);
    let o = run_with_timeout(info, FREEZE_TIMEOUT).expect("ckpt info");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("process tree (3 processes)") && text.contains("zombie, wait status 0x700"), "{text}");
    resume_to_ok(&img, &kids, &gate, "zombie_and_pipe", tf);
}

/// The same as user nobody: the tree resumes inside a new PID namespace, where
/// every process gets its PID back.
#[test]
fn zombie_and_pipe_as_nobody() {
    if !is_root() {
        eprintln!("zombie_and_pipe_as_nobody: skipped (needs root to switch to nobody)");
        return;
    }
    let dir = OpenDir::new("tree_basic-nobody");
    let base = dir.path.clone();
    let fx = base.join("tree_basic");
    fs::copy(fixture("tree_basic", false), &fx).unwrap();
    let ck = base.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let mut orig = dir.launch_as_nobody(&fx).arg(base.join("gate")).label("tree_basic").spawn();
    let kids = children_of(&orig);
    for k in &kids {
        orig.track_pid(*k);
    }
    orig.wait_ready();
    let img = base.join("x.resume");
    let tf = freeze_tree_as_nobody(&dir, &ck, orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    let t = Instant::now();
    let mut res = dir.launch_as_nobody(&img).label("resumed as nobody").spawn();
    open_gate(&base.join("gate"));
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    report("zombie_and_pipe_as_nobody", tf, t.elapsed());
}

/// `ckpt freeze --tree PID -o IMG` run as nobody with the copy `ck`; its duration.
fn freeze_tree_as_nobody(dir: &OpenDir, ck: &Path, pid: i32, img: &Path) -> Duration {
    let mut cmd = dir.as_nobody(ck);
    cmd.arg("freeze").arg("--tree").arg(pid.to_string()).arg("-o").arg(img);
    let t = Instant::now();
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze --tree as nobody");
    let tf = t.elapsed();
    assert!(o.status.success(), "freeze --tree as nobody failed\n{}", describe_output(&o));
    tf
}

/// The fixture in `mode` frozen with its tree, resumed, gated, ending "ok".
fn tree_basic_resumes(mode: &str, name: &str) {
    let dir = TestDir::new(name);
    let gate = dir.gate();
    let mut orig = spawn_fixture("tree_basic", false, &[gate.to_str().unwrap(), mode]);
    let kids = children_of(&orig);
    orig.wait_ready();
    let img = dir.image(name);
    let tf = freeze_tree(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    resume_to_ok(&img, &kids, &gate, name, tf);
}

/// Resumes the tree_basic tree in `img` (its children `kids` tracked), opens its
/// gate and expects the root's "ok"; reports the freeze and resume times.
fn resume_to_ok(img: &Path, kids: &[i32], gate: &Path, name: &str, tf: Duration) {
    let t = Instant::now();
    let mut resumed = resume_launch(img).spawn();
    for k in kids {
        resumed.track_pid(*k);
    }
    open_gate(gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    report(name, tf, t.elapsed());
}

/// Shared anonymous memory made before the fork is one object again: the child's
/// write after the resume is read by the parent.
#[test]
fn shared_memory_across_fork() {
    tree_basic_resumes("shm", "shared_memory_across_fork");
}

/// An eventfd the root passed down to a child is one object again: the child's
/// write after the resume is read by the root.
#[test]
fn eventfd_passed_down() {
    tree_basic_resumes("eventfd", "eventfd_passed_down");
}

/// An eventfd two processes other than the root share (the root gave it to two
/// children and closed its own) is one object again: the root's restore makes
/// it and both children take it; the third child reads the writer's 5.
#[test]
fn eventfd_shared_below_the_root() {
    tree_basic_resumes("eventfd-kids", "eventfd_shared_below_the_root");
}

/// A child makes a unix socket pair, an eventfd and a locked file and forks a
/// grandchild that keeps one end, the eventfd and the file's open description:
/// after the resume the pair carries the bytes queued at the freeze and the ones
/// written after, the eventfd is one counter, the file's offset moves for both
/// and the child still holds its flock.
#[test]
fn objects_passed_down_below_the_root() {
    passed_down(false);
}

/// The same, frozen and resumed by an ordinary user.
#[test]
fn objects_passed_down_below_the_root_as_nobody() {
    passed_down(true);
}

fn passed_down(nobody: bool) {
    let Some(run) = Runner::new("tree_below", nobody) else { return };
    let base = run.path().to_path_buf();
    let fx = base.join("tree_below");
    fs::copy(fixture("tree_below", false), &fx).unwrap();
    let (gate, file) = (base.join("gate"), base.join("locked"));
    let mut orig = run.launch(&fx).arg(&gate).arg(&file).label("tree_below").spawn();
    let line = orig.wait_line_starting("pids ", READY_TIMEOUT);
    let pids: Vec<i32> = line["pids ".len()..].split_whitespace().map(|s| s.parse().expect("a pid")).collect();
    for k in &pids {
        orig.track_pid(*k);
    }
    orig.wait_ready();
    let img = base.join("below.resume");
    let tf = run.freeze(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    let t = Instant::now();
    let mut resumed = run.launch(&img).label("resumed tree_below").spawn();
    run.track(&mut resumed, &pids);
    open_gate(&gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    report(&run.label("objects_passed_down_below_the_root"), tf, t.elapsed());
}

/// An epoll instance two processes other than the root share (the root closed its
/// own): its registrations belong to the process that made them, so it cannot be
/// made once and given to both: the freeze refuses, naming it and the pids,
/// writes nothing, and the tree runs on.
#[test]
fn epoll_shared_below_the_root_is_refused() {
    let dir = TestDir::new("tree_epoll_kids");
    let gate = dir.gate();
    let mut orig = spawn_fixture("tree_basic", false, &[gate.to_str().unwrap(), "epoll-kids"]);
    let kids = children_of(&orig);
    for k in &kids {
        orig.track_pid(*k);
    }
    orig.wait_ready();
    let img = dir.image("tree_epoll_kids");
    let o = freeze(orig.pid(), &img, &["--tree"]);
    let err = assert_freeze_error(&o);
    assert!(err.contains("[eventpoll]") && err.contains(&format!("pid {}", kids[1])), "the refusal names the epoll instance and the pids: {err}");
    assert!(!img.exists(), "a refused freeze left {}", img.display());
    orig.assert_running();
    open_gate(&gate);
    let fin = orig.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
}

/// A process of the tree that cannot be restored (a file it had open is gone)
/// fails the whole resume: exit 117 naming its pid, and no process of the tree
/// is left behind.
#[test]
fn one_failing_process_fails_the_tree() {
    let dir = TestDir::new("tree_fail");
    let gate = dir.gate();
    let kept = dir.join("kept-open");
    fs::write(&kept, b"x").unwrap();
    let mut orig = spawn_fixture("tree_basic", false, &[gate.to_str().unwrap(), "file", kept.to_str().unwrap()]);
    let kids = children_of(&orig);
    orig.wait_ready();
    let img = dir.image("tree_fail");
    freeze_tree(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    fs::remove_file(&kept).unwrap();
    let mut resumed = resume_launch(&img).spawn();
    for k in &kids {
        resumed.track_pid(*k);
    }
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    assert_eq!(fin.status.code(), Some(EXIT_TREE), "{fin}");
    let writer = kids[1];
    assert!(fin.stderr.contains(&format!("pid {writer}")) && fin.stderr.contains("restore process tree failed"), "{}", fin.stderr);
    assert!(fin.stderr.contains("kept-open"), "the writer's own failure names the file: {}", fin.stderr);
    for k in &kids {
        wait_state(*k, |s| s.is_none() || s == Some('Z'), REAP_TIMEOUT);
    }
}

/// Lines a shell pipeline's consumer wrote, read until it has at least `n`.
fn wait_lines(path: &Path, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while fs::read_to_string(path).map_or(0, |s| s.lines().count()) < n {
        assert!(Instant::now() < deadline, "{} never reached {n} lines", path.display());
        std::thread::sleep(POLL);
    }
}

/// A bash script running `producer | filter | consumer`, frozen mid-stream and
/// resumed: the consumer's file ends as an uninterrupted run's (every line once,
/// in order).
#[test]
fn shell_pipeline_mid_stream() {
    let dir = TestDir::new("tree_pipeline");
    let (script, out) = (dir.join("pipeline.sh"), dir.join("out.txt"));
    write_pipeline(&script);
    let mut orig = Launch::new("bash").arg(&script).arg(&out).label("pipeline").spawn();
    wait_lines(&out, 30, READY_TIMEOUT);
    let img = dir.image("pipeline");
    let tf = freeze_tree(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    let frozen_at = fs::read_to_string(&out).unwrap().lines().count();
    let t = Instant::now();
    let fin = resume(&img);
    check_pipeline(&fin, &out, frozen_at);
    report("shell_pipeline_mid_stream", tf, t.elapsed());
}

/// The same pipeline run, frozen and resumed by an ordinary user (the resume makes
/// the PID namespace the tree's PIDs live in).
#[test]
fn shell_pipeline_mid_stream_as_nobody() {
    if !is_root() {
        eprintln!("shell_pipeline_mid_stream_as_nobody: skipped (needs root to switch to nobody)");
        return;
    }
    let dir = OpenDir::new("tree_pipeline-nobody");
    let base = dir.path.clone();
    let (script, out) = (base.join("pipeline.sh"), base.join("out.txt"));
    write_pipeline(&script);
    let ck = base.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let mut orig = dir.launch_as_nobody(Path::new("/bin/bash")).arg(&script).arg(&out).label("pipeline as nobody").spawn();
    wait_lines(&out, 30, READY_TIMEOUT);
    let img = base.join("x.resume");
    let tf = freeze_tree_as_nobody(&dir, &ck, orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    let frozen_at = fs::read_to_string(&out).unwrap().lines().count();
    let t = Instant::now();
    let fin = dir.launch_as_nobody(&img).label("resumed pipeline as nobody").spawn().wait_output(RESUME_TIMEOUT);
    check_pipeline(&fin, &out, frozen_at);
    report("shell_pipeline_mid_stream_as_nobody", tf, t.elapsed());
}

const PIPELINE_N: u64 = 300;

/// `producer | filter | consumer`: the numbers to PIPELINE_N, squared, summed as
/// they come, the sums written to the file named by the script's argument.
fn write_pipeline(script: &Path) {
    let n = PIPELINE_N;
    fs::write(
        script,
        format!(
            "i=1; while [ $i -le {n} ]; do echo $i; i=$((i+1)); sleep 0.01; done \\\n\
             | while read x; do echo $((x*x)); done \\\n\
             | {{ s=0; while read y; do s=$((s+y)); echo $s; done; }} > \"$1\"\n\
             echo done\n"
        ),
    )
    .unwrap();
}

/// The resumed pipeline ended as an uninterrupted run would have.
fn check_pipeline(fin: &Finished, out: &Path, frozen_at: usize) {
    assert!((frozen_at as u64) < PIPELINE_N, "the pipeline ended before the freeze");
    fin.assert_success();
    assert_eq!(fin.stdout, vec!["done".to_string()], "{fin}");
    let want: Vec<String> = (1..=PIPELINE_N).scan(0u64, |s, x| {
        *s += x * x;
        Some(s.to_string())
    }).collect();
    let got: Vec<String> = fs::read_to_string(out).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(got, want, "the consumer's output differs from an uninterrupted run's (frozen at line {frozen_at})");
}

/// Without --tree a process with children is frozen alone, with a warning that
/// names them and says how to take them.
#[test]
fn without_tree_the_children_are_named() {
    let dir = TestDir::new("tree_warn");
    let gate = dir.gate();
    let mut orig = spawn_fixture("tree_basic", false, &[gate.to_str().unwrap()]);
    let kids = children_of(&orig);
    for k in &kids {
        orig.track_pid(*k);
    }
    orig.wait_ready();
    let img = dir.image("tree_warn");
    let o = freeze_ok(orig.pid(), &img, &["--leave-running"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&kids[1].to_string()) && err.contains("--tree"), "{err}");
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success();
}

/// python3 multiprocessing.Pool(4) frozen in the middle of a map and resumed: the
/// map completes with the right result (the pool's pipes, its semaphores in
/// shared memory and its four workers come back together).
#[test]
fn python_pool_mid_map() {
    let dir = TestDir::new("tree_pool");
    let script = dir.join("pool.py");
    write_pool(&script);
    let mut orig = Launch::new(python3()).arg(&script).label("pool").spawn();
    orig.wait_ready();
    std::thread::sleep(Duration::from_millis(700));
    let img = dir.image("pool");
    let tf = freeze_tree(orig.pid(), &img);
    let before = orig.expect_killed_by_ckpt();
    let t = Instant::now();
    let fin = resume(&img);
    check_pool(&before, &fin);
    report("python_pool_mid_map", tf, t.elapsed());
}

/// The same map, frozen and resumed by an ordinary user (with the system's
/// python3, which that user can run).
#[test]
fn python_pool_mid_map_as_nobody() {
    if !is_root() {
        eprintln!("python_pool_mid_map_as_nobody: skipped (needs root to switch to nobody)");
        return;
    }
    let dir = OpenDir::new("tree_pool-nobody");
    let base = dir.path.clone();
    let script = base.join("pool.py");
    write_pool(&script);
    let ck = base.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let mut orig = dir.launch_as_nobody(Path::new("/usr/bin/python3")).arg(&script).label("pool as nobody").spawn();
    orig.wait_ready();
    std::thread::sleep(Duration::from_millis(700));
    let img = base.join("x.resume");
    let tf = freeze_tree_as_nobody(&dir, &ck, orig.pid(), &img);
    let before = orig.expect_killed_by_ckpt();
    let t = Instant::now();
    let fin = dir.launch_as_nobody(&img).label("resumed pool as nobody").spawn().wait_output(RESUME_TIMEOUT);
    check_pool(&before, &fin);
    report("python_pool_mid_map_as_nobody", tf, t.elapsed());
}

/// A multiprocessing.Pool(4) mapping squares over 400 numbers, 20 ms each.
fn write_pool(script: &Path) {
    fs::write(
        script,
        "import multiprocessing as mp, sys, time\n\
         def work(x):\n    time.sleep(0.02)\n    return x * x\n\
         if __name__ == '__main__':\n\
         \x20   with mp.Pool(4) as p:\n\
         \x20       print('ready', flush=True)\n\
         \x20       r = p.map(work, range(400), chunksize=1)\n\
         \x20   print('sum', sum(r), flush=True)\n",
    )
    .unwrap();
}

/// The map was cut by the freeze and its resumed result is the right one.
fn check_pool(before: &[String], fin: &Finished) {
    assert!(!before.iter().any(|l| l.starts_with("sum")), "the map ended before the freeze");
    fin.assert_success();
    let want: u64 = (0..400u64).map(|x| x * x).sum();
    assert_eq!(fin.line_starting("sum "), format!("sum {want}"));
}

/// Where a tree test runs: as the caller in its own test directory, or as user
/// nobody in a directory that user can write, with a copy of ckpt it can run.
enum Runner {
    Caller(TestDir),
    Nobody(OpenDir, std::path::PathBuf),
}

impl Runner {
    /// None (the test is skipped) for nobody when the tests do not run as root.
    fn new(name: &str, nobody: bool) -> Option<Runner> {
        if !nobody {
            return Some(Runner::Caller(TestDir::new(name)));
        }
        if !is_root() {
            eprintln!("{name}_as_nobody: skipped (needs root to switch to nobody)");
            return None;
        }
        let dir = OpenDir::new(&format!("{name}-nobody"));
        let ck = dir.path.join("ckpt");
        fs::copy(ckpt_bin(), &ck).unwrap();
        Some(Runner::Nobody(dir, ck))
    }

    fn path(&self) -> &Path {
        match self {
            Runner::Caller(d) => d.path(),
            Runner::Nobody(d, _) => &d.path,
        }
    }

    /// `program` (an absolute path: nobody cannot run the shims under /root).
    fn launch(&self, program: &Path) -> Launch {
        match self {
            Runner::Caller(_) => Launch::new(program),
            Runner::Nobody(d, _) => d.launch_as_nobody(program),
        }
    }

    fn command(&self, program: &Path) -> std::process::Command {
        match self {
            Runner::Caller(_) => std::process::Command::new(program),
            Runner::Nobody(d, _) => d.as_nobody(program),
        }
    }

    /// `ckpt freeze --tree` of `pid`, checked; how long it took.
    fn freeze(&self, pid: i32, img: &Path) -> Duration {
        match self {
            Runner::Caller(_) => freeze_tree(pid, img),
            Runner::Nobody(d, ck) => freeze_tree_as_nobody(d, ck, pid, img),
        }
    }

    /// PIDs of the original tree to kill on drop: only as the caller (as nobody
    /// the resumed tree's PIDs live in its own PID namespace, and the same
    /// numbers outside are someone else's).
    fn track(&self, p: &mut Proc, pids: &[i32]) {
        if matches!(self, Runner::Caller(_)) {
            for &k in pids {
                p.track_pid(k);
            }
        }
    }

    fn label(&self, what: &str) -> String {
        match self {
            Runner::Caller(_) => what.to_string(),
            Runner::Nobody(..) => format!("{what}_as_nobody"),
        }
    }
}

/// A pre-forking server (python: a master and 2 workers accepting on one listening
/// socket) frozen between requests: after the resume the workers answer on the
/// same port, from their own PIDs.
#[test]
fn preforking_server_answers_after() {
    preforking_server(false);
}

/// The same server run, frozen and resumed by an ordinary user (with the system's
/// python3; the workers answer with their PIDs inside the resume's PID namespace).
#[test]
fn preforking_server_answers_after_as_nobody() {
    preforking_server(true);
}

fn preforking_server(nobody: bool) {
    use std::io::Read;
    let Some(run) = Runner::new("tree_prefork", nobody) else { return };
    let script = run.path().join("server.py");
    fs::write(
        &script,
        "import os, socket, sys\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', 0)); s.listen(16)\n\
         kids = []\n\
         for _ in range(2):\n\
         \x20   pid = os.fork()\n\
         \x20   if pid == 0:\n\
         \x20       while True:\n\
         \x20           c, _ = s.accept()\n\
         \x20           c.sendall(b'pong %d\\n' % os.getpid()); c.close()\n\
         \x20   kids.append(pid)\n\
         print('workers', *kids, flush=True)\n\
         print('port', s.getsockname()[1], flush=True)\n\
         print('ready', flush=True)\n\
         while True:\n\
         \x20   os.wait()\n",
    )
    .unwrap();
    let py = if nobody { Path::new("/usr/bin/python3") } else { python3() };
    let mut orig = run.launch(py).arg(&script).label("prefork").spawn();
    let workers: Vec<i32> = orig.wait_line_starting("workers ", READY_TIMEOUT)["workers ".len()..].split_whitespace().map(|w| w.parse().unwrap()).collect();
    for w in &workers {
        orig.track_pid(*w);
    }
    let port: u16 = orig.wait_line_starting("port ", READY_TIMEOUT)["port ".len()..].trim().parse().unwrap();
    orig.wait_ready();
    // The resumed master listens again once its own restore is done: until then a
    // connection is refused.
    let ask = || {
        let deadline = Instant::now() + RESUME_TIMEOUT;
        let mut c = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && Instant::now() < deadline => std::thread::sleep(POLL),
                Err(e) => panic!("connect to the server: {e}"),
            }
        };
        c.set_read_timeout(Some(RESUME_TIMEOUT)).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).expect("an answer");
        s
    };
    assert!(ask().starts_with("pong "));
    let img = run.path().join("prefork.resume");
    let tf = run.freeze(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    let t = Instant::now();
    let mut resumed = run.launch(&img).label("resumed prefork").spawn();
    run.track(&mut resumed, &workers);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let a = ask();
        let pid: i32 = a.trim().strip_prefix("pong ").unwrap_or_else(|| panic!("answer {a:?}")).parse().unwrap();
        assert!(workers.contains(&pid), "answered by {pid}, not one of the workers {workers:?}");
        seen.insert(pid);
    }
    report(&format!("{} (to 6 answers)", run.label("preforking_server_answers_after")), tf, t.elapsed());
    resumed.assert_running();
}

/// `make -j2` of a small C project frozen mid-build and resumed: the build ends,
/// and every object and the program equal those of a clean build of the same
/// tree (built first in the same directory, so no path differs).
#[test]
fn make_j2_mid_build() {
    make_j2(false);
}

/// The same build, run, frozen and resumed by an ordinary user.
#[test]
fn make_j2_mid_build_as_nobody() {
    make_j2(true);
}

fn make_j2(nobody: bool) {
    let Some(run) = Runner::new("tree_make", nobody) else { return };
    let src = run.path().join("proj");
    fs::create_dir(&src).unwrap();
    let mut protos = String::new();
    let mut calls = Vec::new();
    for i in 1..=8 {
        fs::write(src.join(format!("f{i}.c")), format!("int f{i}(int x) {{ return x * {i} + {i}; }}\n")).unwrap();
        protos.push_str(&format!("int f{i}(int);\n"));
        calls.push(format!("f{i}({i})"));
    }
    fs::write(src.join("main.c"), format!("#include <stdio.h>\n{protos}int main(void) {{ printf(\"%d\\n\", {}); return 0; }}\n", calls.join(" + "))).unwrap();
    // The sleeps stretch the build so that the freeze lands in its middle.
    fs::write(
        src.join("Makefile"),
        "OBJS = main.o f1.o f2.o f3.o f4.o f5.o f6.o f7.o f8.o\n\
         app: $(OBJS)\n\tsleep 0.2\n\tcc -o $@ $(OBJS)\n\
         %.o: %.c\n\tsleep 0.2\n\tcc -O2 -c -o $@ $<\n\
         clean:\n\trm -f app *.o\n",
    )
    .unwrap();
    if nobody {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&src, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let outputs = ["app", "main.o", "f1.o", "f2.o", "f3.o", "f4.o", "f5.o", "f6.o", "f7.o", "f8.o"];
    let make_bin = Path::new("/usr/bin/make");
    let make = |args: &[&str]| {
        let mut c = run.command(make_bin);
        c.arg("-s").arg("-C").arg(&src).args(args);
        let o = run_with_timeout(c, BUILD_TIMEOUT).expect("make");
        assert!(o.status.success(), "make {args:?}\n{}", describe_output(&o));
    };
    make(&["-j2"]);
    let clean: Vec<Vec<u8>> = outputs.iter().map(|f| fs::read(src.join(f)).unwrap()).collect();
    make(&["clean"]);

    let mut orig = run.launch(make_bin).arg("-j2").arg("-C").arg(&src).label("make -j2").spawn();
    let deadline = Instant::now() + READY_TIMEOUT;
    while !src.join("main.o").exists() {
        assert!(Instant::now() < deadline, "the build made no object");
        std::thread::sleep(POLL);
    }
    let img = run.path().join("make.resume");
    let tf = run.freeze(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    assert!(!src.join("app").exists(), "the build ended before the freeze");
    let t = Instant::now();
    let fin = run.launch(&img).label("resumed make").spawn().wait_output(BUILD_TIMEOUT);
    fin.assert_success();
    for (f, want) in outputs.iter().zip(&clean) {
        let got = fs::read(src.join(f)).unwrap_or_else(|e| panic!("{f} after the resumed build: {e}\n{fin}"));
        assert!(got == *want, "{f} differs from the clean build's\n{fin}");
    }
    report(&run.label("make_j2_mid_build"), tf, t.elapsed());
}

/// Field 8 of /proc/PID/stat: the foreground process group of its terminal.
fn tpgid(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.split_whitespace().nth(5)?.parse().ok()
}

/// A job-control shell (bash -i in a tmux pane) with a job in the foreground (a
/// pipeline, `sleep | cat`: one group of two processes), frozen with its tmux
/// server: after the resume both are in the job's group again and it is the
/// terminal's foreground group, so Ctrl-C reaches the job (the shell reports its
/// status 130) and not the shell, which answers the next command.
#[test]
fn job_control_shell_keeps_its_foreground_job() {
    let _one = crate::fds_tty::PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("tree_fg");
    let t = Tmux::new("tree-fg");
    t.cmd(&["new-session", "-d", "-s", "w", "env PS1='$ ' bash --norc --noprofile -i"]);
    t.cmd(&["send-keys", "-t", "w", "echo before-$((6*7))", "Enter"]);
    t.watch_until("w", "before-42", READY_TIMEOUT);
    let server: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pid}"]).trim().parse().unwrap();
    let shell: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pane_pid}"]).trim().parse().unwrap();
    t.cmd(&["send-keys", "-t", "w", "sleep 300 | cat", "Enter"]);
    let t0 = Instant::now();
    let kids = || -> Vec<i32> {
        let s = fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap_or_default();
        s.split_whitespace().filter_map(|k| k.parse().ok()).collect()
    };
    let pgid = |pid: i32| -> Option<i32> {
        let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        s.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
    };
    let (job, members) = loop {
        let k = kids();
        if let Some(g) = tpgid(shell).filter(|&g| g > 0 && g != shell && k.len() == 2 && k.iter().all(|&p| pgid(p) == Some(g))) {
            break (g, k);
        }
        assert!(t0.elapsed() < READY_TIMEOUT, "the job never became the foreground group");
        std::thread::sleep(POLL);
    };
    let img = dir.image("tree-fg");
    let tf = freeze_tree(server, &img);
    while [server, shell].iter().chain(members.iter()).any(|&p| proc_state(p).is_some_and(|s| s != 'Z')) {
        assert!(t0.elapsed() < READY_TIMEOUT, "a process of the tree still runs after the freeze");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t1 = Instant::now();
    let mut res = resume_launch(&img).label("resumed tmux tree").spawn();
    for &p in members.iter().chain([shell].iter()) {
        res.track_pid(p);
    }
    while tpgid(shell) != Some(job) {
        assert!(t1.elapsed() < READY_TIMEOUT, "the job {job} is not the foreground group after the resume ({:?})\n{}", tpgid(shell), res.describe());
        assert!(res.try_status().is_none(), "the resumed server ended\n{}", res.describe());
        std::thread::sleep(POLL);
    }
    let resumed_in = t1.elapsed();
    for &p in &members {
        assert_eq!(pgid(p), Some(job), "pid {p} of the job is not in the job's group after the resume");
    }
    t.cmd(&["send-keys", "-t", "w", "C-c"]);
    t.cmd(&["send-keys", "-t", "w", "echo rc=$? after-$((6*7))", "Enter"]);
    t.watch_until("w", "rc=130 after-42", RESUME_TIMEOUT);
    assert_eq!(tpgid(shell), Some(shell), "the shell is in the foreground again after its job");
    report("job_control_shell_keeps_its_foreground_job (to the job in the foreground)", tf, resumed_in);
    t.cmd(&["kill-server"]);
    res.wait_exit(RESUME_TIMEOUT);
    wait_ended(&[shell], RESUME_TIMEOUT, "the pane's shell, after its server ended");
    t.remove_socket();
}

/// `--tree --image`: the tree as a raw image, resumed with `ckpt resume` (each
/// process runs the restorer on its own image through the file's fd), and
/// described by `ckpt info`.
#[test]
fn raw_image_of_a_tree_resumes_with_ckpt_resume() {
    let dir = TestDir::new("tree_raw");
    let gate = dir.gate();
    let mut orig = spawn_fixture("tree_basic", false, &[gate.to_str().unwrap(), "shm"]);
    let kids = children_of(&orig);
    orig.wait_ready();
    let img = dir.join("tree.ckpt");
    let t = Instant::now();
    let o = freeze(orig.pid(), &img, &["--tree", "--image"]);
    assert!(o.status.success(), "freeze --tree --image failed\n{}", describe_output(&o));
    let tf = t.elapsed();
    orig.expect_killed_by_ckpt();
    assert_eq!(&fs::read(&img).unwrap()[..8], b"CKPTIMG\x01", "raw image magic");
    let mut info = std::process::Command::new(ckpt_bin());
    info.arg("info").arg(&img);
    let o = run_with_timeout(info, FREEZE_TIMEOUT).expect("ckpt info");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("process tree (3 processes)"), "{text}");
    let t = Instant::now();
    let mut resumed = Launch::new(ckpt_bin()).arg("resume").arg(&img).label("ckpt resume of a tree").spawn();
    for k in &kids {
        resumed.track_pid(*k);
    }
    open_gate(&gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    report("raw_image_of_a_tree_resumes_with_ckpt_resume", tf, t.elapsed());
}

/// `--tree -o -`: the tree streamed through a pipe (`| cat > file`), then run:
/// the same tree comes back (the other processes' images follow the root's in
/// the stream, the gaps between them as zeros).
#[test]
fn tree_streamed_to_stdout_resumes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new("tree_stdout");
    let gate = dir.gate();
    let mut orig = spawn_fixture("tree_basic", false, &[gate.to_str().unwrap(), "eventfd"]);
    let kids = children_of(&orig);
    orig.wait_ready();
    let img = dir.join("streamed.resume");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(r#""$0" freeze --tree "$1" -o - | cat > "$2""#).arg(ckpt_bin()).arg(orig.pid().to_string()).arg(&img);
    let t = Instant::now();
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze --tree -o -");
    let tf = t.elapsed();
    assert!(o.status.success(), "freeze --tree -o - failed\n{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    fs::set_permissions(&img, fs::Permissions::from_mode(0o700)).unwrap();
    resume_to_ok(&img, &kids, &gate, "tree_streamed_to_stdout_resumes", tf);
}

/// A shell whose standard output is a file (`exec > out.txt`) with two background
/// jobs writing to it, frozen mid-way: the three share one open file description
/// of out.txt at fd 1, so after the resume their lines follow each other instead
/// of overwriting each other (each line once, none lost).
#[test]
fn stdout_file_shared_by_the_tree() {
    let dir = TestDir::new("tree_stdout_file");
    let (script, out) = (dir.join("jobs.sh"), dir.join("out.txt"));
    fs::write(
        &script,
        "exec > \"$1\"\n\
         for j in a b; do (i=0; while [ $i -lt 80 ]; do echo $j$i; i=$((i+1)); sleep 0.02; done) & done\n\
         wait\n\
         echo done\n",
    )
    .unwrap();
    let mut orig = Launch::new("bash").arg(&script).arg(&out).label("jobs").spawn();
    wait_lines(&out, 20, READY_TIMEOUT);
    let img = dir.image("jobs");
    let tf = freeze_tree(orig.pid(), &img);
    orig.expect_killed_by_ckpt();
    let t = Instant::now();
    let fin = resume(&img);
    fin.assert_success();
    let got: Vec<String> = fs::read_to_string(&out).unwrap().lines().map(str::to_owned).collect();
    let mut want: Vec<String> = ["a", "b"].iter().flat_map(|j| (0..80).map(move |i| format!("{j}{i}"))).collect();
    want.push("done".into());
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "out.txt lost or repeated lines:\n{}", got.join("\n"));
    assert_eq!(got.last().map(String::as_str), Some("done"));
    report("stdout_file_shared_by_the_tree", tf, t.elapsed());
}
