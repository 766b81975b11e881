#!/bin/sh
# `make fuzz`: fuzz the image reader (check_header, tables_span, Tables::parse and
# the stub's use of the tables) for FUZZ_TIME seconds (default 600).
#
# With cargo-fuzz (installed from crates.io on first use): the libFuzzer targets
# `image` (raw bytes) and `image_crc` (checksums repaired first) run side by side,
# with AddressSanitizer and overflow checks, seeded with valid images. The stable
# toolchain accepts cargo-fuzz's nightly flags with RUSTC_BOOTSTRAP=1.
# Without cargo-fuzz: the built-in structure-aware mutator of format/src/tests.rs.
#
# Crashes land in fuzz/artifacts/TARGET/; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a TARGET fuzz/artifacts/TARGET/crash-...
set -eu
cd "$(dirname "$0")/.."
secs=${FUZZ_TIME:-600}
export RUSTC_BOOTSTRAP=1
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

builtin_fuzzer() {
    echo "fuzz: $1; running the built-in mutator for ${secs}s instead"
    CKPT_FUZZ_SECS=$secs exec cargo test --release -p ckpt-format --lib fuzz_mutated_images -- --nocapture
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install --locked cargo-fuzz || builtin_fuzzer "cargo-fuzz cannot be installed"
fi

# Seed corpus: the valid images the unit tests build.
for t in image image_crc; do
    CKPT_FUZZ_SEED_DIR="$PWD/fuzz/corpus/$t" cargo test -q -p ckpt-format --lib write_fuzz_seed_corpus >/dev/null
done
(cd fuzz && cargo fuzz build -a) || builtin_fuzzer "cargo fuzz build failed"

mkdir -p fuzz/logs
pids=""
for t in image image_crc; do
    (cd fuzz && exec cargo fuzz run -a "$t" -- -max_total_time="$secs" -max_len=65536 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) >"fuzz/logs/$t.log" 2>&1 &
    pids="$pids $!"
    echo "fuzz: $t running for ${secs}s (log: fuzz/logs/$t.log)"
done
status=0
for p in $pids; do
    wait "$p" || status=1
done
for t in image image_crc; do
    echo "== $t"
    grep -E '^(#[0-9]+ +DONE|Done |stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|thread .* panicked|artifact_prefix|Test unit written)' \
        "fuzz/logs/$t.log" | tail -n 8 || true
done
if [ "$status" != 0 ]; then
    echo "fuzz: FAILED, crashing inputs in fuzz/artifacts/ (logs in fuzz/logs/)"
    exit 1
fi
echo "fuzz: no failure in ${secs}s per target"
