//! One shared object behind several mappings and fds: a deleted file reached
//! through two hard links (two fds, a shared and a private mapping), a memfd mapped
//! twice at different offsets and privately, a memfd mapped twice without an fd,
//! shared anonymous memory mapped again with mremap(old_size 0) and through
//! /proc/self/map_files. The fixture checks, before and after, that a write through
//! one is read through the others and that private mappings keep their own pages;
//! the test checks the maps too (same names, ranges and permissions).

use std::fs;

use crate::util::*;

fn shared_identity(static_: bool) {
    let dir = TestDir::new("shm_identity");
    let gate = dir.gate();
    let work = dir.join("work");
    fs::create_dir(&work).unwrap();
    let rt = gated_roundtrip(&dir, "shm_identity", static_, &[gate.to_str().unwrap(), work.to_str().unwrap()]);
    rt.resumed.line_starting("ok");
}

/// As an ordinary user: /proc/PID/map_files cannot be opened, so the fd-less memfd
/// and the shared memory are read through their mappings.
#[test]
fn shared_identity_as_nobody() {
    roundtrip_as_nobody("shm_identity", false, |base| {
        let work = base.join("work");
        fs::create_dir(&work).unwrap();
        fs::set_permissions(&work, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        vec![base.join("gate").to_str().unwrap().to_owned(), work.to_str().unwrap().to_owned()]
    });
}

both_variants!(shared_identity);
