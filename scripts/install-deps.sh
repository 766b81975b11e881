#!/usr/bin/env bash
# Install what the tests and the demo use, from Debian's packages (and numpy from
# PyPI for a python3 that is not Debian's), if missing. Quick when all is there.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v python3 >/dev/null || need+=(python3)
[ -x /usr/bin/python3 ] || need+=(python3)
command -v file >/dev/null || need+=(file)
command -v gdb >/dev/null || need+=(gdb)
command -v tmux >/dev/null || need+=(tmux)
command -v setpriv >/dev/null || need+=(util-linux)
command -v readelf >/dev/null || need+=(binutils)
command -v less >/dev/null || need+=(less)
command -v gzip >/dev/null || need+=(gzip)
command -v sha256sum >/dev/null || need+=(coreutils)
command -v setarch >/dev/null || need+=(util-linux)
# The runtimes frozen by tests/e2e/runtimes.rs.
command -v go >/dev/null || need+=(golang-go)
{ command -v java && command -v javac; } >/dev/null || need+=(default-jdk-headless)
command -v node >/dev/null || need+=(nodejs)
# The cross-kernel VM tests (tests/vm): qemu's x86 emulator, a static busybox,
# and dpkg-deb/apt-get to fetch and unpack Debian kernel images.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
{ command -v busybox >/dev/null && file -L "$(command -v busybox)" | grep -q "statically linked"; } 2>/dev/null || need+=(busybox-static)

as_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "missing: $* (run as root or install them)" >&2
        exit 1
    fi
}

if [ ${#need[@]} -gt 0 ]; then
    as_root "packages ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" </dev/null
fi

# numpy for the interpreter the tests run: `python3` on PATH may be a shim (pyenv),
# so ask it which executable it is. Debian's own python3 takes Debian's package
# (pip refuses to install into it); any other takes numpy from PyPI with its pip.
py=$(python3 -c 'import sys; print(sys.executable)')
if ! "$py" -c 'import numpy' 2>/dev/null; then
    case "$py" in
    /usr/bin/python3*)
        as_root "python3-numpy"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3-numpy </dev/null
        ;;
    *)
        "$py" -m pip --version >/dev/null 2>&1 || "$py" -m ensurepip --upgrade >/dev/null
        PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "$py" -m pip install -q numpy
        ;;
    esac
    "$py" -c 'import numpy'
fi
