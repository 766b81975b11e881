//! Clocks that never go backwards: after a reboot (or on another machine)
//! CLOCK_MONOTONIC and CLOCK_BOOTTIME restart near zero, below what the process
//! read before the freeze, and a program that measures or sleeps by them would
//! see time run backwards. When probe.rs finds this machine's clocks behind, the
//! process goes into a new time namespace (time_namespaces(7), Linux 5.6) whose
//! offsets carry each clock on from its value at the freeze plus the time spent
//! frozen (format::compat::clock_offsets).
//!
//! unshare(CLONE_NEWTIME) makes the namespace for the children to come; its offsets
//! can be written to /proc/self/timens_offsets only until a process has entered it
//! (proc_timens_set_offset: EACCES afterwards); then setns(2) moves this process,
//! still single-threaded (timens_install: EUSERS otherwise), into it, and the
//! kernel gives its vvar the namespace's page (vdso_join_timens). The threads
//! created later inherit it. Offsets are relative to the host's clocks, not to
//! the resumer's namespace, so a resumer already inside one adds its own.
//! Making the namespace needs CAP_SYS_ADMIN and the offsets CAP_SYS_TIME in the
//! user namespace that owns it: the namespace route of pid.rs already runs in its
//! own user namespace; otherwise, without those capabilities, one is made here.

use crate::ctx::Ctx;
use crate::out::{self, Line, Step};
use crate::sys::{self, call};

const SYS_UNSHARE: usize = 272;
const SYS_SETNS: usize = 308;
const SYS_GETUID: usize = 102;
const SYS_GETGID: usize = 104;
const CLONE_NEWTIME: usize = 0x80;
const CLONE_NEWUSER: usize = 0x1000_0000;
const NS: u64 = 1_000_000_000;

fn fail(what: &str, e: isize) -> ! {
    let mut l = Line::new();
    l.s("restore process state failed: ").s(what);
    if e != 0 {
        l.s(": ").errno(e);
    }
    l.s(" (this machine's clocks are behind the freeze's; a time namespace would carry them on)").emit();
    sys::exit_group(Step::Process as i32)
}

/// The (monotonic, boottime) offsets in ns of this process's time namespace as
/// /proc/self/timens_offsets shows them ("monotonic S NS" lines; zero if absent).
fn current_offsets() -> [i64; 2] {
    let mut o = [0i64; 2];
    let Ok(fd) = sys::open(b"/proc/self/timens_offsets\0", sys::O_RDONLY | sys::O_CLOEXEC, 0) else { return o };
    let mut buf = [0u8; 256];
    let n = sys::read(fd, &mut buf).unwrap_or(0);
    let _ = sys::close(fd);
    for line in buf[..n].split(|&c| c == b'\n') {
        let mut f = line.split(|&c| c == b' ').filter(|w| !w.is_empty());
        let (Some(name), Some(s), Some(ns)) = (f.next(), f.next(), f.next()) else { continue };
        let slot = match name {
            b"monotonic" | b"1" => 0,
            b"boottime" | b"7" => 1,
            _ => continue,
        };
        o[slot] = signed(s).saturating_mul(NS as i64).saturating_add(signed(ns));
    }
    o
}

fn signed(w: &[u8]) -> i64 {
    let (neg, d) = match w.first() {
        Some(b'-') => (true, &w[1..]),
        _ => (false, w),
    };
    let v = d.iter().take_while(|c| c.is_ascii_digit()).fold(0i64, |a, &c| a.saturating_mul(10).saturating_add((c - b'0') as i64));
    if neg {
        -v
    } else {
        v
    }
}

/// "NAME SECONDS NANOSECONDS\n" for /proc/self/timens_offsets.
fn offset_line(l: &mut [u8; 64], name: &[u8], ns: i64) -> usize {
    let mut n = 0;
    let mut push = |s: &[u8], n: &mut usize| {
        for &c in s {
            l[*n] = c;
            *n += 1;
        }
    };
    push(name, &mut n);
    push(b" ", &mut n);
    // Seconds may be negative, nanoseconds never (proc_timens_set_offset).
    let (s, rest) = (ns.div_euclid(NS as i64), ns.rem_euclid(NS as i64) as u64);
    if s < 0 {
        push(b"-", &mut n);
    }
    let mut t = [0u8; 20];
    push(out::decimal(s.unsigned_abs(), &mut t), &mut n);
    push(b" ", &mut n);
    push(out::decimal(rest, &mut t), &mut n);
    push(b"\n", &mut n);
    n
}

/// A user namespace of our own (only our uid and gid mapped), so the time
/// namespace made next is owned by it and its offsets may be set.
fn own_user_namespace() -> Result<(), isize> {
    // SAFETY: no arguments.
    let (uid, gid) = unsafe { (call(SYS_GETUID, [0; 6]).unwrap_or(0), call(SYS_GETGID, [0; 6]).unwrap_or(0)) };
    // SAFETY: unshare takes flags only.
    unsafe { call(SYS_UNSHARE, [CLONE_NEWUSER, 0, 0, 0, 0, 0]) }?;
    let mut ubuf = [0u8; 48];
    let mut gbuf = [0u8; 48];
    let umap = out::cstr(&mut ubuf, &[b"", b" "], &[uid as u64, uid as u64], b" 1");
    let gmap = out::cstr(&mut gbuf, &[b"", b" "], &[gid as u64, gid as u64], b" 1");
    let ok = crate::pid::write_proc(b"/proc/self/uid_map\0", &umap[..umap.len() - 1])
        && crate::pid::write_proc(b"/proc/self/setgroups\0", b"deny")
        && crate::pid::write_proc(b"/proc/self/gid_map\0", &gmap[..gmap.len() - 1]);
    if ok {
        Ok(())
    } else {
        Err(sys::EPERM)
    }
}

/// Enter a time namespace with the planned offsets, if the plan has any. Runs in
/// the process that becomes the target, before it has threads, timers or fds.
pub fn enter(ctx: &Ctx) {
    if ctx.timens == [0, 0] {
        return;
    }
    let cur = current_offsets();
    let want = [
        cur[0].saturating_add(ctx.timens[0].min(i64::MAX as u64) as i64),
        cur[1].saturating_add(ctx.timens[1].min(i64::MAX as u64) as i64),
    ];
    // SAFETY: unshare takes flags only.
    if let Err(e) = unsafe { call(SYS_UNSHARE, [CLONE_NEWTIME, 0, 0, 0, 0, 0]) } {
        if e != sys::EPERM {
            fail("cannot make a time namespace", e);
        }
        if let Err(e) = own_user_namespace() {
            fail("cannot make a user namespace for a time namespace", e);
        }
        // SAFETY: as above.
        if let Err(e) = unsafe { call(SYS_UNSHARE, [CLONE_NEWTIME, 0, 0, 0, 0, 0]) } {
            fail("cannot make a time namespace", e);
        }
    }
    let mut text = [0u8; 128];
    let mut line = [0u8; 64];
    let a = offset_line(&mut line, b"monotonic", want[0]);
    text[..a].copy_from_slice(&line[..a]);
    let b = offset_line(&mut line, b"boottime", want[1]);
    text[a..a + b].copy_from_slice(&line[..b]);
    let fd = match sys::open(b"/proc/self/timens_offsets\0", sys::O_WRONLY as usize | sys::O_CLOEXEC, 0) {
        Ok(fd) => fd,
        Err(e) => fail("cannot open /proc/self/timens_offsets", e),
    };
    if let Err(e) = sys::write(fd, &text[..a + b]) {
        fail("cannot set the time namespace's clock offsets", e);
    }
    let _ = sys::close(fd);
    let ns = match sys::open(b"/proc/self/ns/time_for_children\0", sys::O_RDONLY | sys::O_CLOEXEC, 0) {
        Ok(fd) => fd,
        Err(e) => fail("cannot open the new time namespace", e),
    };
    // SAFETY: an fd of a time namespace and its type.
    if let Err(e) = unsafe { call(SYS_SETNS, [ns, CLONE_NEWTIME, 0, 0, 0, 0]) } {
        fail("cannot enter the new time namespace", e);
    }
    let _ = sys::close(ns);
    out::trace("entered a time namespace: monotonic, boottime offsets (s)", want[0] as u64 / NS, want[1] as u64 / NS);
}
