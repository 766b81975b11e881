//! A private tmux server for tests of what a person sees on a terminal: windows
//! started with a command, keys sent, the screen read back.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::lossy;

/// A private tmux server (its own socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A server of its own for this test (`name`) and process.
    pub fn new(name: &str) -> Tmux {
        Tmux { socket: format!("ckpt-test-{name}-{}", std::process::id()) }
    }

    /// Remove the server's socket file, which a killed server (not one that exited)
    /// leaves behind in /tmp/tmux-UID.
    pub fn remove_socket(&self) {
        // SAFETY: getuid cannot fail.
        let _ = std::fs::remove_file(format!("/tmp/tmux-{}/{}", unsafe { libc::getuid() }, self.socket));
    }

    /// The server's socket name (`tmux -L`).
    pub fn socket(&self) -> &str {
        &self.socket
    }

    pub fn cmd(&self, args: &[&str]) -> String {
        let o = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux");
        assert!(o.status.success(), "tmux {args:?}: {}", lossy(&o.stderr));
        lossy(&o.stdout)
    }

    pub fn screen(&self, target: &str) -> String {
        self.cmd(&["capture-pane", "-p", "-t", target])
    }

    /// Wait until the pane's first line is `want`.
    pub fn wait_top(&self, target: &str, want: &str) -> String {
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

/// What a pane showed while a command ran in it: every screen read, the last one
/// (where `done` appeared).
pub struct Watched {
    pub screens: Vec<String>,
    pub last: String,
}

impl Watched {
    /// Whether any screen read had a line containing `what`.
    pub fn ever_showed(&self, what: &str) -> bool {
        self.screens.iter().any(|s| s.contains(what))
    }
}

impl Tmux {
    /// Read the pane as often as possible until a line contains `done`.
    pub fn watch_until(&self, target: &str, done: &str, timeout: Duration) -> Watched {
        let t0 = Instant::now();
        let mut screens = Vec::new();
        loop {
            let s = self.screen(target);
            if s.lines().any(|l| l.contains(done)) {
                return Watched { screens, last: s };
            }
            screens.push(s);
            assert!(t0.elapsed() < timeout, "pane {target} never showed {done:?}:\n{}", screens.last().unwrap());
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}
