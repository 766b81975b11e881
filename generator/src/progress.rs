//! Progress of a freeze on a terminal: bytes read from the process of the bytes to
//! read, the rate and the time left, drawn on stderr by indicatif once the freeze has
//! taken a second (`CKPT_PROGRESS_DELAY_MS` changes that), and cleared when it ends. Nothing is drawn unless stderr is a
//! terminal, so pipes, files and `--json` callers never see it.
//!
//! The page reader only bumps two counters ([`add_total`], [`add_done`]); a thread
//! of this module turns them into the bar, so the hot path pays two atomic adds.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

static TOTAL: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
/// Every byte is read: the file is being made durable.
static SYNCING: AtomicBool = AtomicBool::new(false);

/// Nothing is drawn for work that ends sooner.
fn show_after() -> Duration {
    let ms = std::env::var("CKPT_PROGRESS_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    Duration::from_millis(ms)
}
const TICK: Duration = Duration::from_millis(100);

/// `n` more bytes will be read from the process.
pub fn add_total(n: u64) {
    TOTAL.fetch_add(n, Ordering::Relaxed);
}

/// `n` bytes were read from the process.
pub fn add_done(n: u64) {
    DONE.fetch_add(n, Ordering::Relaxed);
}

/// The pages are all written; what remains is fsync.
pub fn syncing() {
    SYNCING.store(true, Ordering::Relaxed);
}

/// Whether a bar may be drawn: asked for, and stderr is a terminal.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// The bar of one freeze; dropping it clears the line.
pub struct Bar {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Bar {
    /// Start counting from zero; draw only when `show`.
    pub fn start(show: bool) -> Bar {
        TOTAL.store(0, Ordering::Relaxed);
        DONE.store(0, Ordering::Relaxed);
        SYNCING.store(false, Ordering::Relaxed);
        if !show {
            return Bar { stop: None, thread: None };
        }
        let (tx, rx) = channel::<()>();
        let delay = show_after();
        let thread = std::thread::Builder::new()
            .name("ckpt-progress".into())
            .spawn(move || {
                if rx.recv_timeout(delay) != Err(RecvTimeoutError::Timeout) {
                    return;
                }
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                // Until the pages are counted: what it does, no numbers.
                bar.set_style(ProgressStyle::with_template("ckpt: {msg}").expect("a valid template"));
                bar.set_message("freezing: reading the process");
                let mut counting = false;
                loop {
                    let total = TOTAL.load(Ordering::Relaxed);
                    if total > 0 && !counting {
                        counting = true;
                        bar.set_style(
                            ProgressStyle::with_template(
                                "ckpt: {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
                            )
                            .expect("a valid template")
                            .progress_chars("=> "),
                        );
                        bar.reset_elapsed();
                        bar.reset_eta();
                    }
                    bar.set_length(total);
                    bar.set_position(DONE.load(Ordering::Relaxed));
                    if counting {
                        bar.set_message(if SYNCING.load(Ordering::Relaxed) { "syncing" } else { "freezing" });
                    }
                    match rx.recv_timeout(TICK) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
                bar.finish_and_clear();
            })
            .ok();
        Bar { stop: Some(tx), thread }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
