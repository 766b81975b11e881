//! Looking at frozen processes without resuming them: `ckpt info` (text compared
//! with a golden file, `--json`, errors), `ckpt convert` (raw <-> .resume, byte for
//! byte) and `ckpt core` (gdb prints the frozen backtrace).
//!
//! The fixture is tests/golden/deep.c (main -> deep_function -> pause), built here
//! with -O0 -g. For the golden text it is built -static -no-pie and run under
//! `setarch -R` with an empty environment from its own directory, so every address
//! is the same on each run; what still differs between runs (date, pid, kernel,
//! paths, sizes, CPU, build-id, inherited umask and signal dispositions) is
//! replaced by placeholders before comparing with
//! tests/golden/info-static.txt. `UPDATE_GOLDEN=1 cargo test -p ckpt --release
//! --test e2e inspect` rewrites that file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use crate::util::*;

/// One `ckpt info|convert|core` or gdb run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden")
}

static DEEP: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Builds tests/golden/deep.c once per run as `deep` (dynamic, PIE) and
/// `deep-static` (-static -no-pie) in CARGO_TARGET_TMPDIR/inspect-fixtures.
fn deep(static_: bool) -> PathBuf {
    let dir = DEEP.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inspect-fixtures");
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (name, flags) in [("deep", &[][..]), ("deep-static", &["-static", "-no-pie"][..])] {
            let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
            let mut cmd = Command::new("cc");
            cmd.args(["-O0", "-g", "-Wall", "-o"]).arg(&tmp).arg(golden_dir().join("deep.c")).args(flags);
            let out = run_with_timeout(cmd, BUILD_TIMEOUT).map_err(|e| format!("cc for {name}: {e}"))?;
            if !out.status.success() {
                return Err(format!("cc for {name} failed:\n{}", lossy(&out.stderr)));
            }
            fs::rename(&tmp, dir.join(name)).map_err(|e| format!("rename {name}: {e}"))?;
        }
        Ok(dir)
    });
    match dir {
        Ok(d) => d.join(if static_ { "deep-static" } else { "deep" }),
        Err(e) => panic!("building tests/golden/deep.c failed: {e}"),
    }
}

/// Runs `ckpt ARGS...` (bounded).
fn ckpt(args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(ckpt_bin());
    cmd.args(args);
    run_with_timeout(cmd, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("ckpt {args:?}: {e}"))
}

/// Runs `ckpt ARGS...` and returns its stdout; panics unless it succeeded.
fn ckpt_ok(args: &[&std::ffi::OsStr]) -> String {
    let o = ckpt(args);
    assert!(o.status.success(), "ckpt {args:?} failed\n{}", describe_output(&o));
    lossy(&o.stdout)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// Checks a failed command: non-zero exit and exactly one stderr line
/// `ckpt: error: ...`, which is returned.
fn one_error_line(o: &Output) -> String {
    assert!(!o.status.success(), "should have failed\n{}", describe_output(o));
    let stderr = lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("ckpt: error: "),
        "expected one line `ckpt: error: ...` on stderr\n{}",
        describe_output(o)
    );
    lines[0].to_owned()
}

/// Starts `deep` and waits for it to block in pause().
fn start_deep(static_: bool) -> Proc {
    let p = Launch::new(deep(static_)).label("deep").spawn();
    p.wait_ready();
    thread::sleep(SETTLE);
    p
}

/// Freezes `pid` into `out` (killing it); with `--image` in `extra` the output is
/// a raw image, which the harness's `freeze_ok` (it wants an ELF) does not accept.
fn freeze_any(pid: i32, out: &Path, extra: &[&str]) {
    if !extra.contains(&"--image") {
        freeze_ok(pid, out, extra);
        return;
    }
    let o = freeze(pid, out, extra);
    assert!(o.status.success(), "ckpt freeze {pid} {extra:?} failed\n{}", describe_output(&o));
    let head = fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    assert_eq!(head.get(..8), Some(&b"CKPTIMG\x01"[..]), "{} is not a raw image", out.display());
}

/// Freezes a running deep (killing it) into `out` with `extra` flags.
fn freeze_deep(mut p: Proc, out: &Path, extra: &[&str]) {
    freeze_any(p.pid(), out, extra);
    p.expect_killed_by_ckpt();
}

fn setarch() -> &'static str {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let ok = *FOUND.get_or_init(|| {
        let mut cmd = Command::new("setarch");
        cmd.args(["x86_64", "-R", "true"]);
        run_with_timeout(cmd, Duration::from_secs(30)).map(|o| o.status.success()).unwrap_or(false)
    });
    assert!(ok, "`setarch x86_64 -R` (util-linux) is required by the golden test: run scripts/install-deps.sh");
    "setarch"
}

// ---------------------------------------------------------------------------
// ckpt info

/// The keys of `ckpt info` lines whose values change from run to run or from
/// machine to machine, and their placeholders.
const VOLATILE: &[(&str, &str)] = &[
    ("image size", "<IMAGE SIZE>"),
    ("file size", "<FILE SIZE>"),
    ("at", "<DATE>"),
    ("kernel", "<KERNEL>"),
    ("pid", "<PID>"),
    // How many functions this kernel's vdso exports.
    ("vdso functions", "<VDSO FUNCTIONS>"),
    ("xcr0", "<XCR0>"),
    ("in use", "<XSTATE IN USE>"),
    ("xstate size", "<XSTATE SIZE>"),
    // Hashes the binary, whose debug info holds the checkout's paths.
    ("build-id", "<BUILD-ID>"),
    // Inherited from whoever runs the tests (cargo's own process ignores SIG32).
    ("umask", "<UMASK>"),
    ("signal handlers", "<INHERITED DISPOSITIONS>"),
];

/// `ckpt info` text with run-dependent values replaced by placeholders.
fn normalise(text: &str, replace: &[(&Path, &str)]) -> String {
    let mut text = text.to_owned();
    for (path, with) in replace {
        text = text.replace(path.to_str().unwrap(), with);
    }
    let mut out = String::new();
    for line in text.lines() {
        let key = line.get(2..18).map(str::trim_end).unwrap_or("");
        let fixed = if let Some((_, ph)) = VOLATILE.iter().find(|(k, _)| line.starts_with("  ") && key == *k) {
            format!("  {key:<16}{ph}")
        } else if let Some(rest) = line.strip_prefix("thread ") {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            format!("thread <PID>{}", &rest[digits..])
        } else {
            line.to_owned()
        };
        out.push_str(&fixed);
        out.push('\n');
    }
    out
}

/// A line diff of `want` and `got` (longest common subsequence): `-` lines only
/// in `want`, `+` lines only in `got`, at most `max` of them.
fn line_diff(want: &str, got: &str, max: usize) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while (i < a.len() || j < b.len()) && out.len() < max {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+{:4}: {}", j + 1, b[j]));
            j += 1;
        } else {
            out.push(format!("-{:4}: {}", i + 1, a[i]));
            i += 1;
        }
    }
    out.join("\n")
}

/// Compares with tests/golden/NAME, or rewrites it when UPDATE_GOLDEN=1.
fn check_golden(name: &str, got: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::write(&path, got).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("updated {}", path.display());
        return;
    }
    let want = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it\ngot:\n{got}", path.display())
    });
    if want != got {
        panic!(
            "`ckpt info` differs from {} (UPDATE_GOLDEN=1 rewrites it if the change is intended)\n\
             - golden, + now (line numbers in each):\n{}\n\nfull output:\n{got}",
            path.display(),
            line_diff(&want, got, 40)
        );
    }
}

/// Length of the directory the golden fixture runs from.
const GOLDEN_DIR_LEN: usize = 200;

/// A directory under `base` whose path is exactly GOLDEN_DIR_LEN bytes long: static
/// glibc allocates memory for the executable's directory at startup, so heap
/// addresses (and registers pointing there) depend on the length of that path.
fn fixed_length_dir(base: &Path) -> PathBuf {
    let len = base.as_os_str().len();
    assert!(
        len + 2 <= GOLDEN_DIR_LEN,
        "{} is too long for the golden test ({} bytes, at most {})",
        base.display(),
        len,
        GOLDEN_DIR_LEN - 2
    );
    let d = base.join("g".repeat(GOLDEN_DIR_LEN - len - 1));
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    assert_eq!(d.as_os_str().len(), GOLDEN_DIR_LEN);
    d
}

/// `ckpt info` of a -static -no-pie process frozen under `setarch -R`: the text,
/// normalised, equals tests/golden/info-static.txt.
#[test]
fn info_golden_static() {
    let dir = TestDir::new("info_golden");
    let exe_dir = fixed_length_dir(deep(true).parent().unwrap());
    let exe = exe_dir.join("deep-static");
    let tmp = exe_dir.join(format!(".deep-static.tmp{}", std::process::id()));
    fs::copy(deep(true), &tmp).expect("copy deep-static");
    fs::rename(&tmp, &exe).expect("rename deep-static");
    let exe_dir = exe_dir.as_path();
    // env -i: no environment; -C: run ./deep-static from its directory, so the
    // stack (and every address derived from it) has the same contents each run.
    let p = Launch::new("env")
        .args(["-i", "-C"])
        .arg(exe_dir)
        .args([setarch(), "x86_64", "-R", "./deep-static"])
        .label("deep-static")
        .spawn();
    p.wait_ready();
    thread::sleep(SETTLE);
    let img = dir.image("deep.ckpt");
    freeze_deep(p, &img, &["--image"]);

    let text = ckpt_ok(&[os("info"), img.as_os_str()]);
    for want in ["ckpt raw image: ", "where it stopped", "=> "] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    assert!(text.contains("pause+0x"), "rip should be in pause():\n{text}");
    let norm = normalise(&text, &[(exe_dir, "<FIXTURES>"), (dir.path(), "<TESTDIR>")]);
    check_golden("info-static.txt", &norm);
}

/// `ckpt info --json` of a .resume of a dynamic (ASLR) process: one JSON object
/// with the documented keys, consistent with the process that was frozen.
#[test]
fn info_json_resume() {
    let dir = TestDir::new("info_json");
    let p = start_deep(false);
    let pid = p.pid();
    let img = dir.image("deep.resume");
    freeze_deep(p, &img, &[]);

    let out = ckpt_ok(&[os("info"), os("--json"), img.as_os_str()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    for key in ["file", "frozen", "cpu", "process", "threads", "vmas", "fds", "totals"] {
        assert!(v.get(key).is_some(), "no key {key:?} in\n{out}");
    }
    assert_eq!(v["file"]["kind"], "resume");
    assert_eq!(v["file"]["format_version"], ckpt_format::VERSION);
    assert!(v["file"]["image_offset"].as_u64().unwrap() > 0);
    assert_eq!(v["frozen"]["pid"], pid);
    let threads = v["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1, "{}", v["threads"]);
    let th = &threads[0];
    assert_eq!(th["tid"], pid);
    assert_eq!(th["name"], "deep");
    assert_eq!(th["exited"], false);
    assert!(th["state"].as_str().is_some_and(|s| s.len() == 1), "state: {}", th["state"]);
    assert!(th["scheduling"].as_str().unwrap().starts_with("SCHED_OTHER"), "{}", th["scheduling"]);
    assert!(v["frozen"]["utc"].as_str().unwrap().ends_with(" UTC"));
    assert!(v["cpu"]["features"].as_array().unwrap().iter().any(|f| f == "SSE"), "{out}");
    assert_eq!(v["process"]["executable"], deep(false).to_str().unwrap());
    assert_eq!(v["process"]["cmdline"][0], deep(false).to_str().unwrap());
    for reg in ["rip", "rsp", "fs_base", "sigmask"] {
        assert!(th[reg].as_str().unwrap().starts_with("0x"), "threads[0].{reg}: {out}");
    }
    assert_eq!(th["registers"]["rip"].as_str().map(|s| u64::from_str_radix(&s[2..], 16).unwrap()),
        th["rip"].as_str().map(|s| u64::from_str_radix(&s[2..], 16).unwrap()));
    // Stopped in pause(2): the freeze set it up to be restarted.
    assert_eq!(th["syscall"]["number"], 34, "{}", th["syscall"]);
    assert_eq!(th["syscall"]["name"], "pause");
    assert_eq!(th["syscall"]["state"], "restart");
    let w = &th["where"];
    assert!(w["symbol"]["name"].as_str().unwrap().contains("pause"), "where: {w}");
    assert!(w["module"].as_str().unwrap().contains("libc"), "where: {w}");
    let insns = w["instructions"].as_array().unwrap();
    let cur: Vec<_> = insns.iter().filter(|i| i["current"] == true).collect();
    assert_eq!(cur.len(), 1, "exactly one instruction at rip: {w}");
    assert_eq!(cur[0]["text"], "syscall");
    assert_eq!(cur[0]["address"], th["rip"]);

    let vmas = v["vmas"].as_array().unwrap();
    assert_eq!(v["totals"]["vmas"].as_u64().unwrap() as usize, vmas.len());
    for kind in ["file", "stack", "vdso"] {
        assert!(vmas.iter().any(|m| m["kind"] == kind), "no {kind} vma: {}", v["vmas"]);
    }
    let stored: u64 = vmas.iter().map(|m| m["stored_bytes"].as_u64().unwrap()).sum();
    assert_eq!(stored, v["totals"]["stored_bytes"].as_u64().unwrap());
    assert_eq!(stored, 4096 * v["totals"]["pages_stored"].as_u64().unwrap());
    let fds: Vec<i64> = v["fds"].as_array().unwrap().iter().map(|f| f["fd"].as_i64().unwrap()).collect();
    assert_eq!(fds, [0, 1, 2]);

    // The text form of the same file names the same place.
    let text = ckpt_ok(&[os("info"), img.as_os_str()]);
    assert!(text.starts_with("ckpt resume executable: "), "{text}");
    assert!(text.contains(&format!("  {}+0x", w["symbol"]["name"].as_str().unwrap())), "{text}");
}

/// Files that are not (valid) images: one clear error line, exit status 1.
#[test]
fn info_rejects_bad_files() {
    let dir = TestDir::new("info_bad");
    let text_file = dir.join("notes.txt");
    fs::write(&text_file, "just some text\n").unwrap();
    let line = one_error_line(&ckpt(&[os("info"), text_file.as_os_str()]));
    assert!(line.contains("neither a ckpt image nor a resume executable"), "{line}");

    let missing = dir.join("missing.ckpt");
    let line = one_error_line(&ckpt(&[os("info"), missing.as_os_str()]));
    assert!(line.contains("cannot open") && line.contains("missing.ckpt"), "{line}");

    // An ELF executable that is not a resume file.
    let line = one_error_line(&ckpt(&[os("info"), deep(true).as_os_str()]));
    assert!(line.contains("not a ckpt resume executable"), "{line}");

    let img = dir.image("deep.ckpt");
    freeze_deep(start_deep(true), &img, &["--image"]);
    let bytes = fs::read(&img).unwrap();

    let truncated = dir.join("truncated.ckpt");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let line = one_error_line(&ckpt(&[os("info"), truncated.as_os_str()]));
    assert!(line.contains("truncated"), "{line}");

    // A flipped byte in the last table (past every page run) fails its checksum.
    let corrupted = dir.join("corrupted.ckpt");
    let mut bad = bytes.clone();
    let at = bad.len() - 8;
    bad[at] ^= 0x40;
    fs::write(&corrupted, &bad).unwrap();
    let line = one_error_line(&ckpt(&[os("info"), corrupted.as_os_str()]));
    assert!(line.contains("checksum mismatch") && line.contains("corrupted"), "{line}");

    // A corrupted page: info does not read every page, convert does.
    let mut bad = bytes;
    bad[4096 + 100] ^= 0x01;
    fs::write(&corrupted, &bad).unwrap();
    let out = dir.join("out.resume");
    let line = one_error_line(&ckpt(&[os("convert"), corrupted.as_os_str(), os("-o"), out.as_os_str()]));
    assert!(line.contains("page data checksum mismatch"), "{line}");
    assert!(!out.exists(), "convert left {} behind", out.display());
}

// ---------------------------------------------------------------------------
// ckpt convert

const COUNT: u64 = 300;

/// A counter frozen as a raw image, converted to a .resume that runs and
/// continues the count, and converted back to the identical raw image.
fn convert_roundtrip(static_: bool) {
    let dir = TestDir::new("convert");
    let mut orig = spawn_fixture("counter", static_, &[&COUNT.to_string()]);
    orig.wait_ready();
    thread::sleep(SETTLE);
    let raw = dir.join("counter.ckpt");
    freeze_any(orig.pid(), &raw, &["--image"]);
    let before = orig.expect_killed_by_ckpt();

    let exe = dir.image("counter.resume");
    ckpt_ok(&[os("convert"), raw.as_os_str(), os("-o"), exe.as_os_str()]);
    assert_image(&exe);
    let info = ckpt_ok(&[os("info"), exe.as_os_str()]);
    assert!(info.starts_with("ckpt resume executable: "), "{info}");

    let back = dir.join("back.ckpt");
    ckpt_ok(&[os("convert"), exe.as_os_str(), os("-o"), back.as_os_str()]);
    assert!(fs::read(&raw).unwrap() == fs::read(&back).unwrap(), "raw -> resume -> raw changed the image");

    let res = resume(&exe);
    res.assert_success();
    assert_counts(&[before, res.stdout.clone()].concat(), COUNT, "original + converted resume output");
}

both_variants!(convert_roundtrip);

// ---------------------------------------------------------------------------
// ckpt core

/// gdb's backtrace of a core made from a frozen deep names deep_function and
/// main; `file` calls it a core file. The static build is frozen into a .resume,
/// the dynamic one into a raw image, so both inputs are covered.
fn core_backtrace(static_: bool) {
    let dir = TestDir::new("core");
    let img = dir.image(if static_ { "deep.resume" } else { "deep.ckpt" });
    freeze_deep(start_deep(static_), &img, if static_ { &[] } else { &["--image"] });
    let core = dir.join("core");
    ckpt_ok(&[os("core"), img.as_os_str(), os("-o"), core.as_os_str()]);

    let mut cmd = Command::new("file");
    cmd.arg("-b").arg(&core);
    let what = run_with_timeout(cmd, TOOL_TIMEOUT).expect("file (install it with scripts/install-deps.sh)");
    assert!(lossy(&what.stdout).contains("core file"), "file says: {}", lossy(&what.stdout));

    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch", "-iex", "set debuginfod enabled off", "-ex", "bt"]).arg(deep(static_)).arg(&core);
    let o = run_with_timeout(cmd, TOOL_TIMEOUT).expect("gdb (install it with scripts/install-deps.sh)");
    let bt = lossy(&o.stdout);
    assert!(
        bt.contains("deep_function") && bt.contains("main"),
        "gdb's backtrace lacks deep_function or main\n{}",
        describe_output(&o)
    );
    assert!(bt.contains("depth=42"), "gdb cannot read deep_function's argument\n{}", describe_output(&o));
}

both_variants!(core_backtrace);

#[test]
fn line_diff_marks_changes() {
    assert_eq!(line_diff("a\nb\nc\n", "a\nc\nd\n", 10), "-   2: b\n+   3: d");
    assert_eq!(line_diff("same\n", "same\n", 10), "");
}
