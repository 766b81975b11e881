//! The two file kinds and the ways to run them: a `.resume` is a clean static ELF,
//! a raw image is not ELF and runs with `ckpt resume`, and either kind can be
//! streamed to standard output.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread;

use crate::util::*;

const N: u64 = 300;

fn counter(dir: &TestDir) -> Proc {
    let _ = dir;
    let p = Launch::fixture("counter", false).args([N.to_string()]).spawn();
    p.wait_ready();
    thread::sleep(SETTLE);
    p
}

#[test]
fn resume_file_is_a_clean_static_elf() {
    let dir = TestDir::new("clean_elf");
    let mut orig = counter(&dir);
    let img = dir.image("counter");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let o = Command::new("readelf").arg("-a").arg("-W").arg(&img).output().expect("run readelf");
    let all = format!("{}{}", lossy(&o.stdout), lossy(&o.stderr));
    assert!(o.status.success(), "readelf -a failed:\n{all}");
    for bad in ["Warning", "Error", "warning", "error"] {
        assert!(!all.contains(bad), "readelf -a reports a problem ({bad}):\n{all}");
    }
    assert!(all.contains("Advanced Micro Devices X86-64") && all.contains("LOAD"), "{all}");
    assert!(all.contains("CKPT"), "no CKPT note in:\n{all}");
    assert!(!all.contains("INTERP"), "a resume file must be static:\n{all}");
    let f = Command::new("file").arg(&img).output().expect("run file");
    let f = lossy(&f.stdout);
    assert!(f.contains("ELF 64-bit") && f.contains("x86-64"), "{f}");
}

#[test]
fn raw_image_runs_with_ckpt_resume() {
    let dir = TestDir::new("raw_resume");
    let mut orig = counter(&dir);
    let img = dir.join("counter.ckpt");
    let o = freeze(orig.pid(), &img, &["--image"]);
    assert!(o.status.success(), "freeze --image failed\n{}", describe_output(&o));
    let before = orig.expect_killed_by_ckpt();
    let head = fs::read(&img).unwrap();
    assert_eq!(&head[..8], b"CKPTIMG\x01", "raw image magic");
    assert_eq!(fs::metadata(&img).unwrap().permissions().mode() & 0o777, 0o700);
    let res = Launch::new(ckpt_bin()).arg("resume").arg(&img).label("ckpt resume").spawn().wait_output(RESUME_TIMEOUT);
    res.assert_success();
    assert_counts(&[before, res.stdout.clone()].concat(), N, "original + resumed through ckpt resume");
}

/// `-o -`: both kinds streamed into a pipe (`| cat > file`), then run.
#[test]
fn stream_to_stdout() {
    for raw in [false, true] {
        let dir = TestDir::new(if raw { "stream_raw" } else { "stream_resume" });
        let mut orig = counter(&dir);
        let out = dir.join(if raw { "s.ckpt" } else { "s.resume" });
        // Through a pipe, as `ckpt freeze PID -o - | ssh host 'cat > f'` would be.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#""$0" freeze "$1" -o - $2 | cat > "$3""#)
            .arg(ckpt_bin())
            .arg(orig.pid().to_string())
            .arg(if raw { "--image" } else { "" })
            .arg(&out);
        let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze -o -");
        assert!(o.status.success(), "streaming freeze failed\n{}", describe_output(&o));
        let before = orig.expect_killed_by_ckpt();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o700)).unwrap();
        let res = if raw {
            Launch::new(ckpt_bin()).arg("resume").arg(&out).label("streamed raw").spawn().wait_output(RESUME_TIMEOUT)
        } else {
            resume(&out)
        };
        res.assert_success();
        assert_counts(&[before, res.stdout.clone()].concat(), N, "original + resumed from a streamed file");
    }
}

/// The counter run from a copy of its executable in `dir`, frozen with `args` once it
/// counts: (the copy, the image, what the original printed).
fn freeze_counter_copy(dir: &TestDir, args: &[&str]) -> (std::path::PathBuf, std::path::PathBuf, Vec<String>) {
    let exe = dir.join("counter-copy");
    fs::copy(fixture("counter", false), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let mut orig = Launch::new(&exe).args([N.to_string()]).spawn();
    orig.wait_ready();
    thread::sleep(SETTLE);
    let img = dir.image("counter");
    freeze_ok(orig.pid(), &img, args);
    let before = orig.expect_killed_by_ckpt();
    (exe, img, before)
}

/// With --embed-files, clean file pages come from the file only while it is the same
/// file: a binary overwritten (same size, other bytes, new mtime) after the freeze
/// makes the restorer copy every stored page instead, and the process runs as it was.
#[test]
fn changed_executable_falls_back_to_stored_pages() {
    let dir = TestDir::new("changed_exe");
    let (exe, img, before) = freeze_counter_copy(&dir, &["--embed-files"]);
    let len = fs::metadata(&exe).unwrap().len() as usize;
    thread::sleep(std::time::Duration::from_millis(20)); // a different mtime
    fs::write(&exe, vec![0xccu8; len]).unwrap();
    let res = resume(&img);
    res.assert_success();
    assert_counts(&[before, res.stdout.clone()].concat(), N, "original + resumed after the binary changed");
}

/// `ckpt check IMG` fails saying each of `words`.
fn check_refuses(img: &std::path::Path, words: &[&str]) {
    let o = Command::new(ckpt_bin()).arg("check").arg(img).output().unwrap();
    assert!(!o.status.success(), "check accepts it\n{}", describe_output(&o));
    for w in words {
        assert!(lossy(&o.stdout).contains(w), "check does not say {w:?}\n{}", describe_output(&o));
    }
}

/// By default the unchanged pages of mapped files are not stored (a small program's
/// file is a few hundred KiB, not its libraries' megabytes). At resume the same
/// bytes must be found: a copy of the executable (another inode, same bytes) is
/// accepted by checksum; a changed or missing one stops the resume with exit 107,
/// naming it and the way out, before anything of the target runs.
#[test]
fn referenced_executable_checked_at_resume() {
    let dir = TestDir::new("referenced_exe");
    let (exe, img, before) = freeze_counter_copy(&dir, &[]);
    let original = fs::read(&exe).unwrap();
    assert!(
        fs::metadata(&img).unwrap().len() < 1 << 20,
        "the image of a small dynamic program stores its libraries: {} bytes",
        fs::metadata(&img).unwrap().len()
    );

    // Changed bytes, same size: refused, naming the file.
    let mut changed = original.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 0xff;
    fs::write(&exe, &changed).unwrap();
    check_refuses(&img, &[exe.to_str().unwrap(), "other contents", "exit 107"]);
    let res = resume_launch(&img).spawn().wait_output(RESUME_TIMEOUT);
    assert_eq!(res.status.code(), Some(107), "{res}");
    assert!(res.stderr.contains(exe.to_str().unwrap()) && res.stderr.contains("--embed-files"), "{res}");
    assert!(res.stdout.is_empty(), "target code ran: {res}");

    // Missing: refused the same way.
    fs::remove_file(&exe).unwrap();
    check_refuses(&img, &[exe.to_str().unwrap(), "missing", "exit 107"]);
    let res = resume_launch(&img).spawn().wait_output(RESUME_TIMEOUT);
    assert_eq!(res.status.code(), Some(107), "{res}");
    assert!(res.stderr.contains("missing"), "{res}");

    // The same bytes in a new inode (another machine, a reinstalled package): runs.
    fs::write(&exe, &original).unwrap();
    let o = Command::new(ckpt_bin()).arg("check").arg(&img).output().unwrap();
    assert!(o.status.success(), "check refuses a copy of the binary\n{}", describe_output(&o));
    let res = resume(&img);
    res.assert_success();
    assert_counts(&[before, res.stdout.clone()].concat(), N, "original + resumed from a copy of the binary");
}
