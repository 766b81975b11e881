//! A one-line counter while the pages are read back in, so a resume that takes more
//! than a second says how far it is: bytes done of the total, the rate and the time
//! left, redrawn in place (carriage return) on fd 2 and cleared once every page is in.
//!
//! Drawn only when fd 2 is a terminal (the TCGETS ioctl succeeds), never into a pipe
//! or a file, and not at all with `CKPT_QUIET=1` (`ckpt resume -q`);
//! `CKPT_PROGRESS_DELAY_MS` changes the second it waits before the first draw. Any other
//! message clears the line first (out.rs), so messages never mix with it.

use crate::out::decimal;
use crate::sys;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);
static SHOWN: AtomicBool = AtomicBool::new(false);
static TOTAL: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static START_NS: AtomicU64 = AtomicU64::new(0);
static LAST_NS: AtomicU64 = AtomicU64::new(0);
static SHOW_AFTER_NS: AtomicU64 = AtomicU64::new(1_000_000_000);

const REDRAW_NS: u64 = 100_000_000;
const MIB: u64 = 1 << 20;

fn now_ns() -> u64 {
    let mut ts = [0u64; 2];
    match sys::clock_gettime(sys::CLOCK_MONOTONIC, &mut ts) {
        Ok(_) => ts[0].wrapping_mul(1_000_000_000).wrapping_add(ts[1]),
        Err(_) => 0,
    }
}

/// Decide once, at startup, whether a counter may be drawn.
pub fn init(quiet: bool, delay_ms: Option<u64>) {
    ENABLED.store(!quiet && sys::is_terminal(2), Ordering::Relaxed);
    if let Some(ms) = delay_ms {
        SHOW_AFTER_NS.store(ms.saturating_mul(1_000_000), Ordering::Relaxed);
    }
}

/// `total` bytes of pages are about to be read in.
pub fn begin(total: u64) {
    TOTAL.store(total, Ordering::Relaxed);
    DONE.store(0, Ordering::Relaxed);
    let t = now_ns();
    START_NS.store(t, Ordering::Relaxed);
    LAST_NS.store(t, Ordering::Relaxed);
}

/// `n` more bytes are in; redraw when it is time.
pub fn add(n: u64) {
    // Two threads fill pages (fill.rs).
    let done = DONE.fetch_add(n, Ordering::Relaxed) + n;
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let t = now_ns();
    let start = START_NS.load(Ordering::Relaxed);
    let first = !SHOWN.load(Ordering::Relaxed);
    if t.saturating_sub(start) < SHOW_AFTER_NS.load(Ordering::Relaxed) || (!first && t.saturating_sub(LAST_NS.load(Ordering::Relaxed)) < REDRAW_NS) {
        return;
    }
    LAST_NS.store(t, Ordering::Relaxed);
    draw(done, TOTAL.load(Ordering::Relaxed).max(done), t - start);
}

/// `ckpt-restore: resuming 512 MiB/1536 MiB, 300 MiB/s, 4 s left`, over the last one.
fn draw(done: u64, total: u64, elapsed_ns: u64) {
    let mut buf = [0u8; 128];
    let mut n = 0;
    let mut put = |s: &[u8]| {
        for &c in s {
            if n < buf.len() {
                buf[n] = c;
                n += 1;
            }
        }
    };
    let mut t = [0u8; 20];
    put(b"\rckpt-restore: resuming ");
    put(decimal(done / MIB, &mut t));
    put(b" MiB/");
    put(decimal(total / MIB, &mut t));
    put(b" MiB");
    let rate = (done as u128 * 1_000_000_000 / elapsed_ns.max(1) as u128) as u64;
    if rate > 0 {
        put(b", ");
        put(decimal(rate / MIB, &mut t));
        put(b" MiB/s, ");
        put(decimal((total - done).div_ceil(rate), &mut t));
        put(b" s left");
    }
    put(b"\x1b[K");
    let _ = sys::write(2, &buf[..n]);
    SHOWN.store(true, Ordering::Relaxed);
}

/// Clear the line if a counter is on it (before any other message, and at the end).
pub fn clear() {
    if SHOWN.swap(false, Ordering::Relaxed) {
        let _ = sys::write(2, b"\r\x1b[K");
    }
}
