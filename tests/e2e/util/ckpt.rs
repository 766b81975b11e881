//! Running `ckpt freeze` and resume files, and the scenarios built on them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::*;

/// Runs `ckpt freeze PID -o OUT EXTRA...` (bounded by FREEZE_TIMEOUT).
pub fn freeze(pid: i32, out: &Path, extra: &[&str]) -> Output {
    freeze_with_timeout(pid, out, extra, FREEZE_TIMEOUT)
}

pub fn freeze_with_timeout(pid: i32, out: &Path, extra: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new(ckpt_bin());
    cmd.arg("freeze")
        .arg(pid.to_string())
        .arg("-o")
        .arg(out)
        .args(extra);
    run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("ckpt freeze {pid}: {e}"))
}

/// Freezes and checks success, the image (mode 0700, ELF 64-bit) and that no
/// other file appeared in the image's directory.
pub fn freeze_ok(pid: i32, out: &Path, extra: &[&str]) -> Output {
    freeze_ok_with_timeout(pid, out, extra, FREEZE_TIMEOUT)
}

pub fn freeze_ok_with_timeout(pid: i32, out: &Path, extra: &[&str], timeout: Duration) -> Output {
    let dir = out.parent().expect("image path has a directory");
    let mut expected = dir_entries(dir);
    expected.insert(out.file_name().unwrap().to_owned());
    let o = freeze_with_timeout(pid, out, extra, timeout);
    assert!(
        o.status.success(),
        "ckpt freeze {pid} {extra:?} failed\n{}",
        describe_output(&o)
    );
    assert_image(out);
    assert_eq!(
        dir_entries(dir),
        expected,
        "unexpected files in {} after the freeze",
        dir.display()
    );
    o
}

/// The image is a regular file of mode 0700 that `file` calls an ELF 64-bit.
pub fn assert_image(path: &Path) {
    let md = fs::metadata(path).unwrap_or_else(|e| panic!("image {}: {e}", path.display()));
    assert!(md.is_file(), "{} is not a regular file", path.display());
    assert_eq!(
        md.permissions().mode() & 0o777,
        0o700,
        "mode of {}",
        path.display()
    );
    let mut cmd = Command::new("file");
    cmd.arg("-b").arg(path);
    match run_with_timeout(cmd, Duration::from_secs(30)) {
        Ok(o) if o.status.success() => {
            let what = lossy(&o.stdout);
            assert!(
                what.contains("ELF 64-bit"),
                "file says {} is: {what}",
                path.display()
            );
        }
        // `file` is not installed: skip that check.
        _ => {}
    }
}

/// Checks a failed freeze: non-zero exit and exactly one stderr line
/// `ckpt: error: ...`, which is returned.
pub fn assert_freeze_error(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "ckpt freeze should have failed\n{}",
        describe_output(o)
    );
    let stderr = lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("ckpt: error: "),
        "expected one line `ckpt: error: ...` on stderr\n{}",
        describe_output(o)
    );
    lines[0].to_owned()
}

/// A refusal that only an unprivileged caller meets: runs fixture `name` as nobody in
/// a world-writable directory (its working directory, so `args` may name files there;
/// `dirs` are created in it first, writable by nobody), freezes it as nobody, checks
/// that the freeze fails with one error line and leaves no file, then opens the gate
/// (`args` must pass `gate`) and checks that the target ends successfully. Returns
/// the error line, or None when the tests do not run as root (no switch to nobody).
pub fn freeze_refused_as_nobody(name: &str, dirs: &[&str], args: &[&str]) -> Option<String> {
    if !is_root() {
        eprintln!("{name} refused as nobody: skipped (needs root to switch to nobody)");
        return None;
    }
    let dir = OpenDir::new(&format!("{name}-nobody"));
    let base = dir.path.clone();
    for d in dirs {
        fs::create_dir(base.join(d)).unwrap();
        fs::set_permissions(base.join(d), fs::Permissions::from_mode(0o777)).unwrap();
    }
    let fx = base.join(name);
    fs::copy(fixture(name, false), &fx).unwrap();
    let ck = base.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let mut orig = dir.launch_as_nobody(&fx).args(args).label(name).spawn();
    orig.wait_ready();
    let out = base.join("x.resume");
    let mut cmd = dir.as_nobody(&ck);
    cmd.arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(&out);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
    let err = assert_freeze_error(&o);
    assert!(!out.exists(), "{} left behind by a failed freeze", out.display());
    open_gate(&base.join("gate"));
    orig.wait_output(RESUME_TIMEOUT).assert_success();
    Some(err)
}

/// Launch of a resume file (stdout/stderr piped, stdin /dev/null).
pub fn resume_launch(image: &Path) -> Launch {
    Launch::new(image).label("resumed")
}

/// Runs a resume file to its end (bounded by RESUME_TIMEOUT).
pub fn resume(image: &Path) -> Finished {
    resume_launch(image).spawn().wait_output(RESUME_TIMEOUT)
}

// ---------------------------------------------------------------------------
// Common scenarios

/// Checks that `lines`, without "ready" lines, are exactly "0".."n-1".
pub fn assert_counts(lines: &[String], n: u64, what: &str) {
    let got: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "ready")
        .collect();
    let want: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    if got != want {
        let first_bad = got
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        let lo = first_bad.saturating_sub(3);
        panic!(
            "{what}: expected 0..{n} once each in order; {} lines, first difference at index {first_bad}: \
             got {:?}, want {:?}",
            got.len(),
            &got[lo..(first_bad + 3).min(got.len())],
            &want[lo..(first_bad + 3).min(want.len())]
        );
    }
}

/// Result of `gated_roundtrip`.
pub struct Roundtrip {
    pub resumed: Finished,
    pub image_len: u64,
}

/// Freeze/resume of a gated fixture (one that waits for `dir.gate()`, passed
/// in `args`): read its maps and VMA flags while it waits, freeze (the original
/// is killed), resume, wait until the resumed process's maps equal the frozen
/// ones, check every VMA's VmFlags, open the gate and let it finish; it must
/// succeed.
pub fn gated_roundtrip(dir: &TestDir, name: &str, static_: bool, args: &[&str]) -> Roundtrip {
    gated_roundtrip_freezing_with(dir, name, static_, args, &[])
}

/// [`gated_roundtrip`] with `freeze_args` given to `ckpt freeze`.
pub fn gated_roundtrip_freezing_with(dir: &TestDir, name: &str, static_: bool, args: &[&str], freeze_args: &[&str]) -> Roundtrip {
    let gate = dir.gate();
    assert!(!gate.exists());
    let mut orig = spawn_fixture(name, static_, args);
    orig.wait_ready();
    let maps = read_maps(orig.pid());
    let vmflags = read_vmflags(orig.pid());
    let img = dir.image(name);
    freeze_ok(orig.pid(), &img, freeze_args);
    orig.expect_killed_by_ckpt();
    let image_len = fs::metadata(&img).unwrap().len();

    let mut resumed = resume_launch(&img).spawn();
    assert_maps_eventually(&mut resumed, &maps, MAPS_TIMEOUT);
    assert_vmflags(&resumed, &vmflags);
    open_gate(&gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    Roundtrip {
        resumed: fin,
        image_len,
    }
}

/// Fixture `name` run, frozen and resumed as user nobody, in a world-writable
/// directory (its working directory; `args` gets that directory and returns the
/// fixture's arguments, which must make it wait for `DIR/gate`). The resumed process
/// must end successfully; returns what it printed. None when the tests do not run as
/// root (no switch to nobody).
pub fn roundtrip_as_nobody(name: &str, static_: bool, args: impl Fn(&Path) -> Vec<String>) -> Option<Finished> {
    roundtrip_as_nobody_env(name, static_, &[], args)
}

/// As [`roundtrip_as_nobody`], with `env` set for the resume.
pub fn roundtrip_as_nobody_env(name: &str, static_: bool, env: &[(&str, &str)], args: impl Fn(&Path) -> Vec<String>) -> Option<Finished> {
    if !is_root() {
        eprintln!("{name} as nobody: skipped (needs root to switch to nobody)");
        return None;
    }
    let dir = OpenDir::new(&format!("{name}-{}-nobody", if static_ { "static" } else { "dynamic" }));
    let base = dir.path.clone();
    let fx = base.join(name);
    fs::copy(fixture(name, static_), &fx).unwrap();
    let ck = base.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let mut orig = dir.launch_as_nobody(&fx).args(args(&base)).label(name).spawn();
    orig.wait_ready();
    let img = base.join("x.resume");
    let mut cmd = dir.as_nobody(&ck);
    cmd.arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(&img);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
    assert!(o.status.success(), "freeze of {name} as nobody failed\n{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    let mut res = dir.launch_as_nobody(&img).label("resumed as nobody");
    for (k, v) in env {
        res = res.env(k, v);
    }
    let mut res = res.spawn();
    open_gate(&base.join("gate"));
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    Some(fin)
}

/// Start `orig` (a gated program that prints "ready" and then waits for `gate`),
/// freeze it once ready (the original is killed), resume it, open the gate: it must
/// check its state itself and end successfully, printing "ok".
pub fn freeze_gate_resume(dir: &TestDir, orig: Launch, name: &str, gate: &Path) -> Finished {
    let mut orig = orig.spawn();
    orig.wait_ready();
    let img = dir.image(name);
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut resumed = resume_launch(&img).spawn();
    open_gate(gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
    fin
}
