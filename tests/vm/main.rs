//! `cargo test -p ckpt --test kernels`: processes frozen on Linux 6.12 resume on
//! Linux 6.1 and on 6.12 after a reboot, and processes frozen on 6.1 resume on
//! 6.12, in qemu VMs (tests/vm/crosskernel.sh does
//! the boots; this checks what they sent back). Each target's log must go on at
//! the next iteration after the freeze, no monotonic clock (through the vdso or the
//! system call, or Go's monotonic reading) may ever go back, the clocks must
//! advance at the real rate after the resume, and the wall clock is the machine's.
//! Where qemu, a static busybox or the kernel images cannot be had, the test is
//! reported as ignored, never as passed.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGETS: [&str; 3] = ["vmclock", "vmclock-static", "vmclock-go"];
/// Iterations each target runs (tests/vm/init.sh).
const ITERATIONS: u64 = 330;

/// The `name value` pairs of a log line "i N name value ...".
fn fields(line: &str) -> Vec<(&str, i128)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    w.chunks(2).filter_map(|c| Some((c[0], c.get(1)?.parse().ok()?))).collect()
}

fn get(f: &[(&str, i128)], name: &str) -> Option<i128> {
    f.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Checks one resumed target; returns a one-line summary.
fn check_target(run: &Path, frozen_in: &str, boot: &str, t: &str) -> Result<String, String> {
    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
    let frozen = read(run.join(frozen_in).join(format!("{t}.log")))?;
    let log = read(run.join(boot).join(format!("{t}.log")))?;
    let rc = read(run.join(boot).join(format!("{t}.rc")))?;
    let check = read(run.join(boot).join(format!("{t}.check"))).unwrap_or_default();
    let ctx = || format!("{boot}/{t}:\n--- check\n{check}--- log tail\n{}", log.lines().rev().take(5).collect::<Vec<_>>().join("\n"));
    if rc.trim() != "0" {
        return Err(format!("resume exited {} ({})", rc.trim(), ctx()));
    }
    if !log.trim_end().ends_with(&format!("done {ITERATIONS}")) {
        return Err(format!("the log does not end with done {ITERATIONS} ({})", ctx()));
    }
    let before = frozen.lines().filter(|l| l.starts_with("i ")).count();
    let lines: Vec<Vec<(&str, i128)>> = log.lines().filter(|l| l.starts_with("i ")).map(fields).collect();
    if before == 0 || before >= lines.len() {
        return Err(format!("{before} iterations before the freeze, {} in all: nothing ran on one side ({})", lines.len(), ctx()));
    }
    let mono: &[&str] = if t.ends_with("-go") { &["since"] } else { &["mono", "coarse", "boot", "sysmono"] };
    for (k, w) in lines.windows(2).enumerate() {
        let (a, b) = (&w[0], &w[1]);
        if get(b, "i") != get(a, "i").map(|i| i + 1) {
            return Err(format!("iteration {:?} follows {:?} ({})", get(b, "i"), get(a, "i"), ctx()));
        }
        for c in mono {
            let (x, y) = (get(a, c).ok_or("no clock")?, get(b, c).ok_or("no clock")?);
            if y < x {
                return Err(format!("{c} went back from {x} to {y} at iteration {:?} ({})", get(b, "i"), ctx()));
            }
        }
        // After the resume, each 100 ms step takes as long on the monotonic clock
        // as on the wall clock (within 50 ms: TCG is slow but both see it).
        let (ra, rb) = (get(a, "real").ok_or("no real")?, get(b, "real").ok_or("no real")?);
        if rb < ra {
            return Err(format!("the wall clock went back at iteration {:?} ({})", get(b, "i"), ctx()));
        }
        if k + 1 > before {
            let m = get(b, mono[0]).unwrap() - get(a, mono[0]).unwrap();
            if (m - (rb - ra)).abs() > 50_000_000 {
                return Err(format!("after the resume {} advanced {m} ns while the wall clock advanced {} ns ({})", mono[0], rb - ra, ctx()));
            }
        }
    }
    let vdso = check.lines().find(|l| l.contains("vdso:")).unwrap_or("").trim().to_string();
    let clocks = check.lines().find(|l| l.contains("clocks:")).unwrap_or("").trim().to_string();
    let want = if boot == "same" { "vdso: the same build" } else { "vdso: another build" };
    if !vdso.starts_with(want) {
        return Err(format!("check says {vdso:?}, not {want:?} ({})", ctx()));
    }
    Ok(format!("{before} iterations before the freeze, {} after; {vdso}; {clocks}", lines.len() - before))
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filter.is_empty() && !filter.iter().any(|f| "crosskernel".contains(f.as_str())) {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n");
        return;
    }
    println!("\nrunning 1 test");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let run = root.join("target/tmp/vm/run");
    let t0 = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(root.join("tests/vm/crosskernel.sh"))
        .arg(env!("CARGO_BIN_EXE_ckpt"))
        .arg(&run)
        .output()
        .expect("running tests/vm/crosskernel.sh");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(77) {
        eprintln!("{}", said.trim());
        println!("test crosskernel ... ignored, {}", said.lines().find(|l| l.starts_with("SKIP")).unwrap_or("skipped"));
        println!("\ntest result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out\n");
        return;
    }
    let mut failures = Vec::new();
    if !out.status.success() {
        failures.push(format!("crosskernel.sh failed ({}):\n{said}", out.status));
    } else {
        eprint!("{said}");
        // Frozen on 6.12: resumed on 6.1 and on 6.12 rebooted; frozen on 6.1:
        // resumed on 6.12.
        for (frozen_in, boot) in [("freeze", "cross"), ("freeze", "same"), ("freeze-old", "back")] {
            for t in TARGETS {
                match check_target(&run, frozen_in, boot, t) {
                    Ok(s) => eprintln!("{boot}/{t}: {s}"),
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    eprintln!("the VM test took {:.0} s", t0.elapsed().as_secs_f64());
    if failures.is_empty() {
        println!("test crosskernel ... ok");
        println!("\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n");
    } else {
        for f in &failures {
            eprintln!("FAILED: {f}\n");
        }
        println!("test crosskernel ... FAILED");
        println!("\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n");
        std::process::exit(101);
    }
}
