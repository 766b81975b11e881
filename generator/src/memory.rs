//! Reading the target's memory in large batches.
//!
//! process_vm_readv(2) gathers many scattered ranges in one call but honours page
//! protections (PROT_NONE or execute-only pages fail); /proc/PID/mem (proc(5)) reads
//! through protections like a debugger. We batch with the first and fall back to the
//! second where the first stops short. Pages that neither can read (e.g. a file
//! mapping past the end of its file, which would SIGBUS in the target too) read as
//! zero and are reported to the caller. A `--leave-running` freeze that pre-copied
//! the memory reads a [`Snapshot`] taken at the stop instead (precopy.rs).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub struct Mem {
    pid: i32,
    file: File,
    /// Pages captured earlier, read instead of the live process (precopy.rs).
    snapshot: Option<std::sync::Arc<dyn Snapshot>>,
}

/// Pages of a process captured while it was stopped, readable after it runs on.
pub trait Snapshot: Send + Sync {
    /// As [`Mem::read_segments`].
    fn read_segments(&self, segs: &[(u64, usize)], buf: &mut [u8]) -> usize;
}

const PAGE: usize = 4096;

impl Mem {
    pub fn open(pid: i32) -> io::Result<Mem> {
        Ok(Mem { pid, file: File::open(format!("/proc/{pid}/mem"))?, snapshot: None })
    }

    /// Pages read from `snapshot` (of process `pid`), not from the process now.
    pub fn from_snapshot(pid: i32, snapshot: std::sync::Arc<dyn Snapshot>) -> io::Result<Mem> {
        Ok(Mem { snapshot: Some(snapshot), ..Mem::open(pid)? })
    }

    /// Read exactly `buf.len()` bytes at `addr` through /proc/PID/mem.
    pub fn read_exact(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, addr)
    }

    fn vm_readv(&self, segs: &[(u64, usize)], buf: &mut [u8]) -> usize {
        let total: usize = segs.iter().map(|s| s.1).sum();
        let local = [libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: total.min(buf.len()) }];
        let remote: Vec<libc::iovec> =
            segs.iter().map(|&(a, l)| libc::iovec { iov_base: a as *mut libc::c_void, iov_len: l }).collect();
        // SAFETY: `local` describes `buf` (writable, length bounded by buf.len()); the
        // remote iovecs are addresses in the other process, which the kernel checks.
        let r = unsafe { libc::process_vm_readv(self.pid, local.as_ptr(), 1, remote.as_ptr(), remote.len() as libc::c_ulong, 0) };
        if r < 0 {
            0
        } else {
            r as usize
        }
    }

    /// Fill `buf` with the concatenation of `segs` (address, length). Returns the
    /// number of pages that could not be read (left as zero).
    pub fn read_segments(&self, segs: &[(u64, usize)], buf: &mut [u8]) -> usize {
        if let Some(s) = &self.snapshot {
            return s.read_segments(segs, buf);
        }
        let got = self.vm_readv(segs, buf);
        let mut unreadable = 0;
        let mut off = 0usize;
        for &(addr, len) in segs {
            let (seg_lo, seg_hi) = (off, off + len);
            off = seg_hi;
            if got >= seg_hi {
                continue;
            }
            // This segment (or its tail) was not read: retry through /proc/PID/mem.
            let start = got.max(seg_lo);
            let a = addr + (start - seg_lo) as u64;
            if self.read_exact(a, &mut buf[start..seg_hi]).is_ok() {
                continue;
            }
            for p in (start..seg_hi).step_by(PAGE) {
                let page = &mut buf[p..(p + PAGE).min(seg_hi)];
                if self.read_exact(addr + (p - seg_lo) as u64, page).is_err() {
                    page.fill(0);
                    unreadable += 1;
                }
            }
        }
        unreadable
    }
}
