//! `/proc/PID/stat`: the one-line record that holds the memory-layout addresses
//! (code, data, brk, stack, argv and environ areas) that the restorer hands back
//! to the kernel with `prctl(PR_SET_MM_MAP)`, plus state, parent and thread count.

use super::{read_parsed, ProcError, TextError};

/// Selected fields of `/proc/PID/stat`; field numbers are those of proc(5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// Field 2 without its parentheses: the executable's basename truncated to 15
    /// bytes (or a name set by prctl(PR_SET_NAME)); may contain spaces and ')'.
    pub comm: String,
    /// Field 3: R, S, D, Z, T, t, X, I...
    pub state: char,
    pub ppid: i32,
    /// Device number of the controlling terminal (field 7; 0 for none).
    pub tty_nr: u64,
    /// Field 20.
    pub num_threads: i64,
    /// Fields 26-28. The address fields read as 0 unless the reader may
    /// ptrace-attach to the process (PTRACE_MODE_READ), proc(5).
    pub start_code: u64,
    pub end_code: u64,
    pub start_stack: u64,
    /// Fields 45-51 (Linux 3.3 / 3.5).
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Field 52: the exit status in waitpid() form (Linux 3.5).
    pub exit_code: i64,
}

/// The last field we need.
const LAST_FIELD: usize = 52;

pub(crate) fn parse(text: &str) -> Result<Stat, TextError> {
    let line = text.trim_end_matches('\n');
    let bad = |what: String| TextError::line(line, what);
    // comm may itself contain ") ", so the field ends at the last ')'.
    let open = line
        .find(" (")
        .ok_or_else(|| bad("no '(' before comm".into()))?;
    let close = line
        .rfind(')')
        .ok_or_else(|| bad("no ')' after comm".into()))?;
    if close < open {
        return Err(bad("')' before '('".into()));
    }
    let pid = line[..open].parse().map_err(|_| bad("bad pid".into()))?;
    let comm = line[open + 2..close].to_string();
    // fields[i] is field number i + 3.
    let fields: Vec<&str> = line[close + 1..].split_whitespace().collect();
    if fields.len() < LAST_FIELD - 2 {
        return Err(bad(format!(
            "only {} fields, need {LAST_FIELD}",
            fields.len() + 2
        )));
    }
    let field = |n: usize| fields[n - 3];
    let num = |n: usize| -> Result<u64, TextError> {
        field(n)
            .parse()
            .map_err(|_| bad(format!("field {n} {:?} is not a number", field(n))))
    };
    let signed = |n: usize| -> Result<i64, TextError> {
        field(n)
            .parse()
            .map_err(|_| bad(format!("field {n} {:?} is not a number", field(n))))
    };
    let mut state = field(3).chars();
    let (Some(s), None) = (state.next(), state.next()) else {
        return Err(bad(format!("bad state {:?}", field(3))));
    };
    Ok(Stat {
        pid,
        comm,
        state: s,
        ppid: signed(4)? as i32,
        tty_nr: signed(7)? as u64,
        num_threads: signed(20)?,
        start_code: num(26)?,
        end_code: num(27)?,
        start_stack: num(28)?,
        start_data: num(45)?,
        end_data: num(46)?,
        start_brk: num(47)?,
        arg_start: num(48)?,
        arg_end: num(49)?,
        env_start: num(50)?,
        env_end: num(51)?,
        exit_code: signed(52)?,
    })
}

/// Parse the text of `/proc/PID/stat`; the error names the line.
pub fn parse_stat(text: &str) -> Result<Stat, String> {
    parse(text).map_err(String::from)
}

/// Read and parse `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> Result<Stat, ProcError> {
    read_parsed(pid, "stat", parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/bin/sleep` copied to "/tmp/x) y (z" and run on this machine.
    const ODD_COMM: &str = "3754 (x) y (z) S 3702 3702 1886 0 -1 4194304 132 0 0 0 0 0 0 0 20 0 1 0 \
42940 2990080 404 18446744073709551615 94082608087040 94082608104969 140736355099360 0 0 0 0 6 0 1 0 \
0 17 1 0 0 0 0 0 94082608119056 94082608120320 94082978496512 140736355105503 140736355105520 \
140736355105520 140736355106795 0\n";

    #[test]
    fn comm_with_parens_and_spaces() {
        let s = parse_stat(ODD_COMM).unwrap();
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.ppid),
            (3754, "x) y (z", 'S', 3702)
        );
        assert_eq!(s.num_threads, 1);
        assert_eq!((s.start_code, s.end_code), (94082608087040, 94082608104969));
        assert_eq!(s.start_stack, 140736355099360);
        assert_eq!(
            (s.start_data, s.end_data, s.start_brk),
            (94082608119056, 94082608120320, 94082978496512)
        );
        assert_eq!((s.arg_start, s.arg_end), (140736355105503, 140736355105520));
        assert_eq!((s.env_start, s.env_end), (140736355105520, 140736355106795));
        assert_eq!(s.exit_code, 0);
    }

    #[test]
    fn zombie_with_exit_code() {
        // A zombie: addresses hidden (0), exit status 256 (exit(1)).
        let text = "4000 (sh) Z 1 4000 4000 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0 \
18446744073709551615 0 0 0 0 0 0 0 0 65536 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 256";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.exit_code, s.start_code),
            ('Z', 1, 256, 0)
        );
    }

    #[test]
    fn errors() {
        let e = parse_stat("12 (cat) R 1 2 3").unwrap_err();
        assert!(
            e.contains("12 (cat) R 1 2 3") && e.contains("need 52"),
            "{e}"
        );
        assert!(parse_stat("12 cat R").is_err());
        assert!(parse_stat(&ODD_COMM.replace(" S ", " SS ")).is_err());
        assert!(parse_stat(&ODD_COMM.replace("94082608087040", "0x10")).is_err());
        assert!(parse_stat("").is_err());
    }

    #[test]
    fn live_self() {
        let pid = std::process::id() as i32;
        let s = read_stat(pid).unwrap();
        assert_eq!(s.pid, pid);
        assert!(s.num_threads >= 1);
        assert!(s.start_code < s.end_code && s.arg_start < s.arg_end && s.env_start <= s.env_end);
        let maps = super::super::maps::read_smaps(pid).unwrap();
        let stack = maps.iter().find(|m| m.name == "[stack]").unwrap();
        assert!((stack.start..stack.end).contains(&s.start_stack));
    }
}
