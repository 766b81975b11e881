//! Finding and stopping every process of a tree before any is read.
//!
//! Children are listed per thread in /proc/PID/task/TID/children (proc(5)); a
//! process seized after its parent cannot fork any more, but one may have forked
//! just before its parent stopped, so the walk repeats until a pass finds nobody
//! new. Zombies (exited, not reaped) cannot be traced: they are recorded with the
//! status their parent will collect (field 52 of /proc/PID/stat).

use crate::freeze::{children, precheck, release, After};
use crate::group::Group;
use crate::proc;
use anyhow::{bail, Context, Result};

/// One process of the tree, in tree order (parents before children).
pub struct Member {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// Its stopped threads; None for a zombie.
    pub group: Option<Group>,
    /// A zombie's wait status.
    pub status: u32,
    /// The foreground process group of its controlling terminal (field 8 of
    /// /proc/PID/stat; 0 without a terminal).
    pub tpgid: i32,
}

/// What /proc/PID/stat says of a process's place in the tree.
struct Ids {
    state: char,
    ppid: i32,
    pgid: i32,
    sid: i32,
    /// exit_code (field 52): a zombie's wait status.
    status: u32,
    /// The foreground group of its terminal (field 8; 0 without a terminal).
    tpgid: i32,
}

fn ids(pid: i32) -> Result<Ids> {
    let st = proc::stat::read_stat(pid).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
    let tpgid = if st.tty_nr != 0 { num(5).max(0) } else { 0 };
    Ok(Ids { state: st.state, ppid: st.ppid, pgid: num(2), sid: num(3), status: st.exit_code as u32, tpgid })
}

/// Seize `root` and every descendant; the root's checks are the caller's.
pub fn seize_all(root: i32, after: After, force: bool) -> Result<Vec<Member>> {
    let r = ids(root)?;
    let g = Group::seize(root, release(after))?;
    let mut members = vec![Member { pid: root, ppid: r.ppid, pgid: r.pgid, sid: r.sid, group: Some(g), status: 0, tpgid: r.tpgid }];
    loop {
        let mut found = false;
        let mut i = 0;
        while i < members.len() {
            if members[i].group.is_none() {
                i += 1;
                continue;
            }
            let parent = members[i].pid;
            let mut kids: Vec<i32> = children(parent).iter().filter_map(|k| k.parse().ok()).collect();
            kids.sort_unstable();
            for k in kids {
                if members.iter().any(|m| m.pid == k) {
                    continue;
                }
                found = true;
                let Ids { state, ppid, pgid, sid, status, tpgid } = ids(k)?;
                if ppid != parent {
                    continue; // reparented meanwhile: no longer ours
                }
                let (group, status) = if state == 'Z' || state == 'X' {
                    (None, status)
                } else {
                    match precheck(k, force).and_then(|_| Group::seize(k, release(after))) {
                        Ok(g) => (Some(g), status),
                        // A child still runs while its parent is stopped: it may
                        // have exited since it was listed (its parent cannot reap it).
                        Err(e) => match ids(k) {
                            Ok(i) if i.state == 'Z' || i.state == 'X' => (None, i.status),
                            _ => return Err(e).with_context(|| format!("stopping child {k} of pid {parent}")),
                        },
                    }
                };
                members.push(Member { pid: k, ppid, pgid, sid, group, status, tpgid });
            }
            i += 1;
        }
        if !found {
            break;
        }
    }
    if members.len() > ckpt_format::MAX_TREE_PROCS as usize {
        bail!("pid {root} has {} processes in its tree, more than the format's {}", members.len(), ckpt_format::MAX_TREE_PROCS);
    }
    Ok(order(members))
}

/// Parents before children, each parent's children by pid.
fn order(mut rest: Vec<Member>) -> Vec<Member> {
    let mut out: Vec<Member> = vec![rest.remove(0)];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        let mut kids: Vec<Member> = Vec::new();
        let mut j = 0;
        while j < rest.len() {
            if rest[j].ppid == parent {
                kids.push(rest.remove(j));
            } else {
                j += 1;
            }
        }
        kids.sort_by_key(|m| m.pid);
        out.extend(kids);
        i += 1;
    }
    out
}
