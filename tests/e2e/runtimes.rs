//! Real multi-threaded runtimes frozen mid-work: a Go program with many goroutines,
//! a Java thread pool under G1, node with timers and a worker_threads Worker,
//! python3 threads, and numpy on several OpenBLAS threads. Each program
//! (tests/fixtures/goroutines.go, ThreadPool.java, workers.js, threads.py,
//! numpy_threads.py) computes a deterministic result in numbered steps; the
//! resumed run must print the steps the original had not printed, once each, and
//! the result of an uninterrupted run. Go, Java and node programs, and python3
//! threads, also run as user nobody (freeze and resume as nobody).
//!
//! Every runtime is required: a missing one fails its test, naming the Debian
//! package that scripts/install-deps.sh installs.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// A runtime's reference run or resumed run to its end.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(180);
/// Between "ready" and the freeze: the program is well into its work.
const MID_WORK: Duration = Duration::from_millis(500);

/// The absolute path of `tool` on PATH; panics naming the package that provides
/// it if there is none.
fn require(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file()))
        .unwrap_or_else(|| {
            panic!("{tool} is required by the runtime tests and is not on PATH: run scripts/install-deps.sh (Debian package {package})")
        })
}

/// CARGO_TARGET_TMPDIR/runtimes/NAME, built once per test run by `build`.
fn built(cell: &'static OnceLock<Result<PathBuf, String>>, name: &str, build: fn(&Path) -> Result<(), String>) -> PathBuf {
    let r = cell.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtimes").join(name);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        build(&dir).map(|()| dir)
    });
    r.clone().unwrap_or_else(|e| panic!("building the {name} program failed: {e}"))
}

fn run_build(cmd: Command, what: &str) -> Result<(), String> {
    let o = run_with_timeout(cmd, BUILD_TIMEOUT).map_err(|e| format!("{what}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed:\n{}", describe_output(&o)))
    }
}

/// tests/fixtures/goroutines.go built with `go build` (cache and GOPATH in the
/// build directory); the directory holds `goroutines`.
fn go_program() -> PathBuf {
    static GO: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built(&GO, "go", |dir| {
        let mut cmd = Command::new(require("go", "golang-go"));
        cmd.arg("build")
            .arg("-o")
            .arg(dir.join("goroutines"))
            .arg(fixtures_src().join("goroutines.go"))
            .current_dir(dir)
            .env("GOCACHE", dir.join("gocache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GO111MODULE", "auto");
        run_build(cmd, "go build")
    })
    .join("goroutines")
}

/// tests/fixtures/ThreadPool.java compiled with javac; the directory is the class path.
fn java_classes() -> PathBuf {
    static JAVA: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    built(&JAVA, "java", |dir| {
        let mut cmd = Command::new(require("javac", "default-jdk-headless"));
        cmd.arg("-d").arg(dir).arg(fixtures_src().join("ThreadPool.java"));
        run_build(cmd, "javac")
    })
}

/// One program run: executable, arguments, environment.
#[derive(Clone)]
struct Program {
    label: &'static str,
    exe: PathBuf,
    args: Vec<OsString>,
    env: Vec<(&'static str, &'static str)>,
    /// Prefix of its step lines ("round ", "step ").
    step: &'static str,
    /// It must have at least this many threads when frozen.
    min_threads: usize,
}

impl Program {
    fn launch(&self, nobody: Option<&OpenDir>) -> Launch {
        let mut l = match nobody {
            Some(d) => d.launch_as_nobody(&self.exe),
            None => Launch::new(&self.exe),
        };
        l = l.args(&self.args).label(self.label);
        for (k, v) in &self.env {
            l = l.env(k, v);
        }
        l
    }
}

/// The step lines of `lines` are exactly `prefix`0 .. `prefix`(n-1), in order.
fn assert_steps(lines: &[String], prefix: &str, n: usize, what: &str) {
    let got: Vec<&str> = lines.iter().filter(|l| l.starts_with(prefix)).map(String::as_str).collect();
    let want: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    if got != want {
        let bad = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
        let lo = bad.saturating_sub(2);
        panic!(
            "{what}: steps are not {prefix}0..{n} once each in order ({} lines); first difference at {bad}: got {:?}, want {:?}",
            got.len(),
            &got[lo..(bad + 3).min(got.len())],
            &want[lo..(bad + 3).min(want.len())]
        );
    }
}

/// Runs `p` to its end once (the reference), then again, freezes it mid-work,
/// resumes it and compares: the resumed run prints the missing steps and the same
/// result. The image is written to `img`. With `nobody`, the program, ckpt and the
/// resume all run as nobody.
fn frozen_mid_work(p: &Program, img: &Path, nobody: Option<&OpenDir>) {
    let reference = p.launch(nobody).label("reference").spawn().wait_output(RUNTIME_TIMEOUT);
    reference.assert_success();
    let want = reference.line_starting("result ").to_owned();
    let steps = reference.stdout.iter().filter(|l| l.starts_with(p.step)).count();

    let mut orig = p.launch(nobody).spawn();
    orig.wait_ready();
    thread::sleep(MID_WORK);
    let threads = task_ids(orig.pid()).len();
    assert!(threads >= p.min_threads, "{} has {threads} threads, want at least {}", p.label, p.min_threads);

    let t0 = Instant::now();
    let o = match nobody {
        None => freeze_with_timeout(orig.pid(), img, &["-v"], FREEZE_TIMEOUT),
        Some(d) => {
            let ck = d.path.join("ckpt");
            if !ck.exists() {
                fs::copy(ckpt_bin(), &ck).unwrap();
            }
            let mut cmd = d.as_nobody(&ck);
            cmd.arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(img).arg("-v");
            run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody")
        }
    };
    let took = t0.elapsed();
    assert!(o.status.success(), "freezing {} ({threads} threads) failed\n{}", p.label, describe_output(&o));
    eprintln!("{} ({threads} threads): freeze took {took:?}: {}", p.label, lossy(&o.stderr).trim());
    let before = orig.expect_killed_by_ckpt();
    assert!(!before.iter().any(|l| l.starts_with("result")), "{} finished before the freeze: {before:?}", p.label);

    let t0 = Instant::now();
    let launch = match nobody {
        Some(d) => d.launch_as_nobody(img),
        None => resume_launch(img),
    };
    let mut res = launch.label("resumed").spawn();
    let first = res.wait_line_starting(p.step, RUNTIME_TIMEOUT);
    eprintln!("{}: first step after the resume ({first}) {:?} after starting the file", p.label, t0.elapsed());
    let fin = res.wait_output(RUNTIME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.line_starting("result "), want, "{fin}");
    assert_steps(&[before, fin.stdout.clone()].concat(), p.step, steps, &format!("{} original + resumed", p.label));
}

/// [`frozen_mid_work`] as the user running the tests, in a fresh test directory.
fn frozen_mid_work_here(p: &Program) {
    let dir = TestDir::new(p.label);
    frozen_mid_work(p, &dir.image(p.label), None);
}

/// [`frozen_mid_work`] as nobody, the image in the shared directory.
fn frozen_mid_work_as_nobody(p: &Program, d: &OpenDir) {
    frozen_mid_work(p, &d.path.join(format!("{}.resume", p.label)), Some(d));
}

fn go() -> Program {
    Program { label: "goroutines", exe: go_program(), args: vec![], env: vec![], step: "round ", min_threads: 3 }
}

fn java() -> Program {
    Program {
        label: "ThreadPool",
        exe: require("java", "default-jdk-headless"),
        args: ["-XX:+UseG1GC", "-cp"].map(OsString::from).into_iter().chain([java_classes().into(), "ThreadPool".into()]).collect(),
        env: vec![],
        step: "round ",
        min_threads: 10,
    }
}

fn node() -> Program {
    Program {
        label: "workers.js",
        exe: require("node", "nodejs"),
        args: vec![fixtures_src().join("workers.js").into()],
        env: vec![],
        step: "round ",
        min_threads: 3,
    }
}

fn python_threads(python: &Path, script: &Path) -> Program {
    Program { label: "threads.py", exe: python.to_owned(), args: vec![script.into()], env: vec![], step: "round ", min_threads: 9 }
}

#[test]
fn go_goroutines() {
    frozen_mid_work_here(&go());
}

#[test]
fn java_thread_pool_g1() {
    frozen_mid_work_here(&java());
}

#[test]
fn node_timers_and_worker() {
    frozen_mid_work_here(&node());
}

#[test]
fn python_threading() {
    frozen_mid_work_here(&python_threads(python3(), &fixtures_src().join("threads.py")));
}

/// numpy with 2 OpenBLAS threads (the interpreter's own thread is one of them;
/// OpenBLAS uses no more threads than there are CPUs, 2 on the test machines).
#[test]
fn python_numpy_openblas_threads() {
    let py = python3();
    let mut cmd = Command::new(py);
    cmd.args(["-c", "import numpy"]);
    let o = run_with_timeout(cmd, Duration::from_secs(60)).expect("python3");
    assert!(
        o.status.success(),
        "numpy is required by this test for {}: run scripts/install-deps.sh\n{}",
        py.display(),
        describe_output(&o)
    );
    let p = Program {
        label: "numpy_threads.py",
        exe: py.to_owned(),
        args: vec![fixtures_src().join("numpy_threads.py").into()],
        env: vec![("OPENBLAS_NUM_THREADS", "2")],
        step: "step ",
        min_threads: 2,
    };
    frozen_mid_work_here(&p);
}

// ---------------------------------------------------------------------------
// As an ordinary user

/// A world-writable directory for a test as nobody, or None (printed) when the
/// tests do not run as root.
fn nobody_dir(test: &str) -> Option<OpenDir> {
    if !is_root() {
        eprintln!("{test}: skipped (needs root to switch to nobody)");
        return None;
    }
    Some(OpenDir::new(test))
}

/// Copies `src` into the directory, readable (and runnable) by everyone.
fn share(dir: &OpenDir, src: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let to = dir.path.join(src.file_name().unwrap());
    fs::copy(src, &to).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).unwrap();
    to
}

#[test]
fn go_goroutines_as_nobody() {
    let Some(d) = nobody_dir("go-nobody") else { return };
    let mut p = go();
    p.exe = share(&d, &p.exe);
    frozen_mid_work_as_nobody(&p, &d);
}

#[test]
fn java_thread_pool_as_nobody() {
    let Some(d) = nobody_dir("java-nobody") else { return };
    let mut p = java();
    share(&d, &java_classes().join("ThreadPool.class"));
    p.args = ["-XX:+UseG1GC", "-cp", ".", "ThreadPool"].map(OsString::from).to_vec();
    frozen_mid_work_as_nobody(&p, &d);
}

#[test]
fn node_worker_as_nobody() {
    let Some(d) = nobody_dir("node-nobody") else { return };
    let mut p = node();
    p.args = vec![share(&d, &fixtures_src().join("workers.js")).into()];
    frozen_mid_work_as_nobody(&p, &d);
}

/// The system's python3 (the test's own may live under /root, out of nobody's reach).
#[test]
fn python_threading_as_nobody() {
    let Some(d) = nobody_dir("pythreads-nobody") else { return };
    let py = Path::new("/usr/bin/python3");
    assert!(py.exists(), "/usr/bin/python3 is required for the python test as nobody (Debian package python3)");
    let script = share(&d, &fixtures_src().join("threads.py"));
    frozen_mid_work_as_nobody(&python_threads(py, &script), &d);
}
