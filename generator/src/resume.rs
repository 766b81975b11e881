//! `ckpt resume FILE`: run a raw image (or a .resume executable) without any
//! binfmt_misc registration. The restorer is executed from an in-memory file
//! (memfd_create(2) + execveat(2) with AT_EMPTY_PATH) with the image path as argv[1],
//! exactly as binfmt_misc would start it.

use anyhow::{bail, Context, Result};
use std::ffi::{CString, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{FromRawFd, OwnedFd, AsRawFd};
use std::path::Path;

fn cstring(b: &[u8]) -> Result<CString> {
    CString::new(b).context("argument contains a NUL byte")
}

pub fn run(file: &Path, args: &[OsString], quiet: bool) -> Result<()> {
    let mut magic = [0u8; 8];
    std::fs::File::open(file)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("cannot read {}", file.display()))?;
    let mut argv = vec![cstring(file.as_os_str().as_bytes())?];
    for a in args {
        argv.push(cstring(a.as_bytes())?);
    }
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !(quiet && k == "CKPT_QUIET"))
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<Result<_>>()?;
    if quiet {
        // The restorer's progress counter (restorer-stub/src/progress.rs).
        env.push(c"CKPT_QUIET=1".to_owned());
    }
    if magic[..4] == *b"\x7fELF" {
        let e = nix::unistd::execve(&argv[0], &argv, &env);
        bail!("cannot execute {}: {}", file.display(), e.unwrap_err());
    }
    if magic != ckpt_format::MAGIC {
        bail!("{} is neither a ckpt image nor a resume executable", file.display());
    }
    // SAFETY: memfd_create with a static name; the returned fd is owned below.
    let fd = unsafe { libc::memfd_create(c"ckpt-restorer".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create for the restorer");
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::File::from(fd.try_clone()?).write_all(ckpt_linker::STUB).context("writing the restorer to memory")?;
    argv.insert(0, c"ckpt-restorer".to_owned());
    let e = nix::unistd::execveat(Some(fd.as_raw_fd()), c"", &argv, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH);
    bail!("cannot execute the restorer for {}: {}", file.display(), e.unwrap_err())
}

/// `ckpt restorer -o PATH`: write the plain restorer (for binfmt_misc and make install).
pub fn write_restorer(out: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Where `ckpt binfmt register` looks for it (lib/ckpt/) may not exist yet.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, ckpt_linker::STUB).with_context(|| format!("writing {}", out.display()))?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755)).with_context(|| format!("chmod {}", out.display()))
}
