//! File locks across a freeze: flock, POSIX and OFD locks are taken again before
//! the resumed process runs (tests/fixtures/fd_locks.c checks them from a child
//! process; /proc/locks must show them held by the resumed process), a lock
//! another process holds at resume stops the resume naming it, and a python3
//! sqlite3 transaction keeps its database locked across the freeze.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;
use std::time::Instant;

use crate::util::*;

/// The /proc/locks lines (kind, pid) on the file with inode `ino`.
fn locks_on(ino: u64) -> Vec<(String, i32)> {
    let text = fs::read_to_string("/proc/locks").unwrap();
    text.lines()
        .filter(|l| !l.contains("->"))
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let on = t.get(5)?.rsplit(':').next()?.parse::<u64>().ok()? == ino;
            on.then(|| (t[1].to_owned(), t[4].parse().unwrap_or(0)))
        })
        .collect()
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

fn locked_file(dir: &TestDir) -> (std::path::PathBuf, u64) {
    use std::os::unix::fs::MetadataExt;
    let path = dir.join("locked");
    fs::write(&path, [b'x'; 64]).unwrap();
    let ino = fs::metadata(&path).unwrap().ino();
    (path, ino)
}

/// The fixture's locks of `kind` (`proc_kind` in /proc/locks) are held by the
/// resumed process, as many as before, and still keep a child out.
fn lock_kind(kind: &str, proc_kind: &str) {
    let dir = TestDir::new(&format!("locks_{kind}"));
    let gate = dir.gate();
    let (path, ino) = locked_file(&dir);
    let mut orig = spawn_fixture("fd_locks", false, &[kind, gate.to_str().unwrap(), path.to_str().unwrap()]);
    orig.wait_ready();
    let before = locks_on(ino);
    assert!(!before.is_empty() && before.iter().all(|(k, _)| k == proc_kind), "{before:?}");
    let img = dir.image("fd_locks");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut info = std::process::Command::new(ckpt_bin());
    info.arg("info").arg(&img);
    let info = lossy(&run_with_timeout(info, FREEZE_TIMEOUT).unwrap().stdout);
    let listed = info.lines().skip_while(|l| !l.starts_with("file locks")).skip(1).take_while(|l| l.starts_with("  fd")).count();
    assert_eq!(listed, before.len(), "ckpt info lists {listed} locks, the process held {}:\n{info}", before.len());
    let mut res = resume_launch(&img).spawn();
    let deadline = Instant::now() + MAPS_TIMEOUT;
    loop {
        let now = locks_on(ino);
        let by_resumed = now.iter().filter(|(k, p)| k == proc_kind && (*p == -1 || comm(*p) == "fd_locks")).count();
        if by_resumed == before.len() && now.len() == before.len() {
            break;
        }
        assert!(Instant::now() < deadline, "locks on {}: {now:?}, were {before:?}\n{}", path.display(), res.describe());
        thread::sleep(POLL);
    }
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

#[test]
fn flock_lock() {
    lock_kind("flock", "FLOCK");
}

#[test]
fn posix_locks() {
    lock_kind("posix", "POSIX");
}

#[test]
fn ofd_lock() {
    lock_kind("ofd", "OFDLCK");
}

fn set_lock(f: &fs::File, cmd: i32, start: i64, len: i64) -> i32 {
    // SAFETY: flock is plain data; all-zero is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    (fl.l_start, fl.l_len) = (start, len);
    // SAFETY: fl is a valid struct flock.
    unsafe { libc::fcntl(f.as_raw_fd(), cmd, &fl) }
}

/// While this test holds a conflicting lock, the resume stops (exit 111) with a
/// message naming the fd, the file, the range and this process as the holder;
/// once it lets go, the same file resumes.
fn held_elsewhere(kind: &str, range: &str) {
    let dir = TestDir::new(&format!("locks_held_{kind}"));
    let gate = dir.gate();
    let (path, _) = locked_file(&dir);
    let mut orig = spawn_fixture("fd_locks", false, &[kind, gate.to_str().unwrap(), path.to_str().unwrap()]);
    orig.wait_ready();
    let img = dir.image("fd_locks");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();

    let mine = fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let r = match kind {
        // SAFETY: flock takes an fd and flags.
        "flock" => unsafe { libc::flock(mine.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        _ => set_lock(&mine, libc::F_SETLK, 12, 1),
    };
    assert_eq!(r, 0, "taking the conflicting lock: {}", std::io::Error::last_os_error());
    let res = resume(&img);
    assert_eq!(res.status.code(), Some(111), "{res}");
    let me = format!("held by pid {}", std::process::id());
    let root = is_root();
    for want in ["fd 3", path.to_str().unwrap(), range, if root { me.as_str() } else { "held by" }] {
        assert!(res.stderr.contains(want), "the message does not say {want:?}\n{res}");
    }
    drop(mine);
    let mut res = resume_launch(&img).spawn();
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
}

#[test]
fn flock_held_elsewhere_stops_the_resume() {
    held_elsewhere("flock", "the whole file");
}

#[test]
fn posix_lock_held_elsewhere_stops_the_resume() {
    held_elsewhere("posix", "bytes 10-14");
}

/// Another process writing `db`: Ok, or the sqlite3 error text.
fn try_write(db: &Path) -> Result<(), String> {
    let script = "import sqlite3, sys\n\
c = sqlite3.connect(sys.argv[1], timeout=0.2, isolation_level=None)\n\
try:\n    c.execute('INSERT INTO t VALUES (1)')\nexcept sqlite3.OperationalError as e:\n    print('error:', e)\nelse:\n    print('written')\n";
    let out = Launch::new(python3()).args(["-c", script]).arg(db).label("writer").spawn().wait_output(RESUME_TIMEOUT);
    out.assert_success();
    let line = out.stdout.join("\n");
    if line == "written" { Ok(()) } else { Err(line) }
}

/// python3's sqlite3 frozen inside a write transaction (BEGIN IMMEDIATE and an
/// insert): after the resume another process still gets "database is locked";
/// then the resumed one commits and its row is there.
#[test]
fn sqlite_transaction_keeps_its_lock() {
    let dir = TestDir::new("locks_sqlite");
    let db = dir.join("app.db");
    let gate = dir.gate();
    let mut orig = Launch::new(python3())
        .arg(fixtures_src().join("sqlite_txn.py"))
        .arg(&db)
        .arg(&gate)
        .label("sqlite")
        .spawn();
    orig.wait_ready();
    assert_eq!(try_write(&db), Err("error: database is locked".into()), "before the freeze");
    let img = dir.image("sqlite");
    freeze_ok(orig.pid(), &img, &[]);
    orig.expect_killed_by_ckpt();
    let mut res = resume_launch(&img).spawn();
    // The resumed process takes its locks before it runs: wait until it holds one.
    use std::os::unix::fs::MetadataExt;
    let ino = fs::metadata(&db).unwrap().ino();
    let deadline = Instant::now() + MAPS_TIMEOUT;
    while locks_on(ino).is_empty() {
        assert!(Instant::now() < deadline, "the resumed process holds no lock on the database\n{}", res.describe());
        thread::sleep(POLL);
    }
    assert_eq!(try_write(&db), Err("error: database is locked".into()), "after the resume");
    open_gate(&gate);
    res.wait_output(RESUME_TIMEOUT).assert_success().line_starting("ok");
    let read = Launch::new(python3())
        .args(["-c", "import sqlite3, sys; print([r[0] for r in sqlite3.connect(sys.argv[1]).execute('SELECT x FROM t')])"])
        .arg(&db)
        .label("reader")
        .spawn()
        .wait_output(RESUME_TIMEOUT);
    read.assert_success();
    assert_eq!(read.stdout, ["[42]"]);
}
