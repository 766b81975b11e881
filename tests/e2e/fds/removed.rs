//! Files and directories no path leads to any more: removed working directories and
//! directory fds, memfds (mode, name, seals, flags), deleted files (mode, owner,
//! holes), one inode behind several fds and mappings.

use std::fs;
use std::path::Path;

use crate::util::*;

/// A removed working directory and a removed directory open twice (fd 5, and fd 6
/// through /proc/self/fd/5); with "withfd" the working directory is open at fd 7
/// too. After the resume each reads "PATH (deleted)", getcwd and openat inside fail
/// with ENOENT, modes 0751/0750 and identities hold.
fn removed_dirs(static_: bool) {
    for mode in ["own", "withfd"] {
        let dir = TestDir::new("fd_deldir");
        let gate = dir.gate();
        let work = dir.join("work");
        fs::create_dir(&work).unwrap();
        let rt = gated_roundtrip(&dir, "fd_deldir", static_, &[gate.to_str().unwrap(), work.to_str().unwrap(), mode]);
        rt.resumed.line_starting("ok");
    }
}

/// A program started in a scratch directory that is then removed with `rm -rf`
/// (files and all) before the freeze: it resumes in a removed directory again.
fn removed_cwd_rm_rf(static_: bool) {
    let dir = TestDir::new("fd_deldir_rm");
    let gate = dir.gate();
    let scratch = dir.join("scratch");
    fs::create_dir_all(scratch.join("sub/deeper")).unwrap();
    fs::write(scratch.join("sub/file"), b"x").unwrap();
    let mut orig = Launch::new("env")
        .arg("-C")
        .arg(&scratch)
        .arg(fixture("fd_deldir", static_))
        .args([gate.to_str().unwrap(), "-", "outside"])
        .label("fd_deldir")
        .spawn();
    orig.wait_ready();
    let st = Command::new("rm").arg("-rf").arg(&scratch).status().unwrap();
    assert!(st.success() && !scratch.exists());
    let link = fs::read_link(format!("/proc/{}/cwd", orig.pid())).unwrap();
    assert!(link.to_string_lossy().ends_with(" (deleted)"), "{}", link.display());
    let img = dir.image("fd_deldir");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

/// The same, frozen and resumed as an ordinary user.
#[test]
fn removed_dirs_as_nobody() {
    for mode in ["own", "withfd"] {
        roundtrip_as_nobody("fd_deldir", false, |base| {
            let work = base.join("work");
            fs::create_dir(&work).unwrap();
            fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
            vec![s(&base.join("gate")), s(&work), mode.into()]
        });
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

use std::process::Command;

both_variants!(removed_dirs, removed_cwd_rm_rf);

/// memfds keep their mode after fchmod (0600, 0644, 0750 with MFD_EXEC), name,
/// seals (F_SEAL_FUTURE_WRITE included, still refusing writes), MFD_NOEXEC_SEAL's
/// mode and F_SEAL_EXEC, close-on-exec, and a second open keeps its own flags and
/// offset on the same memfd: the fixture compares all before and after.
fn memfd_attributes(static_: bool) {
    let dir = TestDir::new("fd_memfd");
    let gate = dir.gate();
    let rt = gated_roundtrip(&dir, "fd_memfd", static_, &[gate.to_str().unwrap()]);
    rt.resumed.line_starting("ok");
}

#[test]
fn memfd_attributes_as_nobody() {
    roundtrip_as_nobody("fd_memfd", false, |base| vec![s(&base.join("gate"))]);
}

both_variants!(memfd_attributes);

/// A deleted 1 GiB sparse file with 3000 bytes at four offsets: the image holds its
/// data ranges only (under 4 MiB), and after the resume SEEK_DATA/SEEK_HOLE report
/// the same ranges, the bytes match, and mode 0640 and the owner (65534 when frozen
/// and resumed by root, who can give the file back) are as before.
fn deleted_sparse_file(static_: bool) {
    let dir = TestDir::new("fd_sparse");
    let gate = dir.gate();
    let work = dir.join("work");
    fs::create_dir(&work).unwrap();
    let rt = gated_roundtrip(&dir, "fd_sparse", static_, &[gate.to_str().unwrap(), work.to_str().unwrap()]);
    rt.resumed.line_starting("ok");
    assert!(rt.image_len < 4 << 20, "image of a process with a 1 GiB sparse deleted file is {} bytes", rt.image_len);
}

/// As an ordinary user: the file is the user's own before and after (the kernel
/// gives a new file its creator's ids; only a privileged resumer could give it to
/// another owner).
#[test]
fn deleted_sparse_file_as_nobody() {
    roundtrip_as_nobody("fd_sparse", false, |base| {
        let work = base.join("work");
        fs::create_dir(&work).unwrap();
        fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        vec![s(&base.join("gate")), s(&work)]
    });
}

both_variants!(deleted_sparse_file);

/// Every fixture above passes its own checks without any freeze.
#[test]
fn removed_fixtures_pass_unfrozen() {
    for static_ in [false, true] {
        let cases: [(&str, &[&str]); 5] = [
            ("fd_deldir", &["own"]),
            ("fd_deldir", &["withfd"]),
            ("fd_memfd", &[]),
            ("fd_sparse", &["dir"]),
            ("shm_identity", &["dir"]),
        ];
        for (name, extra) in cases {
            let dir = TestDir::new("removed_unfrozen");
            let gate = dir.gate();
            open_gate(&gate);
            let work = dir.join("work");
            fs::create_dir(&work).unwrap();
            let mut args = vec![s(&gate)];
            if name != "fd_memfd" {
                args.push(s(&work));
            }
            args.extend(extra.iter().filter(|a| **a != "dir").map(|a| a.to_string()));
            let mut p = Launch::fixture(name, static_).args(&args).spawn();
            p.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
        }
    }
}
