//! The output file: created without a name (O_TMPFILE) in the target directory,
//! owner only, flushed (fdatasync(2): the size and blocks of a new file are data it
//! needs, its timestamps are not), and only then given its name, so a failed, interrupted or
//! killed freeze never leaves a file that looks valid (open(2): O_TMPFILE; the file
//! is linked in through /proc/self/fd with AT_SYMLINK_FOLLOW, which needs no
//! privilege, linkat(2)). Filesystems without O_TMPFILE get a hidden temporary name
//! that is removed on every error path.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Owner-only, executable: the file is a program holding the process's memory.
const MODE: u32 = 0o700;

pub struct Output {
    pub path: PathBuf,
    dir: PathBuf,
    /// The hidden temporary name, when O_TMPFILE was not available.
    named_tmp: Option<PathBuf>,
    pub file: File,
    /// The directory, opened before the freeze starts: its fsync, which makes the
    /// name durable, is on the path to the kill, its open need not be.
    dir_file: Option<File>,
    committed: bool,
}

fn tmp_name(dir: &Path, path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.ckpt-tmp.{}", std::process::id()))
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("path {} contains a NUL byte", p.display()))
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
        if path.file_name().is_none() {
            bail!("output path {} has no file name", path.display());
        }
        if path.is_dir() {
            bail!("output path {} is a directory", path.display());
        }
        let anon = OpenOptions::new().read(true).write(true).mode(MODE).custom_flags(libc::O_TMPFILE).open(&dir);
        let (file, named_tmp) = match anon {
            Ok(f) => (f, None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)) => {
                let tmp = tmp_name(&dir, path);
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(MODE)
                    .open(&tmp)
                    .with_context(|| format!("cannot create the output {} (as {})", path.display(), tmp.display()))?;
                (f, Some(tmp))
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create the output {} in {}", path.display(), dir.display())),
        };
        let dir_file = OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(&dir).ok();
        Ok(Output { path: path.to_path_buf(), dir, named_tmp, file, dir_file, committed: false })
    }

    /// Give the anonymous file the name `to`.
    fn link_as(&self, to: &Path) -> std::io::Result<()> {
        let from = CString::new(format!("/proc/self/fd/{}", self.file.as_raw_fd())).expect("no NUL");
        let to = CString::new(to.as_os_str().as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: both paths are valid NUL-terminated strings.
        let r = unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Make the file durable and give it its name (replacing an existing file).
    pub fn commit(mut self) -> Result<()> {
        let p = self.path.clone();
        self.file.sync_data().with_context(|| format!("fdatasync of {}", p.display()))?;
        let tmp = match self.named_tmp.take() {
            Some(t) => t,
            None => match self.link_as(&p) {
                Ok(()) => {
                    self.committed = true;
                    return self.sync_dir();
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    let t = tmp_name(&self.dir, &p);
                    let _ = std::fs::remove_file(&t);
                    self.link_as(&t).with_context(|| format!("cannot name the output {}", t.display()))?;
                    t
                }
                Err(e) => return Err(e).with_context(|| format!("cannot name the output {}", p.display())),
            },
        };
        self.named_tmp = Some(tmp.clone());
        std::fs::rename(&tmp, &p).with_context(|| format!("renaming {} to {}", tmp.display(), p.display()))?;
        self.named_tmp = None;
        self.committed = true;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<()> {
        if let Some(d) = &self.dir_file {
            let _ = d.sync_all();
            return Ok(());
        }
        let d = cpath(&self.dir)?;
        // SAFETY: d is a valid NUL-terminated path; the fd is closed right after.
        let fd = unsafe { libc::open(d.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: fd is a directory fd we own.
            unsafe {
                libc::fsync(fd);
                libc::close(fd);
            }
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(t) = &self.named_tmp {
            if !self.committed {
                let _ = std::fs::remove_file(t);
            }
        }
    }
}
