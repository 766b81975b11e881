//! Checksums of mapped file ranges remembered between freezes.
//!
//! A referenced file mapping (fileref.rs) carries a CRC-32C of its bytes, which
//! means reading every library a process maps on every freeze (50 MiB for python
//! with numpy). The checksum of a range depends only on the file's bytes, and a
//! file whose device, inode, size, mtime and ctime are unchanged has unchanged
//! bytes: any write updates mtime and ctime, and ctime cannot be set back by a
//! user (utimensat(2) sets only atime and mtime, and sets ctime to now). So the
//! checksums are kept in `$XDG_CACHE_HOME/ckpt/file-crcs` (or `~/.cache/...`), one
//! line per range, and read from there when the identity matches. A missing or
//! unreadable cache only costs the reading; a malformed line is ignored.

use std::collections::{HashMap, HashSet};
use std::fs::{File, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// A file's identity and a byte range of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    from: u64,
    to: u64,
}

impl Key {
    /// The file's (device, inode).
    pub fn file(md: &Metadata) -> (u64, u64) {
        (md.dev(), md.ino())
    }

    pub fn new(md: &Metadata, from: u64, to: u64) -> Key {
        Key {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
            ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
            from,
            to,
        }
    }

    fn line(&self, crc: u32) -> String {
        format!("{} {} {} {} {} {} {} {:08x}\n", self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns, self.from, self.to, crc)
    }

    fn parse(line: &str) -> Option<(Key, u32)> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 8 {
            return None;
        }
        let key = Key {
            dev: f[0].parse().ok()?,
            ino: f[1].parse().ok()?,
            size: f[2].parse().ok()?,
            mtime_ns: f[3].parse().ok()?,
            ctime_ns: f[4].parse().ok()?,
            from: f[5].parse().ok()?,
            to: f[6].parse().ok()?,
        };
        Some((key, u32::from_str_radix(f[7], 16).ok()?))
    }
}

/// Lines beyond which the cache starts again from the entries of one freeze.
const MAX_LINES: usize = 20_000;

pub struct Cache {
    path: Option<PathBuf>,
    known: HashMap<Key, u32>,
    new: Vec<(Key, u32)>,
    /// Lines in the cache file when it was read.
    lines: usize,
}

/// The device and inode a cache line is about (its first two fields).
fn file_of(line: &str) -> Option<(u64, u64)> {
    let mut f = line.splitn(3, ' ');
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

fn cache_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("ckpt").join("file-crcs"))
}

impl Cache {
    /// The cache of this user (empty when there is none, or CKPT_CRC_CACHE=0),
    /// keeping only the lines of the files `wanted` (device, inode): the cache
    /// holds thousands of lines of other processes' files, and parsing all of
    /// them costs more than the few this freeze looks up.
    pub fn load(wanted: &HashSet<(u64, u64)>) -> Cache {
        let path = if std::env::var_os("CKPT_CRC_CACHE").is_some_and(|v| v == "0") { None } else { cache_path() };
        let text = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        let known = text.lines().filter(|l| file_of(l).is_some_and(|f| wanted.contains(&f))).filter_map(Key::parse).collect();
        Cache { path, known, new: Vec::new(), lines: text.lines().count() }
    }

    pub fn get(&self, k: &Key) -> Option<u32> {
        self.known.get(k).copied()
    }

    pub fn put(&mut self, k: Key, crc: u32) {
        self.new.push((k, crc));
    }

    /// Append the new entries (best effort: a cache that cannot be written only
    /// means the next freeze reads the files again).
    pub fn save(self) {
        let Some(path) = self.path else { return };
        if self.new.is_empty() {
            return;
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let restart = self.lines + self.new.len() > MAX_LINES;
        let f = OpenOptions::new().create(true).append(!restart).write(true).truncate(restart).open(&path);
        let Ok(mut f): std::io::Result<File> = f else { return };
        let text: String = self.new.iter().map(|(k, c)| k.line(*c)).collect();
        // One write of whole lines: concurrent freezes append whole lines.
        let _ = f.write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_bad_ones_are_ignored() {
        let md = std::fs::metadata("/proc/self/exe").unwrap();
        let k = Key::new(&md, 4096, 8192);
        assert_eq!(Key::parse(k.line(0xdeadbeef).trim_end()), Some((k, 0xdeadbeef)));
        assert_eq!(Key::parse("1 2 3"), None);
        assert_eq!(Key::parse("a 2 3 4 5 6 7 8"), None);
        assert_eq!(file_of(k.line(1).trim_end()), Some(Key::file(&md)));
        assert_eq!(file_of("x 2 3"), None);
    }
}
