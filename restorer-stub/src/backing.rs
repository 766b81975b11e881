//! The file behind private file mappings, opened once for a row of mappings of it.
//!
//! A library is mapped as four or five VMAs in a row (headers, text, read-only
//! data, data), and a python process with numpy maps about a hundred of them:
//! opening the path and asking fstat(2) again for every VMA was a fifth of the time
//! spent creating them. The last file opened is kept until a mapping of another
//! path comes; mmap(2) holds its own reference to the file, so closing our fd once
//! the row is mapped changes nothing for the mappings.

use crate::sys;

/// What fstat(2) said of an open file.
#[derive(Clone, Copy)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: u64,
}

/// The last file opened for a private file mapping, by its path in the tables.
pub struct LastFile<'a> {
    path: &'a [u8],
    /// The open file and its stat, or None when it could not be opened.
    file: Option<(usize, FileStat)>,
    valid: bool,
}

impl<'a> LastFile<'a> {
    pub const fn new() -> LastFile<'a> {
        LastFile { path: &[], file: None, valid: false }
    }

    /// The file at `path` (a string of the tables), read-only: the one already open
    /// when the previous call named the same path, else opened now. None when it
    /// cannot be opened or stat'ed.
    pub fn open(&mut self, path: &'a [u8]) -> Option<(usize, FileStat)> {
        if self.valid && self.path == path {
            return self.file;
        }
        self.close();
        let mut buf = [0u8; 4096];
        let file = sys::open(crate::layout::cpath(path, &mut buf), sys::O_RDONLY | sys::O_CLOEXEC, 0).ok().and_then(|fd| {
            let mut st = sys::Stat::zeroed();
            if sys::fstat(fd, &mut st).is_err() {
                let _ = sys::close(fd);
                return None;
            }
            // st_times: atime, atime_nsec, mtime, mtime_nsec, ctime, ctime_nsec.
            let mtime_ns = st.st_times[2].wrapping_mul(1_000_000_000).wrapping_add(st.st_times[3]);
            Some((fd, FileStat { dev: st.st_dev, ino: st.st_ino, size: st.st_size as u64, mtime_ns }))
        });
        (self.path, self.file, self.valid) = (path, file, true);
        file
    }

    /// Close the file kept open, if any.
    pub fn close(&mut self) {
        if let Some((fd, _)) = self.file.take() {
            let _ = sys::close(fd);
        }
        self.valid = false;
    }
}

impl Drop for LastFile<'_> {
    fn drop(&mut self) {
        self.close();
    }
}
