//! A file writer that starts the disk writing behind it as it goes.
//!
//! Dirty pages of a file are written back when the kernel's dirty thresholds are
//! reached or at fsync(2); an image of a few GiB stays under those thresholds, so
//! without help every byte waits for the final fsync and the disk idles while the
//! memory is read. sync_file_range(2) with SYNC_FILE_RANGE_WRITE starts writeback of
//! a range without waiting for it to complete, but it may wait for room in the
//! device's queue: so the requests, one per few MiB written, are made by a thread of
//! their own, and the writer never waits for the disk. The fsync that makes the file
//! durable before the original is killed then has little left to do. The thread
//! starts with the first full step: a file smaller than that is left to the fsync.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

/// How much is written between two writeback requests: small enough that the
/// disk starts on a python process's 18 MiB while its pages are still being
/// read (16 MiB left it all to the final flush), large enough that a GiB takes
/// only 256 requests.
const STEP: u64 = 4 << 20;

pub struct Writeback<'a> {
    file: &'a File,
    /// File offset of the next byte written.
    pos: u64,
    /// Start of the range written since the last request.
    from: u64,
    /// Ranges (offset, length) for the thread that asks for their writeback,
    /// started with the first request: a file smaller than [`STEP`] needs none.
    requests: Option<Sender<(u64, u64)>>,
    flusher: Option<JoinHandle<()>>,
    /// No second descriptor could be had: the fsync does all the work.
    no_flusher: bool,
}

impl<'a> Writeback<'a> {
    pub fn new(file: &'a File) -> Writeback<'a> {
        Writeback { file, pos: 0, from: 0, requests: None, flusher: None, no_flusher: false }
    }

    /// The channel to the flushing thread, started on first use.
    fn flusher(&mut self) -> Option<&Sender<(u64, u64)>> {
        if self.requests.is_none() && !self.no_flusher {
            let (tx, rx) = channel::<(u64, u64)>();
            match self.file.try_clone() {
                Ok(f) => {
                    self.flusher = Some(std::thread::spawn(move || {
                        for (off, len) in rx {
                            // SAFETY: plain integer arguments on an open fd; a failure (a file
                            // system without the call) only leaves the work to the fsync.
                            unsafe { libc::sync_file_range(f.as_raw_fd(), off as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE) };
                        }
                    }));
                    self.requests = Some(tx);
                }
                Err(_) => self.no_flusher = true,
            }
        }
        self.requests.as_ref()
    }

    fn start_writeback(&mut self) {
        if self.pos >= self.from + STEP {
            let range = (self.from, self.pos - self.from);
            if let Some(tx) = self.flusher() {
                let _ = tx.send(range);
            }
        } else if self.pos > self.from {
            if let Some(tx) = &self.requests {
                let _ = tx.send((self.from, self.pos - self.from));
            }
        }
        self.from = self.pos;
    }
}

impl Write for Writeback<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = (&*self.file).write(b)?;
        self.pos += n as u64;
        if self.pos >= self.from + STEP {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Writeback<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.start_writeback();
        self.pos = (&*self.file).seek(to)?;
        self.from = self.pos;
        Ok(self.pos)
    }
}

impl Drop for Writeback<'_> {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}
