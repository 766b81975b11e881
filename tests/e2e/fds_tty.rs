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

/// The pty tests of this module one at a time: each counts on which indices are
/// free.
pub(crate) static PTYS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The fd_pty fixture started and frozen (the original is killed): its gate, the
/// image, and the /dev/pts index its pair had.
fn freeze_pty_fixture(dir: &TestDir, static_: bool) -> (std::path::PathBuf, std::path::PathBuf, u32) {
    let gate = dir.gate();
    let mut orig = spawn_fixture("fd_pty", static_, &[gate.to_str().unwrap(), "any"]);
    let l = orig.wait_line_starting("pts ", READY_TIMEOUT);
    let n: u32 = l[4..].trim().parse().unwrap();
    orig.wait_ready();
    let img = dir.image("fd_pty");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    (gate, img, n)
}

/// A pty pair held by the process (master in packet mode, slave with its own
/// settings and window size) comes back as /dev/pts/N again, and carries bytes.
/// Any other process may take N between the freeze and the resume (devpts hands
/// out the lowest free index): then another index, and the warning saying so.
fn pty_pair(static_: bool) {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("fd_pty");
    let (gate, img, n) = freeze_pty_fixture(&dir, static_);
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success().line_starting("ok");
    let now: u32 = fin.line_starting("now ")[4..].trim().parse().unwrap();
    assert!(
        now == n || fin.stderr.contains(&format!("/dev/pts/{n} is taken")),
        "the pair is /dev/pts/{now}, was {n}, and no warning says so\n{fin}"
    );
}

fn pty_pair_as_nobody(static_: bool) {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    crate::fds_sockets::roundtrip_as_nobody_with("fd_pty", static_, &["gate", "any"]);
}

/// Output the pty's slave wrote and the master had not read: the freeze reads it
/// and leaves it in place (the original, left running, still reads all of it),
/// and the resumed process's master reads the same bytes first, unchanged by a
/// second pass through output processing.
fn pty_unread_output(static_: bool) {
    left_running_and_resumed_say_ok("fd_ptyout", &[], static_);
}

fn pty_unread_output_as_nobody(static_: bool) {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    crate::fds_sockets::roundtrip_as_nobody_with("fd_ptyout", static_, &["gate"]);
}

/// Bytes typed into a pty's master that the slave side has not read (fd_ptyin,
/// with `mode`: canon, raw, "canon pkt"): the freeze takes them and types them back
/// (the original, left running, reads every line, end-of-file and byte as if
/// nothing had happened), and the resumed process reads the same, with the same
/// echo waiting at its master and nothing more; in canonical mode the line being
/// typed at the freeze is completed after the resume.
fn pty_typed_input(mode: &[&str], static_: bool) {
    left_running_and_resumed_say_ok("fd_ptyin", mode, static_);
}

/// Freezes `fixture` (gate first, then `args`) with --leave-running, expecting no
/// "not restored" warning; then both the original and the resumed copy say "ok".
fn left_running_and_resumed_say_ok(fixture: &str, args: &[&str], static_: bool) {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new(fixture);
    let gate = dir.gate();
    let mut all = vec![gate.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut orig = spawn_fixture(fixture, static_, &all);
    orig.wait_ready();
    let img = dir.image(fixture);
    let o = freeze_ok(orig.pid(), &img, &["--leave-running"]);
    let err = lossy(&o.stderr);
    assert!(!err.contains("not restored"), "the freeze lost something:\n{err}");
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    resume(&img).assert_success().line_starting("ok");
}

fn pty_typed_line_canonical(static_: bool) {
    pty_typed_input(&["canon"], static_);
}

/// An end-of-file typed last (^D after a line, as script(1) types when its own
/// input ends), which gives no echo to wait for.
fn pty_typed_eof_last(static_: bool) {
    pty_typed_input(&["eof"], static_);
}

fn pty_typed_bytes_raw(static_: bool) {
    pty_typed_input(&["raw"], static_);
}

/// As [`pty_typed_line_canonical`], the master in packet mode: the echo waiting
/// there (output the master had not read) comes back too, read with its status
/// bytes.
fn pty_typed_input_packet_mode(static_: bool) {
    pty_typed_input(&["canon", "pkt"], static_);
}

fn pty_typed_input_as_nobody(static_: bool) {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    crate::fds_sockets::roundtrip_as_nobody_with("fd_ptyin", static_, &["gate", "canon"]);
}

both_variants!(
    ctty_without_terminal,
    pty_pair,
    pty_pair_as_nobody,
    pty_unread_output,
    pty_unread_output_as_nobody,
    pty_typed_line_canonical,
    pty_typed_bytes_raw,
    pty_typed_eof_last,
    pty_typed_input_packet_mode,
    pty_typed_input_as_nobody
);

/// The pty index taken by someone else at resume: another index, with a warning.
#[test]
fn pty_index_taken() {
    use std::os::fd::AsRawFd;
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("fd_pty_taken");
    let (gate, img, n) = freeze_pty_fixture(&dir, false);
    // Take /dev/pts/N: open masters until one gets that index (devpts hands out the
    // lowest free one).
    let mut held = Vec::new();
    let taken = loop {
        let m = fs::OpenOptions::new().read(true).write(true).open("/dev/ptmx").unwrap();
        let mut got: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int.
        assert_eq!(unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCGPTN, &mut got) }, 0);
        if got == n {
            break m;
        }
        assert!(held.len() < 300, "never got /dev/pts/{n}");
        held.push(m);
    };
    drop(held);
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success().line_starting("ok");
    assert!(fin.stderr.contains(&format!("/dev/pts/{n} is taken")), "no warning naming /dev/pts/{n}\n{fin}");
    drop(taken);
}

/// A real program's pty, as expect uses one: python's pty.openpty() in a program
/// that counts through the pair (writes lines into the slave and reads them at the
/// master, types lines into the master that the slave reads in canonical mode, echo
/// off), frozen with bytes waiting in both directions. The pair comes back with the
/// same settings and the counting goes on through it; the output waiting at the
/// master and the line typed and not yet read by the slave come back with it.
///
/// script(1) itself, the most common holder of a pty master, is not the program
/// frozen here: it runs the command in a child on the slave, and a freeze takes one
/// process. [`script_with_its_child`] shows what freezing script does today.
#[test]
fn python_openpty_counter() {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("pty_counter");
    let gate = dir.gate();
    let script = fixtures_src().join("pty_counter.py");
    let mut orig = Launch::new(python3()).arg(&script).arg(&gate).label("pty_counter").spawn();
    orig.wait_ready();
    let img = dir.image("pty_counter");
    let fz = freeze_ok(orig.pid(), &img, &[]);
    let before = orig.expect_killed_by_ckpt();
    let counts = |lines: &[String]| lines.iter().filter(|l| l.starts_with("count ")).cloned().collect::<Vec<_>>();
    let want = |r: std::ops::Range<u32>| r.map(|i| format!("count {i}")).collect::<Vec<_>>();
    assert_eq!(counts(&before), want(0..5), "before the freeze");
    let err = lossy(&fz.stderr);
    assert!(!err.contains("not restored"), "the freeze lost a queue of the pty\n{}", describe_output(&fz));
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success().line_starting("ok");
    assert_eq!(fin.line_starting("pending "), "pending 10 8", "{fin}");
    assert_eq!(counts(&fin.stdout), want(5..10), "{fin}");
}

/// script(1) running a counting shell loop on its pty's slave, the script process
/// (the one holding the master) frozen. A freeze takes one process: the shell is
/// script's child and cannot come along until process trees are frozen, so the
/// freeze warns, naming it. The original script is killed after the freeze, its
/// master closes and the kernel hangs up the slave: the shell goes too, nothing is
/// left counting unseen. The resumed script has a pty again but no child on it: its
/// poll runs again (as after a stop and continue) and it prints no more counts; it
/// waits for a child it does not have, as the warning foretold, until it is killed.
#[test]
fn script_with_its_child() {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("pty_script");
    let count = "i=0; while [ $i -lt 300 ]; do echo $i; i=$((i+1)); sleep 0.2; done";
    let mut orig = Launch::new("script").args(["-qfec", count, "/dev/null"]).label("script").spawn();
    orig.wait_line_starting("2", READY_TIMEOUT);
    let kids = fs::read_to_string(format!("/proc/{0}/task/{0}/children", orig.pid())).unwrap();
    let shell: i32 = kids.trim().parse().unwrap_or_else(|_| panic!("script's children: {kids:?}"));
    orig.track_pid(shell);
    wait_in_syscall(&orig, &[libc::SYS_poll, libc::SYS_ppoll], READY_TIMEOUT);
    let img = dir.image("script");
    let fz = freeze_ok(orig.pid(), &img, &[]);
    let err = lossy(&fz.stderr);
    assert!(
        err.contains(&format!("pid {} has child processes ({shell}); they are not frozen", orig.pid())),
        "no warning naming script's child {shell}\n{}",
        describe_output(&fz)
    );
    orig.expect_killed_by_ckpt();
    wait_ended(&[shell], READY_TIMEOUT, "script's shell, after script was killed");
    let mut res = resume_launch(&img).spawn();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(res.try_status().is_none(), "the resumed script ended instead of waiting for its child\n{}", res.describe());
    let out = res.out().snapshot();
    assert!(!out.iter().any(|l| l.trim().parse::<u32>().is_ok()), "the resumed script printed counts without its child: {out:?}");
}

/// script(1) frozen with `--tree`, its counting shell with it: the shell gets its
/// terminal again from script's new master and counts on where it was, script
/// passes every line to its own output, and both end when the count does.
#[test]
fn script_tree_counts_on() {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("pty_script_tree");
    let count = "i=0; while [ $i -lt 40 ]; do echo n$i; i=$((i+1)); sleep 0.1; done";
    let mut orig = Launch::new("script").args(["-qfec", count, "/dev/null"]).label("script").spawn();
    orig.wait_line_starting("n3", READY_TIMEOUT);
    let kids = fs::read_to_string(format!("/proc/{0}/task/{0}/children", orig.pid())).unwrap();
    let shell: i32 = kids.trim().parse().unwrap_or_else(|_| panic!("script's children: {kids:?}"));
    orig.track_pid(shell);
    let img = dir.image("script-tree");
    freeze_ok(orig.pid(), &img, &["--tree"]);
    let before: Vec<u32> = orig.out().snapshot().iter().filter_map(|l| l.trim().strip_prefix('n')?.parse().ok()).collect();
    orig.expect_killed_by_ckpt();
    let mut res = resume_launch(&img).label("resumed script").spawn();
    res.track_pid(shell);
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    let after: Vec<u32> = fin.stdout.iter().filter_map(|l| l.trim().strip_prefix('n')?.parse().ok()).collect();
    let last = *before.last().expect("counts before the freeze");
    assert_eq!(after.first().copied(), Some(last + 1), "the count does not go on where it was: before {before:?}, after {after:?}");
    assert_eq!(after.last().copied(), Some(39), "the count did not finish: {after:?}");
}

/// A tmux server (`tmux -L NAME new-session -d CMD`) frozen: it holds the pane's
/// pty master and listens on its socket, the pane's shell is its child. As with
/// script(1), the child cannot come along until process trees are frozen: the
/// freeze warns, naming it, and the shell is hung up when the original server is
/// killed. The resumed server answers on its socket again with its session and
/// window, and the pane is there with its screen as it was and a new pty, on
/// which nothing runs any more: the count stops, and tmux still takes the pane's
/// process for alive (no SIGCHLD ever comes for it), as the warning foretells.
#[test]
fn tmux_server_with_its_shell() {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("pty_tmux");
    let t = Tmux::new("freeze-server");
    t.cmd(&["new-session", "-d", "-s", "w", "i=0; while :; do echo $i; i=$((i+1)); sleep 0.2; done"]);
    t.wait_top("w", "0");
    let server: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pid}"]).trim().parse().unwrap();
    let shell: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pane_pid}"]).trim().parse().unwrap();
    let img = dir.image("tmux");
    let fz = freeze_ok(server, &img, &[]);
    assert!(
        lossy(&fz.stderr).contains(&format!("pid {server} has child processes ({shell}); they are not frozen")),
        "no warning naming the pane's shell {shell}\n{}",
        describe_output(&fz)
    );
    wait_ended(&[server, shell], READY_TIMEOUT, "the tmux server or its shell, after the freeze");
    let mut res = resume_launch(&img).label("resumed tmux server").spawn();
    let t0 = Instant::now();
    let sessions = loop {
        let o = std::process::Command::new("tmux").args(["-L", t.socket(), "list-sessions"]).output().unwrap();
        if o.status.success() {
            break lossy(&o.stdout);
        }
        assert!(t0.elapsed() < READY_TIMEOUT, "the resumed server never answers: {}\n{}", lossy(&o.stderr), res.describe());
        assert!(res.try_status().is_none(), "the resumed server ended\n{}", res.describe());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(sessions.starts_with("w: 1 windows"), "the resumed server has no session w: {sessions}");
    assert_eq!(t.cmd(&["display", "-p", "-t", "w", "#{pane_pid} #{pane_dead}"]).trim(), format!("{shell} 0"));
    let screen = t.screen("w");
    assert!(screen.starts_with("0\n"), "the pane lost its screen:\n{screen}");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(t.screen("w"), screen, "the pane counts on without its shell");
    t.cmd(&["kill-server"]);
    res.wait_exit(RESUME_TIMEOUT);
    // The socket file stays behind (the original server was killed): removed here.
    t.remove_socket();
}

/// A tmux server frozen with `--tree`, the interactive shell in its pane with it:
/// the pane's shell gets its terminal again from the server's new master (its
/// controlling terminal, in the foreground), keeps what it showed, and runs a
/// command sent with `tmux send-keys` after the resume.
#[test]
fn tmux_tree_shell_answers_send_keys() {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("pty_tmux_tree");
    let t = Tmux::new("tree-server");
    t.cmd(&["new-session", "-d", "-s", "w", "env PS1='$ ' bash --norc --noprofile -i"]);
    t.cmd(&["send-keys", "-t", "w", "echo before-$((6*7))", "Enter"]);
    t.watch_until("w", "before-42", READY_TIMEOUT);
    let server: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pid}"]).trim().parse().unwrap();
    let shell: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pane_pid}"]).trim().parse().unwrap();
    let img = dir.image("tmux-tree");
    freeze_ok(server, &img, &["--tree"]);
    wait_ended(&[server, shell], READY_TIMEOUT, "the tmux server or its shell, after the freeze");
    let mut res = resume_launch(&img).label("resumed tmux tree").spawn();
    let t0 = Instant::now();
    while std::process::Command::new("tmux").args(["-L", t.socket(), "list-sessions"]).output().map_or(true, |o| !o.status.success()) {
        assert!(t0.elapsed() < READY_TIMEOUT, "the resumed server never answers\n{}", res.describe());
        assert!(res.try_status().is_none(), "the resumed server ended\n{}", res.describe());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(t.cmd(&["display", "-p", "-t", "w", "#{pane_pid} #{pane_dead}"]).trim(), format!("{shell} 0"));
    assert!(t.screen("w").contains("before-42"), "the pane lost its screen:\n{}", t.screen("w"));
    // The shell reads its terminal again, as the session leader in the foreground.
    t.cmd(&["send-keys", "-t", "w", "echo after-$((6*7)) $(ps -o tpgid=,sid= -p $$)", "Enter"]);
    let seen = t.watch_until("w", &format!("after-42 {shell} {shell}"), RESUME_TIMEOUT);
    assert!(seen.last.contains("before-42"), "{}", seen.last);
    t.cmd(&["kill-server"]);
    res.wait_exit(RESUME_TIMEOUT);
    wait_ended(&[shell], RESUME_TIMEOUT, "the pane's shell, after its server ended");
    t.remove_socket();
}

/// A tmux pane whose program (`sleep`) never reads its terminal, with a line typed
/// into it: frozen with `--tree`, the freeze names the bytes the pane's process
/// had not read, which the new master at resume does not get again.
#[test]
fn tmux_tree_unread_typed_input_is_named() {
    let _one = PTYS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TestDir::new("pty_tmux_typed");
    let t = Tmux::new("typed-server");
    t.cmd(&["new-session", "-d", "-s", "w", "stty -echo; echo up; exec sleep 1000"]);
    t.watch_until("w", "up", READY_TIMEOUT);
    let server: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pid}"]).trim().parse().unwrap();
    let sleeper: i32 = t.cmd(&["display", "-p", "-t", "w", "#{pane_pid}"]).trim().parse().unwrap();
    t.cmd(&["send-keys", "-t", "w", "typed", "Enter"]);
    let img = dir.image("tmux-typed");
    // The line reaches the slave's queue through tmux and the line discipline.
    let t0 = Instant::now();
    let fz = loop {
        let fz = freeze_ok(server, &img, &["--tree", "--leave-running"]);
        if lossy(&fz.stderr).contains("bytes typed") || t0.elapsed() > READY_TIMEOUT {
            break fz;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let want = format!("pid {sleeper} fd 0: 6 bytes typed into its terminal and not yet read are not restored");
    assert!(lossy(&fz.stderr).contains(&want), "no warning {want:?}\n{}", describe_output(&fz));
    t.cmd(&["kill-server"]);
    wait_ended(&[server, sleeper], RESUME_TIMEOUT, "the tmux server or its pane, after kill-server");
    t.remove_socket();
}

/// The pty fixtures pass their own checks without any freeze (a failure here is
/// the fixture's, or a kernel that handles typed input otherwise than they say).
#[test]
fn pty_fixtures_pass_unfrozen() {
    for static_ in [false, true] {
        for mode in [&["canon"][..], &["eof"], &["raw"], &["canon", "pkt"]] {
            let dir = TestDir::new("fd_ptyin_unfrozen");
            let gate = dir.gate();
            open_gate(&gate);
            let mut args = vec![gate.to_str().unwrap()];
            args.extend_from_slice(mode);
            spawn_fixture("fd_ptyin", static_, &args).wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
        }
    }
}

/// A virtual console (/dev/tty1, root only: mode 0600) held with settings of its
/// own is reopened by its path and gets them back: the vt driver resets them when
/// the killed original closes it last.
fn virtual_console(static_: bool) {
    if !is_root() || fs::metadata("/dev/tty1").is_err() {
        eprintln!("virtual_console: skipped (needs root and /dev/tty1)");
        return;
    }
    let dir = TestDir::new("fd_vt");
    let gate = dir.gate();
    let mut orig = spawn_fixture("fd_vt", static_, &[gate.to_str().unwrap(), "/dev/tty1"]);
    orig.wait_ready();
    let img = dir.image("fd_vt");
    let o = freeze_ok(orig.pid(), &img, &[]);
    assert!(lossy(&o.stderr).is_empty() || !lossy(&o.stderr).contains("fd 3"), "{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

both_variants!(virtual_console);
