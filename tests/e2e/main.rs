//! End-to-end tests of `ckpt`: C (and one Python) fixture programs are frozen
//! with `ckpt freeze` and resumed by running the image; each fixture checks
//! its own state after the resume (zdtm protocol, see tests/fixtures/common.h).
//!
//! `cargo test -p ckpt --test e2e`. Set CKPT_E2E_KEEP=1 to keep the per-test
//! directories under target/tmp/e2e-tests.

/// Defines `mod $name { fn dynamic(); fn static_(); }` running `$name(false)`
/// and `$name(true)`: the test against the dynamic-glibc and the -static build.
macro_rules! both_variants {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn dynamic() {
                super::$name(false)
            }
            #[test]
            fn static_() {
                super::$name(true)
            }
        }
    )*};
}

mod basic;
mod big;
mod binfmt;
mod clocks;
mod cli;
mod compat;
mod compress;
mod corrupt;
mod errors;
mod fds;
mod fds_sockets;
mod fds_tty;
mod formats;
mod inspect;
mod install;
mod lazy;
mod locks;
mod memory;
mod periodic;
mod pids;
mod precopy;
mod procstate;
mod progress;
mod python;
mod registers;
mod runtimes;
mod safety;
mod syscalls;
mod timers;
mod tree;
mod terminal;
mod threads;
mod util;

use std::fs;

/// Builds every fixture (both variants); needs no working ckpt.
#[test]
fn fixtures_compile() {
    let (dir, names) = util::built_fixtures();
    assert!(names.len() >= 13, "fixtures: {names:?}");
    for name in names {
        for static_ in [false, true] {
            let p = util::fixture(name, static_);
            assert!(
                fs::metadata(&p).is_ok(),
                "{} missing in {}",
                p.display(),
                dir.display()
            );
        }
    }
}

/// Every fixture, run without any freeze, passes its own checks: a failure
/// here is a fixture bug, not a ckpt bug. Needs no working ckpt.
#[test]
fn fixtures_pass_unfrozen() {
    use util::*;
    let dir = TestDir::new("unfrozen");
    let gate = dir.gate();
    open_gate(&gate);
    let g = gate.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("counter", &["30", "1"]),
        ("regs", &["0.3"]),
        ("regs", &["0.3", "sse"]),
        ("regs", &["0.3", "avx"]),
        ("heap", &[g]),
        ("clock", &["100"]),
        ("sleeper", &["1"]),
        ("waiter", &["1"]),
        ("collide", &[g, "light"]),
        ("collide", &[g]),
        ("sparse", &[g]),
        ("big", &["64", g]),
        ("zombie", &[g]),
        ("threads", &[g]),
        ("periodic", &[g]),
        ("pidkeep", &[g]),
        ("fds", &[g]),
        ("sigdefault", &[g]),
    ];
    for static_ in [false, true] {
        let mut procs: Vec<Proc> = cases
            .iter()
            .map(|(n, a)| spawn_fixture(n, static_, a))
            .collect();
        let mut br = Launch::fixture("blockread", static_).stdin_piped().spawn();
        wait_for_line(br.out(), "ready", READY_TIMEOUT);
        use std::io::Write;
        br.stdin.as_mut().unwrap().write_all(b"hello\n").unwrap();
        procs.push(br);
        for p in &mut procs {
            let fin = p.wait_output(RESUME_TIMEOUT);
            fin.assert_success();
            assert!(
                fin.stdout.iter().any(|l| l == "ready"),
                "no ready line\n{fin}"
            );
        }
        assert_eq!(
            procs.last_mut().unwrap().wait_output(REAP_TIMEOUT).stdout,
            ["ready", "got: hello"]
        );
    }
    let mut py = Launch::new(python3())
        .arg(fixtures_src().join("dictwork.py"))
        .arg("20000")
        .spawn();
    py.wait_output(RESUME_TIMEOUT)
        .assert_success()
        .line_starting("checksum ");
}
