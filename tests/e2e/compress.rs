//! `ckpt freeze --compress`: the memory fixtures (compressible heap data, flags of
//! every kind of VMA, a sparse region, incompressible random pages) and a Python
//! interpreter resume from compressed files and check their own state; `ckpt info`
//! shows the compressed size; a corrupted chunk stops the resume with exit 120,
//! naming its address range; a lazy resume of a compressed file resumes eagerly.

use std::fs;
use std::process::Command;
use std::time::Duration;

use ckpt_format::{check_header, tables_span, Tables, HDR_COMPRESSED, RUN_FILE_CLEAN};

use crate::util::*;

fn heap(static_: bool) {
    let dir = TestDir::new("compress_heap");
    let gate = dir.gate();
    let r = gated_roundtrip_freezing_with(&dir, "heap", static_, &[gate.to_str().unwrap()], &["--compress"]);
    r.resumed.line_starting("ok ");
}

fn memflags(static_: bool) {
    let dir = TestDir::new("compress_memflags");
    let gate = dir.gate();
    gated_roundtrip_freezing_with(&dir, "memflags", static_, &[gate.to_str().unwrap()], &["--compress"]).resumed.line_starting("ok");
}

fn sparse(static_: bool) {
    let dir = TestDir::new("compress_sparse");
    let gate = dir.gate();
    let r = gated_roundtrip_freezing_with(&dir, "sparse", static_, &[gate.to_str().unwrap()], &["--compress"]);
    assert!(r.image_len < 16 << 20, "compressed image of the sparse process is {} bytes", r.image_len);
}

/// 96 MiB of xorshift words: LZ4 cannot shrink them, so the chunks are stored raw
/// (and the fill is shared by two threads).
fn random_pages(static_: bool) {
    let dir = TestDir::new("compress_random");
    let gate = dir.gate();
    let r = gated_roundtrip_freezing_with(&dir, "big", static_, &["96", gate.to_str().unwrap()], &["--compress"]);
    r.resumed.line_starting("ok");
    assert!(r.image_len > 96 << 20, "random pages cannot shrink: {} bytes", r.image_len);
}

both_variants!(heap, memflags, sparse, random_pages);

/// The validated header and tables of a `.resume` file's image, and where the
/// image starts in the file.
fn with_tables<R>(file: &[u8], f: impl FnOnce(u64, &ckpt_format::Header, &Tables) -> R) -> R {
    let (base, size) = ckpt_linker::find_image(file).expect("CKPT note of the .resume file");
    let img = &file[base as usize..];
    let h = check_header(img, size).expect("valid header");
    let (lo, hi) = tables_span(&h);
    let mut words = vec![0u64; (hi - lo).div_ceil(8) as usize];
    // SAFETY: u64 accepts any bytes; the view covers exactly the vector.
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, words.len() * 8) };
    bytes[..(hi - lo) as usize].copy_from_slice(&img[lo as usize..hi as usize]);
    let t = Tables::parse(&h, &bytes[..(hi - lo) as usize], lo, false).expect("valid tables");
    f(base, &h, &t)
}

/// A Python interpreter frozen mid-loop with --compress finishes with the result
/// of an uninterrupted run; `ckpt info` shows the pages' compressed size.
#[test]
fn python_resumes_from_a_compressed_file() {
    let dir = TestDir::new("compress_python");
    let (img, want) = crate::python::frozen_mid_run(&dir, "dictwork.py", "python", Duration::from_millis(300), &["--compress"]);
    let (stored, compressed) = with_tables(&fs::read(&img).unwrap(), |_, h, t| {
        assert_ne!(h.flags & HDR_COMPRESSED, 0, "the header says the pages are compressed");
        (t.runs.iter().map(|r| r.len).sum::<u64>(), t.chunks.iter().map(|c| c.stored_len as u64).sum::<u64>())
    });
    assert!(compressed * 2 < stored, "an interpreter's heap compresses to less than half: {compressed} of {stored} bytes");
    let info = Command::new(ckpt_bin()).arg("info").arg(&img).output().unwrap();
    assert!(info.status.success());
    let text = String::from_utf8_lossy(&info.stdout);
    let line = text.lines().find(|l| l.trim_start().starts_with("compressed ")).unwrap_or_else(|| panic!("no compressed line\n{text}"));
    assert!(line.contains("LZ4 chunks") && line.contains("in the file for"), "{line}");
    let json = Command::new(ckpt_bin()).args(["info", "--json"]).arg(&img).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("ckpt info --json");
    assert_eq!(v["totals"]["compressed_bytes"].as_u64(), Some(compressed), "{v}");

    let res = resume(&img);
    res.assert_success();
    assert_eq!(res.line_starting("checksum "), want, "{res}");
}

/// The heap fixture, waiting at its gate, frozen with --compress: the file and the gate.
fn heap_frozen_compressed(dir: &TestDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let gate = dir.gate();
    let mut orig = spawn_fixture("heap", false, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("heap");
    freeze_ok(orig.pid(), &img, &["--compress"]);
    orig.expect_killed_by_ckpt();
    (img, gate)
}

/// One flipped byte in the middle of a compressed chunk of anonymous memory: the
/// resume stops with exit 120 (decompress) and names the chunk's address range.
#[test]
fn corrupted_chunk_exits_120_naming_its_range() {
    let dir = TestDir::new("compress_corrupt");
    let (img, _gate) = heap_frozen_compressed(&dir);
    let mut data = fs::read(&img).unwrap();
    let (at, lo, hi) = with_tables(&data, |base, _, t| {
        let c = t
            .chunks
            .iter()
            .filter(|c| !c.is_raw() && t.runs[c.run as usize].flags & RUN_FILE_CLEAN == 0)
            .max_by_key(|c| c.stored_len)
            .expect("a compressed chunk of written memory");
        (base + c.data_off + c.stored_len as u64 / 2, c.addr, c.addr + c.len as u64)
    });
    data[at as usize] ^= 0x40;
    let bad = dir.image("heap-corrupt");
    fs::write(&bad, &data).unwrap();
    fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let o = run_with_timeout(Command::new(&bad), RESUME_TIMEOUT).expect("run the corrupted file");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(120), "exit code of a corrupted chunk\n{err}");
    let want = format!("decompress pages failed for {lo:#x}-{hi:#x}: compressed chunk checksum mismatch");
    assert!(err.contains(&want), "no line `{want}`\n{err}");
}

/// CKPT_LAZY=1 on a compressed file: one line says the resume is eager, and it is.
#[test]
fn lazy_resume_of_a_compressed_file_is_eager() {
    let dir = TestDir::new("compress_lazy");
    let (img, gate) = heap_frozen_compressed(&dir);
    let mut res = resume_launch(&img).env("CKPT_LAZY", "1").spawn();
    open_gate(&gate);
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok ");
    assert!(
        fin.stderr.contains("lazy resume not available (the file's pages are compressed"),
        "{fin}"
    );
}

/// --compress with --lazy or --tree is refused before anything is frozen.
#[test]
fn compress_refuses_lazy_and_tree() {
    for other in ["--lazy", "--tree"] {
        let o = Command::new(ckpt_bin()).args(["freeze", "1", "-o", "/nonexistent/x", "--compress", other]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{other}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("cannot be used with"), "{other}: {err}");
    }
}
