//! The binfmt_misc file system: mounting it, writing the register line,
//! reading and removing entries. Kernel documentation:
//! Documentation/admin-guide/binfmt-misc.rst.

use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where binfmt-misc.rst mounts it (`mount binfmt_misc -t binfmt_misc
/// /proc/sys/fs/binfmt_misc`); the directory exists whenever the kernel has
/// binfmt_misc (built in, or the module loaded).
pub const MOUNT: &str = "/proc/sys/fs/binfmt_misc";

/// The error for anything that needs privileges.
pub const NEEDS_ROOT: &str =
    "registering binfmt_misc handlers needs root (CAP_SYS_ADMIN in the initial user namespace)";

/// Start of every error meaning "this kernel/container offers no binfmt_misc".
pub const UNAVAILABLE: &str = "binfmt_misc is not available";

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

pub fn entry_path(name: &str) -> PathBuf {
    Path::new(MOUNT).join(name)
}

/// An empty directory until binfmt_misc is mounted on it: `register` and
/// `status` are the two files every instance has.
pub fn is_mounted() -> bool {
    Path::new(MOUNT).join("register").exists()
}

/// Whether binfmt_misc as a whole is enabled (its `status` file).
pub fn globally_enabled() -> Option<bool> {
    let s = fs::read_to_string(Path::new(MOUNT).join("status")).ok()?;
    Some(s.trim() == "enabled")
}

pub fn check_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("{NEEDS_ROOT}");
    }
    Ok(())
}

/// Mounts binfmt_misc if needed; returns whether this call mounted it.
pub fn ensure_mounted() -> Result<bool> {
    if is_mounted() {
        return Ok(false);
    }
    // The flags systemd's proc-sys-fs-binfmt_misc.mount uses: nothing on this
    // file system is to be executed or is a device.
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: every pointer is a NUL-terminated static string; mount(2) reads
    // them only; the data argument may be NULL.
    let rc = unsafe {
        libc::mount(
            c"binfmt_misc".as_ptr(),
            c"/proc/sys/fs/binfmt_misc".as_ptr(),
            c"binfmt_misc".as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    Err(match errno(&e) {
        libc::ENOENT | libc::ENODEV => anyhow!(
            "{UNAVAILABLE}: mounting it at {MOUNT} failed ({e}); the kernel was built without \
             CONFIG_BINFMT_MISC or its module is not loaded (try `modprobe binfmt_misc`)"
        ),
        libc::EPERM | libc::EACCES => anyhow!(
            "{UNAVAILABLE}: mounting it at {MOUNT} was refused ({e}); {NEEDS_ROOT}, \
             which a container usually lacks: register on the host instead"
        ),
        _ => anyhow!("{UNAVAILABLE}: mounting it at {MOUNT} failed: {e}"),
    })
}

/// The text of entry NAME, or None if there is no such entry.
pub fn read_entry(name: &str) -> Result<Option<String>> {
    let p = entry_path(name);
    match fs::read_to_string(&p) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Every entry (name, text) of the instance, sorted by name.
pub fn list_entries() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir(MOUNT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "register" && n != "status")
                .filter_map(|n| {
                    let t = fs::read_to_string(entry_path(&n)).ok()?;
                    Some((n, t))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// How a write to `register` failed.
pub enum RegisterError {
    /// An entry of that name exists (EEXIST).
    Exists,
    Other(anyhow::Error),
}

/// Writes one register line. The kernel parses the whole line from a single
/// write(2), so it is written in one call.
pub fn register(line: &str, interpreter: &str) -> Result<(), RegisterError> {
    let reg = Path::new(MOUNT).join("register");
    let mut f = match fs::OpenOptions::new().write(true).open(&reg) {
        Ok(f) => f,
        Err(e) if matches!(errno(&e), libc::EACCES | libc::EPERM) => {
            return Err(RegisterError::Other(anyhow!(
                "{NEEDS_ROOT}: cannot open {}: {e}",
                reg.display()
            )))
        }
        Err(e) => {
            return Err(RegisterError::Other(
                anyhow::Error::new(e).context(format!("opening {}", reg.display())),
            ))
        }
    };
    match f.write(line.as_bytes()) {
        Ok(n) if n == line.len() => Ok(()),
        Ok(n) => Err(RegisterError::Other(anyhow!(
            "the kernel took {n} of the {} bytes of the register line {line}",
            line.len()
        ))),
        Err(e) => Err(match errno(&e) {
            libc::EEXIST => RegisterError::Exists,
            libc::EPERM => RegisterError::Other(anyhow!("{NEEDS_ROOT}: the kernel refused the registration ({e})")),
            // With F the kernel opens the interpreter during this write
            // (binfmt-misc.rst, "F - fix binary").
            libc::ENOENT => RegisterError::Other(anyhow!(
                "the kernel cannot open the interpreter {interpreter} ({e})"
            )),
            libc::EACCES => RegisterError::Other(anyhow!(
                "the kernel cannot execute the interpreter {interpreter} ({e}): is it on a noexec mount?"
            )),
            _ => RegisterError::Other(anyhow!("the kernel rejected the register line {line}: {e}")),
        }),
    }
}

/// Removes entry NAME: binfmt-misc.rst "You can remove one entry ... by
/// echoing -1 to /proc/.../the_name".
pub fn remove(name: &str) -> Result<()> {
    let p = entry_path(name);
    let r = fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| f.write_all(b"-1"));
    match r {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), libc::EACCES | libc::EPERM) => {
            bail!("{NEEDS_ROOT}: cannot remove {}: {e}", p.display())
        }
        Err(e) => Err(e).with_context(|| format!("removing the binfmt_misc entry {}", p.display())),
    }
}
