//! /proc: process state, blocking system calls, memory maps.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// State letter from /proc/PID/stat (R, S, D, T, t, Z, ...), None if gone.
pub fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Wait until every one of `pids` has ended (gone, or a zombie not yet reaped), at
/// most `timeout`; `what` names them and why they should have ended.
pub fn wait_ended(pids: &[i32], timeout: Duration, what: &str) {
    let t0 = Instant::now();
    while let Some(p) = pids.iter().find(|&&p| proc_state(p).is_some_and(|s| s != 'Z')) {
        assert!(t0.elapsed() < timeout, "{what}: pid {p} still runs");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Start time (field 22 of /proc/PID/stat).
pub fn proc_starttime(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

pub fn tracer_pid(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until `pred(state)` holds for /proc/PID/stat's state.
pub fn wait_state(
    pid: i32,
    pred: impl Fn(Option<char>) -> bool,
    timeout: Duration,
) -> Option<char> {
    let deadline = Instant::now() + timeout;
    loop {
        let st = proc_state(pid);
        if pred(st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} stayed in state {st:?} for {timeout:?}"
        );
        thread::sleep(POLL);
    }
}

/// Waits until the process is blocked in one of the system calls `nrs`
/// (first field of /proc/PID/syscall).
pub fn wait_in_syscall(p: &Proc, nrs: &[i64], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let path = format!("/proc/{}/syscall", p.pid());
    loop {
        let s = fs::read_to_string(&path).unwrap_or_default();
        if s.split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|n| nrs.contains(&n))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not blocked in syscall {nrs:?} after {timeout:?} ({path}: {s:?})\n{}",
            p.label,
            p.describe()
        );
        thread::sleep(POLL);
    }
}

/// A free PID: the highest one below pid_max without a /proc entry.
pub fn unused_pid() -> i32 {
    let max: i32 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (300..max)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid")
}

// ---------------------------------------------------------------------------
// Memory maps

/// One line of /proc/PID/maps, without offset, device and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub name: String,
}

impl std::fmt::Display for MapEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:x}-{:x} {} {}",
            self.start, self.end, self.perms, self.name
        )
    }
}

pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    let mut out: Vec<MapEntry> = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, ' ');
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        let name = it.nth(3).unwrap_or("").trim().to_owned();
        if name == "[vsyscall]" {
            continue;
        }
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        // Adjacent entries with the same permissions and name are one region
        // split by kernel-internal details (anon_vma, merges): join them.
        if let Some(last) = out.last_mut() {
            if last.end == start && last.perms == perms && last.name == name {
                last.end = end;
                continue;
            }
        }
        out.push(MapEntry {
            start,
            end,
            perms: perms.to_owned(),
            name,
        });
    }
    out
}

pub fn read_maps(pid: i32) -> Vec<MapEntry> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/maps: {e}"));
    parse_maps(&text)
}

/// Lines only in `a` (-) or only in `b` (+).
pub fn maps_diff(a: &[MapEntry], b: &[MapEntry]) -> String {
    let mut s = String::new();
    for e in a.iter().filter(|e| !b.contains(e)) {
        s += &format!("- {e}\n");
    }
    for e in b.iter().filter(|e| !a.contains(e)) {
        s += &format!("+ {e}\n");
    }
    s
}

/// Waits until the maps of `p` equal `expected` (the restore may still be
/// running when we first look); fails with a diff if they never do or if the
/// process ends first.
/// The process that runs the resumed program: the one started from the file, or,
/// when the restorer got the original PID back with clone3 (it then stays as a
/// proxy parent), that proxy's only child.
pub fn resumed_pid(proxy: i32) -> i32 {
    let kids = fs::read_to_string(format!("/proc/{proxy}/task/{proxy}/children")).unwrap_or_default();
    let kids: Vec<i32> = kids.split_whitespace().filter_map(|k| k.parse().ok()).collect();
    match kids.as_slice() {
        [one] => *one,
        _ => proxy,
    }
}

pub fn assert_maps_eventually(p: &mut Proc, expected: &[MapEntry], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = p.try_status() {
            panic!(
                "{} ended ({s}) before its maps could be compared\n{}",
                p.label,
                p.describe()
            );
        }
        let got = fs::read_to_string(format!("/proc/{}/maps", resumed_pid(p.pid())))
            .map(|t| parse_maps(&t))
            .unwrap_or_default();
        if got == expected {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "maps of {} differ from the frozen process's (- frozen, + resumed):\n{}\n{}",
                p.label,
                maps_diff(expected, &got),
                p.describe()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// VMA flags

/// One VMA of /proc/PID/smaps: range, name and its "VmFlags:" codes (proc(5)),
/// sorted. Adjacent VMAs with the same name and flags are joined, as in
/// [`parse_maps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmaFlags {
    pub start: u64,
    pub end: u64,
    pub name: String,
    pub flags: Vec<String>,
}

impl std::fmt::Display for VmaFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}-{:x} {} [{}]", self.start, self.end, self.name, self.flags.join(" "))
    }
}

pub fn parse_vmflags(text: &str) -> Vec<VmaFlags> {
    let mut out: Vec<VmaFlags> = Vec::new();
    let mut cur: Option<VmaFlags> = None;
    let push = |v: VmaFlags, out: &mut Vec<VmaFlags>| {
        if v.name == "[vsyscall]" {
            return;
        }
        match out.last_mut() {
            Some(last) if last.end == v.start && last.name == v.name && last.flags == v.flags => last.end = v.end,
            _ => out.push(v),
        }
    };
    for line in text.lines() {
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(mut v) = cur.take() {
                v.flags = flags.split_whitespace().map(str::to_owned).collect();
                v.flags.sort();
                push(v, &mut out);
            }
            continue;
        }
        let mut it = line.splitn(6, ' ');
        let Some((s, e)) = it.next().and_then(|r| r.split_once('-')) else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else { continue };
        let name = it.nth(4).unwrap_or("").trim().to_owned();
        cur = Some(VmaFlags { start, end, name, flags: Vec::new() });
    }
    out
}

pub fn read_vmflags(pid: i32) -> Vec<VmaFlags> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_else(|e| panic!("/proc/{pid}/smaps: {e}"));
    parse_vmflags(&text)
}

/// Panics unless the resumed process of `p` has, VMA for VMA, the VmFlags of
/// `expected` (read from the frozen process).
pub fn assert_vmflags(p: &Proc, expected: &[VmaFlags]) {
    let got = read_vmflags(resumed_pid(p.pid()));
    if got != expected {
        let mut d = String::new();
        for e in expected.iter().filter(|e| !got.contains(e)) {
            d += &format!("- {e}\n");
        }
        for e in got.iter().filter(|e| !expected.contains(e)) {
            d += &format!("+ {e}\n");
        }
        panic!("VmFlags of {} differ from the frozen process's (- frozen, + resumed):\n{d}{}", p.label, p.describe());
    }
}
