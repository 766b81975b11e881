//! The files of periodic checkpoints: each new one is written under a hidden name
//! next to FILE and then renamed over it, so FILE is always a complete checkpoint;
//! with K kept, the one it replaces becomes FILE.1 first (FILE.1 becomes FILE.2, …,
//! up to FILE.K), and FILE itself never goes missing.

use anyhow::{Context, Result};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub struct Files {
    path: PathBuf,
    keep: u32,
}

/// `path` with `.suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `.NAME.SUFFIX` next to `path`.
fn hidden(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

fn rename_if_there(from: &Path, to: &Path) -> Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e).with_context(|| format!("renaming {} to {}", from.display(), to.display())),
        _ => Ok(()),
    }
}

impl Files {
    pub fn new(path: &Path, keep: u32) -> Files {
        Files { path: path.to_path_buf(), keep }
    }

    /// Where the freeze writes (atomically itself): FILE, or with files to keep a
    /// hidden name that `commit` moves into place.
    pub fn write_to(&self) -> PathBuf {
        if self.keep == 0 {
            self.path.clone()
        } else {
            hidden(&self.path, "next")
        }
    }

    /// Rotate the kept files and put the new one in place.
    pub fn commit(&self) -> Result<()> {
        if self.keep == 0 {
            return Ok(());
        }
        for i in (1..self.keep).rev() {
            rename_if_there(&with_suffix(&self.path, &format!(".{i}")), &with_suffix(&self.path, &format!(".{}", i + 1)))?;
        }
        // FILE.1 is a second name of FILE, made under a hidden name and renamed, so
        // FILE stays where it is until the new one replaces it.
        let prev = hidden(&self.path, "prev");
        let _ = fs::remove_file(&prev);
        match fs::hard_link(&self.path, &prev) {
            Ok(()) => rename_if_there(&prev, &with_suffix(&self.path, ".1"))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("linking {} to {}", self.path.display(), prev.display())),
        }
        let next = self.write_to();
        fs::rename(&next, &self.path).with_context(|| format!("renaming {} to {}", next.display(), self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> Option<String> {
        fs::read_to_string(p).ok()
    }

    #[test]
    fn keeps_the_last_k_newest_first() {
        let dir = std::env::temp_dir().join(format!("ckpt-rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("job.resume");
        let files = Files::new(&path, 2);
        for gen in 1..=4 {
            fs::write(files.write_to(), format!("{gen}")).unwrap();
            files.commit().unwrap();
            assert_eq!(read(&path).as_deref(), Some(format!("{gen}").as_str()));
        }
        assert_eq!(read(&with_suffix(&path, ".1")).as_deref(), Some("3"));
        assert_eq!(read(&with_suffix(&path, ".2")).as_deref(), Some("2"));
        assert!(!with_suffix(&path, ".3").exists());
        let mut names: Vec<String> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["job.resume", "job.resume.1", "job.resume.2"], "no hidden file is left");
        fs::remove_dir_all(&dir).unwrap();
    }
}
