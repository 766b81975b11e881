//! Pages copied out of the target into a temporary file, and the snapshot the
//! writer reads them back from (precopy.rs).
//!
//! The file is created next to the output, unnamed (open(2) O_TMPFILE; a named
//! file removed at once where the filesystem lacks it), so it disappears with
//! ckpt whatever happens; its pages live in the page cache, not in ckpt's
//! memory, so ckpt's RSS stays at one batch buffer whatever the target's size.

use crate::memory::Mem;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc::sync_channel;

/// Bytes read from the target per batch, and at most this many ranges per batch.
const BATCH: usize = 8 << 20;
const MAX_SEGS: usize = 1024;
const PAGE: u64 = 4096;

/// `len` bytes of the target at `addr`, stored at `off` in the stash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub addr: u64,
    pub len: u64,
    pub off: u64,
}

pub struct Stash {
    file: File,
    len: u64,
}

impl Stash {
    /// An unnamed file in `dir`.
    pub fn create(dir: &Path) -> io::Result<Stash> {
        let file = match OpenOptions::new().read(true).write(true).mode(0o600).custom_flags(libc::O_TMPFILE).open(dir) {
            Ok(f) => f,
            Err(_) => {
                let p = dir.join(format!(".ckpt-precopy.{}", std::process::id()));
                let f = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&p)?;
                std::fs::remove_file(&p)?;
                f
            }
        };
        Ok(Stash { file, len: 0 })
    }

    /// Copy `ranges` (address order, page aligned) of `mem` to the end of the
    /// stash; returns where each went and how many pages neither
    /// process_vm_readv nor /proc/PID/mem could read (stored as zero). A thread
    /// reads the next batch while this one writes the previous (two buffers).
    pub fn copy(&mut self, mem: &Mem, ranges: &[(u64, u64)]) -> io::Result<(Vec<Extent>, usize)> {
        let (extents, batches) = self.plan(ranges);
        let file = &self.file;
        let biggest = batches.iter().map(|b| b.1).max().unwrap_or(0);
        let (tx, rx) = sync_channel::<(Vec<u8>, usize, u64, usize)>(1);
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(2);
        for _ in 0..2.min(batches.len()) {
            free_tx.send(vec![0u8; biggest]).expect("room for both buffers");
        }
        let written = std::thread::scope(|s| {
            s.spawn(move || {
                for (segs, n, off) in batches {
                    let Ok(mut buf) = free_rx.recv() else { return };
                    let unreadable = mem.read_segments(&segs, &mut buf[..n]);
                    if tx.send((buf, n, off, unreadable)).is_err() {
                        return;
                    }
                }
            });
            let mut unreadable = 0;
            for (buf, n, off, u) in rx.iter() {
                file.write_all_at(&buf[..n], off)?;
                unreadable += u;
                let _ = free_tx.send(buf);
            }
            drop(free_tx);
            Ok::<usize, io::Error>(unreadable)
        })?;
        self.len += extents.iter().map(|e| e.len).sum::<u64>();
        Ok((extents, written))
    }

    /// Where `ranges` go from the end of the stash on, and the batches that read
    /// them: (address, length) segments, their total, their offset in the stash.
    #[allow(clippy::type_complexity)]
    fn plan(&self, ranges: &[(u64, u64)]) -> (Vec<Extent>, Vec<(Vec<(u64, usize)>, usize, u64)>) {
        let mut extents: Vec<Extent> = Vec::with_capacity(ranges.len());
        let mut batches = Vec::new();
        let mut segs: Vec<(u64, usize)> = Vec::new();
        let (mut filled, mut at) = (0usize, self.len);
        for &(lo, hi) in ranges {
            let mut a = lo;
            while a < hi {
                let n = ((hi - a) as usize).min(BATCH - filled);
                let off = at + filled as u64;
                match extents.last_mut() {
                    Some(Extent { addr, len: l, off: o }) if *addr + *l == a && *o + *l == off => *l += n as u64,
                    _ => extents.push(Extent { addr: a, len: n as u64, off }),
                }
                segs.push((a, n));
                filled += n;
                a += n as u64;
                if filled == BATCH || segs.len() == MAX_SEGS {
                    batches.push((std::mem::take(&mut segs), filled, at));
                    at += filled as u64;
                    filled = 0;
                }
            }
        }
        if !segs.is_empty() {
            batches.push((segs, filled, at));
        }
        (extents, batches)
    }

    /// Bytes stored so far.
    pub fn len(&self) -> u64 {
        self.len
    }
}

/// The target's pages at the stop, as the writer reads them: `index` (address
/// order, no overlaps) says where in the stash each stored range is.
pub struct Snapshot {
    stash: Stash,
    index: Vec<Extent>,
}

impl Snapshot {
    pub fn new(stash: Stash, mut index: Vec<Extent>) -> Snapshot {
        index.sort_by_key(|e| e.addr);
        Snapshot { stash, index }
    }
}

impl crate::memory::Snapshot for Snapshot {
    /// Bytes of a range the stash does not hold (or cannot read back) are zero,
    /// counted as unreadable pages.
    fn read_segments(&self, segs: &[(u64, usize)], buf: &mut [u8]) -> usize {
        let mut missing = 0u64;
        let mut off = 0usize;
        for &(addr, len) in segs {
            let out = &mut buf[off..off + len];
            off += len;
            let end = addr + len as u64;
            let mut a = addr;
            while a < end {
                let i = self.index.partition_point(|e| e.addr + e.len <= a);
                let piece = &mut out[(a - addr) as usize..];
                match self.index.get(i) {
                    Some(e) if e.addr <= a => {
                        let n = ((e.addr + e.len).min(end) - a) as usize;
                        if self.stash.file.read_exact_at(&mut piece[..n], e.off + (a - e.addr)).is_err() {
                            piece[..n].fill(0);
                            missing += (n as u64).div_ceil(PAGE);
                        }
                        a += n as u64;
                    }
                    next => {
                        let n = (next.map_or(end, |e| e.addr.min(end)) - a) as usize;
                        piece[..n].fill(0);
                        missing += (n as u64).div_ceil(PAGE);
                        a += n as u64;
                    }
                }
            }
        }
        missing as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::Snapshot as _;

    #[test]
    fn reads_back_what_was_copied_and_zero_elsewhere() {
        let whole: Vec<u8> = (0..5 * PAGE as usize).map(|i| (i / 4096 + 1) as u8).collect();
        let skip = (PAGE - whole.as_ptr() as u64 % PAGE) % PAGE;
        let data = &whole[skip as usize..skip as usize + 4 * PAGE as usize];
        let base = data.as_ptr() as u64;
        let mem = Mem::open(std::process::id() as i32).unwrap();
        let mut s = Stash::create(&std::env::temp_dir()).unwrap();
        let (ex, bad) = s.copy(&mem, &[(base, base + PAGE), (base + 2 * PAGE, base + 4 * PAGE)]).unwrap();
        assert_eq!(bad, 0);
        assert_eq!(ex, [Extent { addr: base, len: PAGE, off: 0 }, Extent { addr: base + 2 * PAGE, len: 2 * PAGE, off: PAGE }]);
        let snap = Snapshot::new(s, ex);
        let mut out = vec![9u8; 4 * PAGE as usize];
        let missing = snap.read_segments(&[(base, 4 * PAGE as usize)], &mut out);
        assert_eq!(missing, 1);
        assert_eq!(&out[..4096], &data[..4096]);
        assert!(out[4096..8192].iter().all(|&b| b == 0));
        assert_eq!(&out[8192..], &data[8192..]);
    }
}
