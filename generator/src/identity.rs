//! Who the process is to the kernel beyond its credentials: its OOM killer
//! adjustment, I/O priority, supplementary groups and membarrier(2)
//! registrations. None of them is in memory; a resumed process that lost them
//! would be killed first, get another disk share, lose file access, or get EPERM
//! from membarrier — silently.
//!
//! oom_score_adj and the groups come from /proc (proc(5)), the I/O priority from
//! ioprio_get(2), which reads another process. A membarrier registration shows
//! nowhere (MEMBARRIER_CMD_QUERY lists what the kernel supports, not what the
//! process registered): the expedited command is run inside the process, where it
//! succeeds exactly when the process registered for it and fails with EPERM
//! otherwise (membarrier(2)). The global expedited registration cannot be told
//! that way and is not restored.

use anyhow::{bail, Context, Result};
use ckpt_format::{
    Process, MEMBARRIER_REGISTER_PRIVATE_EXPEDITED, MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_RSEQ,
    MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, PROC_HAVE_IDENTITY,
};

use crate::syscall_batch::{Arg, Call};
use crate::plan::Strings;

const MEMBARRIER_CMD_QUERY: u64 = 0;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

/// The supplementary groups of a /proc/PID/status text ("Groups:" line).
fn groups(status: &str) -> Result<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:")).context("no Groups: line")?;
    line.split_whitespace().map(|g| g.parse().with_context(|| format!("bad group {g:?}"))).collect()
}

/// Each private expedited membarrier command whose registration the process
/// made: (the command run, the registration it needs).
const EXPEDITED: [(u64, u32); 3] = [
    (1 << 3, MEMBARRIER_REGISTER_PRIVATE_EXPEDITED),
    (1 << 5, MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE),
    (1 << 7, MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_RSEQ),
];

/// The membarrier commands to run inside the process, each with the registration
/// it tells of: the private expedited ones this kernel supports. The query lists
/// what the kernel supports, the same for every process, so ckpt asks it itself.
pub fn membarrier_probes() -> Vec<(Call, u32)> {
    // SAFETY: membarrier with integer arguments only.
    let supported = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
    if supported < 0 {
        return Vec::new(); // no membarrier in this kernel: nothing can be registered
    }
    EXPEDITED
        .into_iter()
        .filter(|(cmd, _)| supported as u64 & cmd != 0)
        .map(|(cmd, reg)| (Call::new(libc::SYS_membarrier, [Arg::Val(cmd), Arg::Val(0), Arg::Val(0), Arg::Val(0), Arg::Val(0), Arg::Val(0)], 0), reg))
        .collect()
}

/// The registrations the process made, from the results of its probes.
pub fn membarrier(pid: i32, probes: &[(Call, u32)], results: &[i64]) -> Result<u32> {
    let mut out = 0;
    for ((call, reg), &r) in probes.iter().zip(results) {
        match r {
            0 => out |= reg,
            r if r == -(libc::EPERM as i64) => {}
            r => {
                let Arg::Val(cmd) = call.args[0] else { unreachable!("a command number") };
                bail!("membarrier command {cmd:#x} in pid {pid} failed: {}", std::io::Error::from_raw_os_error(-r as i32))
            }
        }
    }
    Ok(out)
}

/// `status`: the text of /proc/PID/status; `membarrier`: the registrations.
pub fn capture(pid: i32, status: &str, membarrier: u32, strings: &mut Strings, p: &mut Process) -> Result<()> {
    let oom = crate::proc::read_file_text(format!("/proc/{pid}/oom_score_adj")).with_context(|| format!("reading /proc/{pid}/oom_score_adj"))?;
    p.oom_score_adj = oom.trim().parse().with_context(|| format!("/proc/{pid}/oom_score_adj: {oom:?}"))?;
    // SAFETY: ioprio_get takes two integers.
    let io = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, pid) };
    if io < 0 {
        bail!("ioprio_get of pid {pid}: {}", std::io::Error::last_os_error());
    }
    p.ioprio = io as u32;
    let g = groups(status).with_context(|| format!("/proc/{pid}/status"))?;
    let bytes: Vec<u8> = g.iter().flat_map(|g| g.to_ne_bytes()).collect();
    p.groups_off = strings.buf.len() as u32;
    p.groups_len = bytes.len() as u32;
    strings.buf.extend_from_slice(&bytes);
    p.membarrier = membarrier;
    p.flags |= PROC_HAVE_IDENTITY;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::groups;

    #[test]
    fn groups_line() {
        assert_eq!(groups("Name:\tx\nGroups:\t4 24 27 \nNgid:\t0\n").unwrap(), [4, 24, 27]);
        assert_eq!(groups("Groups:\t\n").unwrap(), Vec::<u32>::new());
        assert!(groups("Name:\tx\n").is_err());
        assert!(groups("Groups:\tx\n").is_err());
    }
}
