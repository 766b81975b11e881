//! Per-thread /proc views (/proc/PID/task/TID/…): the thread list, names, states
//! and signal state of a process, taken before a freeze and compared with the
//! resumed process's, and the "tid I TID" lines the mt_* fixtures print.

use std::collections::BTreeMap;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// The TIDs of a process, ascending (empty if it is gone).
pub fn task_ids(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// One line `Key:\tvalue` of /proc/PID/task/TID/status.
pub fn task_status(pid: i32, tid: i32, key: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_owned()))
}

/// The state letter of one thread (/proc/PID/task/TID/stat).
pub fn task_state(pid: i32, tid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].split_whitespace().next()?.chars().next()
}

/// What is compared of each thread.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Look {
    /// The thread list and each thread's name.
    Names,
    /// Also each thread's blocked, pending and process-wide pending signals
    /// (SigBlk, SigPnd, ShdPnd): only for a process whose signals are quiet.
    Signals,
}

/// One thread as /proc shows it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TaskView {
    pub comm: String,
    /// SigBlk, SigPnd and ShdPnd, when looked at.
    pub signals: Option<[String; 3]>,
}

/// Every thread of `pid` by TID.
pub fn threads_view(pid: i32, look: Look) -> BTreeMap<i32, TaskView> {
    task_ids(pid)
        .into_iter()
        .filter_map(|tid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?.trim_end().to_owned();
            let signals = match look {
                Look::Names => None,
                Look::Signals => Some([
                    task_status(pid, tid, "SigBlk")?,
                    task_status(pid, tid, "SigPnd")?,
                    task_status(pid, tid, "ShdPnd")?,
                ]),
            };
            Some((tid, TaskView { comm, signals }))
        })
        .collect()
}

/// The differences of two views, one line per thread (- before, + after).
pub fn views_diff(a: &BTreeMap<i32, TaskView>, b: &BTreeMap<i32, TaskView>) -> String {
    let mut s = String::new();
    for (tid, v) in a.iter().filter(|(t, v)| b.get(t) != Some(v)) {
        s += &format!("- {tid} {v:?}\n");
    }
    for (tid, v) in b.iter().filter(|(t, v)| a.get(t) != Some(v)) {
        s += &format!("+ {tid} {v:?}\n");
    }
    s
}

/// Waits until the threads of the process resumed by `p` (see [`resumed_pid`]) look
/// as `expected`; returns that process's PID. Fails with a diff if they never do
/// or if `p` ends first.
pub fn assert_threads_eventually(p: &mut Proc, expected: &BTreeMap<i32, TaskView>, look: Look, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = p.try_status() {
            panic!("{} ended ({s}) before its threads could be compared\n{}", p.label, p.describe());
        }
        let pid = resumed_pid(p.pid());
        let got = threads_view(pid, look);
        if &got == expected {
            return pid;
        }
        if Instant::now() >= deadline {
            panic!(
                "threads of {} (pid {pid}) differ from the frozen process's (- frozen, + resumed):\n{}\n{}",
                p.label,
                views_diff(expected, &got),
                p.describe()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The TIDs of the "tid I TID" lines an mt_* fixture printed, in index order.
pub fn printed_tids(lines: &[String]) -> Vec<i32> {
    let mut by_index: BTreeMap<usize, i32> = BTreeMap::new();
    for l in lines {
        let mut it = l.split_whitespace();
        if it.next() != Some("tid") {
            continue;
        }
        let (Some(i), Some(t)) = (it.next().and_then(|v| v.parse().ok()), it.next().and_then(|v| v.parse().ok()))
        else {
            panic!("bad tid line {l:?}");
        };
        assert!(by_index.insert(i, t).is_none(), "thread {i} printed twice: {lines:?}");
    }
    assert!(by_index.keys().copied().eq(0..by_index.len()), "tid lines are not 0..n: {by_index:?}");
    by_index.into_values().collect()
}
