//! The two text formats of binfmt_misc, kept free of I/O so they can be unit
//! tested: the register line ckpt writes to `register` (and to a binfmt.d
//! file), and the entry files the kernel shows under the mount point.
//!
//! Kernel documentation: Documentation/admin-guide/binfmt-misc.rst.

use anyhow::{bail, Result};
use std::fmt::Write as _;

/// The flags ckpt registers with (see `FLAG_HELP` for why these two).
pub const FLAGS: &str = "FO";

/// What each flag means, and why ckpt sets it or not: printed by `register`
/// and `status`.
pub const FLAG_HELP: &[(char, &str)] = &[
    (
        'F',
        "fix binary: the kernel opened the interpreter at registration, so images run \
         in any mount namespace, chroot or container; re-register after reinstalling it",
    ),
    (
        'O',
        "open binary: the kernel opens the image and passes it as AT_EXECFD, so images \
         that are executable but not readable run too",
    ),
    (
        'C',
        "credentials: taken from the image file, so a setuid image would run the \
         interpreter as root; ckpt never sets it",
    ),
    (
        'P',
        "preserve argv[0]: an extra argument the restorer does not expect; ckpt never sets it",
    ),
];

/// The interpreter field is copied into a 128-byte buffer with its NUL:
/// "the interpreter string may not exceed 127 characters" (binfmt-misc.rst).
pub const MAX_INTERPRETER: usize = 127;

/// "the magic must reside in the first 128 bytes of the file, i.e.
/// offset+size(magic) has to be less than 128" (binfmt-misc.rst).
pub const MAX_MAGIC_END: usize = 128;

/// Checks an entry name: it becomes a file below the binfmt_misc mount (so
/// binfmt-misc.rst forbids `/`), it sits between `:` delimiters, and ckpt
/// also uses it as a binfmt.d file name. Kept to a conservative alphabet.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 {
        bail!("invalid binfmt_misc entry name {name:?}: it must have 1 to 64 characters");
    }
    if matches!(name, "." | ".." | "register" | "status") {
        bail!("invalid binfmt_misc entry name {name:?}: that name is reserved");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        bail!(
            "invalid binfmt_misc entry name {name:?}: {c:?} is not allowed (use letters, digits, '.', '_', '-', '+')"
        );
    }
    Ok(())
}

/// Escapes magic bytes for the register line. binfmt-misc.rst: "The magic
/// string may contain hex-encoded characters like \x0a" and "you must escape
/// any NUL bytes; parsing halts at the first one". Everything but ASCII
/// letters and digits is escaped, so neither NUL, the `:` delimiter nor a
/// backslash can appear raw: `CKPTIMG\x01`.
pub fn escape_magic(magic: &[u8]) -> String {
    let mut s = String::with_capacity(magic.len() * 4);
    for &b in magic {
        if b.is_ascii_alphanumeric() {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// Builds `:NAME:M:0:MAGIC::INTERPRETER:FO` (type M = match magic bytes, at
/// offset 0, no mask: binfmt-misc.rst "Here is what the fields mean").
pub fn register_line(name: &str, magic: &[u8], interpreter: &str) -> Result<String> {
    check_name(name)?;
    if !interpreter.starts_with('/') {
        bail!("the interpreter path must be absolute, not {interpreter:?}");
    }
    if interpreter.len() > MAX_INTERPRETER {
        bail!(
            "the interpreter path {interpreter} has {} bytes; binfmt_misc accepts at most {MAX_INTERPRETER} \
             (install ckpt under a shorter PREFIX, or pass a shorter --interpreter)",
            interpreter.len()
        );
    }
    if let Some(c) = interpreter.chars().find(|&c| c == ':' || c.is_control()) {
        bail!(
            "the interpreter path {interpreter:?} contains {c:?}, which the binfmt_misc register line cannot hold"
        );
    }
    if magic.is_empty() || magic.len() >= MAX_MAGIC_END {
        bail!("the magic must have 1 to {} bytes", MAX_MAGIC_END - 1);
    }
    Ok(format!(
        ":{name}:M:0:{}::{interpreter}:{FLAGS}",
        escape_magic(magic)
    ))
}

/// One entry file, `/proc/sys/fs/binfmt_misc/NAME`, parsed. The kernel
/// writes "enabled"/"disabled", then "interpreter PATH", "flags: LETTERS",
/// and either "extension .EXT" or "offset N", "magic HEX" and, when a mask
/// was given, "mask HEX".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entry {
    pub enabled: bool,
    pub interpreter: Option<String>,
    pub flags: String,
    pub offset: Option<u64>,
    pub magic: Option<Vec<u8>>,
    pub mask: Option<Vec<u8>>,
    pub extension: Option<String>,
}

impl Entry {
    pub fn has_flag(&self, f: char) -> bool {
        self.flags.contains(f)
    }

    /// The entry matches ckpt raw images exactly: our magic at offset 0,
    /// with no mask (or one that keeps every bit).
    pub fn matches_magic(&self, magic: &[u8]) -> bool {
        self.offset == Some(0)
            && self.magic.as_deref() == Some(magic)
            && match &self.mask {
                None => true,
                Some(m) => m.len() == magic.len() && m.iter().all(|&b| b == 0xff),
            }
    }

    /// The flag set is exactly ckpt's (the kernel prints them in its own
    /// order, "OF" for our "FO").
    pub fn has_ckpt_flags(&self) -> bool {
        let mut got: Vec<char> = self.flags.chars().collect();
        let mut want: Vec<char> = FLAGS.chars().collect();
        got.sort_unstable();
        want.sort_unstable();
        got == want
    }
}

/// Parses an entry file. Unknown lines are ignored (newer kernels may add
/// some); the enabled/disabled line is required.
pub fn parse_entry(text: &str) -> Result<Entry> {
    let mut e = Entry::default();
    let mut state = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line == "enabled" || line == "disabled" {
            e.enabled = line == "enabled";
            state = true;
        } else if let Some(p) = line.strip_prefix("interpreter ") {
            e.interpreter = Some(p.to_owned());
        } else if let Some(f) = line.strip_prefix("flags:") {
            e.flags = f.trim().to_owned();
        } else if let Some(o) = line.strip_prefix("offset ") {
            e.offset = Some(
                o.trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("bad offset line {line:?}"))?,
            );
        } else if let Some(m) = line.strip_prefix("magic ") {
            e.magic = Some(parse_hex(m.trim())?);
        } else if let Some(m) = line.strip_prefix("mask ") {
            e.mask = Some(parse_hex(m.trim())?);
        } else if let Some(x) = line.strip_prefix("extension ") {
            e.extension = Some(x.to_owned());
        }
    }
    if !state {
        bail!("no enabled/disabled line in the binfmt_misc entry");
    }
    Ok(e)
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    if s.len() & 1 == 1 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("bad hex string {s:?} in the binfmt_misc entry");
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("checked hex digits"))
        .collect())
}

/// One line per flag of `flags`, with its meaning.
pub fn describe_flags(flags: &str) -> Vec<String> {
    flags
        .chars()
        .map(|c| match FLAG_HELP.iter().find(|(f, _)| *f == c) {
            Some((_, help)) => format!("{c}  {help}"),
            None => format!("{c}  (a flag ckpt does not know)"),
        })
        .collect()
}

/// What is wrong with an entry's flags for running ckpt images, if anything.
pub fn flag_problems(e: &Entry) -> Vec<String> {
    let mut v = Vec::new();
    if e.has_flag('C') {
        v.push(
            "the C flag is set: a setuid image would run the interpreter as root; \
             re-register with `ckpt binfmt register`"
                .to_owned(),
        );
    }
    if e.has_flag('P') {
        v.push(
            "the P flag is set: the restorer gets an extra argv[0] it does not expect".to_owned(),
        );
    }
    if !e.has_flag('F') {
        v.push(
            "no F flag: the interpreter is looked up at every exec, so images fail inside \
             containers and chroots that lack it"
                .to_owned(),
        );
    }
    if !e.has_flag('O') && !e.has_flag('C') {
        v.push("no O flag: images that are executable but not readable cannot run".to_owned());
    }
    v
}

/// `s` as one word for sh(1): as it is when it holds only safe characters, else in
/// single quotes.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(super::shell_quote("/usr/local/bin/ckpt"), "/usr/local/bin/ckpt");
        assert_eq!(super::shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(super::shell_quote("it's"), r"'it'\''s'");
    }

    use super::*;

    const MAGIC: [u8; 8] = ckpt_format::MAGIC;

    #[test]
    fn magic_escapes_only_non_alphanumerics() {
        assert_eq!(escape_magic(&MAGIC), "CKPTIMG\\x01");
        assert_eq!(escape_magic(b"\0:\\a\xff"), "\\x00\\x3a\\x5ca\\xff");
    }

    #[test]
    fn register_line_has_every_field() {
        let l = register_line("ckpt", &MAGIC, "/usr/local/lib/ckpt/ckpt-restorer").unwrap();
        assert_eq!(
            l,
            ":ckpt:M:0:CKPTIMG\\x01::/usr/local/lib/ckpt/ckpt-restorer:FO"
        );
        // name, type, offset, magic, mask, interpreter, flags after the leading ':'.
        let fields: Vec<&str> = l[1..].split(':').collect();
        assert_eq!(fields.len(), 7, "{fields:?}");
        assert!(!l.contains('\0') && !l.contains('\n'));
        assert!(!fields[6].contains('C') && !fields[6].contains('P'));
    }

    #[test]
    fn register_line_checks_its_inputs() {
        let e = |n: &str, i: &str| register_line(n, &MAGIC, i).unwrap_err().to_string();
        assert!(e("ckpt", "lib/ckpt-restorer").contains("absolute"));
        assert!(e("ckpt", "/a:b").contains("':'"));
        assert!(e("ckpt", "/a\nb").contains("'\\n'"));
        assert!(e("a/b", "/x").contains("'/'"));
        assert!(e("a:b", "/x").contains("':'"));
        assert!(e("", "/x").contains("1 to 64"));
        assert!(e("register", "/x").contains("reserved"));
        let long = format!("/{}", "x".repeat(MAX_INTERPRETER));
        assert!(e("ckpt", &long).contains("at most 127"));
        let just = format!("/{}", "x".repeat(MAX_INTERPRETER - 1));
        assert!(register_line("ckpt", &MAGIC, &just).is_ok());
        assert!(register_line("ckpt-test-123", &MAGIC, "/x").is_ok());
    }

    #[test]
    fn parses_a_magic_entry() {
        let text = "enabled\ninterpreter /usr/local/lib/ckpt/ckpt-restorer\nflags: OF\noffset 0\nmagic 434b5054494d4701\n";
        let e = parse_entry(text).unwrap();
        assert_eq!(
            e,
            Entry {
                enabled: true,
                interpreter: Some("/usr/local/lib/ckpt/ckpt-restorer".into()),
                flags: "OF".into(),
                offset: Some(0),
                magic: Some(MAGIC.to_vec()),
                mask: None,
                extension: None,
            }
        );
        assert!(e.matches_magic(&MAGIC));
        assert!(e.has_ckpt_flags());
        assert!(flag_problems(&e).is_empty());
    }

    #[test]
    fn parses_masks_extensions_and_odd_entries() {
        let e = parse_entry(
            "disabled\ninterpreter /opt/my tools/run\nflags: POCF\noffset 2\nmagic 434b\nmask ff00\n",
        )
        .unwrap();
        assert!(!e.enabled);
        assert_eq!(e.interpreter.as_deref(), Some("/opt/my tools/run"));
        assert_eq!(e.mask, Some(vec![0xff, 0]));
        assert!(!e.matches_magic(b"CK"));
        assert!(!e.has_ckpt_flags());
        let problems = flag_problems(&e).join("\n");
        assert!(
            problems.contains("C flag") && problems.contains("P flag"),
            "{problems}"
        );

        let e = parse_entry(
            "enabled\ninterpreter /usr/bin/lli\nflags: \nextension .bc\nsomething new\n",
        )
        .unwrap();
        assert_eq!(e.extension.as_deref(), Some(".bc"));
        assert_eq!(e.flags, "");
        assert!(!e.matches_magic(&MAGIC));
        assert_eq!(flag_problems(&e).len(), 2);

        // A full mask is the same as no mask.
        let e = parse_entry("enabled\ninterpreter /x\nflags: F\noffset 0\nmagic 434b5054494d4701\nmask ffffffffffffffff\n").unwrap();
        assert!(e.matches_magic(&MAGIC));

        assert!(parse_entry("").is_err());
        assert!(parse_entry("enabled\nmagic 4g\n").is_err());
        assert!(parse_entry("enabled\noffset x\n").is_err());
    }

    #[test]
    fn flag_descriptions() {
        let d = describe_flags("OF");
        assert_eq!(d.len(), 2);
        assert!(d[0].starts_with("O  ") && d[0].contains("AT_EXECFD"));
        assert!(d[1].starts_with("F  ") && d[1].contains("mount namespace"));
        assert!(describe_flags("Z")[0].contains("does not know"));
    }
}

