#!/usr/bin/env bash
# Freeze/resume speed against this machine's limits, measured in the same run.
# Prints medians of N runs and ratios (1.0 = as fast as the machine's limit).
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=$PWD/target/release/ckpt
N=${N:-5}
MIB=${MIB:-1024}
dir=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-bench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
cc -O2 -o "$dir/big" tests/fixtures/big.c

now() { date +%s.%N; }
median() { python3 -c 'import sys,statistics; print("%.3f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
ratio() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
wait_line() { for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "timeout waiting for $2 in $1" >&2; exit 1; }
close_fds() { exec bash -c 'for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@"' _ "$@"; }

echo "== machine limits ($MIB MiB)"
t0=$(now); dd if=/dev/zero of="$dir/dd" bs=8M count=$((MIB / 8)) conv=fsync status=none; t1=$(now)
disk=$(python3 -c "print(($t1 - $t0))")
sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
cat "$dir/dd" > /dev/null
t0=$(now); cat "$dir/dd" > /dev/null; t1=$(now)
cached=$(python3 -c "print(($t1 - $t0))")
rm -f "$dir/dd"
# Filling fresh memory from the kernel: one read(2) into a new buffer of the same size
# (page faults, zeroing and copying: what any restore into new memory must do).
t0=$(now); dd if=/dev/zero of=/dev/null bs=${MIB}M count=1 status=none; t1=$(now)
fill=$(python3 -c "print(($t1 - $t0))")
printf 'write+fsync %d MiB: %.3f s (%.0f MiB/s); read from page cache: %.3f s (%.0f MiB/s)\n' \
    "$MIB" "$disk" "$(python3 -c "print($MIB/$disk)")" "$cached" "$(python3 -c "print($MIB/$cached)")"

echo "== $MIB MiB process: freeze (to disk, fsynced) and resume (until its memory is back and verified)"
fr=(); rs=(); size=0
for i in $(seq "$N"); do
    rm -f "$dir/gate" "$dir/big.resume"
    close_fds "$dir/big" "$MIB" "$dir/gate" > "$dir/big.out" 2>&1 &
    # disowned: ckpt kills the original once the image is on disk, and bash would
    # otherwise report that job as "Killed".
    pid=$!; pids+=("$pid"); disown "$pid"
    wait_line "$dir/big.out" ready
    t0=$(now); "$ckpt" freeze "$pid" -o "$dir/big.resume"; t1=$(now)
    fr+=("$(python3 -c "print($t1 - $t0)")")
    size=$(stat -c %s "$dir/big.resume")
    touch "$dir/gate"
    t0=$(now); "$dir/big.resume" > /dev/null; t1=$(now)
    rs+=("$(python3 -c "print($t1 - $t0)")")
done
f=$(median "${fr[@]}"); r=$(median "${rs[@]}")
echo "file size: $size bytes"
echo "freeze median: $f s   (machine limit, write+fsync of the same bytes: $disk s; ratio $(ratio "$f" "$disk"))"
echo "resume median: $r s   (includes the program re-reading all $MIB MiB)"
echo "   limits: page-cache read $cached s (ratio $(ratio "$r" "$cached")); read into fresh memory $fill s (ratio $(ratio "$r" "$fill"))"

echo "== pre-initialized python: cold start vs resume"
cold=(); warm=()
for i in $(seq "$N"); do
    t0=$(now); echo | python3 bench/warm.py > /dev/null; t1=$(now)
    cold+=("$(python3 -c "print($t1 - $t0)")")
done
rm -f "$dir/py.out"
sleep 1000 | close_fds python3 bench/warm.py > "$dir/py.out" 2>&1 &
disown
pypid=$(pgrep -n -f "python3 bench/warm.py"); pids+=("$pypid")
wait_line "$dir/py.out" ready
"$ckpt" freeze "$pypid" -o "$dir/py.resume"
pkill -f "^sleep 1000$" 2>/dev/null || true
for i in $(seq "$N"); do
    t0=$(now); echo | "$dir/py.resume" > /dev/null; t1=$(now)
    warm+=("$(python3 -c "print($t1 - $t0)")")
done
c=$(median "${cold[@]}"); w=$(median "${warm[@]}")
echo "python3 with imports, cold: $c s; resumed: $w s; speed-up x$(ratio "$c" "$w"); file $(stat -c %s "$dir/py.resume") bytes"
