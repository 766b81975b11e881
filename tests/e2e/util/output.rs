//! Collecting the output of child processes; commands with a timeout.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    eof: bool,
}

/// Lines read from a pipe by a background thread.
#[derive(Clone)]
pub struct Lines {
    inner: Arc<(Mutex<LinesState>, Condvar)>,
}

impl Lines {
    pub fn collect<R: Read + Send + 'static>(reader: R) -> Lines {
        let lines = Lines {
            inner: Arc::new((Mutex::new(LinesState::default()), Condvar::new())),
        };
        let inner = lines.inner.clone();
        thread::spawn(move || {
            for chunk in BufReader::new(reader).split(b'\n') {
                let Ok(chunk) = chunk else { break };
                let (m, cv) = &*inner;
                m.lock().unwrap().lines.push(lossy(&chunk));
                cv.notify_all();
            }
            let (m, cv) = &*inner;
            m.lock().unwrap().eof = true;
            cv.notify_all();
        });
        lines
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().lines.clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    /// Waits for a line satisfying `pred`; Err(reason) on EOF or timeout.
    pub fn wait_for(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.inner;
        let mut st = m.lock().unwrap();
        loop {
            if let Some(l) = st.lines.iter().find(|l| pred(l)) {
                return Ok(l.clone());
            }
            if st.eof {
                return Err("end of output".into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("timeout after {timeout:?}"));
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Waits for the end of the stream; Err(lines so far) on timeout.
    pub fn wait_eof(&self, timeout: Duration) -> Result<Vec<String>, Vec<String>> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.inner;
        let mut st = m.lock().unwrap();
        while !st.eof {
            let now = Instant::now();
            if now >= deadline {
                return Err(st.lines.clone());
            }
            st = cv.wait_timeout(st, deadline - now).unwrap().0;
        }
        Ok(st.lines.clone())
    }
}

/// Waits until `lines` has the line `want`; panics with the output on timeout/EOF.
pub fn wait_for_line(lines: &Lines, want: &str, timeout: Duration) -> String {
    lines
        .wait_for(|l| l == want, timeout)
        .unwrap_or_else(|e| panic!("waiting for line {want:?}: {e}; output:\n{}", lines.text()))
}

/// Waits until the regular file at `path` has the line `want`.
pub fn wait_for_file_line(path: &Path, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no line {want:?} in {} after {timeout:?}:\n{text}",
            path.display()
        );
        thread::sleep(POLL);
    }
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Spawns `cmd`, retrying (for up to a second) while its exec fails with ETXTBSY.
/// An executable this test process has just written (a copy, a corrupted image)
/// can still be open for writing in a child that another test thread is forking
/// at that moment: the fd lives in that child until its own exec closes it, and
/// execve(2) refuses a file open for writing with ETXTBSY.
pub fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 100 => {
                attempt += 1;
                thread::sleep(POLL);
            }
            r => return r,
        }
    }
}

/// Runs a command with stdout/stderr captured; kills it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_retrying(&mut cmd)?;
    let out = Lines::collect(child.stdout.take().unwrap());
    let err = Lines::collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{cmd:?} timed out after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                    out.text(),
                    err.text()
                ),
            ));
        }
        thread::sleep(POLL);
    };
    // The pipes may outlive the process (grandchildren): bounded wait.
    let stdout = out.wait_eof(REAP_TIMEOUT).unwrap_or_else(|l| l);
    let stderr = err.wait_eof(REAP_TIMEOUT).unwrap_or_else(|l| l);
    Ok(Output {
        status,
        stdout: join_lines(&stdout),
        stderr: join_lines(&stderr),
    })
}

fn join_lines(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| l.bytes().chain([b'\n']))
        .collect()
}

pub fn describe_output(o: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        lossy(&o.stdout),
        lossy(&o.stderr)
    )
}
