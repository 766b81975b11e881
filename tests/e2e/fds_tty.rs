//! Terminals across a freeze: a process whose controlling terminal was a pty,
//! resumed where there is none (`setsid ./app.resume < /dev/null`, a service, cron).

use std::fs;
use std::time::{Duration, Instant};

use crate::util::*;

/// fd_ctty runs under script(1) (a pty is its controlling terminal) with /dev/tty
/// open at fd 3; resumed by setsid with no terminal, fd 3 becomes /dev/null with a
/// warning naming it, and the process runs on instead of the resume failing.
fn ctty_without_terminal(static_: bool) {
    let dir = TestDir::new("fd_ctty");
    let gate = dir.gate();
    let cmd = format!("{} {} {}", fixture("fd_ctty", static_).display(), gate.display(), dir.path().display());
    let _script = Launch::new("script").args(["-qfec", &cmd, "/dev/null"]).label("script").spawn();
    let pidfile = dir.join("pid");
    let t0 = Instant::now();
    let pid: i32 = loop {
        if let Some(p) = fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse().ok()) {
            break p;
        }
        assert!(t0.elapsed() < READY_TIMEOUT, "fd_ctty never wrote {}", pidfile.display());
        std::thread::sleep(Duration::from_millis(20));
    };
    let img = dir.image("fd_ctty");
    freeze_ok(pid, &img, &[]);
    let mut res = Launch::new("setsid").arg(&img).label("resumed").spawn();
    open_gate(&gate);
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success().line_starting("ok");
    assert!(
        fin.stderr.contains("fd 3: /dev/tty cannot be opened: the resumer has no controlling terminal; /dev/null opened in its place"),
        "no warning naming fd 3\n{fin}"
    );
}

both_variants!(ctty_without_terminal);
