//! `make install` puts the shell completions and man pages, generated from the
//! command line, where shells and man look for them, each naming every subcommand;
//! `make uninstall` takes everything away again.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// The subcommands `ckpt --help` lists (not `help` itself).
fn subcommands() -> Vec<String> {
    let o = Command::new(ckpt_bin()).arg("--help").output().expect("ckpt --help");
    assert!(o.status.success());
    let help = lossy(&o.stdout);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|n| n != "help")
        .collect();
    assert!(names.len() >= 5, "no subcommands found in ckpt --help:\n{help}");
    names
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn make(target: &str, destdir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new("make");
    // The binary under test, already built: no cargo run from make.
    cmd.arg("-C").arg(&root).arg(target).arg(format!("DESTDIR={}", destdir.display())).arg("PREFIX=/usr");
    cmd.arg("CARGO=true").arg(format!("BIN={}", ckpt_bin().display()));
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("run make");
    assert!(o.status.success(), "make {target}\n{}", describe_output(&o));
}

#[test]
fn install_completions_and_man_pages() {
    let dir = TestDir::new("install");
    let dest = dir.join("dest");
    make("install", &dest);
    let usr = dest.join("usr");
    let subs = subcommands();
    for (file, shell) in [
        ("share/bash-completion/completions/ckpt", "bash"),
        ("share/zsh/site-functions/_ckpt", "zsh"),
        ("share/fish/vendor_completions.d/ckpt.fish", "fish"),
    ] {
        let text = std::fs::read_to_string(usr.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for s in &subs {
            assert!(text.contains(s.as_str()), "the {shell} completions do not name {s}");
        }
        assert!(text.contains("leave-running"), "the {shell} completions do not complete freeze's options");
    }
    let man = usr.join("share/man/man1");
    let top = std::fs::read_to_string(man.join("ckpt.1")).expect("ckpt.1");
    for s in &subs {
        assert!(top.contains(s.as_str()), "ckpt.1 does not name {s}");
        let page = man.join(format!("ckpt-{s}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{} is not a man page", page.display());
    }
    assert!(std::fs::read_to_string(man.join("ckpt-freeze.1")).unwrap().contains("Exit codes"), "ckpt-freeze(1) lists the exit codes");
    assert!(usr.join("bin/ckpt").is_file() && usr.join("lib/ckpt/ckpt-restorer").is_file());

    make("uninstall", &dest);
    let left = files_under(&dest);
    assert!(left.is_empty(), "make uninstall left {left:?}");
}

/// The `ckpt` binary is all that `cargo install --path generator` installs: the
/// restorer is inside it. A copy of it alone in an empty directory (no build tree, no
/// lib/ckpt beside it) freezes a counter, and the file it writes resumes it.
#[test]
fn ckpt_binary_alone_freezes_and_resumes() {
    let dir = TestDir::new("ckpt_alone");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ckpt = bin.join("ckpt");
    std::fs::copy(ckpt_bin(), &ckpt).unwrap();
    let mut orig = Launch::fixture("counter", false).args(["400", "10"]).spawn();
    orig.wait_ready();
    let img = dir.image("counter");
    let o = Command::new(&ckpt).arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(&img).output().expect("the copied ckpt");
    assert!(o.status.success(), "the copied ckpt failed to freeze\n{}", describe_output(&o));
    let before = orig.expect_killed_by_ckpt();
    let res = resume(&img);
    res.assert_success();
    assert_counts(&[before, res.stdout.clone()].concat(), 400, "output of a counter frozen by a lone copy of ckpt");
}
