//! Checksums of mapped file ranges remembered between freezes.
//!
//! A referenced file mapping (fileref.rs) carries a CRC-32C of its bytes, which
//! means reading every library a process maps on every freeze (50 MiB for python
//! with numpy). The checksum of a range depends only on the file's bytes, and a
//! file whose device, inode, size, mtime and ctime are unchanged has unchanged
//! bytes: any write updates mtime and ctime, and ctime cannot be set back by a
//! user (utimensat(2) sets only atime and mtime, and sets ctime to now). So the
//! checksums are kept under `$XDG_CACHE_HOME/ckpt/file-crcs.d/` (or
//! `~/.cache/...`), one small file per mapped file named by its device and inode,
//! one line per range, and read from there when the identity matches. A freeze
//! opens only the entries of the files it maps: one cache of every file ever seen
//! (thousands of lines) cost more to parse than the checksums it saved for a small
//! process. A missing or unreadable entry only costs the reading; a malformed line
//! is ignored.

use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

    /// The line of an entry file (device and inode are its name).
    fn line(&self, crc: u32) -> String {
        format!("{} {} {} {} {} {:08x}\n", self.size, self.mtime_ns, self.ctime_ns, self.from, self.to, crc)
    }

    fn parse(dev: u64, ino: u64, line: &str) -> Option<(Key, u32)> {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 6 {
            return None;
        }
        let key = Key {
            dev,
            ino,
            size: f[0].parse().ok()?,
            mtime_ns: f[1].parse().ok()?,
            ctime_ns: f[2].parse().ok()?,
            from: f[3].parse().ok()?,
            to: f[4].parse().ok()?,
        };
        Some((key, u32::from_str_radix(f[5], 16).ok()?))
    }

    /// The same file in the same state (the range aside).
    fn same_file(&self, o: &Key) -> bool {
        (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns) == (o.dev, o.ino, o.size, o.mtime_ns, o.ctime_ns)
    }
}

/// Entry files beyond which the oldest half is removed (checked only when an
/// entry is added: files of removed programs leave entries nobody reads).
const MAX_FILES: usize = 4096;

pub struct Cache {
    dir: Option<PathBuf>,
    known: HashMap<Key, u32>,
    new: Vec<(Key, u32)>,
}

fn cache_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("ckpt").join("file-crcs.d"))
}

fn entry_name(dev: u64, ino: u64) -> String {
    format!("{dev}-{ino}")
}

impl Cache {
    /// The cache of this user (empty when there is none, or CKPT_CRC_CACHE=0),
    /// with the entries of the files `wanted` (device, inode).
    pub fn load(wanted: &HashSet<(u64, u64)>) -> Cache {
        let dir = if std::env::var_os("CKPT_CRC_CACHE").is_some_and(|v| v == "0") { None } else { cache_dir() };
        Cache::load_from(dir, wanted)
    }

    fn load_from(dir: Option<PathBuf>, wanted: &HashSet<(u64, u64)>) -> Cache {
        let mut known = HashMap::new();
        if let Some(d) = &dir {
            for &(dev, ino) in wanted {
                let Ok(text) = std::fs::read_to_string(d.join(entry_name(dev, ino))) else { continue };
                known.extend(text.lines().filter_map(|l| Key::parse(dev, ino, l)));
            }
        }
        Cache { dir, known, new: Vec::new() }
    }

    pub fn get(&self, k: &Key) -> Option<u32> {
        self.known.get(k).copied()
    }

    pub fn put(&mut self, k: Key, crc: u32) {
        self.new.push((k, crc));
    }

    /// Write the entries of the files that got new checksums (best effort: a cache
    /// that cannot be written only means the next freeze reads the files again).
    /// Each entry file is replaced whole (a temporary file renamed over it, so a
    /// concurrent freeze reads the old or the new one), keeping the lines of the
    /// file's present state and dropping those of an earlier one.
    pub fn save(self) {
        let Some(dir) = self.dir else { return };
        if self.new.is_empty() {
            return;
        }
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let mut added = false;
        let mut files: Vec<(u64, u64)> = self.new.iter().map(|(k, _)| (k.dev, k.ino)).collect();
        files.sort_unstable();
        files.dedup();
        for (dev, ino) in files {
            let new: Vec<&(Key, u32)> = self.new.iter().filter(|(k, _)| (k.dev, k.ino) == (dev, ino)).collect();
            let now = &new[0].0;
            let mut text: String = self.known.iter().filter(|(k, _)| k.same_file(now)).map(|(k, c)| k.line(*c)).collect();
            text.extend(new.iter().map(|(k, c)| k.line(*c)));
            let path = dir.join(entry_name(dev, ino));
            added |= !path.exists();
            let tmp = dir.join(format!(".{}.{}", entry_name(dev, ino), std::process::id()));
            let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(text.as_bytes()));
            if written.is_err() || std::fs::rename(&tmp, &path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        if added {
            prune(&dir);
        }
    }
}

/// Remove the older half of the entries once there are more than [`MAX_FILES`].
fn prune(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    if entries.len() <= MAX_FILES {
        return;
    }
    let mut aged: Vec<(std::time::SystemTime, PathBuf)> =
        entries.iter().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
    aged.sort();
    for (_, p) in aged.iter().take(aged.len() / 2) {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_bad_ones_are_ignored() {
        let md = std::fs::metadata("/proc/self/exe").unwrap();
        let k = Key::new(&md, 4096, 8192);
        let (dev, ino) = Key::file(&md);
        assert_eq!(Key::parse(dev, ino, k.line(0xdeadbeef).trim_end()), Some((k, 0xdeadbeef)));
        assert_eq!(Key::parse(dev, ino, "1 2 3"), None);
        assert_eq!(Key::parse(dev, ino, "a 2 3 4 5 6"), None);
    }

    #[test]
    fn saved_entries_are_found_again_and_an_older_state_is_dropped() {
        let dir = std::env::temp_dir().join(format!("ckpt-crc-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let md = std::fs::metadata("/proc/self/exe").unwrap();
        let file = Key::file(&md);
        let wanted: HashSet<(u64, u64)> = [file].into_iter().collect();
        let (a, b) = (Key::new(&md, 0, 4096), Key::new(&md, 4096, 8192));
        let mut c = Cache::load_from(Some(dir.clone()), &wanted);
        assert_eq!(c.get(&a), None);
        c.put(a, 1);
        c.save();
        let mut c = Cache::load_from(Some(dir.clone()), &wanted);
        assert_eq!(c.get(&a), Some(1));
        c.put(b, 2);
        c.save();
        let c = Cache::load_from(Some(dir.clone()), &wanted);
        assert_eq!((c.get(&a), c.get(&b)), (Some(1), Some(2)));
        // The same inode in another state: its old lines go at the next save.
        let mut changed = a;
        changed.size += 1;
        let mut c = Cache::load_from(Some(dir.clone()), &wanted);
        assert_eq!(c.get(&changed), None);
        c.put(changed, 3);
        c.save();
        let text = std::fs::read_to_string(dir.join(entry_name(file.0, file.1))).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let c = Cache::load_from(Some(dir.clone()), &wanted);
        assert_eq!((c.get(&changed), c.get(&a)), (Some(3), None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
