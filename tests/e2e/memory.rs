//! Memory layout: the brk heap, collisions with the resume file's own
//! mappings, sparse regions. Each test also checks that the resumed process
//! has the frozen process's maps (ranges, permissions, names).

use crate::util::*;

mod shared;

/// A fragmented malloc heap; after the resume the kernel brk is the same and
/// the heap grows (brk, mmap-sized blocks, sbrk).
fn heap(static_: bool) {
    let dir = TestDir::new("heap");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "heap", static_, &[gate.to_str().unwrap()]);
    r.resumed.line_starting("ok ");
}

/// Read-write regions where a fresh static-pie executable, its brk, stack
/// and vDSO tend to land, plus everything above the stack.
fn collide_light(static_: bool) {
    let dir = TestDir::new("collide_light");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "collide", static_, &[gate.to_str().unwrap(), "light"]);
    eprintln!("collide light: image {} bytes", r.image_len);
}

/// collide_light plus PROT_NONE reservations over all free space in the top
/// 1056 GiB: wherever the kernel puts the resume file's mappings, they collide.
fn collide_full(static_: bool) {
    let dir = TestDir::new("collide_full");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "collide", static_, &[gate.to_str().unwrap(), "full"]);
    eprintln!("collide full: image {} bytes", r.image_len);
}

/// 64 GiB PROT_NONE + 1 GiB read-write with 4 pages of data: a small image.
fn sparse(static_: bool) {
    let dir = TestDir::new("sparse");
    let gate = dir.gate();
    let r = gated_roundtrip(&dir, "sparse", static_, &[gate.to_str().unwrap()]);
    assert!(
        r.image_len < 16 << 20,
        "image of the sparse process is {} bytes (limit 16 MiB)",
        r.image_len
    );
}

both_variants!(heap, collide_light, collide_full, sparse);
