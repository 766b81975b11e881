//! Running system calls inside the stopped task, for state only the task itself can
//! read (its signal dispositions, sigaltstack, umask, timers, clear_child_tid...).
//!
//! The task's registers are saved, rax/args are set, rip is pointed at a `syscall`
//! instruction in its own text (found and decoded at freeze time), orig_rax is set to
//! -1 so the kernel applies no syscall-restart logic on the way out of the ptrace
//! stop, and PTRACE_SYSCALL runs exactly that system call (entry and exit stops; not
//! a single-step, whose SIGTRAP would reset the task's SIGTRAP disposition). Results
//! that are structs go to a scratch area below the task's red zone, whose bytes are saved and
//! written back. Drop restores registers and scratch memory, so the task is left
//! exactly as it was found.

use crate::ptrace::Seized;
use anyhow::{bail, Context, Result};
use ckpt_format::Regs;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

/// The raw result `r` of an injected call `what`, or an error naming it and `task`
/// ("pid N", "thread N") for a -errno.
pub fn checked(r: i64, what: &str, task: &str) -> Result<i64> {
    if (-4095..0).contains(&r) {
        bail!("{what} in {task} failed: {}", std::io::Error::from_raw_os_error(-r as i32));
    }
    Ok(r)
}

/// Little-endian u64 number `i` of a struct read back from the scratch area.
pub fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
}

/// Bytes of scratch memory below the red zone.
pub const SCRATCH: usize = 1024;

pub struct Injector<'a> {
    t: &'a Seized,
    mem: File,
    orig: Regs,
    syscall_at: u64,
    pub scratch: u64,
    saved: Vec<u8>,
    mask: u64,
}

impl<'a> Injector<'a> {
    /// `syscall_at`: address of a `0f 05` in the task's executable memory;
    /// `writable`: whether `[lo, hi)` lies in a writable mapping of the task.
    pub fn new(t: &'a Seized, regs: Regs, syscall_at: u64, writable: impl Fn(u64, u64) -> bool) -> Result<Injector<'a>> {
        let scratch = (regs.rsp - 128 - SCRATCH as u64) & !15;
        if !writable(scratch, regs.rsp) {
            bail!("no writable stack below rsp {:#x} to run system calls in pid {}", regs.rsp, t.pid);
        }
        let mem = OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{}/mem", t.pid))
            .with_context(|| format!("opening /proc/{}/mem for writing", t.pid))?;
        let mut saved = vec![0u8; SCRATCH];
        mem.read_exact_at(&mut saved, scratch).context("saving the scratch area")?;
        // Block every signal while stepping, so no signal-delivery stop gets in the way;
        // queued signals stay queued (and are saved separately).
        let mask = t.sigmask()?;
        t.set_sigmask(!0)?;
        Ok(Injector { t, mem, orig: regs, syscall_at, scratch, saved, mask })
    }

    pub fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        self.mem.read_exact_at(buf, self.scratch + off as u64).context("reading the scratch area")
    }

    pub fn write(&self, off: usize, buf: &[u8]) -> Result<()> {
        self.mem.write_all_at(buf, self.scratch + off as u64).context("writing the scratch area")
    }

    /// The task's blocked mask as it was before the injector blocked everything.
    pub fn task_sigmask(&self) -> u64 {
        self.mask
    }

    /// Address of scratch byte `off`, to pass as a pointer argument.
    pub fn ptr(&self, off: usize) -> u64 {
        self.scratch + off as u64
    }

    /// Read the task's memory at `addr`.
    pub fn read_at(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        self.mem.read_exact_at(buf, addr).with_context(|| format!("reading {addr:#x} of pid {}", self.t.pid))
    }

    /// Write the task's memory at `addr` (/proc/PID/mem writes even to memory the
    /// task cannot write).
    pub fn write_at(&self, addr: u64, buf: &[u8]) -> Result<()> {
        self.mem.write_all_at(buf, addr).with_context(|| format!("writing {addr:#x} of pid {}", self.t.pid))
    }

    /// Run code the caller placed in the task at `rip`, with `rbx` and `r12` set
    /// (its arguments), until its closing `int3` at `end - 1`; every signal but
    /// SIGTRAP stays blocked meanwhile. The caller checks that SIGTRAP may be used
    /// ([`Seized::cont_until_trap`]).
    pub fn run_code(&self, rip: u64, rbx: u64, r12: u64, end: u64) -> Result<()> {
        let mut r = self.orig;
        r.orig_rax = u64::MAX;
        (r.rip, r.rbx, r.r12) = (rip, rbx, r12);
        self.t.set_regs(&r)?;
        self.t.set_sigmask(!(1u64 << (libc::SIGTRAP - 1)))?;
        let done = self.t.cont_until_trap(end);
        self.t.set_sigmask(!0)?;
        if let Err(rip) = done? {
            bail!("injected code in pid {} stopped at {rip:#x}, not at its end {end:#x}", self.t.pid);
        }
        Ok(())
    }

    /// Run system call `nr` in the task; returns its raw result (-errno on error).
    pub fn syscall(&self, nr: i64, args: [u64; 6]) -> Result<i64> {
        let mut r = self.orig;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rip = self.syscall_at;
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (args[0], args[1], args[2], args[3], args[4], args[5]);
        self.t.set_regs(&r)?;
        self.t.run_syscall()?;
        let after = self.t.regs()?;
        if after.rip != self.syscall_at + 2 {
            bail!("injected system call {nr} in pid {} did not complete (rip {:#x})", self.t.pid, after.rip);
        }
        Ok(after.rax as i64)
    }
}

impl Drop for Injector<'_> {
    fn drop(&mut self) {
        let _ = self.mem.write_all_at(&self.saved, self.scratch);
        let _ = self.t.set_regs(&self.orig);
        let _ = self.t.set_sigmask(self.mask);
        let _ = self.t.repark();
    }
}
