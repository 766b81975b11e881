//! This process's own [vvar], [vvar_vclock] and [vdso] ranges, read from
//! /proc/self/maps: their number and sizes depend on the running kernel (Linux 6.13
//! split vvar in two), so they cannot be derived from AT_SYSINFO_EHDR alone.

use crate::ctx::{Range, VDSO, VVAR, VVAR_VCLOCK};
use crate::out::{self, Step};
use crate::sys;

fn hex(s: &[u8]) -> u64 {
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => break,
        };
        v = v << 4 | d as u64;
    }
    v
}

pub fn read_specials() -> [Range; 3] {
    let mut buf = [0u8; 16384];
    let fd = out::check(sys::open(b"/proc/self/maps\0", sys::O_RDONLY | sys::O_CLOEXEC, 0), Step::Vdso, 0, 0);
    let mut len = 0;
    loop {
        match sys::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(sys::EINTR) => {}
            Err(e) => out::fail(Step::Vdso, 0, 0, e),
        }
        if len == buf.len() {
            break;
        }
    }
    let _ = sys::close(fd);
    let mut r = [Range::default(); 3];
    for line in buf[..len].split(|&c| c == b'\n') {
        let slot = if line.ends_with(b"[vvar]") {
            VVAR
        } else if line.ends_with(b"[vvar_vclock]") {
            VVAR_VCLOCK
        } else if line.ends_with(b"[vdso]") {
            VDSO
        } else {
            continue;
        };
        let dash = line.iter().position(|&c| c == b'-').unwrap_or(0);
        r[slot] = Range { start: hex(&line[..dash]), end: hex(&line[dash + 1..]) };
    }
    r
}
