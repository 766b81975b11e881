//! Many independent system calls injected in one go.
//!
//! Each call injected one by one (inject.rs) costs two ptrace stops, so two trips
//! through the scheduler for the target and for us: reading 62 signal dispositions
//! that way is most of the fixed cost of a small freeze on a loaded machine. Here
//! a few bytes of code run the whole list in the target and trap once at the end:
//! one anonymous page is mapped in the target (an injected mmap), the code, the
//! calls and room for their results are written into it through /proc/PID/mem, the
//! task runs the code, and the page is unmapped again (an injected munmap): four
//! ptrace round trips whatever the number of calls.
//!
//! The code ends with `int3`, whose SIGTRAP is forced on the task; forcing a signal
//! the task blocks or ignores resets its disposition (force_sig_info_to_task(),
//! kernel/signal.c), and a SIGTRAP already pending would merge with ours (a
//! non-realtime signal is queued once). So the batch is used only when the task
//! neither ignores SIGTRAP nor has one pending, and with every other signal
//! blocked; otherwise, or when the page cannot be mapped executable (W^X
//! policies such as PR_SET_MDWE), [`run`] says so and the caller injects the calls
//! one by one.
//!
//! The page can also be kept ([`Page`]) for every thread of the process: a
//! freeze maps it once, runs the process-wide calls and the first thread's own
//! in one batch, each other thread's own calls (sigaltstack, clear_child_tid)
//! in one batch each, and unmaps it.

use crate::inject::{checked, Injector};
use anyhow::Result;

/// An argument of a batched call: a value, or the address of the call's own
/// results area (zeroed before the call, for a call that writes a struct there).
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    Val(u64),
    Out,
}

#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub nr: i64,
    pub args: [Arg; 6],
    /// Bytes of its results area (at most [`crate::inject::SCRATCH`]).
    pub out: usize,
}

impl Call {
    pub fn new(nr: i64, args: [Arg; 6], out: usize) -> Call {
        Call { nr, args, out }
    }
}

/// The loop run in the target. rbx points at the first call (8 words: number,
/// six arguments, result), r12 holds their count:
///
/// ```text
/// 0:  mov rax, [rbx]      mov rdi, [rbx+8]    mov rsi, [rbx+16]   mov rdx, [rbx+24]
///     mov r10, [rbx+32]   mov r8, [rbx+40]    mov r9, [rbx+48]    syscall
///     mov [rbx+56], rax   add rbx, 64         dec r12             jnz 0
///     int3
/// ```
///
/// syscall clobbers only rcx and r11 (and returns in rax), which the loop does not use.
const CODE: [u8; 43] = [
    0x48, 0x8b, 0x03, // mov rax, [rbx]
    0x48, 0x8b, 0x7b, 0x08, // mov rdi, [rbx+8]
    0x48, 0x8b, 0x73, 0x10, // mov rsi, [rbx+16]
    0x48, 0x8b, 0x53, 0x18, // mov rdx, [rbx+24]
    0x4c, 0x8b, 0x53, 0x20, // mov r10, [rbx+32]
    0x4c, 0x8b, 0x43, 0x28, // mov r8, [rbx+40]
    0x4c, 0x8b, 0x4b, 0x30, // mov r9, [rbx+48]
    0x0f, 0x05, // syscall
    0x48, 0x89, 0x43, 0x38, // mov [rbx+56], rax
    0x48, 0x83, 0xc3, 0x40, // add rbx, 64
    0x49, 0xff, 0xcc, // dec r12
    0x75, 0xd6, // jnz 0 (-42)
    0xcc, // int3
];

/// Where the calls start in the page (after the code, 64-byte aligned).
const TABLE: usize = 64;
const ENTRY: usize = 64;

/// Whether the task may take the trap ending the code: SIGTRAP not ignored and
/// not pending for it or its process (proc(5): SigIgn, SigPnd, ShdPnd of
/// /proc/PID/task/TID/status).
fn trap_usable(pid: i32, tid: i32) -> bool {
    let Ok(st) = crate::proc::status::read_status_of(pid, tid) else { return false };
    let bit = 1u64 << (libc::SIGTRAP - 1);
    (st.sig_ign | st.sig_pnd | st.shd_pnd) & bit == 0
}

/// Each call's raw result (-errno on error) and results area, in order.
pub type Results = Vec<(i64, Vec<u8>)>;

/// Where each call's results area starts, after the calls; and the total size.
fn out_offsets(calls: &[Call]) -> (Vec<usize>, usize) {
    let mut at = TABLE + calls.len() * ENTRY;
    let offs = calls
        .iter()
        .map(|c| {
            let o = at;
            at += c.out.next_multiple_of(8);
            o
        })
        .collect();
    (offs, at)
}

/// The page(s) holding code, calls and results: their bytes, with the calls'
/// pointers resolved against the mapping's address `at`.
fn layout(calls: &[Call], at: u64) -> Vec<u8> {
    let (offs, len) = out_offsets(calls);
    let mut b = vec![0u8; len];
    b[..CODE.len()].copy_from_slice(&CODE);
    for (i, c) in calls.iter().enumerate() {
        let e = &mut b[TABLE + i * ENTRY..TABLE + (i + 1) * ENTRY];
        e[..8].copy_from_slice(&(c.nr as u64).to_le_bytes());
        for (j, a) in c.args.iter().enumerate() {
            let v = match *a {
                Arg::Val(v) => v,
                Arg::Out => at + offs[i] as u64,
            };
            e[8 + j * 8..16 + j * 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// The page(s) the loop and its calls are written into, mapped once in the
/// process and used by each of its threads in turn (every thread of a process
/// shares its memory), then unmapped: a thread's own calls then cost one round
/// trip instead of two per call.
pub struct Page {
    at: u64,
    size: u64,
    /// The thread that mapped it, checked for the trap just before.
    mapped_by: i32,
}

impl Page {
    /// Map a page big enough for `calls` (and any shorter list) in the process
    /// of `inj` (thread `tid` of `pid`); None when no batch can run there: the
    /// trap cannot be used in that thread, or no writable and executable page can
    /// be mapped (W^X policies such as PR_SET_MDWE).
    pub fn map(inj: &Injector, pid: i32, tid: i32, calls: &[Call]) -> Result<Option<Page>> {
        if !trap_usable(pid, tid) {
            return Ok(None);
        }
        let size = out_offsets(calls).1.next_multiple_of(4096) as u64;
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let at = inj.syscall(libc::SYS_mmap, [0, size, prot, flags, u64::MAX, 0])?;
        if (-4095..0).contains(&at) {
            return Ok(None);
        }
        Ok(Some(Page { at: at as u64, size, mapped_by: tid }))
    }

    /// Run `calls` in the task of `inj` (thread `tid` of `pid`) from this page;
    /// None when the trap cannot be used in that thread, or the calls do not fit.
    pub fn run(&self, inj: &Injector, pid: i32, tid: i32, calls: &[Call]) -> Result<Option<Results>> {
        let (offs, len) = out_offsets(calls);
        if len as u64 > self.size || (tid != self.mapped_by && !trap_usable(pid, tid)) {
            return Ok(None);
        }
        let at = self.at;
        let bytes = layout(calls, at);
        inj.write_at(at, &bytes)?;
        inj.run_code(at, at + TABLE as u64, calls.len() as u64, at + CODE.len() as u64)?;
        let mut back = vec![0u8; bytes.len()];
        inj.read_at(at, &mut back)?;
        Ok(Some(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| (crate::inject::word(&back, (TABLE + i * ENTRY) / 8 + 7) as i64, back[offs[i]..offs[i] + c.out].to_vec()))
                .collect(),
        ))
    }

    /// Unmap the page, through any thread of the process.
    pub fn unmap(self, inj: &Injector, pid: i32) -> Result<()> {
        let r = inj.syscall(libc::SYS_munmap, [self.at, self.size, 0, 0, 0, 0])?;
        checked(r, &format!("munmap of the injected code at {:#x}", self.at), &format!("pid {pid}"))?;
        Ok(())
    }
}

/// Run `calls` in the task of `inj` (thread `tid` of process `pid`): each one's
/// raw result (-errno on error) and results area. From `page` where it can run;
/// else, with no page (none could be mapped), one by one; else as [`run`].
pub fn run_on(page: Option<&Page>, inj: &Injector, pid: i32, tid: i32, calls: &[Call]) -> Result<Results> {
    match page {
        Some(p) => match p.run(inj, pid, tid, calls)? {
            Some(done) => Ok(done),
            None => run(inj, pid, tid, calls),
        },
        None => one_by_one(inj, calls),
    }
}

/// Run `calls` in the task of `inj` (thread `tid` of process `pid`): each one's
/// raw result (-errno on error) and results area. In one batch where it can
/// run, else one by one.
pub fn run(inj: &Injector, pid: i32, tid: i32, calls: &[Call]) -> Result<Results> {
    if let Some(done) = batch(inj, pid, tid, calls)? {
        return Ok(done);
    }
    one_by_one(inj, calls)
}

/// Each call injected on its own (two ptrace stops each).
fn one_by_one(inj: &Injector, calls: &[Call]) -> Result<Results> {
    calls
        .iter()
        .map(|c| {
            inj.write(0, &vec![0u8; c.out])?;
            let args = c.args.map(|a| match a {
                Arg::Val(v) => v,
                Arg::Out => inj.ptr(0),
            });
            let r = inj.syscall(c.nr, args)?;
            let mut out = vec![0u8; c.out];
            inj.read(0, &mut out)?;
            Ok((r, out))
        })
        .collect()
}

/// [`run`] as one batch on a page of its own; None when a batch cannot be used here.
fn batch(inj: &Injector, pid: i32, tid: i32, calls: &[Call]) -> Result<Option<Results>> {
    if calls.len() < 4 {
        return Ok(None); // a few calls cost less one by one than the page's mmap and munmap
    }
    let Some(page) = Page::map(inj, pid, tid, calls)? else { return Ok(None) };
    let ran = page.run(inj, pid, tid, calls);
    let unmapped = page.unmap(inj, pid);
    let ran = ran?;
    unmapped?;
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

    #[test]
    fn the_loop_decodes_as_written() {
        let mut d = Decoder::with_ip(64, &CODE, 0, DecoderOptions::NONE);
        let mut f = IntelFormatter::new();
        let mut text = Vec::new();
        for ins in &mut d {
            let mut s = String::new();
            f.format(&ins, &mut s);
            text.push(s);
        }
        assert_eq!(
            text,
            [
                "mov rax,[rbx]",
                "mov rdi,[rbx+8]",
                "mov rsi,[rbx+10h]",
                "mov rdx,[rbx+18h]",
                "mov r10,[rbx+20h]",
                "mov r8,[rbx+28h]",
                "mov r9,[rbx+30h]",
                "syscall",
                "mov [rbx+38h],rax",
                "add rbx,40h",
                "dec r12",
                "jne short 0",
                "int3",
            ]
        );
    }

    #[test]
    fn calls_and_result_pointers_are_laid_out() {
        let calls = [
            Call::new(13, [Arg::Val(1), Arg::Val(0), Arg::Out, Arg::Val(8), Arg::Val(0), Arg::Val(0)], 32),
            Call::new(39, [Arg::Val(0); 6], 0),
            Call::new(13, [Arg::Val(2), Arg::Val(0), Arg::Out, Arg::Val(8), Arg::Val(0), Arg::Val(0)], 4),
        ];
        let b = layout(&calls, 0x10000);
        let out = TABLE + 3 * ENTRY;
        assert_eq!(b.len(), out + 32 + 8);
        let w = |i: usize| crate::inject::word(&b, i);
        assert_eq!((w(8), w(9), w(11)), (13, 1, 0x10000 + out as u64));
        assert_eq!(w(16), 39);
        assert_eq!((w(24), w(25), w(27)), (13, 2, 0x10000 + (out + 32) as u64));
    }
}
