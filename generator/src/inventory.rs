//! Everything the kernel tells us about a stopped task, read into plain values; no
//! decisions here (those are in plan.rs and freeze.rs).

use crate::proc::{self, fds::FdInfo, maps::Mapping, stat::Stat};
use crate::ptrace::{RseqConfig, Seized};
use anyhow::{Context, Result};
use ckpt_format::Regs;

pub struct Inventory {
    pub regs: Regs,
    pub xstate: Vec<u8>,
    pub rseq: Option<RseqConfig>,
    pub robust: (u64, u64),
    pub maps: Vec<Mapping>,
    pub stat: Stat,
    pub auxv: Vec<(u64, u64)>,
    pub fds: Vec<FdInfo>,
    pub exe: Option<String>,
    pub cmdline: Vec<String>,
    pub threads: Vec<i32>,
}

pub fn take(t: &Seized) -> Result<Inventory> {
    let pid = t.pid;
    Ok(Inventory {
        regs: t.regs()?,
        xstate: t.xstate()?,
        rseq: t.rseq()?,
        robust: t.robust_list(),
        maps: proc::maps::read_smaps(pid)?,
        stat: proc::stat::read_stat(pid)?,
        auxv: proc::auxv::read_auxv(pid)?,
        fds: proc::fds::read_fds(pid)?,
        exe: proc::exe(pid)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.ends_with(" (deleted)")),
        cmdline: proc::cmdline(pid).unwrap_or_default(),
        threads: proc::threads(pid).with_context(|| format!("listing the threads of pid {pid}"))?,
    })
}

/// XCR0 of this CPU: the xstate components the saved area is laid out for.
pub fn xcr0() -> u64 {
    let c = core::arch::x86_64::__cpuid(1);
    if c.ecx & (1 << 27) == 0 {
        return 0;
    }
    // SAFETY: OSXSAVE is set (checked above), so xgetbv is allowed in user mode.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}
