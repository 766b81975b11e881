//! Images from another machine: before it changes anything, the restorer compares
//! what an image needs (format version, page size, xstate features, vdso) with
//! this machine and names what differs, with its own exit code. The mismatches
//! are made by editing a real raw image and repairing its checksums, so that
//! only the compatibility checks can refuse it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use ckpt_format::{as_bytes, crc32c::crc32c, header_crc, read_record, Header, SectionKind};

use crate::util::*;

/// Exit codes of the restorer's steps (README): invalid image, CPU, vdso.
const EXIT_INVALID: i32 = 101;
const EXIT_CPU: i32 = 102;
const EXIT_VDSO: i32 = 103;

/// A counter frozen into a raw image (the image starts at offset 0).
fn raw_image(dir: &TestDir) -> Vec<u8> {
    let mut orig = spawn_fixture("counter", false, &["300"]);
    orig.wait_ready();
    thread::sleep(SETTLE);
    let img = dir.join("counter.ckpt");
    let o = freeze(orig.pid(), &img, &["--image"]);
    assert!(o.status.success(), "freeze --image failed\n{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    fs::read(&img).unwrap()
}

/// A copy of `image` with `edit` applied to its header (and bytes), the header
/// checksum repaired.
fn edited(dir: &TestDir, name: &str, image: &[u8], edit: impl FnOnce(&mut Header, &mut [u8])) -> PathBuf {
    let mut bytes = image.to_vec();
    let mut h: Header = read_record(&bytes).expect("a header");
    edit(&mut h, &mut bytes);
    h.header_crc = header_crc(&h);
    bytes[..std::mem::size_of::<Header>()].copy_from_slice(as_bytes(&h));
    let path = dir.join(format!("{name}.ckpt"));
    fs::write(&path, &bytes).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// `ckpt resume PATH` must fail with `code` and one stderr line holding each of
/// `expect`.
fn refused(path: &Path, code: i32, expect: &[&str]) {
    let mut cmd = Command::new(ckpt_bin());
    cmd.arg("resume").arg(path);
    let o = run_with_timeout(cmd, Duration::from_secs(30)).expect("ckpt resume");
    let err = lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "exit status of a refused resume\n{}", describe_output(&o));
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line\n{}", describe_output(&o));
    for want in expect {
        assert!(lines[0].contains(want), "the error does not say {want:?}: {}", lines[0]);
    }
    eprintln!("compat: {} -> exit {code}: {}", path.display(), lines[0]);
}

#[test]
fn incompatible_images_are_refused_naming_the_difference() {
    let dir = TestDir::new("compat");
    let image = raw_image(&dir);
    let h: Header = read_record(&image).unwrap();

    // An xstate feature this CPU does not have (AMX, APX, CET, PKRU or AVX-512,
    // whichever is missing here).
    let named = [(17, "AMX"), (18, "AMX"), (19, "APX"), (11, "CET"), (12, "CET"), (9, "PKRU"), (5, "AVX-512")];
    match named.iter().find(|(bit, _)| h.xcr0 & (1u64 << bit) == 0) {
        Some(&(bit, name)) => {
            let p = edited(&dir, "cpu", &image, |h, _| h.xcr0 |= 1 << bit);
            refused(&p, EXIT_CPU, &["frozen on a CPU with", name, "this CPU lacks it"]);
        }
        None => eprintln!("compat: xstate check skipped (this CPU has every feature the test could ask for)"),
    }

    // A vdso of another kernel build: one byte of the saved copy differs (its
    // section checksum repaired).
    let s = *h.section(SectionKind::Vdso);
    assert!(s.size > 0, "the image has no vdso copy");
    let p = edited(&dir, "vdso", &image, |h, bytes| {
        let (lo, hi) = (s.offset as usize, (s.offset + s.size) as usize);
        bytes[lo + (hi - lo) / 2] ^= 0x40;
        h.sections[SectionKind::Vdso as usize].crc = crc32c(&bytes[lo..hi], false);
    });
    refused(&p, EXIT_VDSO, &["vdso"]);

    // Another page size and another format version.
    let p = edited(&dir, "pagesize", &image, |h, _| h.page_size = 16384);
    refused(&p, EXIT_INVALID, &["page size", "16384", "4096"]);
    let p = edited(&dir, "version", &image, |h, _| h.version += 1);
    refused(&p, EXIT_INVALID, &["format version", "reads version"]);

    // The unedited image still resumes: the edits alone made the difference.
    let mut cmd = Command::new(ckpt_bin());
    cmd.arg("resume").arg(dir.join("counter.ckpt"));
    let o = run_with_timeout(cmd, RESUME_TIMEOUT).expect("ckpt resume");
    assert!(o.status.success(), "the unedited image does not resume\n{}", describe_output(&o));
}
