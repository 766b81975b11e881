//! The output file: written under a temporary name in the target directory, owner
//! only, fsynced and renamed into place, so a failed or interrupted freeze never
//! leaves a file that looks valid. The temporary file is removed on drop unless the
//! output was committed.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Output {
    pub path: PathBuf,
    tmp: PathBuf,
    pub file: File,
    committed: bool,
}

impl Output {
    pub fn create(path: &Path) -> Result<Output> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!("output directory {} does not exist", dir.display());
        }
        let name = path.file_name().with_context(|| format!("output path {} has no file name", path.display()))?;
        let tmp = dir.join(format!(".{}.ckpt-tmp.{}", name.to_string_lossy(), std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Output { path: path.to_path_buf(), tmp, file, committed: false })
    }

    /// Make the file durable, executable by its owner only, and give it its name.
    pub fn commit(mut self) -> Result<()> {
        let p = self.path.clone();
        self.file.sync_all().with_context(|| format!("fsync of {}", p.display()))?;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod of {}", p.display()))?;
        std::fs::rename(&self.tmp, &p).with_context(|| format!("renaming {} to {}", self.tmp.display(), p.display()))?;
        self.committed = true;
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
