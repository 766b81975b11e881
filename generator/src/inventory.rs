//! Everything the kernel tells us about a stopped task, read into plain values; no
//! decisions here (those are in plan.rs and freeze.rs).

use crate::proc::{self, fds::FdInfo, maps::Mapping, stat::Stat};
use anyhow::Result;

/// The process-wide part; each thread's own state is read by thread_state.rs.
pub struct Inventory {
    pub maps: Vec<Mapping>,
    /// `maps` is the smaps read before the stop (its flags are to be checked).
    pub maps_early: bool,
    pub stat: Stat,
    pub auxv: Vec<(u64, u64)>,
    pub fds: Vec<FdInfo>,
    pub exe: Option<String>,
    pub cmdline: Vec<String>,
}

/// Read through `pid`, the id of a live thread of the process (its leader's
/// /proc entry reads empty once the leader has exited, group.rs).
///
/// `early`: smaps read before the process was stopped; used when the layout read
/// now from the cheap /proc/PID/maps is the same (the flags are checked again
/// later, cow.rs), else smaps is read again.
pub fn take(pid: i32, early: Option<Vec<Mapping>>) -> Result<Inventory> {
    let (maps, maps_early) = match early {
        Some(early) if proc::maps::same_layout(&early, &proc::maps::read_maps(pid)?) => (early, true),
        _ => (proc::maps::read_smaps(pid)?, false),
    };
    Ok(Inventory {
        maps,
        maps_early,
        stat: proc::stat::read_stat(pid)?,
        auxv: proc::auxv::read_auxv(pid)?,
        fds: proc::fds::read_fds(pid)?,
        exe: proc::exe(pid)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.ends_with(" (deleted)")),
        cmdline: proc::cmdline(pid).unwrap_or_default(),
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
