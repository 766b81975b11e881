//! Harness shared by the e2e tests: fixture builds, per-test directories,
//! process guards, running `ckpt freeze` and resume files, /proc helpers.
//!
//! Every wait here is bounded: on a timeout the process is killed and the test
//! fails with what it printed. Every process a test starts is killed on drop.

mod ckpt;
mod output;
mod process;
mod procfs;
mod tasks;
mod tmux;

pub use ckpt::*;
pub use output::*;
pub use process::*;
pub use procfs::*;
pub use tasks::*;
pub use tmux::*;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// Until a fixture prints "ready".
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// One `ckpt freeze` of a small process.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(60);
/// One `ckpt freeze` (or resume) of the 1 GiB process.
pub const BIG_TIMEOUT: Duration = Duration::from_secs(300);
/// A resumed (or unfrozen) fixture running to its end.
pub const RESUME_TIMEOUT: Duration = Duration::from_secs(60);
/// A killed process being reaped.
pub const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// The resumed process's maps reaching the frozen process's layout.
pub const MAPS_TIMEOUT: Duration = Duration::from_secs(20);
/// All fixtures compiling.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between "ready" and the freeze, so the fixture is frozen mid-work.
pub const SETTLE: Duration = Duration::from_millis(200);
/// Polling period of every wait loop.
pub const POLL: Duration = Duration::from_millis(10);

/// Path of the `ckpt` binary under test.
pub fn ckpt_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ckpt"))
}

/// tests/fixtures in the source tree.
/// Whether the tests run as root (some need it: binfmt_misc, switching to nobody,
/// privileged restores).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn fixtures_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

// ---------------------------------------------------------------------------
// Fixture builds

/// Extra compiler flags of the fixtures that need some.
fn extra_flags(name: &str) -> &'static [&'static str] {
    match name {
        "threads" => &["-pthread"],
        // The multi-threaded fixtures (mt_*.c).
        _ if name.starts_with("mt_") => &["-pthread"],
        // regs.c needs none: its AVX-512 code is in a top-level asm block.
        _ => &[],
    }
}

static BUILT: OnceLock<Result<(PathBuf, Vec<String>), String>> = OnceLock::new();

/// Builds every tests/fixtures/*.c once per test run, as NAME (dynamic glibc)
/// and NAME-static, into CARGO_TARGET_TMPDIR/e2e-fixtures. Returns the
/// directory and the fixture names; panics with the compiler output on error.
pub fn built_fixtures() -> (&'static Path, &'static [String]) {
    match BUILT.get_or_init(build_all) {
        Ok((dir, names)) => (dir.as_path(), names.as_slice()),
        Err(e) => panic!("building the C fixtures failed:\n{e}"),
    }
}

fn build_all() -> Result<(PathBuf, Vec<String>), String> {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-fixtures");
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let src = fixtures_src();
    let mut names: Vec<String> = fs::read_dir(&src)
        .map_err(|e| format!("{}: {e}", src.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".c")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut jobs = Vec::new();
    for name in &names {
        for static_ in [false, true] {
            let (src, out_dir, name) = (src.clone(), out_dir.clone(), name.clone());
            jobs.push(thread::spawn(move || {
                build_one(&src, &out_dir, &name, static_)
            }));
        }
    }
    let errors: Vec<String> = jobs
        .into_iter()
        .filter_map(|j| {
            j.join()
                .unwrap_or_else(|_| Err("build thread panicked".into()))
                .err()
        })
        .collect();
    if errors.is_empty() {
        Ok((out_dir, names))
    } else {
        Err(errors.join("\n"))
    }
}

fn build_one(src: &Path, out_dir: &Path, name: &str, static_: bool) -> Result<(), String> {
    let final_name = if static_ {
        format!("{name}-static")
    } else {
        name.to_owned()
    };
    let tmp = out_dir.join(format!(".{final_name}.tmp{}", std::process::id()));
    let mut cmd = Command::new("cc");
    cmd.args(["-O1", "-g", "-Wall", "-o"])
        .arg(&tmp)
        .arg(src.join(format!("{name}.c")));
    if static_ {
        cmd.arg("-static");
    }
    cmd.args(extra_flags(name));
    let out =
        run_with_timeout(cmd, BUILD_TIMEOUT).map_err(|e| format!("cc for {final_name}: {e}"))?;
    if !out.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "cc for {final_name} failed ({}):\n{}",
            out.status,
            lossy(&out.stderr)
        ));
    }
    // Rename so that concurrent test runs never see a half-written binary.
    fs::rename(&tmp, out_dir.join(&final_name)).map_err(|e| format!("rename {final_name}: {e}"))
}

/// Path of a built fixture: `name` (dynamic glibc) or `name-static`.
pub fn fixture(name: &str, static_: bool) -> PathBuf {
    let (dir, names) = built_fixtures();
    assert!(
        names.iter().any(|n| n == name),
        "no fixture tests/fixtures/{name}.c"
    );
    dir.join(if static_ {
        format!("{name}-static")
    } else {
        name.to_owned()
    })
}

/// The python3 interpreter itself (not a pyenv shim): required by the tests.
pub fn python3() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", "import sys; print(sys.executable)"]);
        let out = run_with_timeout(cmd, Duration::from_secs(30)).unwrap_or_else(|e| {
            panic!("python3 is required by the e2e tests but could not be run: {e}")
        });
        let exe = lossy(&out.stdout).trim().to_owned();
        assert!(
            out.status.success() && !exe.is_empty(),
            "python3 is required by the e2e tests: {out:?}"
        );
        PathBuf::from(exe)
    })
}

// ---------------------------------------------------------------------------
// Per-test directory

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under CARGO_TARGET_TMPDIR/e2e-tests, removed on drop
/// (kept if CKPT_E2E_KEEP is set, for debugging).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let seq = DIR_SEQ.fetch_add(1, Ordering::SeqCst);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e-tests")
            .join(format!("{name}-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("images")).expect("create test dir");
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// Where to write an image: TestDir/images/NAME (images/ starts empty).
    pub fn image(&self, name: &str) -> PathBuf {
        self.path.join("images").join(name)
    }

    /// Path of the gate file a gated fixture waits for (not created yet).
    pub fn gate(&self) -> PathBuf {
        self.path.join("gate")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("CKPT_E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Creates the gate file, letting a gated fixture go on.
pub fn open_gate(gate: &Path) {
    fs::write(gate, b"").expect("create gate file");
}

/// Names of the entries of a directory (empty if it does not exist).
pub fn dir_entries(dir: &Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
