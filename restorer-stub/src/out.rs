//! Messages on fd 2 without core::fmt: failures (which step, which address range,
//! which errno) and the step-by-step trace enabled by `CKPT_TRACE=1`.

use crate::sys;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static TRACE: AtomicBool = AtomicBool::new(false);
/// CLOCK_MONOTONIC (us) when tracing began: each trace line says how long after.
static TRACE_T0: AtomicU64 = AtomicU64::new(0);

fn now_us() -> u64 {
    let mut ts = [0u64; 2];
    let _ = sys::clock_gettime(1, &mut ts);
    ts[0] * 1_000_000 + ts[1] / 1000
}

pub fn set_trace(on: bool) {
    TRACE.store(on, Ordering::Relaxed);
    TRACE_T0.store(now_us(), Ordering::Relaxed);
}

pub fn tracing() -> bool {
    TRACE.load(Ordering::Relaxed)
}

/// A restore step; its number is the process exit code when it fails.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Step {
    OpenImage = 100,
    Validate = 101,
    Cpu = 102,
    Vdso = 103,
    Gap = 104,
    Unmap = 105,
    MoveVdso = 106,
    MapVma = 107,
    FillPages = 108,
    Protect = 109,
    Mm = 110,
    Fds = 111,
    Thread = 112,
    Sigreturn = 113,
    Process = 114,
    LockMemory = 115,
    /// A process tree: forking its processes, or one of them failing (tree.rs).
    Tree = 117,
    /// A pseudo-terminal's queued input, typed into the new pair again (fds/pty.rs).
    Tty = 118,
    /// A chunk of a compressed image's pages (decompress.rs).
    Decompress = 120,
}

// The refusals of format::compat (probe.rs) exit with these steps' codes.
const _: () = {
    use ckpt_format::compat as c;
    assert!(Step::Cpu as u8 == c::EXIT_CPU && Step::Vdso as u8 == c::EXIT_VDSO);
    assert!(Step::MapVma as u8 == c::EXIT_MAP_VMA && Step::Process as u8 == c::EXIT_PROCESS);
};

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::OpenImage => "open image",
            Step::Validate => "validate image",
            Step::Cpu => "check cpu",
            Step::Vdso => "check vdso",
            Step::Gap => "find restorer gap",
            Step::Unmap => "unmap old layout",
            Step::MoveVdso => "move vdso/vvar",
            Step::MapVma => "map vma",
            Step::FillPages => "fill pages",
            Step::Protect => "protect vma",
            Step::Mm => "set mm fields (PR_SET_MM_MAP)",
            Step::Fds => "restore fds",
            Step::Thread => "restore thread state",
            Step::Sigreturn => "rt_sigreturn",
            Step::Process => "restore process state",
            Step::LockMemory => "lock memory",
            Step::Tree => "restore process tree",
            Step::Tty => "restore terminal input",
            Step::Decompress => "decompress pages",
        }
    }
}

/// A small fixed buffer that collects one message before a single write(2).
pub struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Line {
    pub fn new() -> Line {
        let mut l = Line { buf: [0; 512], len: 0 };
        l.s("ckpt-restore: ");
        l
    }

    pub fn s(&mut self, s: &str) -> &mut Line {
        self.b(s.as_bytes())
    }

    pub fn b(&mut self, s: &[u8]) -> &mut Line {
        for &c in s {
            if self.len < self.buf.len() - 1 {
                self.buf[self.len] = c;
                self.len += 1;
            }
        }
        self
    }

    pub fn hex(&mut self, v: u64) -> &mut Line {
        let mut t = [0u8; 18];
        t[0] = b'0';
        t[1] = b'x';
        let mut n = 2;
        let mut started = false;
        for i in (0..16).rev() {
            let d = ((v >> (i * 4)) & 0xf) as u8;
            if d != 0 || started || i == 0 {
                started = true;
                t[n] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
                n += 1;
            }
        }
        self.b(&t[..n])
    }

    pub fn dec(&mut self, v: u64) -> &mut Line {
        let mut t = [0u8; 20];
        self.b(decimal(v, &mut t))
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> &mut Line {
        self.hex(lo).s("-").hex(hi)
    }

    pub fn errno(&mut self, e: isize) -> &mut Line {
        self.s(errno_name(e)).s(" (errno ").dec(e as u64).s(")")
    }

    pub fn emit(&mut self) {
        crate::progress::clear();
        self.b(b"\n");
        let _ = sys::write(2, &self.buf[..self.len]);
    }
}

/// The decimal digits of `v`, written at the end of `t`.
pub fn decimal(v: u64, t: &mut [u8; 20]) -> &[u8] {
    let mut n = t.len();
    let mut v = v;
    loop {
        n -= 1;
        t[n] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &t[n..]
}

/// A NUL-terminated string in `buf`: `parts[0] nums[0] parts[1] nums[1] ... tail`
/// (a path such as "/proc/123/stat"); truncated to fit.
pub fn cstr<'b, const N: usize>(buf: &'b mut [u8; N], parts: &[&[u8]], nums: &[u64], tail: &[u8]) -> &'b [u8] {
    let mut n = 0;
    let mut push = |s: &[u8], n: &mut usize| {
        for &c in s {
            if *n < N - 1 {
                buf[*n] = c;
                *n += 1;
            }
        }
    };
    for (i, p) in parts.iter().enumerate() {
        push(p, &mut n);
        if let Some(&v) = nums.get(i) {
            let mut t = [0u8; 20];
            push(decimal(v, &mut t), &mut n);
        }
    }
    push(tail, &mut n);
    buf[n] = 0;
    &buf[..n + 1]
}

pub fn errno_name(e: isize) -> &'static str {
    match e {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        38 => "ENOSYS",
        75 => "EOVERFLOW",
        _ => "error",
    }
}

/// Print a trace line for a step on a range, when tracing, with the microseconds
/// since the restorer started (where the time of a resume goes).
pub fn trace(what: &str, lo: u64, hi: u64) {
    if tracing() {
        let us = now_us().saturating_sub(TRACE_T0.load(Ordering::Relaxed));
        Line::new().s("+").dec(us).s("us ").s(what).s(" ").range(lo, hi).emit();
    }
}

/// Report a failed step on an address range with its errno, and exit with the step's code.
pub fn fail(step: Step, lo: u64, hi: u64, errno: isize) -> ! {
    let mut l = Line::new();
    l.s(step.name()).s(" failed");
    if lo != 0 || hi != 0 {
        l.s(" for ").range(lo, hi);
    }
    if errno != 0 {
        l.s(": ").errno(errno);
    }
    l.emit();
    sys::exit_group(step as i32)
}

/// Report a failed step with a fixed explanation, and exit with the step's code.
pub fn fail_msg(step: Step, msg: &str, extra: &[u8]) -> ! {
    let mut l = Line::new();
    l.s(step.name()).s(" failed: ").s(msg);
    if !extra.is_empty() {
        l.s(": ").b(extra);
    }
    l.emit();
    sys::exit_group(step as i32)
}

/// Unwrap a syscall result or fail the step for that range.
pub fn check(r: sys::Res, step: Step, lo: u64, hi: u64) -> usize {
    match r {
        Ok(v) => v,
        Err(e) => fail(step, lo, hi, e),
    }
}
