//! The process's identity beyond its credentials (what and why:
//! generator/src/identity.rs): supplementary groups, oom_score_adj and I/O
//! priority are set before the process gets its PID back (they are inherited by
//! the clone behind it, and inside the user namespace an ordinary user gets there,
//! groups could neither be compared nor set); membarrier registrations belong to
//! the final process and are made again with the rest of its state.
//!
//! Each value is only written when it differs. What the resumer may not do stops
//! the resume naming the value: setgroups(2) needs CAP_SETGID, and lowering
//! oom_score_adj below what the resumer started with needs CAP_SYS_RESOURCE
//! (proc(5)); the process never runs with less than it had.

use crate::out::{self, Line, Step};
use crate::sys::{self, call};
use ckpt_format::{Process, Tables, PROC_HAVE_IDENTITY};

const SYS_GETGROUPS: usize = 115;
const SYS_SETGROUPS: usize = 116;
const SYS_IOPRIO_SET: usize = 251;
const SYS_IOPRIO_GET: usize = 252;
const SYS_MEMBARRIER: usize = 324;
const IOPRIO_WHO_PROCESS: usize = 1;
/// Groups compared in place (the gap's stack holds this many).
const MAX_COMPARED: usize = 4096;

fn identity<'a>(t: &Tables<'a>) -> Option<&'a Process> {
    t.process.filter(|p| p.flags & PROC_HAVE_IDENTITY != 0)
}

fn fail(what: &str, e: isize) -> ! {
    let mut l = Line::new();
    l.s("restore process state failed: ").s(what);
    if e != 0 {
        l.s(": ").errno(e);
    }
    l.emit();
    sys::exit_group(Step::Process as i32)
}

fn groups(t: &Tables, p: &Process) {
    let saved = t.string(p.groups_off, p.groups_len);
    let n = saved.len() / 4;
    let mut now = [0u32; MAX_COMPARED];
    // SAFETY: getgroups writes at most MAX_COMPARED gids into `now`.
    let have = unsafe { call(SYS_GETGROUPS, [MAX_COMPARED, now.as_mut_ptr() as usize, 0, 0, 0, 0]) };
    let same = have.is_ok_and(|k| {
        k == n && now[..k].iter().zip(saved.chunks_exact(4)).all(|(g, b)| g.to_ne_bytes() == b[..4])
    });
    if same {
        return;
    }
    // SAFETY: `saved` holds n native-endian u32 gids, which setgroups only reads.
    if let Err(e) = unsafe { call(SYS_SETGROUPS, [n, saved.as_ptr() as usize, 0, 0, 0, 0]) } {
        let mut l = Line::new();
        l.s("restore process state failed: the process had ").dec(n as u64).s(" supplementary groups (");
        for (i, g) in saved.chunks_exact(4).take(8).enumerate() {
            l.s(if i == 0 { "" } else { " " }).dec(u32::from_ne_bytes([g[0], g[1], g[2], g[3]]) as u64);
        }
        l.s(if n > 8 { " ...)" } else { ")" }).s(", the resumer has others, and setgroups failed: ").errno(e)
            .s(" (it needs CAP_SETGID: resume as root, or as a user with the same groups)").emit();
        sys::exit_group(Step::Process as i32);
    }
    out::trace("supplementary groups set (count)", n as u64, 0);
}

fn oom_score_adj(p: &Process) {
    let Ok(fd) = sys::open(b"/proc/self/oom_score_adj\0", sys::O_RDWR as usize | sys::O_CLOEXEC, 0) else {
        fail("cannot open /proc/self/oom_score_adj", 0)
    };
    let mut b = [0u8; 16];
    let n = sys::read(fd, &mut b).unwrap_or(0);
    let txt = &b[..n];
    let (neg, digits) = match txt.first() {
        Some(b'-') => (true, &txt[1..]),
        _ => (false, txt),
    };
    let mag = digits.iter().take_while(|c| c.is_ascii_digit()).fold(0i64, |a, &c| a * 10 + (c - b'0') as i64);
    let cur = if neg { -mag } else { mag };
    if cur != p.oom_score_adj as i64 {
        let mut t = [0u8; 20];
        let mut v = [0u8; 21];
        let d = out::decimal(p.oom_score_adj.unsigned_abs() as u64, &mut t);
        let k = (p.oom_score_adj < 0) as usize;
        v[0] = b'-';
        v[k..k + d.len()].copy_from_slice(d);
        if let Err(e) = sys::write(fd, &v[..k + d.len()]) {
            let mut l = Line::new();
            l.s("restore process state failed: cannot set oom_score_adj back to ");
            l.s(if k == 1 { "-" } else { "" }).b(d).s(" (it is ").s(if cur < 0 { "-" } else { "" }).dec(cur.unsigned_abs())
                .s(" here): ").errno(e).s(" (lowering it needs CAP_SYS_RESOURCE)").emit();
            sys::exit_group(Step::Process as i32);
        }
        out::trace("oom_score_adj set", p.oom_score_adj as u64, 0);
    }
    let _ = sys::close(fd);
}

fn ioprio(p: &Process) {
    // SAFETY: ioprio_get/set take integers only.
    let cur = unsafe { call(SYS_IOPRIO_GET, [IOPRIO_WHO_PROCESS, 0, 0, 0, 0, 0]) };
    if cur.is_ok_and(|c| c as u32 == p.ioprio) {
        return;
    }
    // SAFETY: as above.
    if let Err(e) = unsafe { call(SYS_IOPRIO_SET, [IOPRIO_WHO_PROCESS, 0, p.ioprio as usize, 0, 0, 0]) } {
        Line::new().s("restore process state failed: cannot set the I/O priority back to class ")
            .dec((p.ioprio >> 13) as u64).s(" level ").dec((p.ioprio & 7) as u64).s(": ").errno(e).emit();
        sys::exit_group(Step::Process as i32);
    }
    out::trace("io priority set", p.ioprio as u64, 0);
}

/// Groups, oom_score_adj, I/O priority: before the process gets its PID back.
pub fn before_pid(t: &Tables) {
    if let Some(p) = identity(t) {
        groups(t, p);
        oom_score_adj(p);
        ioprio(p);
    }
}

/// membarrier(2) registrations, in the final process.
pub fn membarrier(t: &Tables) {
    let Some(p) = identity(t) else { return };
    for bit in 0..32 {
        let cmd = p.membarrier & (1 << bit);
        if cmd == 0 {
            continue;
        }
        // SAFETY: membarrier takes integers only.
        if let Err(e) = unsafe { call(SYS_MEMBARRIER, [cmd as usize, 0, 0, 0, 0, 0]) } {
            Line::new().s("restore process state failed: membarrier registration ").hex(cmd as u64)
                .s(": ").errno(e).emit();
            sys::exit_group(Step::Process as i32);
        }
        out::trace("membarrier registration", cmd as u64, 0);
    }
}
