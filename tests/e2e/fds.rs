//! File descriptors across a freeze: each tests/fixtures/fd_*.c sets up its fds,
//! is frozen and resumed, then checks every fd itself (flags, offsets, content,
//! readiness) and prints "ok". Fds whose other end is in another process resume
//! disconnected (refused with --strict-fds). Plus refusals (a FIFO, a pidfd) and
//! real programs frozen mid-work with a regular file on stdin (gzip,
//! sha256sum, on a 200 MiB pseudo-random input).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

mod removed;

/// A gated fixture taking `GATE DIR` (DIR = the test directory): freeze, resume,
/// open the gate, expect "ok".
fn gated_ok(test: &str, fixture: &str, static_: bool) -> Finished {
    let dir = TestDir::new(test);
    let gate = dir.gate();
    let work = dir.join("work");
    fs::create_dir(&work).unwrap();
    let rt = gated_roundtrip(
        &dir,
        fixture,
        static_,
        &[gate.to_str().unwrap(), work.to_str().unwrap()],
    );
    rt.resumed.line_starting("ok");
    rt.resumed
}

/// fds 3, 7, 8 (dup of 3), 9, 10 (a directory), 11-13 (/dev/null, zero,
/// urandom), 14 (O_SYNC), 15 (O_DIRECT), 100, 200 with gaps: flags, offsets,
/// cloexec, shared offsets, openat through the directory fd.
fn files(static_: bool) {
    gated_ok("fd_files", "fd_files", static_);
}

/// A deleted file, a deleted file whose directory is gone too, a sealed memfd and
/// one without sealing: content, offsets, seals, names.
fn deleted_and_memfd(static_: bool) {
    gated_ok("fd_deleted", "fd_deleted", static_);
}

/// A pipe with 100000 buffered bytes in a 256 KiB buffer, a dup of its write end,
/// an empty O_NONBLOCK pipe, and fd 40 sharing stdout (a pipe: inherited, so fd 40
/// becomes a duplicate of the resumer's stdout).
fn pipes(static_: bool) {
    let res = gated_ok("fd_pipe", "fd_pipe", static_);
    res.line_starting("via40");
}

/// eventfd (semaphore and counter), signalfd, a periodic timerfd that fires
/// after the resume, a disarmed timerfd.
fn events(static_: bool) {
    gated_ok("fd_events", "fd_events", static_);
}

/// An epoll instance with three registrations (one edge-triggered) reports the
/// right readiness and data after the resume.
fn epoll(static_: bool) {
    gated_ok("fd_epoll", "fd_epoll", static_);
}

/// inotify watches keep their wds (including a gap) and report events after the
/// resume. Mapping watches back to paths needs CAP_DAC_READ_SEARCH: root only.
fn inotify(static_: bool) {
    if !is_root() {
        eprintln!("fds::inotify: skipped (needs root for open_by_handle_at)");
        return;
    }
    gated_ok("fd_inotify", "fd_inotify", static_);
}

/// Without CAP_DAC_READ_SEARCH the watches cannot be mapped back to paths: the
/// freeze is refused, naming the fd, the reason and what to do; the target runs on.
#[test]
fn inotify_refused_without_privilege() {
    if let Some(err) = freeze_refused_as_nobody("fd_inotify", &["work"], &["gate", "work"]) {
        assert!(
            err.contains("fd 3") && err.contains("inotify") && err.contains("CAP_DAC_READ_SEARCH"),
            "{err}"
        );
    }
}

/// Talks to fd_socket: TCP ping/pong, unix ping/pong, UDP dgram/ack.
fn socket_client(tcp: u16, udp: u16, sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let t = Duration::from_secs(20);
    let mut c = loop {
        match TcpStream::connect(("127.0.0.1", tcp)) {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect to port {tcp}: {e}; retrying");
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot connect to the resumed listener on port {tcp}: {e}"),
        }
    };
    c.set_read_timeout(Some(t)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    c.read_exact(&mut b).expect("tcp reply");
    assert_eq!(&b, b"pong", "tcp reply");

    let mut u =
        UnixStream::connect(sock).unwrap_or_else(|e| panic!("connect {}: {e}", sock.display()));
    u.set_read_timeout(Some(t)).unwrap();
    u.write_all(b"ping").unwrap();
    u.read_exact(&mut b).expect("unix reply");
    assert_eq!(&b, b"pong", "unix reply");

    let d = UdpSocket::bind("127.0.0.1:0").unwrap();
    d.set_read_timeout(Some(t)).unwrap();
    d.send_to(b"dgram", ("127.0.0.1", udp)).unwrap();
    let mut r = [0u8; 8];
    let n = d.recv(&mut r).expect("udp reply");
    assert_eq!(&r[..n], b"ack", "udp reply");
}

fn port(p: &Proc, what: &str) -> u16 {
    let l = p.wait_line_starting(what, READY_TIMEOUT);
    l[what.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("bad line {l:?}"))
}

/// A TCP listener (port chosen by the kernel), a unix listener and a bound UDP
/// socket: after the resume they accept and answer on the same addresses; two
/// unix socket pairs (stream, datagram) still connect their ends.
fn listeners(static_: bool) {
    let dir = TestDir::new("fd_socket");
    let gate = dir.gate();
    let mut orig = spawn_fixture(
        "fd_socket",
        static_,
        &[gate.to_str().unwrap(), dir.path().to_str().unwrap()],
    );
    let (tcp, udp) = (port(&orig, "tcp "), port(&orig, "udp "));
    orig.wait_ready();
    let img = dir.image("fd_socket");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    socket_client(tcp, udp, &dir.join("sock"));
    res.wait_output(RESUME_TIMEOUT)
        .assert_success()
        .line_starting("ok");
}

/// The ends the test holds of the fds it passes to fd_disconnected.
struct Peers {
    _keep: Vec<Box<dyn std::any::Any>>,
}

/// fd_disconnected with its peers in this test: fds 7 (a pipe's read end with
/// "hello" buffered), 8 (a write end), 9 (a unix stream socket with "queued"
/// waiting), 12 (a unix datagram socket), 251 (a write end, as a shell leaks
/// one), and its own TCP (fd 10) and UDP (fd 11) sockets connected to ours.
fn spawn_disconnected(gate: &Path, static_: bool) -> (Proc, Peers) {
    let (ra, mut wa) = std::io::pipe().unwrap();
    let (rb, wb) = std::io::pipe().unwrap();
    let (s1, mut s2) = UnixStream::pair().unwrap();
    let (rc, wc) = std::io::pipe().unwrap();
    let (d1, d2) = std::os::unix::net::UnixDatagram::pair().unwrap();
    wa.write_all(b"hello").unwrap();
    s2.write_all(b"queued").unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = l.local_addr().unwrap().port().to_string();
    let udp = u.local_addr().unwrap().port().to_string();
    let p = Launch::fixture("fd_disconnected", static_)
        .args([gate.to_str().unwrap(), &tcp, &udp])
        .pass_fd(ra, 7)
        .pass_fd(wb, 8)
        .pass_fd(s1, 9)
        .pass_fd(d1, 12)
        .pass_fd(wc, 251)
        .spawn();
    p.wait_ready();
    let (accepted, _) = l.accept().unwrap();
    let keep: Vec<Box<dyn std::any::Any>> =
        vec![Box::new(wa), Box::new(rb), Box::new(s2), Box::new(rc), Box::new(l), Box::new(u), Box::new(accepted), Box::new(d2)];
    (p, Peers { _keep: keep })
}

/// Fds whose other end is in another process: unfrozen, once the test closes its
/// ends, the fixture sees its peers gone; frozen and resumed, it sees the same
/// although the test still holds every end. Each fd gets one warning line at the
/// freeze, and `ckpt info` lists it as disconnected.
fn disconnected(static_: bool) {
    let dir = TestDir::new("fd_disconnected");
    let gate = dir.gate();
    let (mut p, peers) = spawn_disconnected(&gate, static_);
    drop(peers);
    open_gate(&gate);
    p.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    fs::remove_file(&gate).unwrap();

    let (mut orig, _peers) = spawn_disconnected(&gate, static_);
    let img = dir.image("fd_disconnected");
    let o = freeze_ok(orig.pid(), &img, &[]);
    let err = lossy(&o.stderr);
    // fd 11, a UDP socket, is connected again to its peer (UDP has no connection
    // to lose): no warning, not disconnected.
    assert!(!err.contains("fd 11 ("), "fd 11 (UDP) warned about:\n{err}");
    for fd in [7, 8, 9, 10, 12, 251] {
        let warned = err
            .lines()
            .filter(|l| l.contains(&format!("fd {fd} (")) && l.contains("resumes disconnected"))
            .count();
        assert_eq!(warned, 1, "not one warning line for fd {fd}:\n{err}");
    }
    orig.expect_killed_by_ckpt();
    let mut info = std::process::Command::new(ckpt_bin());
    info.arg("info").arg(&img);
    let info = run_with_timeout(info, FREEZE_TIMEOUT).unwrap();
    let text = lossy(&info.stdout);
    for fd in [7, 8, 9, 10, 12, 251] {
        assert!(
            text.lines().any(|l| l.split_whitespace().take(2).eq([fd.to_string().as_str(), "disconnected"])),
            "ckpt info does not list fd {fd} as disconnected:\n{text}"
        );
    }
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

both_variants!(
    files,
    deleted_and_memfd,
    pipes,
    events,
    epoll,
    inotify,
    listeners,
    disconnected
);

/// --leave-running reads the buffered pipe bytes without consuming them: the
/// original still finds all of them, and so does the resumed copy.
#[test]
fn pipe_bytes_not_consumed() {
    let dir = TestDir::new("fd_pipe_leave");
    let gate = dir.gate();
    let mut orig = spawn_fixture("fd_pipe", false, &[gate.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("fd_pipe");
    freeze_ok(orig.pid(), &img, &["--leave-running"]);
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT)
        .assert_success()
        .line_starting("ok");
    resume(&img).assert_success().line_starting("ok");
}

/// Every fd fixture passes its own checks without any freeze.
#[test]
fn fd_fixtures_pass_unfrozen() {
    for static_ in [false, true] {
        for name in [
            "fd_files",
            "fd_deleted",
            "fd_pipe",
            "fd_events",
            "fd_epoll",
            "fd_inotify",
        ] {
            let dir = TestDir::new("fd_unfrozen");
            let gate = dir.gate();
            open_gate(&gate);
            let mut p = spawn_fixture(
                name,
                static_,
                &[gate.to_str().unwrap(), dir.path().to_str().unwrap()],
            );
            p.wait_output(RESUME_TIMEOUT)
                .assert_success()
                .line_starting("ok");
        }
        let dir = TestDir::new("fd_unfrozen_socket");
        let gate = dir.gate();
        let p = spawn_fixture(
            "fd_socket",
            static_,
            &[gate.to_str().unwrap(), dir.path().to_str().unwrap()],
        );
        let (tcp, udp) = (port(&p, "tcp "), port(&p, "udp "));
        let mut p = p;
        p.wait_ready();
        open_gate(&gate);
        socket_client(tcp, udp, &dir.join("sock"));
        p.wait_output(RESUME_TIMEOUT)
            .assert_success()
            .line_starting("ok");
    }
}

/// A TCP socket connected to a listener the test owns: with --strict-fds the
/// freeze is refused naming fd 3 and the peer, and the target runs on with its
/// fd. By default (and with the old --ignore-fds) it freezes with a warning, and
/// the resumed process still has fd 3 (disconnected), never a closed number.
#[test]
fn connected_tcp_strict() {
    let dir = TestDir::new("fd_connected");
    let gate = dir.gate();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let mut p = spawn_fixture("fd_refuse", false, &["tcp", gate.to_str().unwrap(), &port]);
    p.wait_ready();
    let o = freeze(p.pid(), &dir.image("x"), &["--strict-fds"]);
    let err = assert_freeze_error(&o);
    let peer = format!("127.0.0.1:{port}");
    assert!(
        err.contains("fd 3 ") && err.contains(&peer) && err.contains("connected"),
        "error does not name fd 3 and the peer {peer}: {err}"
    );
    assert!(
        dir_entries(&dir.join("images")).is_empty(),
        "a failed freeze left a file"
    );
    p.assert_running();

    let img = dir.image("ignored");
    let o = freeze_ok(p.pid(), &img, &["--ignore-fds"]);
    assert!(
        lossy(&o.stderr).contains("fd 3") && lossy(&o.stderr).contains("disconnected"),
        "no warning about fd 3: {}",
        lossy(&o.stderr)
    );
    p.expect_killed_by_ckpt();
    open_gate(&gate);
    let res = resume(&img);
    res.assert_success();
    assert_eq!(res.line_starting("fd3 "), "fd3 open");
}

/// fd_refuse MODE holds at fd 3 what cannot be restored: the freeze (with
/// `flags`) is refused with one line naming fd 3, what it points to (its
/// /proc/PID/fd link) and each of `expect`; no file is left, and the target keeps
/// its fd and ends normally.
fn refused_fd(mode: &str, arg: Option<&str>, flags: &[&str], expect: &[&str]) {
    let dir = TestDir::new(&format!("fd_refused_{mode}"));
    let gate = dir.gate();
    let mut args = vec![mode, gate.to_str().unwrap()];
    args.extend(arg);
    let mut p = spawn_fixture("fd_refuse", false, &args);
    p.wait_ready();
    let link = fs::read_link(format!("/proc/{}/fd/3", p.pid())).unwrap();
    let link = format!("fd 3 ({})", link.display());
    let o = freeze(p.pid(), &dir.image("x"), flags);
    let err = assert_freeze_error(&o);
    for want in [link.as_str()].iter().chain(expect) {
        assert!(err.contains(want), "the error does not say {want:?}: {err}");
    }
    assert!(
        dir_entries(&dir.join("images")).is_empty(),
        "a failed freeze left a file"
    );
    p.assert_running();
    open_gate(&gate);
    let fin = p.wait_output(RESUME_TIMEOUT);
    fin.assert_success();
    assert_eq!(fin.line_starting("fd3 "), "fd3 open");
}

/// With --strict-fds, the read end of a pipe whose write end is closed: named by
/// its pipe:[INODE].
#[test]
fn half_pipe_strict() {
    refused_fd("halfpipe", None, &["--strict-fds"], &["other end is not in the process", "--strict-fds"]);
}

/// With --strict-fds, a unix socket connected to another process's listener (a
/// daemon): named with the peer's path.
#[test]
fn unix_socket_to_a_daemon_strict() {
    let dir = TestDir::new("fd_unix_daemon");
    let path = dir.join("daemon.sock");
    let _daemon = std::os::unix::net::UnixListener::bind(&path).unwrap();
    refused_fd("unix", path.to_str(), &["--strict-fds"], &["connected", path.to_str().unwrap()]);
}

/// A shell leaks pipes into the program it starts: bash inherits a pipe at fd 251
/// from the test (as every process a CI runner starts may) and opens fd 7 on a
/// process substitution (`exec 7> >(cat)`) before it execs the fixture. Both
/// resume disconnected at their numbers, of their type and access mode.
#[test]
fn shell_leaked_pipes() {
    let dir = TestDir::new("fd_shell_leak");
    let gate = dir.gate();
    let (_r, w) = std::io::pipe().unwrap();
    let script = r#"exec 7> >(exec cat > "$2"); exec "$0" "$1""#;
    let mut p = Launch::new("bash")
        .args(["-c", script])
        .arg(fixture("fds", false))
        .arg(&gate)
        .arg(dir.join("cat.out"))
        .pass_fd(w, 251)
        .label("fds")
        .spawn();
    p.wait_ready();
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", p.pid())).unwrap();
    for c in children.split_whitespace() {
        p.track_pid(c.parse().unwrap());
    }
    let img = dir.image("fds");
    let o = freeze_ok(p.pid(), &img, &[]);
    let err = lossy(&o.stderr);
    for fd in [3, 7, 251] {
        assert!(
            err.lines().any(|l| l.contains(&format!("fd {fd} (pipe:[")) && l.contains("resumes disconnected")),
            "no warning for fd {fd}:\n{err}"
        );
    }
    p.expect_killed_by_ckpt();
    open_gate(&gate);
    let res = resume(&img);
    res.assert_success();
    assert_eq!(res.line_starting("fds"), "fds 3:fifo:r 7:fifo:w 251:fifo:w");
}

/// --strict-fds and --ignore-fds (the old name of the default) exclude each other.
#[test]
fn strict_and_ignore_fds_conflict() {
    let dir = TestDir::new("fd_strict_ignore");
    // No such process: were the flags accepted, the freeze would fail otherwise.
    let o = freeze(i32::MAX, &dir.image("x"), &["--strict-fds", "--ignore-fds"]);
    assert!(!o.status.success() && lossy(&o.stderr).contains("cannot be used with"), "{}", describe_output(&o));
    assert!(dir_entries(&dir.join("images")).is_empty());
}

/// A FIFO: its other side cannot be restored; named by its path.
#[test]
fn fifo_refused() {
    let dir = TestDir::new("fd_fifo");
    let path = dir.join("fifo");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: c is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
    refused_fd("fifo", path.to_str(), &[], &["FIFO", path.to_str().unwrap()]);
}

/// A pidfd (a kernel object with no restore path): named as anon_inode:[pidfd].
/// A netlink socket is refused by name (its kernel-side state cannot be read).
#[test]
fn netlink_refused() {
    refused_fd("netlink", None, &[], &["netlink socket (AF_NETLINK)", "only unix, IPv4 and IPv6"]);
}

/// A raw IP socket is refused by name (root only: it needs CAP_NET_RAW).
#[test]
fn raw_socket_refused() {
    if !is_root() {
        eprintln!("raw_socket_refused: skipped (a raw socket needs CAP_NET_RAW)");
        return;
    }
    refused_fd("raw", None, &[], &["raw IP socket (SOCK_RAW, protocol 1)"]);
}

/// A packet socket (AF_PACKET) is refused by name (root only: CAP_NET_RAW).
#[test]
fn packet_socket_refused() {
    if !is_root() {
        eprintln!("packet_socket_refused: skipped (a packet socket needs CAP_NET_RAW)");
        return;
    }
    refused_fd("packet", None, &[], &["packet socket (AF_PACKET)", "only unix, IPv4 and IPv6"]);
}

#[test]
fn pidfd_refused() {
    refused_fd("pidfd", None, &[], &["pidfd", "cannot be restored"]);
    refused_fd("pidfd", None, &["--ignore-fds"], &["pidfd", "cannot be restored"]);
}

// ---------------------------------------------------------------------------
// Real programs with a regular file on stdin

const BIG: u64 = 200 << 20;

/// BIG pseudo-random bytes (xorshift64), so the programs work long enough.
fn make_input(path: &Path) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..BIG >> 20 {
        for c in buf.chunks_exact_mut(8) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            c.copy_from_slice(&s.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

/// The offset of `pid`'s fd 0, None once it is gone.
fn stdin_pos(pid: i32) -> Option<u64> {
    let t = fs::read_to_string(format!("/proc/{pid}/fdinfo/0")).ok()?;
    t.lines()
        .find_map(|l| l.strip_prefix("pos:"))
        .and_then(|v| v.trim().parse().ok())
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `sh -c 'exec PROG ARGS < input [> output]'` and freezes it once it has
/// read more than `min_pos` bytes of its input (and written some output, if it
/// has an output file); returns the original, or None if the program was done
/// before the freeze could catch it (the caller retries).
fn freeze_mid_work(
    cmd: &str,
    input: &Path,
    output: Option<&Path>,
    min_pos: u64,
    img: &Path,
) -> Option<Proc> {
    let mut script = format!("exec {cmd} < \"$0\"");
    if output.is_some() {
        script.push_str(" > \"$1\"");
    }
    let mut l = Launch::new("sh")
        .arg("-c")
        .arg(&script)
        .arg(input)
        .label(cmd);
    if let Some(o) = output {
        l = l.arg(o);
    }
    let mut p = l.spawn();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        // `sh` has exec'd the program once fd 0 is the input file.
        let is_input = fs::read_link(format!("/proc/{}/fd/0", p.pid())).is_ok_and(|t| t == input);
        let wrote = output.is_none_or(|o| fs::metadata(o).is_ok_and(|m| m.len() > 0));
        if is_input && wrote && stdin_pos(p.pid()).is_some_and(|pos| pos > min_pos) {
            break;
        }
        if p.try_status().is_some() {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "{cmd} never started reading\n{}",
            p.describe()
        );
        thread::sleep(Duration::from_millis(1));
    }
    let o = freeze_with_timeout(p.pid(), img, &[], BIG_TIMEOUT);
    if !o.status.success() {
        let gone = p.try_status().is_some() || lossy(&o.stderr).contains("exited");
        assert!(
            gone,
            "freezing {cmd} failed while it ran\n{}",
            describe_output(&o)
        );
        let _ = fs::remove_file(img);
        return None;
    }
    assert_image(img);
    Some(p)
}

/// `gzip -c < big > out.gz` frozen mid-work and resumed: out.gz decompresses to
/// the input.
#[test]
fn gzip_mid_work() {
    if !have("gzip") {
        eprintln!("gzip_mid_work: skipped (no gzip)");
        return;
    }
    let dir = TestDir::new("fd_gzip");
    let input = dir.join("big");
    make_input(&input);
    let out = dir.join("out.gz");
    let img = dir.image("gzip");
    let mut orig = freeze_mid_work("gzip -c", &input, Some(&out), BIG / 8, &img)
        .expect("gzip ended before the freeze");
    orig.expect_killed_by_ckpt();
    let partial = fs::metadata(&out).unwrap().len();
    let res = resume_launch(&img).spawn().wait_output(BIG_TIMEOUT);
    res.assert_success();
    eprintln!("gzip_mid_work: frozen with {partial} bytes of output written");
    let mut cmp = Command::new("sh");
    cmp.arg("-c")
        .arg("gzip -dc \"$0\" | cmp - \"$1\"")
        .arg(&out)
        .arg(&input);
    let o = run_with_timeout(cmp, BIG_TIMEOUT).unwrap();
    assert!(
        o.status.success(),
        "out.gz does not decompress to the input\n{}",
        describe_output(&o)
    );
}

/// `sha256sum < big` frozen mid-work and resumed prints the digest of an
/// uninterrupted run (its stdout is a pipe: inherited from the resumer).
#[test]
fn sha256sum_mid_work() {
    if !have("sha256sum") {
        eprintln!("sha256sum_mid_work: skipped (no sha256sum)");
        return;
    }
    let dir = TestDir::new("fd_sha256sum");
    let input = dir.join("big");
    make_input(&input);
    let reference = Command::new("sha256sum")
        .stdin(fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(reference.status.success());
    let want = lossy(&reference.stdout);
    let img = dir.image("sha256sum");
    // sha256sum needs about a second here: retry if it finished first.
    for attempt in 1..=5 {
        let Some(mut orig) = freeze_mid_work("sha256sum", &input, None, 0, &img) else {
            eprintln!("sha256sum_mid_work: attempt {attempt}: finished before the freeze; again");
            continue;
        };
        let before = orig.expect_killed_by_ckpt();
        assert!(
            before.is_empty(),
            "sha256sum printed before the freeze: {before:?}"
        );
        let res = resume_launch(&img).spawn().wait_output(BIG_TIMEOUT);
        res.assert_success();
        assert_eq!(
            res.stdout.join("\n").trim(),
            want.trim(),
            "digest after the resume"
        );
        return;
    }
    panic!("sha256sum always finished before it could be frozen");
}

/// A file reopened by path that shrank below the saved offset, or that is gone,
/// stops the resume with exit code 111 and a message naming the path.
#[test]
fn changed_files_stop_the_resume() {
    let dir = TestDir::new("fd_changed");
    let gate = dir.gate();
    let work = dir.join("work");
    fs::create_dir(&work).unwrap();
    let mut orig = spawn_fixture(
        "fd_files",
        false,
        &[gate.to_str().unwrap(), work.to_str().unwrap()],
    );
    orig.wait_ready();
    let img = dir.image("fd_files");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    open_gate(&gate);

    let c = work.join("c.dat"); // fd 100, offset 3
    let content = fs::read(&c).unwrap();
    fs::write(&c, b"c").unwrap();
    let res = resume(&img);
    assert_eq!(res.status.code(), Some(111), "{res}");
    assert!(
        res.stderr.contains(c.to_str().unwrap())
            && res.stderr.contains("shorter")
            && res.stderr.contains("fd 100"),
        "no message naming fd 100, {} and its size\n{res}",
        c.display()
    );
    fs::write(&c, &content).unwrap();

    let high = work.join("high.txt"); // fd 200; renamed away, so it keeps its inode
    let away = work.join("high.away");
    fs::rename(&high, &away).unwrap();
    let res = resume(&img);
    assert_eq!(res.status.code(), Some(111), "{res}");
    assert!(
        res.stderr.contains(high.to_str().unwrap())
            && res.stderr.contains("ENOENT")
            && res.stderr.contains("fd 200"),
        "no message naming fd 200 and the missing {}\n{res}",
        high.display()
    );
    fs::rename(&away, &high).unwrap();
    resume(&img).assert_success().line_starting("ok");
}

/// `--missing-files=ignore` (or CKPT_MISSING_FILES=ignore at resume): a missing or
/// shrunk file becomes /dev/null with a warning naming it, and the resume goes on
/// (the fixture then reports its fd as wrong, which is the point: never silently).
#[test]
fn missing_files_ignored_on_request() {
    let dir = TestDir::new("fd_missing_ignore");
    let gate = dir.gate();
    let work = dir.join("work");
    fs::create_dir(&work).unwrap();
    let mut orig = spawn_fixture("fd_files", false, &[gate.to_str().unwrap(), work.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("fd_files");
    freeze_ok(orig.pid(), &img, &["--missing-files=ignore"]);
    orig.expect_killed_by_ckpt();
    open_gate(&gate);
    let high = work.join("high.txt"); // fd 200
    fs::rename(&high, work.join("high.away")).unwrap();
    let res = resume(&img);
    assert_ne!(res.status.code(), Some(111), "the resume stopped at the fd step\n{res}");
    assert!(
        res.stderr.contains("warning: fd 200") && res.stderr.contains(high.to_str().unwrap()) && res.stderr.contains("/dev/null"),
        "no warning naming fd 200, {} and /dev/null\n{res}",
        high.display()
    );
}
