//! Files in flight: fds passed with SCM_RIGHTS (unix(7)) in messages still queued
//! on the target's unix sockets. The target holds no fd for them, yet they are its
//! state: the receiver gets them with the message. Peeking the queue
//! ([`super::sockqueue`]) installs a copy of each in our process; each becomes an
//! extra fd of the plan under a made-up number above the target's
//! ([`Target::adopt`]), classified like any fd (a file, a pipe, a socket and, for a
//! socket, its own queue, recursively). The stub builds them, sends them again with
//! their message, and never gives them a number in the process (`FD_INFLIGHT`).

use std::os::fd::{AsRawFd, OwnedFd};

use super::unixpair::read_unix_queue;
use super::target::{getsockopt_int, Peeked, Target};
use super::unix_diag::unix_diag;
use crate::proc::fds::{read_one, FdInfo, FdTarget};

/// Append to `all` every file in flight on the unix sockets among `all` (the ones
/// appended too). `Err` names what could not be read.
pub fn discover(tg: &Target, all: &mut Vec<FdInfo>) -> Result<(), String> {
    let me = std::process::id() as i32;
    let mut i = 0;
    while i < all.len() {
        let f = &all[i];
        i += 1;
        let FdTarget::Socket(ino) = f.target else { continue };
        let Ok(s) = tg.getfd(f.fd) else { continue };
        let q = |opt| getsockopt_int(&s, libc::SOL_SOCKET, opt).unwrap_or(-1);
        if q(libc::SO_DOMAIN) != libc::AF_UNIX || q(libc::SO_ACCEPTCONN) != 0 {
            continue;
        }
        let fd = f.fd;
        if tg.peeked(ino).is_some() {
            continue; // another fd of the same socket
        }
        // Only queues sent again at resume: a socket whose peer is in the process
        // too. One whose peer is outside resumes disconnected, its files dropped
        // ([`super::disconnected`]), so they are not looked at (nor refused).
        let peer = unix_diag(ino).map(|d| d.peer as u64).unwrap_or(0);
        if peer == 0 || !all.iter().any(|o| o.fd > 2 && o.target == FdTarget::Socket(peer)) {
            continue;
        }
        let queue = match read_unix_queue(&s, ino, q(libc::SO_TYPE)) {
            Ok(Some(queue)) => queue,
            Ok(None) => continue,
            Err(e) => return Err(format!("fd {fd}: its queued messages cannot be read: {e}")),
        };
        let mut nums = Vec::new();
        for passed in queue.fds {
            nums.push(passed.into_iter().map(|p| adopt(tg, me, p, all)).collect::<Result<Vec<i32>, String>>()?);
        }
        tg.remember(ino, Peeked { messages: queue.messages, fds: nums });
    }
    Ok(())
}

/// The made-up number of a file in flight; its FdInfo joins `all` if it is new.
fn adopt(tg: &Target, me: i32, passed: OwnedFd, all: &mut Vec<FdInfo>) -> Result<i32, String> {
    let ours = passed.as_raw_fd();
    let info = read_one(me, ours).map_err(|e| format!("a file in flight: {e}"))?;
    let (n, new) = tg.adopt(passed).map_err(|e| format!("a file in flight: kcmp: {e}"))?;
    if let (true, Some(mut info)) = (new, info) {
        info.fd = n;
        info.locks.clear(); // taken through the target's own fds, if any
        all.push(info);
    }
    Ok(n)
}
