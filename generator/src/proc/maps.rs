//! The memory map of a process, from `/proc/PID/smaps`: which regions to save,
//! how to recreate them (permissions, backing file, offset) and which VmFlags
//! (guard, hugepage, dontdump...) must be re-applied at restore time.

use super::{read_parsed, ProcError, TextError};

/// One VMA: the header line of an smaps entry plus the fields we need from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// 's' in the perms column (MAP_SHARED); 'p' is private copy-on-write.
    pub shared: bool,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// Raw pathname column: "" for anonymous memory, "[heap]", "[stack]", "[vdso]",
    /// "/usr/lib/x.so", "/tmp/f (deleted)", "[anon:name]"... The kernel escapes a
    /// newline in a path as "\012" (seq_file_path); that escape is kept as is.
    pub name: String,
    /// Two-letter codes of the "VmFlags:" line (proc(5)), e.g. "gd" stack guard,
    /// "hg" MADV_HUGEPAGE, "dd" do not dump, "lo" mlocked.
    pub vm_flags: Vec<String>,
    /// Bytes resident, swapped out, and anonymous (smaps reports kB).
    pub rss: u64,
    pub swap: u64,
    pub anon: u64,
}

const DELETED: &str = " (deleted)";

impl Mapping {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.vm_flags.iter().any(|x| x == f)
    }

    /// d_path() appends " (deleted)" once the backing file is unlinked (memfds
    /// are always "/memfd:NAME (deleted)").
    pub fn is_deleted(&self) -> bool {
        self.name.ends_with(DELETED)
    }

    /// The backing file's path for file mappings, without " (deleted)".
    pub fn path(&self) -> Option<&str> {
        if !self.name.starts_with('/') {
            return None;
        }
        Some(self.name.strip_suffix(DELETED).unwrap_or(&self.name))
    }
}

fn hex(s: &str, line: &str, what: &str) -> Result<u64, TextError> {
    u64::from_str_radix(s, 16).map_err(|_| TextError::line(line, format!("bad {what} {s:?}")))
}

/// Field lines are "Key:   value"; anything else must be a VMA header.
fn is_field(line: &str) -> bool {
    line.split(' ').next().is_some_and(|w| w.ends_with(':'))
}

/// Parse "start-end perms offset major:minor inode [name]" (proc(5)).
fn parse_header(line: &str) -> Result<Mapping, TextError> {
    let bad = |what: &str| TextError::line(line, what);
    let mut rest = line;
    let mut cols = [""; 5];
    for col in cols.iter_mut() {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        *col = &rest[..end];
        rest = &rest[end..];
    }
    let [range, perms, offset, dev, inode] = cols;
    // The kernel pads the name to a fixed column (show_map_vma: seq_pad). Names are
    // absolute paths or start with '[' or a pseudo-fs prefix, never with a space.
    let name = rest.trim_start_matches(' ');
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| bad("no address range"))?;
    let (major, minor) = dev.split_once(':').ok_or_else(|| bad("bad device"))?;
    let p = perms.as_bytes();
    if p.len() != 4 {
        return Err(bad("bad permissions"));
    }
    let m = Mapping {
        start: hex(start, line, "start")?,
        end: hex(end, line, "end")?,
        read: p[0] == b'r',
        write: p[1] == b'w',
        exec: p[2] == b'x',
        shared: p[3] == b's',
        offset: hex(offset, line, "offset")?,
        dev_major: hex(major, line, "device")? as u32,
        dev_minor: hex(minor, line, "device")? as u32,
        inode: inode.parse().map_err(|_| bad("bad inode"))?,
        name: name.to_string(),
        ..Mapping::default()
    };
    if m.end < m.start {
        return Err(bad("end before start"));
    }
    Ok(m)
}

/// "   1548 kB" -> bytes.
fn kb(value: &str, line: &str) -> Result<u64, TextError> {
    let n = value.trim().strip_suffix("kB").unwrap_or(value).trim();
    let n: u64 = n.parse().map_err(|_| TextError::line(line, "bad size"))?;
    Ok(n * 1024)
}

pub(crate) fn parse(text: &str) -> Result<Vec<Mapping>, TextError> {
    let mut maps: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if !is_field(line) {
            maps.push(parse_header(line)?);
            continue;
        }
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        let m = maps
            .last_mut()
            .ok_or_else(|| TextError::line(line, "field before header"))?;
        match key {
            "Rss" => m.rss = kb(value, line)?,
            "Swap" => m.swap = kb(value, line)?,
            "Anonymous" => m.anon = kb(value, line)?,
            "VmFlags" => m.vm_flags = value.split_whitespace().map(str::to_string).collect(),
            _ => {}
        }
    }
    Ok(maps)
}

/// Parse smaps text. Plain `/proc/PID/maps` text is accepted too (no fields:
/// empty `vm_flags`, zero sizes).
pub fn parse_smaps(text: &str) -> Result<Vec<Mapping>, String> {
    parse(text).map_err(String::from)
}

/// The mappings of `pid` in address order, from `/proc/PID/smaps`.
pub fn read_smaps(pid: i32) -> Result<Vec<Mapping>, ProcError> {
    read_parsed(pid, "smaps", parse)
}

/// The mappings of `pid` from `/proc/PID/maps`: the layout only, without the
/// per-page walk smaps does to count resident pages (its cost grows with the
/// process's resident size, about 60 ms per GiB here).
pub fn read_maps(pid: i32) -> Result<Vec<Mapping>, ProcError> {
    read_parsed(pid, "maps", parse)
}

/// Whether two reads show the same VMAs: same ranges, permissions, backing files
/// and offsets (not the sizes or flags, which plain maps does not show).
pub fn same_layout(a: &[Mapping], b: &[Mapping]) -> bool {
    let key = |m: &Mapping| (m.start, m.end, m.read, m.write, m.exec, m.shared, m.offset, m.dev_major, m.dev_minor, m.inode, m.name.clone());
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| key(x) == key(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_smaps_show_the_same_layout() {
        let pid = std::process::id() as i32;
        let (m, s) = (read_maps(pid).unwrap(), read_smaps(pid).unwrap());
        // The thread that reads may map a stack or heap pages between the reads:
        // compare the part below the stack, which neither changes.
        assert!(!m.is_empty() && m.iter().all(|x| x.vm_flags.is_empty()));
        assert!(s.iter().any(|x| !x.vm_flags.is_empty()));
        let mut other = s.clone();
        assert!(same_layout(&s, &other));
        other[0].end += 4096;
        assert!(!same_layout(&s, &other));
    }

    /// smaps of a python3 process on this machine (Linux 6.18), trimmed to a few
    /// interesting VMAs: hugepage anon, memfd, deleted file with spaces, vdso...
    const SMAPS: &str = include_str!("testdata/smaps.txt");

    fn find<'a>(maps: &'a [Mapping], name: &str) -> &'a Mapping {
        maps.iter().find(|m| m.name == name).unwrap()
    }

    #[test]
    fn real_sample() {
        let maps = parse_smaps(SMAPS).unwrap();
        assert_eq!(maps.len(), 13);
        let exe = &maps[0];
        assert_eq!(
            (exe.start, exe.end, exe.offset),
            (0x55d24a71d000, 0x55d24a71e000, 0)
        );
        assert_eq!((exe.dev_major, exe.dev_minor, exe.inode), (0xfe, 0, 18504));
        assert_eq!(
            exe.path(),
            Some("/root/.pyenv/versions/3.11.7/bin/python3.11")
        );
        assert!(exe.read && !exe.write && !exe.exec && !exe.shared);
        assert_eq!(exe.vm_flags, ["rd", "mr", "mw", "me"]);

        let huge = maps.iter().find(|m| m.start == 0x7f7b74200000).unwrap();
        assert_eq!((huge.name.as_str(), huge.path()), ("", None));
        assert!(huge.has_flag("hg") && !huge.has_flag("nh"));
        assert_eq!(
            (huge.len(), huge.rss, huge.anon, huge.swap),
            (4 << 20, 2 << 20, 2 << 20, 0)
        );

        let f = find(&maps, "/tmp/my file (x).dat (deleted)");
        assert!(f.is_deleted() && f.shared && f.write && f.has_flag("sh"));
        assert_eq!(f.path(), Some("/tmp/my file (x).dat"));
        let memfd = find(&maps, "/memfd:x (deleted)");
        assert_eq!(
            (memfd.path(), memfd.inode, memfd.dev_minor),
            (Some("/memfd:x"), 1049, 1)
        );

        let stack = find(&maps, "[stack]");
        assert!(stack.has_flag("gd") && stack.path().is_none() && !stack.is_deleted());
        assert_eq!((stack.rss, stack.anon), (60 * 1024, 60 * 1024));
        assert!(find(&maps, "[vvar]").has_flag("io"));
        assert_eq!(find(&maps, "[vvar_vclock]").len(), 8192);
        assert!(find(&maps, "[vdso]").exec);
        let vsys = find(&maps, "[vsyscall]");
        assert_eq!(
            (vsys.start, vsys.vm_flags.clone()),
            (0xffffffffff600000, vec!["ex".to_string()])
        );
        assert!(!vsys.read && vsys.exec);
    }

    #[test]
    fn maps_format_and_odd_names() {
        let text = "\
7f1d0c000000-7f1d0c021000 rw-p 00000000 00:00 0                          [anon:tokio worker]
7f1d0c021000-7f1d10000000 ---p 00000000 00:00 0 
7f1d10000000-7f1d10001000 r--p 0000a000 103:02 9223372036854775807      /a  b/c 
";
        let maps = parse_smaps(text).unwrap();
        assert_eq!(maps[0].name, "[anon:tokio worker]");
        assert_eq!(maps[1].name, "");
        assert!(!maps[1].read && !maps[1].write && maps[1].vm_flags.is_empty());
        assert_eq!(
            (maps[2].dev_major, maps[2].dev_minor, maps[2].offset),
            (0x103, 2, 0xa000)
        );
        assert_eq!(maps[2].inode, i64::MAX as u64);
        assert_eq!(maps[2].path(), Some("/a  b/c "));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_smaps("Rss: 4 kB\n").unwrap_err();
        assert!(
            e.contains("Rss: 4 kB") && e.contains("before header"),
            "{e}"
        );
        let e = parse_smaps("1000-zz00 rw-p 00000000 00:00 0\n").unwrap_err();
        assert!(e.contains("1000-zz00"), "{e}");
        let e = parse_smaps("1000-2000 rw-p 00000000 00:00 0\nRss: lots\n").unwrap_err();
        assert!(e.contains("Rss: lots"), "{e}");
        assert!(parse_smaps("1000-2000 rw 00000000 00:00 0\n").is_err());
        assert!(parse_smaps("garbage\n").is_err());
    }

    #[test]
    fn live_self() {
        // Other tests of this binary map and unmap memory in threads of their own
        // while smaps is read in pieces, which may then overlap: read until one read
        // saw a quiet moment.
        let read = || read_smaps(std::process::id() as i32).unwrap();
        let maps = (0..20).map(|_| read()).find(|m| m.windows(2).all(|w| w[0].end <= w[1].start)).unwrap_or_else(read);
        let stack = maps
            .iter()
            .find(|m| m.name == "[stack]")
            .expect("no [stack]");
        assert!(stack.read && stack.write && stack.rss > 0 && stack.has_flag("gd"));
        assert!(maps.windows(2).all(|w| w[0].end <= w[1].start));
        let exe = std::env::current_exe().unwrap();
        assert!(maps.iter().any(|m| m.path() == exe.to_str()));
    }
}
