#!/usr/bin/env bash
# Install what the tests and the demo use, from Debian's packages, if missing.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v python3 >/dev/null || need+=(python3)
command -v file >/dev/null || need+=(file)
command -v gdb >/dev/null || need+=(gdb)
command -v tmux >/dev/null || need+=(tmux)
command -v setpriv >/dev/null || need+=(util-linux)
command -v readelf >/dev/null || need+=(binutils)
command -v less >/dev/null || need+=(less)
command -v gzip >/dev/null || need+=(gzip)
command -v sha256sum >/dev/null || need+=(coreutils)
command -v setarch >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "missing packages: ${need[*]} (run as root or install them)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" </dev/null
fi
