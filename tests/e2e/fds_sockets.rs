//! Sockets whose both ends are in the process, across a freeze: each
//! tests/fixtures/fd_unix*.c sets them up with data queued both ways, options and
//! shutdown states, is frozen and resumed, then checks every queue (bytes and
//! message boundaries), option and peer credential itself and prints "ok". As root
//! and, where the kernel allows, frozen and resumed by an ordinary user.

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::util::*;

/// Fixture `name` (taking `GATE DIR`) frozen and resumed; it must print "ok". The
/// freeze must not warn about anything the fixture made (only about fds the test
/// harness leaks, whose peer is outside).
fn roundtrip(test: &str, name: &str, static_: bool) {
    roundtrip_with(test, name, static_, &[]);
}

/// [`roundtrip`] with more arguments after `GATE DIR`.
fn roundtrip_with(test: &str, name: &str, static_: bool, more: &[&str]) {
    let dir = TestDir::new(test);
    let gate = dir.gate();
    let work = dir.join("work");
    fs::create_dir(&work).unwrap();
    let mut args = vec![gate.to_str().unwrap(), work.to_str().unwrap()];
    args.extend_from_slice(more);
    let mut orig = spawn_fixture(name, static_, &args);
    orig.wait_ready();
    let img = dir.image(name);
    let o = freeze_ok(orig.pid(), &img, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    for l in err.lines().filter(|l| l.contains("warning")) {
        assert!(l.contains("outside the process"), "unexpected warning at the freeze: {l}\n{err}");
    }
    orig.expect_killed_by_ckpt();
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

/// The same with the fixture, the freeze and the resume all run as user nobody
/// (skipped when the tests do not run as root, which they need to switch users).
fn roundtrip_as_nobody(name: &str, static_: bool) {
    roundtrip_as_nobody_with(name, static_, &["gate", "."]);
}

/// As [`roundtrip_as_nobody`], with the fixture's arguments (`gate` first, a path
/// in the shared directory, which is the fixture's working directory).
pub fn roundtrip_as_nobody_with(name: &str, static_: bool, args: &[&str]) {
    if !is_root() {
        eprintln!("{name} as nobody: skipped (needs root to switch to nobody)");
        return;
    }
    let dir = OpenDir::new(&format!("{name}-sock-nobody-{static_}"));
    let fx = dir.path.join(name);
    fs::copy(fixture(name, static_), &fx).unwrap();
    let ck = dir.path.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let mut orig = dir.launch_as_nobody(&fx).args(args).label(name).spawn();
    orig.wait_ready();
    let img = dir.path.join("x.resume");
    let mut cmd = dir.as_nobody(&ck);
    cmd.arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(&img);
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
    assert!(o.status.success(), "ckpt freeze as nobody failed\n{}", describe_output(&o));
    orig.expect_killed_by_ckpt();
    fs::set_permissions(&img, fs::Permissions::from_mode(0o755)).unwrap();
    let mut res = dir.launch_as_nobody(&img).label("resumed as nobody").spawn();
    open_gate(&dir.path.join("gate"));
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

/// Stream, datagram and seqpacket socket pairs: queued data both ways (an empty
/// datagram too), buffer sizes, SO_LINGER, timeouts, SO_PASSCRED with
/// SCM_CREDENTIALS naming the resumed pid, SO_PEERCRED, SHUT_WR and SHUT_RD.
fn unix_pairs(static_: bool) {
    roundtrip("fd_unixpair", "fd_unixpair", static_);
}

fn unix_pairs_as_nobody(static_: bool) {
    roundtrip_as_nobody("fd_unixpair", static_);
}

/// Connections the process made to its own listeners (stream, seqpacket on an
/// abstract name, a listener whose path was deleted), two connections waiting to
/// be accepted, a datagram socket connected to a bound one: names, queues,
/// accept order, peer credentials.
fn unix_connections(static_: bool) {
    roundtrip("fd_unixconn", "fd_unixconn", static_);
}

fn unix_connections_as_nobody(static_: bool) {
    roundtrip_as_nobody("fd_unixconn", static_);
}

/// Files passed with SCM_RIGHTS in messages still queued (a regular file, a pipe's
/// read end with bytes in it, a socket whose own queue passes a file, a file passed
/// twice, a copy of one of the process's fds, a file passed in a stream): each
/// comes back with its message and reads as it did.
fn passed_fds(static_: bool) {
    roundtrip("fd_scmrights", "fd_scmrights", static_);
}

fn passed_fds_as_nobody(static_: bool) {
    roundtrip_as_nobody("fd_scmrights", static_);
}

/// TCP connections over loopback with both ends in the process (one through a
/// listener it still has, one whose listener it closed): made anew between the
/// same addresses, with the bytes each end had not read yet.
fn tcp_pairs(static_: bool) {
    roundtrip("fd_tcppair", "fd_tcppair", static_);
}

fn tcp_pairs_as_nobody(static_: bool) {
    roundtrip_as_nobody("fd_tcppair", static_);
}

/// Integer options on TCP, UDP (IPv4 and IPv6) and unix sockets (IP_TOS with
/// SO_PRIORITY, keepalive timings, TCP_CORK, TCP_NOTSENT_LOWAT, IPV6_TCLASS, a peek
/// offset into queued bytes...): every value reads back the same after the resume,
/// and the peek goes on where it was.
fn socket_options(static_: bool) {
    roundtrip("fd_sockopts", "fd_sockopts", static_);
}

fn socket_options_as_nobody(static_: bool) {
    roundtrip_as_nobody("fd_sockopts", static_);
}

/// TCP connections in the states shutdown(2) leaves (FIN_WAIT2/CLOSE_WAIT, both
/// sides shut, SHUT_RD) and, where the freeze may use TCP_REPAIR (root), one whose
/// writer's bytes wait in its send queue behind a full window: every byte arrives
/// in order, each end reads EOF where it did, the states read back the same.
fn tcp_states(static_: bool) {
    if is_root() {
        roundtrip("fd_tcpstates", "fd_tcpstates", static_);
    } else {
        roundtrip_with("fd_tcpstates", "fd_tcpstates", static_, &["nosendq"]);
    }
}

fn tcp_states_as_nobody(static_: bool) {
    roundtrip_as_nobody_with("fd_tcpstates", static_, &["gate", ".", "nosendq"]);
}

/// Without CAP_NET_ADMIN a send queue cannot be read: the freeze says how many
/// bytes are not restored, naming both fds.
#[test]
fn tcp_send_queue_without_repair_warns() {
    if !is_root() {
        eprintln!("skipped: needs root to switch to nobody");
        return;
    }
    let dir = OpenDir::new("fd_tcpstates-sendq-nobody");
    let fx = dir.path.join("fd_tcpstates");
    fs::copy(fixture("fd_tcpstates", false), &fx).unwrap();
    let ck = dir.path.join("ckpt");
    fs::copy(ckpt_bin(), &ck).unwrap();
    let mut orig = dir.launch_as_nobody(&fx).args(["gate", "."]).label("fd_tcpstates").spawn();
    orig.wait_ready();
    let mut cmd = dir.as_nobody(&ck);
    cmd.arg("freeze").arg(orig.pid().to_string()).arg("-o").arg(dir.path.join("x.resume"));
    let o = run_with_timeout(cmd, FREEZE_TIMEOUT).expect("ckpt freeze as nobody");
    assert!(o.status.success(), "ckpt freeze as nobody failed\n{}", describe_output(&o));
    let err = lossy(&o.stderr);
    assert!(
        err.lines().any(|l| l.contains("fd 9:") && l.contains("wrote to fd 10") && l.contains("not restored")),
        "no warning about fd 9's send queue:\n{err}"
    );
    orig.expect_killed_by_ckpt();
}

both_variants!(
    socket_options,
    socket_options_as_nobody,
    tcp_states,
    tcp_states_as_nobody,
    tcp_pairs,
    tcp_pairs_as_nobody,
    unix_pairs,
    unix_pairs_as_nobody,
    unix_connections,
    unix_connections_as_nobody,
    passed_fds,
    passed_fds_as_nobody
);

/// --leave-running peeks the messages that pass files without taking them (the
/// original still receives each file), and `ckpt info` lists the files in flight.
#[test]
fn passed_fds_not_consumed() {
    let dir = TestDir::new("fd_scmrights_leave");
    let gate = dir.gate();
    let mut orig = spawn_fixture("fd_scmrights", false, &[gate.to_str().unwrap(), dir.path().to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("fd_scmrights");
    freeze_ok(orig.pid(), &img, &["--leave-running"]);
    let mut info = std::process::Command::new(ckpt_bin());
    info.arg("info").arg(&img);
    let text = lossy(&run_with_timeout(info, FREEZE_TIMEOUT).unwrap().stdout);
    let in_flight = text.lines().filter(|l| l.contains("in flight")).count();
    assert_eq!(in_flight, 5, "ckpt info does not list the 5 files in flight:\n{text}");
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    resume(&img).assert_success().line_starting("ok");
}

/// UDP sockets connected to the test's socket (one bound first, one given a port
/// by connect) and two connected to each other: bound and connected again to the
/// same addresses, options kept; they send to and receive from the test.
/// Datagrams queued from senders outside the process come back from their
/// senders' addresses where those are free at resume (the test's second socket,
/// closed by then: on a bound socket and on one connected to it); one from the
/// test's first socket, still bound at resume, cannot, and the resume says so,
/// naming the fd and counting it.
fn udp_connected(static_: bool) {
    let dir = TestDir::new("fd_udp");
    let gate = dir.gate();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let u2 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = u.local_addr().unwrap().port().to_string();
    let peer2 = u2.local_addr().unwrap().port().to_string();
    let mut orig = spawn_fixture("fd_udp", static_, &[gate.to_str().unwrap(), &peer, &peer2]);
    let port = |what: &str| -> u16 {
        let l = orig.wait_line_starting(what, READY_TIMEOUT);
        l[what.len()..].trim().parse().unwrap()
    };
    let (p3, p4, p7, p8) = (port("udp3 "), port("udp4 "), port("udp7 "), port("udp8 "));
    u2.send_to(b"ext", ("127.0.0.1", p7)).unwrap();
    for d in [&b"o1"[..], b"", b"o22"] {
        u2.send_to(d, ("127.0.0.1", p8)).unwrap();
    }
    u.send_to(b"lost3", ("127.0.0.1", p3)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    open_gate(&gate.with_extension("sent"));
    orig.wait_ready();
    let img = dir.image("fd_udp");
    let o = freeze_ok(orig.pid(), &img, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("fd 3 (") && !err.contains("not restored"), "the freeze warned:\n{err}");
    orig.expect_killed_by_ckpt();
    drop(u2);
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    let mut got = Vec::new();
    let mut b = [0u8; 16];
    for _ in 0..2 {
        let (n, from) = u.recv_from(&mut b).expect("a datagram from the resumed process");
        got.push((String::from_utf8_lossy(&b[..n]).into_owned(), from.port()));
    }
    got.sort();
    assert_eq!(got, [("from3".to_owned(), p3), ("from4".to_owned(), p4)]);
    u.send_to(b"to3", ("127.0.0.1", p3)).unwrap();
    let fin = res.wait_output(RESUME_TIMEOUT);
    fin.assert_success().line_starting("ok");
    assert!(
        fin.stderr.contains("fd 3: 1 datagram(s) queued from senders outside the process are not restored"),
        "no warning naming fd 3\n{fin}"
    );
}

both_variants!(udp_connected);

/// A python asyncio server and its own client over a unix socket and over TCP on
/// loopback, frozen with requests and answers queued both ways: resumed, every
/// exchange finishes. Also unfrozen, as the reference.
#[test]
fn asyncio_unix_and_tcp_exchange() {
    let script = fixtures_src().join("asyncio_sockets.py");
    for frozen in [false, true] {
        let dir = TestDir::new("asyncio_sockets");
        let gate = dir.gate();
        let mut orig = Launch::new(python3())
            .arg(&script)
            .args([gate.to_str().unwrap(), dir.path().to_str().unwrap()])
            .label("asyncio_sockets")
            .spawn();
        orig.wait_ready();
        if !frozen {
            open_gate(&gate);
            orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
            continue;
        }
        let img = dir.image("asyncio_sockets");
        let o = freeze_ok(orig.pid(), &img, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("not restored"), "the freeze lost something:\n{err}");
        orig.expect_killed_by_ckpt();
        let mut res = resume_launch(&img).spawn();
        open_gate(&gate);
        res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    }
}

/// --leave-running reads the queues without taking anything: the original still
/// receives every message, and so does the resumed copy.
#[test]
fn unix_queues_not_consumed() {
    let dir = TestDir::new("fd_unixpair_leave");
    let gate = dir.gate();
    let mut orig = spawn_fixture("fd_unixpair", false, &[gate.to_str().unwrap(), dir.path().to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("fd_unixpair");
    freeze_ok(orig.pid(), &img, &["--leave-running"]);
    open_gate(&gate);
    orig.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    resume(&img).assert_success().line_starting("ok");
}

/// The socket fixtures pass their own checks without any freeze.
#[test]
fn socket_fixtures_pass_unfrozen() {
    for static_ in [false, true] {
        for name in ["fd_unixpair", "fd_unixconn", "fd_scmrights", "fd_tcppair", "fd_tcpstates"] {
            let dir = TestDir::new("fd_sock_unfrozen");
            let gate = dir.gate();
            open_gate(&gate);
            spawn_fixture(name, static_, &[gate.to_str().unwrap(), dir.path().to_str().unwrap()])
                .wait_output(RESUME_TIMEOUT)
                .assert_success()
                .line_starting("ok");
        }
    }
}
