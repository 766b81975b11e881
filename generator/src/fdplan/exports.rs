//! Files of other processes that this process's plan makes (process trees): an
//! object two processes below the root share, or a unix socket whose peer another
//! process of the tree holds, is made by the root's restore and passed down from
//! there (tree/shared.rs). The generator holds a duplicate of each (pidfd_getfd
//! from the process that has it); each becomes an extra fd of the root's plan
//! under a made-up number above the root's own fds, classified like any fd (a
//! socket pair whose two ends are now both in the plan is made with
//! socketpair(2), with its queued bytes), its flock and OFD locks kept (they
//! belong to the open file description, which the root makes). The stub places it
//! at that number; the root closes it once the tree has it.

use std::os::fd::{AsRawFd, OwnedFd};

use super::target::Target;
use crate::proc::fds::{read_one, FdInfo};

/// Adopt `exports` into the plan of `tg` (before any file in flight, so they take
/// the first made-up numbers), appending their FdInfo to `all`; their numbers, in
/// the order given.
pub fn adopt(tg: &Target, exports: Vec<OwnedFd>, all: &mut Vec<FdInfo>) -> Result<Vec<i32>, String> {
    let me = std::process::id() as i32;
    let mut nums = Vec::with_capacity(exports.len());
    for fd in exports {
        let ours = fd.as_raw_fd();
        let info = read_one(me, ours).map_err(|e| format!("a file of the tree: {e}"))?;
        let Some(mut info) = info else { return Err("a file of the tree was closed".into()) };
        let (n, new) = tg.adopt(fd).map_err(|e| format!("a file of the tree: kcmp: {e}"))?;
        if !new {
            return Err(format!("a file of the tree ({}) was given twice", info.link));
        }
        info.fd = n;
        tg.mark_exported(n);
        all.push(info);
        nums.push(n);
    }
    Ok(nums)
}
