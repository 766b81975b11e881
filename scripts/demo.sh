#!/usr/bin/env bash
# Start a counter, freeze it into a file, and resume it from that file.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=target/release/ckpt
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
cc -O1 -o "$dir/counter" examples/counter.c
echo "== starting a counter (prints 0..19, one number every 0.2 s)"
# Started with only fds 0-2 open, as from a terminal (an fd inherited from make or a
# CI runner would resume disconnected, with a warning line each).
bash -c 'for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$0" 20' "$dir/counter" &
pid=$!
# ckpt kills the original once the file is on disk; disowned, the shell does not
# report that as a killed job.
disown "$pid"
sleep 1.3
echo "== ckpt freeze $pid -o $dir/counter.resume"
"$ckpt" freeze "$pid" -o "$dir/counter.resume" -v
ls -l "$dir/counter.resume"
file "$dir/counter.resume" 2>/dev/null || true
echo "== the original is gone; resuming from the file:"
"$dir/counter.resume"
echo "== resumed process finished"
