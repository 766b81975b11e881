//! `/proc/PID/status`: credentials, signal masks, seccomp and no_new_privs — the
//! facts that decide whether a process can be frozen (tracer already attached,
//! seccomp filters) and what the restored process must look like.

use super::{read_parsed, ProcError, TextError};

/// Selected fields of `/proc/PID/status` (proc(5)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The comm, with '\n' and '\\' escaped by the kernel (proc_task_name).
    pub name: String,
    pub state: char,
    pub tgid: i32,
    pub pid: i32,
    pub ppid: i32,
    /// Non-zero when some process already ptraces this one.
    pub tracer_pid: i32,
    /// Real, effective, saved set and filesystem ids.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub threads: u32,
    /// Signal masks, bit N-1 for signal N. SigPnd is per thread, ShdPnd is the
    /// process-wide pending set (shown from the thread group leader here).
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub sig_pnd: u64,
    pub shd_pnd: u64,
    pub no_new_privs: bool,
    /// 0 disabled, 1 strict, 2 filter (SECCOMP_MODE_*).
    pub seccomp: u32,
    pub cap_eff: u64,
    pub cap_prm: u64,
}

fn ids(value: &str, line: &str) -> Result<[u32; 4], TextError> {
    let v: Vec<u32> = value
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| TextError::line(line, "bad id"))?;
    v.try_into()
        .map_err(|_| TextError::line(line, "expected 4 ids"))
}

pub(crate) fn parse(text: &str) -> Result<Status, TextError> {
    let mut s = Status::default();
    const REQUIRED: [&str; 18] = [
        "Name",
        "State",
        "Tgid",
        "Pid",
        "PPid",
        "TracerPid",
        "Uid",
        "Gid",
        "Threads",
        "SigBlk",
        "SigIgn",
        "SigCgt",
        "SigPnd",
        "ShdPnd",
        "NoNewPrivs",
        "Seccomp",
        "CapEff",
        "CapPrm",
    ];
    // Bit i is set once REQUIRED[i] has been seen.
    let mut seen = 0u32;
    for line in text.lines() {
        let Some((key, raw)) = line.split_once(':') else {
            return Err(TextError::line(line, "no ':'"));
        };
        let Some(idx) = REQUIRED.iter().position(|k| *k == key) else {
            continue;
        };
        seen |= 1 << idx;
        let value = raw.trim();
        let bad = |what: &str| TextError::line(line, what);
        let int = || value.parse::<i64>().map_err(|_| bad("bad number"));
        let mask = || u64::from_str_radix(value, 16).map_err(|_| bad("bad hex mask"));
        match key {
            // Only the tab after the colon is padding: a comm may end in spaces.
            "Name" => s.name = raw.strip_prefix('\t').unwrap_or(raw).to_string(),
            // "S (sleeping)"
            "State" => s.state = value.chars().next().ok_or_else(|| bad("empty state"))?,
            "Tgid" => s.tgid = int()? as i32,
            "Pid" => s.pid = int()? as i32,
            "PPid" => s.ppid = int()? as i32,
            "TracerPid" => s.tracer_pid = int()? as i32,
            "Uid" => s.uid = ids(value, line)?,
            "Gid" => s.gid = ids(value, line)?,
            "Threads" => s.threads = int()? as u32,
            "SigBlk" => s.sig_blk = mask()?,
            "SigIgn" => s.sig_ign = mask()?,
            "SigCgt" => s.sig_cgt = mask()?,
            "SigPnd" => s.sig_pnd = mask()?,
            "ShdPnd" => s.shd_pnd = mask()?,
            "NoNewPrivs" => s.no_new_privs = int()? != 0,
            "Seccomp" => s.seccomp = int()? as u32,
            "CapEff" => s.cap_eff = mask()?,
            "CapPrm" => s.cap_prm = mask()?,
            _ => unreachable!("key is in REQUIRED"),
        }
    }
    match REQUIRED
        .iter()
        .enumerate()
        .find(|(i, _)| seen & (1 << i) == 0)
    {
        Some((_, missing)) => Err(TextError::Missing(missing)),
        None => Ok(s),
    }
}

/// Parse the text of `/proc/PID/status`; the error names the offending line or
/// the missing field.
pub fn parse_status(text: &str) -> Result<Status, String> {
    parse(text).map_err(String::from)
}

/// Read and parse `/proc/PID/status`.
pub fn read_status(pid: i32) -> Result<Status, ProcError> {
    read_parsed(pid, "status", parse)
}

/// Read and parse `/proc/PID/task/TID/status` (SigPnd is that thread's).
pub fn read_status_of(pid: i32, tid: i32) -> Result<Status, ProcError> {
    read_parsed(pid, &format!("task/{tid}/status"), parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sleeping python3 (root) on this machine, Linux 6.18.
    const STATUS: &str = include_str!("testdata/status.txt");

    #[test]
    fn real_sample() {
        let s = parse_status(STATUS).unwrap();
        assert_eq!((s.name.as_str(), s.state), ("python3", 'S'));
        assert_eq!((s.tgid, s.pid, s.ppid, s.tracer_pid), (2323, 2323, 2320, 0));
        assert_eq!((s.uid, s.gid, s.threads), ([0; 4], [0; 4], 1));
        assert_eq!((s.sig_blk, s.sig_ign, s.sig_cgt), (0x10000, 0x1001006, 0));
        assert_eq!((s.sig_pnd, s.shd_pnd), (0, 0));
        assert_eq!((s.no_new_privs, s.seccomp), (false, 0));
        // Root here lacks only CAP_SYS_RESOURCE (bit 24).
        assert_eq!((s.cap_eff, s.cap_prm), (0x1fffeffffff, 0x1fffeffffff));
    }

    #[test]
    fn unprivileged_traced_and_filtered() {
        let text = STATUS
            .replace("Name:\tpython3", "Name:\tmy prog ")
            .replace("TracerPid:\t0", "TracerPid:\t77")
            .replace("Uid:\t0\t0\t0\t0", "Uid:\t1000\t1000\t1000\t1000")
            .replace("Gid:\t0\t0\t0\t0", "Gid:\t65534\t65534\t65534\t65534")
            .replace("SigPnd:\t0000000000000000", "SigPnd:\t0000000000004000")
            .replace("CapEff:\t000001fffeffffff", "CapEff:\t0000000000000000")
            .replace("NoNewPrivs:\t0", "NoNewPrivs:\t1")
            .replace("Seccomp:\t0", "Seccomp:\t2");
        let s = parse_status(&text).unwrap();
        assert_eq!((s.name.as_str(), s.tracer_pid), ("my prog ", 77));
        assert_eq!((s.uid[1], s.gid[3]), (1000, 65534));
        assert_eq!((s.sig_pnd, s.cap_eff), (1 << 14, 0));
        assert_eq!((s.no_new_privs, s.seccomp), (true, 2));
    }

    #[test]
    fn errors() {
        let e = parse_status(&STATUS.replace("Tgid:\t2323", "Tgid:\tx")).unwrap_err();
        assert!(e.contains("Tgid:\\tx"), "{e}");
        let e = parse_status(&STATUS.replace("Seccomp:\t0\n", "")).unwrap_err();
        assert!(e.contains("missing field \"Seccomp\""), "{e}");
        assert!(parse_status(&STATUS.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t0")).is_err());
        assert!(parse_status(&STATUS.replace("SigBlk:\t0000000000010000", "SigBlk:\tzz")).is_err());
    }

    #[test]
    fn live_self() {
        let pid = std::process::id() as i32;
        let s = read_status(pid).unwrap();
        assert_eq!((s.pid, s.tgid), (pid, pid));
        assert!(s.threads >= 1);
        assert_eq!(s.uid[1], nix::unistd::geteuid().as_raw());
    }
}
