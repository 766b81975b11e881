#!/usr/bin/env bash
# Freeze/resume speed against this machine's limits, measured in the same run
# (what is measured and how: bench/bench.py). Knobs: N, BENCH_ONLY, BENCH_SKIP_BIG,
# BENCH_TMPDIR. Results: target/bench/*.csv and target/bench/ratios.png.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/ckpt ] || cargo build --release
# The plot uses matplotlib when it can be imported (a quick pip install if missing);
# without it, bench/barchart.py draws the PNG.
if ! python3 -c 'import matplotlib' 2>/dev/null; then
    timeout 180 python3 -m pip install --quiet matplotlib </dev/null >/dev/null 2>&1 ||
        echo "bench: matplotlib not installed; the plot is drawn without it"
fi
exec python3 bench/bench.py
