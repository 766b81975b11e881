//! `--persist`: the registration as a binfmt.d(5) file, which
//! systemd-binfmt.service writes to the register file at every boot (one
//! register line per line; `#` and `;` start comments).

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where packages put binfmt.d files, then where the administrator does (a
/// file in /etc overrides the one of the same name in /usr/lib).
pub const DIRS: [&str; 2] = ["/usr/lib/binfmt.d", "/etc/binfmt.d"];

/// First line of every file ckpt writes: `unregister` removes only such files.
const MARKER: &str = "# Written by `ckpt binfmt register --persist`";

pub fn conf_name(name: &str) -> String {
    format!("{name}.conf")
}

/// The file's content: the marker, a note, the register line.
pub fn conf_text(line: &str) -> String {
    format!(
        "{MARKER}; `ckpt binfmt unregister` removes it.\n\
         # systemd-binfmt registers this at boot: ckpt raw images run with the restorer.\n\
         {line}\n"
    )
}

/// Whether `text` is a file ckpt wrote for entry `name`.
pub fn is_ours(text: &str, name: &str) -> bool {
    let prefix = format!(":{name}:");
    text.lines().next().is_some_and(|l| l.starts_with(MARKER))
        && text.lines().any(|l| l.starts_with(&prefix))
}

/// A binfmt.d file for entry `name`.
pub struct Conf {
    pub path: PathBuf,
    pub ours: bool,
}

/// The binfmt.d files named after `name`, in DIRS order.
pub fn find(name: &str) -> Vec<Conf> {
    DIRS.iter()
        .map(|d| Path::new(d).join(conf_name(name)))
        .filter_map(|path| {
            let text = fs::read_to_string(&path).ok()?;
            let ours = is_ours(&text, name);
            Some(Conf { path, ours })
        })
        .collect()
}

/// Refuses before anything is registered if a file of that name that ckpt
/// did not write is in the way.
pub fn check_free(name: &str) -> Result<()> {
    if let Some(c) = find(name).into_iter().find(|c| !c.ours) {
        bail!(
            "{} exists and was not written by ckpt; remove it or choose another --name",
            c.path.display()
        );
    }
    Ok(())
}

/// Writes the file (temp file, fsync, rename; mode 0644) into the first of
/// DIRS that is writable: /usr/lib is read-only on some systems.
pub fn write(name: &str, line: &str) -> Result<PathBuf> {
    let text = conf_text(line);
    let mut last = None;
    for dir in DIRS {
        match write_in(Path::new(dir), name, &text) {
            Ok(p) => return Ok(p),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EROFS | libc::EACCES | libc::EPERM)
                ) =>
            {
                last = Some((dir, e));
            }
            Err(e) => return Err(e).with_context(|| format!("writing {dir}/{}", conf_name(name))),
        }
    }
    let (dir, e) = last.expect("DIRS is not empty");
    Err(e).with_context(|| format!("cannot write the binfmt.d file (last tried {dir})"))
}

fn write_in(dir: &Path, name: &str, text: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(conf_name(name));
    let tmp = dir.join(format!(".{}.tmp{}", conf_name(name), std::process::id()));
    let r = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // Whatever the umask: systemd-binfmt and `status` read it.
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r.map(|()| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_file_roundtrip() {
        let line = ":ckpt:M:0:CKPTIMG\\x01::/usr/local/lib/ckpt/ckpt-restorer:FO";
        let t = conf_text(line);
        assert!(is_ours(&t, "ckpt"));
        assert!(!is_ours(&t, "ckp"));
        assert!(!is_ours(&t, "other"));
        // Every line but the register line is a binfmt.d comment.
        let active: Vec<&str> = t
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
            .collect();
        assert_eq!(active, [line]);
        // A qemu-style file of the same name is not ours.
        assert!(!is_ours(":ckpt:M::\\x7fELF::/usr/bin/qemu:F\n", "ckpt"));
    }

    #[test]
    fn writes_and_replaces_atomically() {
        let dir = std::env::temp_dir().join(format!("ckpt-binfmt-persist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = write_in(&dir, "ckpt", "a\n").unwrap();
        let p2 = write_in(&dir, "ckpt", "b\n").unwrap();
        assert_eq!(p, p2);
        assert_eq!(fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ckpt.conf"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
