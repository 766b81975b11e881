//! A full-screen program keeps working on another terminal: `less` running in one
//! tmux window is frozen, resumed in another window, redraws (SIGWINCH), and
//! answers keys with the saved terminal settings (raw mode).

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

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
    let t = Tmux::new("terminal");
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
