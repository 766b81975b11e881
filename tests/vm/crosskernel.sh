#!/usr/bin/env bash
# Freeze processes on one Linux kernel and resume them on another, and on the same
# kernel after a reboot, in qemu VMs (TCG: no KVM needed), with one CPU model for
# every boot. Debian kernel images are fetched with `apt-get download` and unpacked
# with dpkg-deb -x (never installed), cached under $VM/kernels. Each boot runs an
# initramfs of static busybox, ckpt, the targets (tests/vm/vmclock.c dynamic and
# static, tests/vm/vmclock.go) and their libraries at their paths; the frozen files
# and the logs come out base64 on the VM's second serial port.
#
#   crosskernel.sh CKPT_BIN OUT_DIR
# OUT_DIR/freeze/ gets the first boot's files (6.12 kernel), OUT_DIR/cross/ the
# resume on the 6.1 kernel, OUT_DIR/same/ the resume on the 6.12 kernel rebooted;
# OUT_DIR/freeze-old/ the files frozen on 6.1, OUT_DIR/back/ their resume on 6.12.
# Exit 77: the emulator or a kernel image cannot be had here (a skip).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CKPT=${1:-$ROOT/target/release/ckpt}
OUT=${2:-$ROOT/target/tmp/vm/run}
VM=${CKPT_VM_CACHE:-$ROOT/target/tmp/vm}
KCACHE=$VM/kernels

skip() { echo "SKIP: $*"; exit 77; }
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)"
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] && file -L "$BUSYBOX" | grep -q "statically linked" || skip "no static busybox (busybox-static)"
mkdir -p "$KCACHE" "$OUT"

# The newest kernel image of a series that apt knows, downloaded once.
kernel() { # kernel REGEX -> path of vmlinuz
    local pkg dir
    dir=$(ls -d "$KCACHE"/linux-image-* 2>/dev/null | grep -E "/$1\$" | sort -V | tail -1 || true)
    if [ -z "$dir" ]; then
        pkg=$(apt-cache search --names-only '^linux-image-' 2>/dev/null | awk '{print $1}' | grep -E "^$1\$" | sort -V | tail -1 || true)
        [ -n "$pkg" ] || skip "apt knows no package matching $1 (apt-get update first)"
        (cd "$KCACHE" && apt-get download "$pkg" >/dev/null 2>&1) || skip "apt-get download $pkg failed"
        dpkg-deb -x "$KCACHE/${pkg}"_*.deb "$KCACHE/$pkg"
        rm -f "$KCACHE/${pkg}"_*.deb
        dir=$KCACHE/$pkg
    fi
    ls "$dir"/boot/vmlinuz-* | head -1
}
K_NEW=$(kernel 'linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64')
K_OLD=$(kernel 'linux-image-6\.1\.0-[0-9]+-cloud-amd64')
echo "kernels: $(basename "$K_NEW") -> $(basename "$K_OLD")"

# Targets.
BIN=$VM/bin
mkdir -p "$BIN"
cc -O2 -o "$BIN/vmclock" "$HERE/vmclock.c"
cc -O2 -static -o "$BIN/vmclock-static" "$HERE/vmclock.c"
if command -v go >/dev/null; then
    (cd "$HERE" && CGO_ENABLED=0 GOCACHE="$VM/gocache" GO111MODULE=off go build -o "$BIN/vmclock-go" vmclock.go)
else
    echo "note: no go toolchain, the Go target is left out"
    rm -f "$BIN/vmclock-go"
fi

# initramfs ROOT_DIR OUTPUT [FILES_DIR]: busybox, ckpt, the targets, their
# libraries at their own paths, /init; FILES_DIR's files under /out.
initramfs() {
    local r=$1 lib
    rm -rf "$r"
    mkdir -p "$r/bin" "$r/targets" "$r/out"
    cp "$BUSYBOX" "$r/bin/busybox"
    cp "$CKPT" "$r/ckpt"
    cp "$HERE/init.sh" "$r/init"
    chmod 755 "$r/init"
    cp "$BIN"/vmclock* "$r/targets/"
    for lib in $( (ldd "$CKPT"; ldd "$BIN/vmclock") | grep -o '/[^ ]*' | sort -u); do
        mkdir -p "$r$(dirname "$lib")"
        cp -L "$lib" "$r$lib"
    done
    [ -z "${3:-}" ] || cp "$3"/* "$r/out/"
    (cd "$r" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) > "$2"
}

# boot KERNEL INITRD MODE DIR: run the VM, unpack what it sent into DIR.
boot() {
    local k=$1 initrd=$2 mode=$3 dir=$4
    rm -rf "$dir"
    mkdir -p "$dir"
    local t0=$SECONDS
    timeout 300 qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 1G \
        -display none -monitor none -no-reboot -nodefaults \
        -kernel "$k" -initrd "$initrd" \
        -append "console=ttyS0 quiet panic=-1 tsc=reliable ckptmode=$mode FREEZE_UPTIME=20" \
        -serial "file:$dir/console.log" -serial "file:$dir/data.log" </dev/null || {
        echo "the VM ($mode, $(basename "$k")) failed; console:"; tail -30 "$dir/console.log"; exit 1; }
    echo "boot $mode on $(basename "$k"): $((SECONDS - t0)) s"
    tr -d '\r' < "$dir/data.log" | awk -v d="$dir" '
        /^=====FILE / { name = $2; f = d "/" name ".b64"; printf "" > f; next }
        /^=====END/ { close(f); f = ""; next }
        f != "" { print >> f }'
    for b in "$dir"/*.b64; do
        [ -e "$b" ] || { echo "the VM ($mode) sent nothing; console:"; tail -30 "$dir/console.log"; exit 1; }
        base64 -d "$b" > "${b%.b64}"
        rm "$b"
    done
    grep -q "^=====DONE" "$dir/data.log" || { echo "the VM ($mode) did not finish; console:"; tail -30 "$dir/console.log"; exit 1; }
}

initramfs "$VM/root-freeze" "$VM/freeze.cpio.gz"

# freeze_on KERNEL NAME INITRD: freeze there into $OUT/NAME, and make the
# initramfs that resumes those files ($VM/INITRD.cpio.gz).
freeze_on() {
    boot "$1" "$VM/freeze.cpio.gz" freeze "$OUT/$2"
    rm -rf "$VM/carry"
    mkdir -p "$VM/carry"
    cp "$OUT/$2"/*.ckpt "$OUT/$2"/*.log "$VM/carry/"
    initramfs "$VM/root-resume" "$VM/$3.cpio.gz" "$VM/carry"
}

# Newer to older, and the same kernel rebooted.
freeze_on "$K_NEW" freeze freeze-new
boot "$K_OLD" "$VM/freeze-new.cpio.gz" resume "$OUT/cross"
boot "$K_NEW" "$VM/freeze-new.cpio.gz" resume "$OUT/same"
# Older to newer.
freeze_on "$K_OLD" freeze-old freeze-old
boot "$K_NEW" "$VM/freeze-old.cpio.gz" resume "$OUT/back"
echo "kernels: $(basename "$K_NEW") -> $(basename "$K_OLD")" > "$OUT/kernels"
