//! Arbitrary bytes as an image file: they are both the header and the table buffer.
//! `check_image` does what the stub does (check_header on the first bytes,
//! tables_span, the span copied into 8-byte aligned memory, Tables::parse) and
//! panics if validation panics or accepts tables the stub cannot use safely.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ckpt_fuzz::tests::check_image(data, false);
});
