//! A full-screen program keeps working on another terminal: `less` running in one
//! tmux window is frozen, resumed in another window, redraws (SIGWINCH), and
//! answers keys with the saved terminal settings (raw mode).

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let o = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux");
        assert!(o.status.success(), "tmux {args:?}: {}", lossy(&o.stderr));
        lossy(&o.stdout)
    }

    fn screen(&self, target: &str) -> String {
        self.cmd(&["capture-pane", "-p", "-t", target])
    }

    /// Wait until the pane's first line is `want`.
    fn wait_top(&self, target: &str, want: &str) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen(target);
            if s.lines().next().map(str::trim) == Some(want) {
                return s;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "pane {target} never showed {want:?} first:\n{s}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

#[test]
fn less_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() || !Path::new("/usr/bin/less").exists() {
        panic!("tmux and less are needed (scripts/install-deps.sh installs them)");
    }
    let dir = TestDir::new("terminal");
    let text: String = (1..=5000).map(|i| format!("{i}\n")).collect();
    let file = dir.join("lines.txt");
    std::fs::write(&file, text).unwrap();
    let img = dir.image("less");
    let t = Tmux { socket: format!("ckpt-test-{}", std::process::id()) };
    // A session whose first window just waits, so it outlives the frozen one.
    t.cmd(&["new-session", "-d", "-s", "s", "-x", "80", "-y", "24", "sleep 600"]);
    t.cmd(&["new-window", "-d", "-t", "s:1", &format!("exec less {}", file.display())]);
    t.wait_top("s:1", "1");
    t.cmd(&["send-keys", "-t", "s:1", "100g"]);
    t.wait_top("s:1", "100");
    let pid: i32 = t.cmd(&["list-panes", "-t", "s:1", "-F", "#{pane_pid}"]).trim().parse().unwrap();
    // The original stays (stopped) on its terminal, so the resumed one gets another
    // terminal: its keyboard (/dev/tty) must be that one.
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: plain signal delivery to the process this test froze.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let _orig = KillOnDrop(pid);
    let o = freeze(pid, &img, &["--leave-stopped"]);
    assert!(o.status.success(), "freeze of less failed\n{}", describe_output(&o));
    // Resume in a new window: the program redraws where it was and takes keys.
    t.cmd(&["new-window", "-d", "-t", "s:2", &format!("exec {}", img.display())]);
    t.wait_top("s:2", "100");
    let new_pane = t.cmd(&["list-panes", "-t", "s:2", "-F", "#{pane_tty}"]).trim().to_string();
    let old_pane = t.cmd(&["list-panes", "-t", "s:1", "-F", "#{pane_tty}"]).trim().to_string();
    assert_ne!(new_pane, old_pane, "the resumed less must run on another terminal");
    t.cmd(&["send-keys", "-t", "s:2", "j"]);
    t.wait_top("s:2", "101");
    t.cmd(&["send-keys", "-t", "s:2", "q"]);
    let t0 = Instant::now();
    while t.cmd(&["list-windows", "-t", "s", "-F", "#{window_index}"]).lines().any(|l| l == "2") {
        assert!(t0.elapsed() < Duration::from_secs(10), "resumed less did not quit on q");
        thread::sleep(Duration::from_millis(50));
    }
}
