//! The command line as scripts and shells use it: `freeze --json` on success and
//! on failure, with exit codes that name the failing stage.

use std::fs;
use std::process::{Command, Output};

use crate::util::*;

/// The one JSON object a `--json` freeze prints on stdout.
fn json_of(o: &Output) -> serde_json::Value {
    let out = lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stdout\n{}", describe_output(o));
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", describe_output(o)))
}

/// A failed `--json` freeze: its object names the error, the step and the exit code
/// the process exited with.
fn assert_json_failure(o: &Output, step: &str, mentions: &str) -> serde_json::Value {
    let v = json_of(o);
    assert_eq!(v["step"], step, "{}", describe_output(o));
    let code = v["code"].as_i64().expect("code is a number");
    assert_eq!(o.status.code(), Some(code as i32), "exit status is the JSON code\n{}", describe_output(o));
    assert_ne!(code, 0);
    let err = v["error"].as_str().expect("error is a string");
    assert!(err.contains(mentions), "error {err:?} should name {mentions:?}");
    v
}

#[test]
fn freeze_json_success() {
    let dir = TestDir::new("json-ok");
    let gate = dir.gate();
    let mib = 16;
    let mut orig = spawn_fixture("big", false, &[&mib.to_string(), gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("big");
    let o = freeze_ok(orig.pid(), &img, &["--json"]);
    orig.expect_killed_by_ckpt();
    let v = json_of(&o);
    assert_eq!(v["pid"], orig.pid(), "{v}");
    assert_eq!(v["output"], img.to_str().unwrap(), "{v}");
    assert_eq!(v["size"], fs::metadata(&img).unwrap().len(), "{v}");
    assert_eq!(v["threads"], 1, "{v}");
    let pages = v["pages_stored"].as_u64().expect("pages_stored");
    assert!(pages >= mib << 8, "the fixture's {mib} MiB of non-zero data are {} pages; stored {pages}", mib << 8);
    for k in ["total_ms", "stopped_ms", "fsync_ms"] {
        let t = v[k].as_f64().unwrap_or_else(|| panic!("{k} is a number: {v}"));
        assert!(t > 0.0 && t < 600_000.0, "{k} = {t}");
    }
    // The file it describes works.
    let mut resumed = resume_launch(&img).spawn();
    open_gate(&gate);
    let fin = resumed.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    fin.line_starting("ok");
}

#[test]
fn freeze_json_failures() {
    let dir = TestDir::new("json-err");
    // A pid that no longer exists: a process that has been reaped.
    let mut gone = Command::new("true").spawn().expect("run true");
    let gone_pid = gone.id() as i32;
    gone.wait().unwrap();
    let img = dir.image("x");
    let o = freeze(gone_pid, &img, &["--json"]);
    assert_json_failure(&o, "check", &gone_pid.to_string());
    assert!(!img.exists());

    let gate = dir.gate();
    let mut orig = spawn_fixture("big", false, &["1", gate.to_str().unwrap()]);
    orig.wait_ready();
    let missing = dir.join("no-such-dir").join("x.resume");
    let o = freeze(orig.pid(), &missing, &["--json"]);
    let v = assert_json_failure(&o, "output", "no-such-dir");
    assert_ne!(v["code"], json_of(&freeze(gone_pid, &img, &["--json"]))["code"], "two stages, two codes");

    // Refused by the parser: the usage code, still one object.
    let mut cmd = Command::new(ckpt_bin());
    cmd.args(["freeze", "not-a-pid", "-o"]).arg(&img).arg("--json");
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).unwrap();
    assert_json_failure(&o, "usage", "not-a-pid");

    // The target was never touched.
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success();
}
