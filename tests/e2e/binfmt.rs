//! `ckpt binfmt`: a raw image (`ckpt freeze --image`) run by executing it,
//! through a binfmt_misc registration of the plain restorer; conflicts and
//! `status`. Needs root (CI runs as root): otherwise, or when binfmt_misc
//! cannot be mounted, each test prints why it is skipped and passes.
//!
//! Every registration is named `ckpt-test-<pid>-<what>` and removed by a
//! Drop guard, also when the test fails. The tests take a lock: every
//! registration here matches the same magic, and the newest one wins.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::util::*;

/// Lines the counter prints (about 3 s at 10 ms a line).
const N: u64 = 300;
const N_ARG: &str = "300";

const MOUNT: &str = "/proc/sys/fs/binfmt_misc";

/// The uid/gid the unreadable-image test runs as.
const NOBODY: u32 = 65534;

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one still runs.
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `ckpt ARGS...` (bounded).
fn ckpt(args: &[&str]) -> Output {
    let mut cmd = Command::new(ckpt_bin());
    cmd.args(args);
    run_with_timeout(cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("ckpt {args:?}: {e}"))
}

fn ckpt_ok(args: &[&str]) -> String {
    let o = ckpt(args);
    assert!(
        o.status.success(),
        "ckpt {args:?} failed\n{}",
        describe_output(&o)
    );
    lossy(&o.stdout)
}

fn ckpt_err(args: &[&str]) -> String {
    let o = ckpt(args);
    assert!(
        !o.status.success(),
        "ckpt {args:?} should have failed\n{}",
        describe_output(&o)
    );
    lossy(&o.stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Writes this ckpt's plain restorer to DIR/ckpt-restorer.
fn write_restorer(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join("ckpt-restorer");
    ckpt_ok(&["restorer", "-o", s(&p)]);
    p
}

/// A registration made by a test: Drop removes it whatever happened.
struct Registered {
    name: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let entry = Path::new(MOUNT).join(&self.name);
        if !entry.exists() {
            return;
        }
        let o = ckpt(&["binfmt", "unregister", "--name", &self.name]);
        if entry.exists() {
            // ckpt failed to remove it: do it directly (binfmt-misc.rst:
            // echo -1 to the entry file).
            let _ = fs::write(&entry, "-1");
            eprintln!(
                "warning: `ckpt binfmt unregister --name {}` left the entry\n{}",
                self.name,
                describe_output(&o)
            );
        }
    }
}

/// `ckpt binfmt register --name NAME --interpreter INTERP`; None (with a
/// message) when the test must be skipped: not root, or no binfmt_misc.
fn register(name: &str, interp: &Path, test: &str) -> Option<(Registered, String)> {
    if !is_root() {
        eprintln!("skipping {test}: binfmt_misc registration needs root");
        return None;
    }
    // The guard exists before the attempt: a half-done registration is removed too.
    let guard = Registered {
        name: name.to_owned(),
    };
    let o = ckpt(&[
        "binfmt",
        "register",
        "--name",
        name,
        "--interpreter",
        s(interp),
    ]);
    let err = lossy(&o.stderr);
    if !o.status.success()
        && (err.contains("binfmt_misc is not available") || err.contains("needs root"))
    {
        eprintln!("skipping {test}: {}", err.trim());
        return None;
    }
    assert!(
        o.status.success(),
        "ckpt binfmt register failed\n{}",
        describe_output(&o)
    );
    Some((guard, lossy(&o.stdout)))
}

fn test_name(what: &str) -> String {
    format!("ckpt-test-{}-{what}", std::process::id())
}

/// Starts the counter, freezes it to a raw image IMG and returns what the
/// original printed before it was killed.
fn freeze_counter_image(img: &Path) -> Vec<String> {
    let mut orig = spawn_fixture("counter", false, &[N_ARG]);
    orig.wait_ready();
    thread::sleep(SETTLE);
    let o = freeze(orig.pid(), img, &["--image"]);
    assert!(
        o.status.success(),
        "ckpt freeze --image failed\n{}",
        describe_output(&o)
    );
    let mut magic = [0u8; 8];
    fs::File::open(img)
        .and_then(|mut f| f.read_exact(&mut magic))
        .unwrap();
    assert_eq!(
        &magic,
        b"CKPTIMG\x01",
        "raw image magic of {}",
        img.display()
    );
    assert_eq!(
        fs::metadata(img).unwrap().permissions().mode() & 0o777,
        0o700
    );
    orig.expect_killed_by_ckpt()
}

/// Executing the raw image itself continues the counter: the kernel hands it
/// to the registered restorer.
#[test]
fn binfmt_runs_raw_image() {
    let _l = lock();
    let dir = TestDir::new("binfmt_run");
    let restorer = write_restorer(dir.path());
    let name = test_name("run");
    let Some((_reg, out)) = register(&name, &restorer, "binfmt_runs_raw_image") else {
        return;
    };
    assert!(
        out.contains(&format!(
            ":{name}:M:0:CKPTIMG\\x01::{}:FO",
            restorer.display()
        )),
        "{out}"
    );

    let img = dir.image("app.ckpt");
    let before = freeze_counter_image(&img);
    let res = Launch::new(&img)
        .label("app.ckpt (binfmt_misc)")
        .spawn()
        .wait_output(RESUME_TIMEOUT);
    res.assert_success();
    assert!(
        res.stderr.is_empty(),
        "the resumed process printed on stderr\n{res}"
    );
    assert_counts(
        &[before, res.stdout].concat(),
        N,
        "original + image run directly",
    );
}

/// The O flag: an image mode 0711, which nobody may execute but not read,
/// still runs as nobody (the kernel passes it to the restorer as AT_EXECFD).
#[test]
fn binfmt_runs_unreadable_image() {
    let _l = lock();
    let dir = TestDir::new("binfmt_unreadable");
    let restorer = write_restorer(dir.path());
    let name = test_name("unreadable");
    let Some((_reg, _)) = register(&name, &restorer, "binfmt_runs_unreadable_image") else {
        return;
    };
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .args(args);
        run_with_timeout(cmd, Duration::from_secs(30))
    };
    match as_nobody(&["true"]) {
        Ok(o) if o.status.success() => {}
        r => {
            eprintln!("skipping binfmt_runs_unreadable_image: setpriv cannot run as nobody: {r:?}");
            return;
        }
    }
    let img = dir.image("app.ckpt");
    let before = freeze_counter_image(&img);
    fs::set_permissions(&img, fs::Permissions::from_mode(0o711)).unwrap();
    // Every directory above must let nobody through.
    for d in img.ancestors().skip(1) {
        let mode = fs::metadata(d).unwrap().permissions().mode();
        if mode & 0o001 == 0 {
            eprintln!(
                "skipping binfmt_runs_unreadable_image: nobody cannot enter {}",
                d.display()
            );
            return;
        }
    }
    let cat = as_nobody(&["cat", s(&img)]).unwrap();
    assert!(
        !cat.status.success(),
        "nobody could read the 0711 image\n{}",
        describe_output(&cat)
    );

    let res = Launch::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(&img)
        .label("app.ckpt 0711 as nobody (binfmt_misc O flag)")
        .spawn()
        .wait_output(RESUME_TIMEOUT);
    res.assert_success();
    assert_counts(
        &[before, res.stdout].concat(),
        N,
        "original + unreadable image run as nobody",
    );
}

/// An existing name with another interpreter is refused, naming that
/// interpreter; `status` reports the registration; the same interpreter
/// re-registers; unregister, then a second unregister fails.
#[test]
fn binfmt_register_conflict_and_status() {
    let _l = lock();
    let dir = TestDir::new("binfmt_conflict");
    let first = write_restorer(&dir.join("first"));
    let second = write_restorer(&dir.join("second"));
    let name = test_name("conflict");
    let Some((_reg, out)) = register(&name, &first, "binfmt_register_conflict_and_status") else {
        return;
    };
    assert!(
        out.contains("flags: O ") && out.contains("AT_EXECFD"),
        "{out}"
    );
    assert!(out.contains("F  fix binary"), "{out}");

    // The kernel's own view of the entry.
    let entry = fs::read_to_string(Path::new(MOUNT).join(&name)).unwrap();
    assert!(entry.lines().any(|l| l == "enabled"), "{entry}");
    assert!(
        entry
            .lines()
            .any(|l| l == format!("interpreter {}", first.display())),
        "{entry}"
    );
    assert!(
        entry.lines().any(|l| l == "magic 434b5054494d4701"),
        "{entry}"
    );
    let flags = entry
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .unwrap_or("");
    assert!(
        flags.contains('F') && flags.contains('O') && !flags.contains('C'),
        "{entry}"
    );

    let st = ckpt_ok(&["binfmt", "status", "--name", &name]);
    for want in [
        "binfmt_misc: mounted at /proc/sys/fs/binfmt_misc".to_owned(),
        format!("entry {name}: registered, enabled"),
        format!("interpreter: {}", first.display()),
        "magic: CKPTIMG\\x01 at offset 0 (ckpt raw images)".to_owned(),
        "interpreter content: the same as this ckpt's restorer".to_owned(),
    ] {
        assert!(st.contains(&want), "status lacks {want:?}:\n{st}");
    }
    assert!(!st.contains("warning"), "{st}");

    let err = ckpt_err(&[
        "binfmt",
        "register",
        "--name",
        &name,
        "--interpreter",
        s(&second),
    ]);
    assert!(
        err.contains(&format!(
            "already exists with interpreter {}",
            first.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("ckpt binfmt unregister --name {name}")),
        "{err}"
    );
    let entry = fs::read_to_string(Path::new(MOUNT).join(&name)).unwrap();
    assert!(
        entry.contains(&format!("interpreter {}\n", first.display())),
        "{entry}"
    );

    let again = ckpt_ok(&[
        "binfmt",
        "register",
        "--name",
        &name,
        "--interpreter",
        s(&first),
    ]);
    assert!(again.contains("re-registered"), "{again}");

    let err = ckpt_err(&[
        "binfmt",
        "register",
        "--name",
        &name,
        "--interpreter",
        s(&dir.join("missing")),
    ]);
    assert!(err.contains("does not exist"), "{err}");

    let un = ckpt_ok(&["binfmt", "unregister", "--name", &name]);
    assert!(
        un.contains(&format!("removed binfmt_misc entry {name}")),
        "{un}"
    );
    assert!(!Path::new(MOUNT).join(&name).exists());
    let st = ckpt_ok(&["binfmt", "status", "--name", &name]);
    assert!(
        st.contains(&format!("entry {name}: not registered")),
        "{st}"
    );
    let err = ckpt_err(&["binfmt", "unregister", "--name", &name]);
    assert!(
        err.contains(&format!("no binfmt_misc entry named {name} is registered")),
        "{err}"
    );
}

/// As an ordinary user, register and unregister fail with one line saying that
/// they need root, and change nothing.
#[test]
fn binfmt_needs_root() {
    if !is_root() {
        eprintln!("skipping binfmt_needs_root: needs root to switch to nobody");
        return;
    }
    let name = test_name("nobody");
    let dir = OpenDir::new("binfmt-nobody");
    let ck = dir.path.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    for args in [
        &["binfmt", "register", "--name", &name, "--interpreter", s(&ck)][..],
        &["binfmt", "unregister", "--name", &name][..],
    ] {
        let mut cmd = dir.as_nobody(&ck);
        cmd.args(args);
        let o = run_with_timeout(cmd, Duration::from_secs(60)).expect("ckpt as nobody");
        assert!(!o.status.success(), "ckpt {args:?} as nobody succeeded\n{}", describe_output(&o));
        let err = lossy(&o.stderr);
        assert!(
            err.lines().count() == 1 && err.contains("needs root"),
            "ckpt {args:?} as nobody: {err}"
        );
    }
    assert!(!Path::new(MOUNT).join(&name).exists());
}

/// A ckpt in a build tree (target/release/ckpt) with no restorer installed next to
/// it says the one command line that writes the restorer where it looks and
/// registers it; that line, run as it is, works.
#[test]
fn binfmt_register_from_a_build_tree() {
    if !is_root() {
        eprintln!("skipping binfmt_register_from_a_build_tree: binfmt_misc registration needs root");
        return;
    }
    let _l = lock();
    let dir = TestDir::new("binfmt_build_tree");
    let bin = dir.join("target/release");
    fs::create_dir_all(&bin).unwrap();
    let ck = bin.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let name = test_name("buildtree");
    let _guard = Registered { name: name.clone() };
    let mut cmd = Command::new(&ck);
    cmd.args(["binfmt", "register", "--name", &name]);
    let o = run_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    let err = lossy(&o.stderr);
    if err.contains("binfmt_misc is not available") {
        eprintln!("skipping binfmt_register_from_a_build_tree: {}", err.trim());
        return;
    }
    assert!(!o.status.success(), "registered without a restorer\n{}", describe_output(&o));
    let restorer = dir.join("target/lib/ckpt/ckpt-restorer");
    assert!(err.contains(s(&restorer)), "the error names where the restorer goes: {err}");
    let line = err.split("run `").nth(1).and_then(|r| r.split('`').next()).unwrap_or_else(|| panic!("no command in: {err}"));
    assert!(line.contains(&name), "the command registers the same name: {line}");
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(line);
    let o = run_with_timeout(sh, Duration::from_secs(60)).unwrap();
    assert!(o.status.success(), "the suggested `{line}` failed\n{}", describe_output(&o));
    assert_eq!(fs::read(&restorer).unwrap(), fs::read(write_restorer(&dir.join("plain"))).unwrap());
    let entry = fs::read_to_string(Path::new(MOUNT).join(&name)).expect("the entry exists");
    assert!(entry.lines().any(|l| l == format!("interpreter {}", restorer.display())), "{entry}");
}
