//! Periodic checkpoints of a long job: `ckpt run --every` checkpoints a running
//! computation several times, the job is killed with SIGKILL, and its last
//! checkpoint finishes it with the result of a run left alone; `ckpt freeze PID
//! --every` ends with the process, or on SIGTERM leaving it running.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// Steps of the long job: about 20 ms each.
const STEPS: &str = "400";
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// Waits until `path` has been replaced by `n` different files (inodes).
fn wait_for_checkpoints(path: &Path, n: usize, p: &mut Proc) {
    let t0 = Instant::now();
    let mut seen = BTreeSet::new();
    while seen.len() < n {
        if let Ok(md) = fs::metadata(path) {
            seen.insert(md.ino());
        }
        if let Some(st) = p.try_status() {
            panic!("{} ended ({st}) after {} checkpoints\n{}", p.label, seen.len(), p.describe());
        }
        assert!(t0.elapsed() < JOB_TIMEOUT, "only {} checkpoints of {} in {:?}", seen.len(), path.display(), t0.elapsed());
        thread::sleep(Duration::from_millis(10));
    }
}

/// The only child of `pid`.
fn child_of(pid: i32) -> i32 {
    let kids = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let kids: Vec<i32> = kids.split_whitespace().map(|k| k.parse().unwrap()).collect();
    assert_eq!(kids.len(), 1, "children of {pid}: {kids:?}");
    kids[0]
}

fn steps(lines: &[String]) -> Vec<u64> {
    lines.iter().filter_map(|l| l.strip_prefix("step ")).map(|n| n.parse().unwrap()).collect()
}

#[test]
fn run_every_then_sigkill_then_resume() {
    let dir = TestDir::new("run-every");
    let job = fixture("longjob", false);
    // The same job left alone, at the same time.
    let mut alone = spawn_fixture("longjob", false, &[STEPS]);

    let img = dir.image("job.resume");
    let mut run = Launch::new(ckpt_bin())
        .args(["run", "--every", "300ms", "--keep", "2", "-o"])
        .arg(&img)
        .arg("--")
        .arg(&job)
        .arg(STEPS)
        .label("ckpt run")
        .spawn();
    run.wait_ready();
    let pid = child_of(run.pid());
    run.track_pid(pid);
    wait_for_checkpoints(&img, 3, &mut run);
    // SAFETY: plain signal delivery to the job this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let fin = run.wait_output(JOB_TIMEOUT);
    assert_eq!(fin.status.code(), Some(128 + libc::SIGKILL), "ckpt run exits as the job did\n{fin}");
    let before = steps(&fin.stdout);
    assert!(!fin.stdout.iter().any(|l| l.starts_with("result")), "the job was killed before its end\n{fin}");
    let names: BTreeSet<String> = dir_entries(&dir.join("images")).iter().map(|n| n.to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["job.resume", "job.resume.1", "job.resume.2"].map(String::from).into(), "the file and the 2 kept, nothing hidden left");
    assert_image(&img);

    let resumed = resume_launch(&img).spawn().wait_output(JOB_TIMEOUT);
    resumed.assert_success();
    let after = steps(&resumed.stdout);
    let first = *after.first().expect("the resumed job goes on stepping");
    assert!(first > 0 && first <= before.last().unwrap() + 1, "resumed at step {first}; the killed job got to {:?}", before.last());
    let want: Vec<u64> = (first..STEPS.parse().unwrap()).collect();
    assert_eq!(after, want, "every remaining step once, in order");

    let alone = alone.wait_output(JOB_TIMEOUT);
    alone.assert_success();
    assert_eq!(resumed.line_starting("result "), alone.line_starting("result "), "the same result as the job left alone");
}

#[test]
fn freeze_every_ends_with_the_process() {
    let dir = TestDir::new("freeze-every-end");
    let mut job = spawn_fixture("longjob", false, &["40"]);
    job.wait_ready();
    let img = dir.image("job.resume");
    let mut every = Launch::new(ckpt_bin())
        .args(["freeze", &job.pid().to_string(), "--every", "200ms", "-v", "-o"])
        .arg(&img)
        .label("ckpt freeze --every")
        .spawn();
    let done = job.wait_output(JOB_TIMEOUT);
    done.assert_success();
    let fin = every.wait_output(JOB_TIMEOUT);
    assert!(fin.status.success(), "ckpt freeze --every ends with the process, exit 0\n{fin}");
    assert!(fin.stderr.contains("checkpoint 2 of pid"), "-v says each checkpoint\n{fin}");
    // The last checkpoint, resumed, ends the job the same way.
    let resumed = resume_launch(&img).spawn().wait_output(JOB_TIMEOUT);
    resumed.assert_success();
    assert_eq!(resumed.line_starting("result "), done.line_starting("result "));
}

#[test]
fn freeze_every_stops_on_sigterm() {
    let dir = TestDir::new("freeze-every-term");
    let mut job = spawn_fixture("longjob", false, &[STEPS]);
    job.wait_ready();
    let img = dir.image("job.resume");
    let mut every = Launch::new(ckpt_bin())
        .args(["freeze", &job.pid().to_string(), "--every", "100ms", "--keep", "1", "-o"])
        .arg(&img)
        .label("ckpt freeze --every")
        .spawn();
    wait_for_checkpoints(&img, 2, &mut every);
    // SAFETY: plain signal delivery to the ckpt this test started.
    unsafe { libc::kill(every.pid(), libc::SIGTERM) };
    let st = every.wait_exit(FREEZE_TIMEOUT);
    assert!(st.success(), "SIGTERM ends the checkpoints cleanly: {st}");
    job.assert_running();
    let names: BTreeSet<String> = dir_entries(&dir.join("images")).iter().map(|n| n.to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["job.resume", "job.resume.1"].map(String::from).into(), "no half-written file");
    assert_image(&img);
}

#[test]
fn interval_syntax() {
    for bad in ["0s", "ten", "5"] {
        let o = std::process::Command::new(ckpt_bin()).args(["run", "--every", bad, "-o", "x", "--", "true"]).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "--every {bad} is refused as usage\n{}", describe_output(&o));
        assert!(lossy(&o.stderr).contains("--every"), "{}", describe_output(&o));
    }
    let dir = TestDir::new("interval");
    let img = dir.image("t.resume");
    // A command shorter than the interval: no checkpoint, its own exit code.
    let o = std::process::Command::new(ckpt_bin()).args(["run", "--every", "1h", "-o"]).arg(&img).args(["--", "sh", "-c", "exit 7"]).output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", describe_output(&o));
    assert!(!img.exists());
}
