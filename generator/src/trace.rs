//! Phase timings of a freeze on stderr when CKPT_TRACE=1 (the restorer prints its
//! own steps under the same variable), to see where a freeze spends its time.

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

fn start() -> Option<Instant> {
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    *START.get_or_init(|| (std::env::var_os("CKPT_TRACE").is_some_and(|v| v == "1")).then(Instant::now))
}

/// Print `what` with the milliseconds since the first mark, when tracing: one
/// write per line, so tracing itself adds one system call per mark.
pub fn mark(what: &str) {
    if let Some(t0) = start() {
        let line = format!("ckpt: trace {:9.3} ms  {what}\n", t0.elapsed().as_secs_f64() * 1e3);
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
