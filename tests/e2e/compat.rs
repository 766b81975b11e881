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

use ckpt_format::{as_bytes, crc32c::crc32c, header_crc, read_record, Header, SectionKind, Thread, Vma, VmaKind};

use crate::util::*;

/// Exit codes of the restorer's steps (README): invalid image, CPU, vdso.
const EXIT_INVALID: i32 = 101;
const EXIT_CPU: i32 = 102;
const EXIT_VDSO: i32 = 103;
const EXIT_PROCESS: i32 = 114;

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

/// The VMA records of a raw image.
fn read_vmas(image: &[u8], h: &Header) -> Vec<Vma> {
    let s = h.section(SectionKind::Vmas);
    let size = std::mem::size_of::<Vma>();
    (0..s.count as usize).map(|i| read_record(&image[s.offset as usize + i * size..]).unwrap()).collect()
}

/// `ckpt resume PATH` must fail with `code` and one stderr line holding each of
/// `expect`; `ckpt check PATH` must say the same, with the same exit code, and
/// fail too.
fn refused(path: &Path, code: i32, expect: &[&str]) {
    let o = Command::new(ckpt_bin()).arg("check").arg(path).output().expect("ckpt check");
    let said = lossy(&o.stdout);
    assert!(!o.status.success() && said.contains("cannot be resumed here"), "check accepted it\n{}", describe_output(&o));
    assert!(said.contains(&format!("exit {code}: ")), "check names another exit code\n{said}");
    for want in expect {
        assert!(said.contains(want), "check does not say {want:?}: {said}");
    }
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
    // The very words: both come from format::compat.
    let msg = lines[0].trim_start_matches("ckpt-restore: ");
    assert!(said.contains(msg), "check and resume disagree:\n  check: {said}\n  resume: {msg}");
    eprintln!("compat: {} -> exit {code}: {}", path.display(), lines[0]);
}

/// An image this build cannot read: the resume exits EXIT_INVALID and `ckpt
/// check` fails naming the same fault.
fn invalid(path: &Path, expect: &[&str]) {
    let o = Command::new(ckpt_bin()).arg("check").arg(path).output().expect("ckpt check");
    assert!(!o.status.success(), "check accepted an invalid image\n{}", describe_output(&o));
    for want in expect {
        assert!(lossy(&o.stderr).contains(want), "check does not say {want:?}\n{}", describe_output(&o));
    }
    let mut cmd = Command::new(ckpt_bin());
    cmd.arg("resume").arg(path);
    let o = run_with_timeout(cmd, Duration::from_secs(30)).expect("ckpt resume");
    assert_eq!(o.status.code(), Some(EXIT_INVALID), "{}", describe_output(&o));
    for want in expect {
        assert!(lossy(&o.stderr).contains(want), "the error does not say {want:?}\n{}", describe_output(&o));
    }
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
    // section checksum repaired). With the old vdso's functions recorded, check
    // plans jumps into this kernel's (clocks.rs resumes such files); a file
    // without them (an older ckpt's) is refused.
    let s = *h.section(SectionKind::Vdso);
    assert!(s.size > 0, "the image has no vdso copy");
    assert!(h.section(SectionKind::VdsoSyms).count > 0, "the image records no vdso functions");
    let flip = |h: &mut Header, bytes: &mut [u8]| {
        let (lo, hi) = (s.offset as usize, (s.offset + s.size) as usize);
        bytes[lo + (hi - lo) / 2] ^= 0x40;
        h.sections[SectionKind::Vdso as usize].crc = crc32c(&bytes[lo..hi], false);
    };
    let p = edited(&dir, "vdso", &image, flip);
    let o = Command::new(ckpt_bin()).arg("check").arg(&p).output().expect("ckpt check");
    assert!(o.status.success(), "check refused another vdso build\n{}", describe_output(&o));
    assert!(lossy(&o.stdout).contains("vdso: another build than at the freeze"), "{}", describe_output(&o));
    let p = edited(&dir, "vdso-nosyms", &image, |h, bytes| {
        flip(h, bytes);
        h.sections[SectionKind::VdsoSyms as usize] = Default::default();
    });
    refused(&p, EXIT_VDSO, &["vdso differs", "no symbol table of the old vdso"]);
    // Another build, and the thread stopped inside the old vdso's code (not at a
    // function's start): that code is not this kernel's, so it is refused by tid.
    let vdso = read_vmas(&image, &h).into_iter().find(|v| v.kind == VmaKind::Vdso as u32).expect("a vdso VMA");
    let ts = *h.section(SectionKind::Threads);
    let p = edited(&dir, "vdso-inside", &image, |h, bytes| {
        flip(h, bytes);
        let (lo, hi) = (ts.offset as usize, (ts.offset + ts.size) as usize);
        let mut th: Thread = read_record(&bytes[lo..]).unwrap();
        th.regs.rip = vdso.start + 0x11;
        bytes[lo..lo + std::mem::size_of::<Thread>()].copy_from_slice(as_bytes(&th));
        h.sections[SectionKind::Threads as usize].crc = crc32c(&bytes[lo..hi], false);
    });
    refused(&p, EXIT_VDSO, &["thread ", "inside its vdso's code", &format!("{:#x}", vdso.start + 0x11), "freeze it again"]);

    // A pid above this kernel's pid_max (a kernel with a lower one): the leader's
    // id edited (its section checksum repaired).
    let pid_max: u32 = fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    if pid_max < 1 << 22 {
        let s = *h.section(SectionKind::Threads);
        let p = edited(&dir, "pidmax", &image, |h, bytes| {
            let (lo, hi) = (s.offset as usize, (s.offset + s.size) as usize);
            bytes[lo..lo + 4].copy_from_slice(&(pid_max + 1).to_le_bytes());
            h.sections[SectionKind::Threads as usize].crc = crc32c(&bytes[lo..hi], false);
        });
        refused(&p, EXIT_PROCESS, &["above this kernel's pid_max", &pid_max.to_string(), "CKPT_SAME_PID=0"]);
    }

    // Another page size and another format version.
    let p = edited(&dir, "pagesize", &image, |h, _| h.page_size = 16384);
    invalid(&p, &["page size", "16384", "4096"]);
    let p = edited(&dir, "version", &image, |h, _| h.version += 1);
    invalid(&p, &["format version", "reads version"]);

    // The unedited image still resumes, and check says so: the edits alone made
    // the difference.
    let o = Command::new(ckpt_bin()).arg("check").arg(dir.join("counter.ckpt")).output().expect("ckpt check");
    assert!(o.status.success() && lossy(&o.stdout).contains("can be resumed here"), "{}", describe_output(&o));
    let mut cmd = Command::new(ckpt_bin());
    cmd.arg("resume").arg(dir.join("counter.ckpt"));
    let o = run_with_timeout(cmd, RESUME_TIMEOUT).expect("ckpt resume");
    assert!(o.status.success(), "the unedited image does not resume\n{}", describe_output(&o));
}
