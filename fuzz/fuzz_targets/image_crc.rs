//! Like `image`, but every section checksum and the header checksum are repaired
//! first, so that mutations get past the CRCs to the record checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    ckpt_fuzz::tests::fix_crcs(&mut img);
    let _ = ckpt_fuzz::tests::check_image(&img, false);
});
