//! `ckpt binfmt`: the binfmt_misc registration that makes raw images
//! (`ckpt freeze --image`, magic `CKPTIMG\x01`) executable by themselves.
//!
//! Why it exists: a raw image holds no restorer, so without help it runs only
//! as `ckpt resume FILE`. binfmt_misc lets the kernel recognise the image's
//! first bytes at execve(2) and start the plain restorer (`ckpt restorer`,
//! installed as `lib/ckpt/ckpt-restorer` by `make install`) on it, so
//! `./app.ckpt` just works, like a `.resume` file but without a copy of the
//! restorer in every image. This module writes, removes and shows that one
//! registration (and optionally its binfmt.d file for the next boot); the
//! restorer itself already accepts both ways binfmt_misc hands it the image.
//!
//! Kernel documentation: Documentation/admin-guide/binfmt-misc.rst.

mod kernel;
mod persist;
mod text;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use nix::unistd::AccessFlags;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use text::Entry;

const DEFAULT_NAME: &str = "ckpt";

/// The installed restorer, relative to the `ckpt` executable (`make install`
/// puts `bin/ckpt` and `lib/ckpt/ckpt-restorer` under the same PREFIX).
const RESTORER_FROM_PREFIX: &str = "lib/ckpt/ckpt-restorer";

#[derive(Subcommand)]
pub enum BinfmtCmd {
    /// Register raw images with binfmt_misc so that `./app.ckpt` runs them (root)
    ///
    /// Writes `:NAME:M:0:CKPTIMG\x01::INTERPRETER:FO` to
    /// /proc/sys/fs/binfmt_misc/register (mounting binfmt_misc there first if
    /// needed): files starting with the raw image magic are run by the
    /// restorer. The flags are chosen deliberately:
    ///
    ///   F  fix binary: the kernel opens the interpreter now, at registration, so
    ///      images run in any mount namespace, chroot or container. Re-run
    ///      `ckpt binfmt register` after reinstalling the restorer.
    ///   O  open binary: the kernel opens the image and passes it to the restorer
    ///      as AT_EXECFD, so images that are executable but not readable run too.
    ///
    /// Never C (credentials from the image: a setuid image would run the
    /// restorer as root) and never P (an extra argument the restorer does not
    /// expect). Registering the same NAME and interpreter again replaces the
    /// entry (picking up a reinstalled restorer); another interpreter is refused.
    #[command(verbatim_doc_comment)]
    Register {
        /// Entry name: the file /proc/sys/fs/binfmt_misc/NAME.
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
        /// The restorer to run images with (at most 127 bytes once absolute);
        /// default: the installed one, <dir of ckpt>/../lib/ckpt/ckpt-restorer.
        #[arg(long)]
        interpreter: Option<PathBuf>,
        /// Also write the line to /usr/lib/binfmt.d/NAME.conf (or /etc/binfmt.d/
        /// if /usr/lib is read-only) so systemd-binfmt registers it at boot.
        #[arg(long)]
        persist: bool,
    },
    /// Remove the registration, and the binfmt.d file `--persist` wrote (root).
    Unregister {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
    /// Show whether binfmt_misc is mounted and how NAME is registered.
    Status {
        #[arg(long, default_value = DEFAULT_NAME)]
        name: String,
    },
}

pub fn run(cmd: BinfmtCmd) -> Result<()> {
    match cmd {
        BinfmtCmd::Register {
            name,
            interpreter,
            persist,
        } => register(&name, interpreter.as_deref(), persist),
        BinfmtCmd::Unregister { name } => unregister(&name),
        BinfmtCmd::Status { name } => status(&name),
    }
}

/// `<dir of the running ckpt>/../lib/ckpt/ckpt-restorer`, whether it exists
/// or not.
fn installed_restorer() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running ckpt executable")?;
    let prefix = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot find the installation prefix of {}", exe.display()))?;
    Ok(prefix.join(RESTORER_FROM_PREFIX))
}

/// The installed restorer; when there is none (a build tree, `cargo install`), the
/// error gives the one command line that writes it there and registers it.
fn default_interpreter(name: &str, persist: bool) -> Result<PathBuf> {
    let p = installed_restorer()?;
    if !p.exists() {
        let exe = std::env::current_exe().context("cannot find the running ckpt executable")?;
        let exe = text::shell_quote(&exe.to_string_lossy());
        let mut again = format!("{exe} binfmt register");
        if name != DEFAULT_NAME {
            again += &format!(" --name {}", text::shell_quote(name));
        }
        if persist {
            again += " --persist";
        }
        bail!(
            "no restorer installed at {} (where this ckpt looks for it); run `{exe} restorer -o {} && {again}` \
             (or `make install`, or pass --interpreter PATH)",
            p.display(),
            text::shell_quote(&p.to_string_lossy()),
        );
    }
    Ok(p)
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("the interpreter path {} is not UTF-8", p.display()))
}

/// Checks that the interpreter is an executable regular file; warns if it is
/// not this ckpt's restorer.
fn check_interpreter(p: &Path) -> Result<()> {
    let md = match fs::metadata(p) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the interpreter {} does not exist (write one with `ckpt restorer -o PATH`, or run `make install`)",
            p.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("the interpreter {}", p.display())),
    };
    if !md.is_file() {
        bail!("the interpreter {} is not a regular file", p.display());
    }
    // access(2) with X_OK also fails on a noexec mount, which execve would
    // refuse; for root it needs at least one x bit, so check the mode too.
    if md.permissions().mode() & 0o111 == 0 || nix::unistd::access(p, AccessFlags::X_OK).is_err() {
        bail!(
            "the interpreter {} is not executable (chmod 755 it; it must not be on a noexec mount)",
            p.display()
        );
    }
    match fs::read(p) {
        Ok(b) if b == ckpt_linker::STUB => {}
        _ => eprintln!(
            "ckpt: warning: {} is not the restorer of this ckpt (`ckpt restorer -o` writes it); \
             images from this ckpt may not run with it",
            p.display()
        ),
    }
    Ok(())
}

fn register(name: &str, interpreter: Option<&Path>, persist: bool) -> Result<()> {
    text::check_name(name)?;
    kernel::check_root()?;
    let interp = match interpreter {
        // A relative path would be resolved by the kernel in the caller's
        // directory: make it absolute here.
        Some(p) => std::path::absolute(p)
            .with_context(|| format!("cannot make {} absolute", p.display()))?,
        None => default_interpreter(name, persist)?,
    };
    let interp_s = path_str(&interp)?;
    let line = text::register_line(name, &ckpt_format::MAGIC, interp_s)?;
    check_interpreter(&interp)?;
    if persist {
        persist::check_free(name)?;
    }
    kernel::ensure_mounted()?;

    let mut replaced = false;
    if let Some(t) = kernel::read_entry(name)? {
        let old = text::parse_entry(&t)
            .with_context(|| format!("cannot parse {}", kernel::entry_path(name).display()))?;
        let old_interp = old.interpreter.as_deref().unwrap_or("(none)");
        if old_interp != interp_s {
            bail!(
                "a binfmt_misc entry named {name} already exists with interpreter {old_interp}; \
                 remove it with `ckpt binfmt unregister --name {name}` (or `echo -1 > {}`), \
                 or choose another --name",
                kernel::entry_path(name).display()
            );
        }
        // Same interpreter path: register again so that F opens the file the
        // path holds now (a reinstall replaces the file, the old entry would
        // keep running the old one).
        kernel::remove(name)?;
        replaced = true;
    }
    match kernel::register(&line, interp_s) {
        Ok(()) => {}
        Err(kernel::RegisterError::Exists) => bail!(
            "a binfmt_misc entry named {name} appeared while registering; see `ckpt binfmt status --name {name}`"
        ),
        Err(kernel::RegisterError::Other(e)) => return Err(e),
    }

    let entry = kernel::read_entry(name)?
        .ok_or_else(|| anyhow!("the entry {name} is missing right after registering it"))
        .and_then(|t| text::parse_entry(&t))?;
    println!(
        "{} binfmt_misc entry {name}: files starting with CKPTIMG\\x01 now run with {interp_s}",
        if replaced {
            "re-registered"
        } else {
            "registered"
        }
    );
    println!("  line:  {line}");
    print_flags(&entry.flags);
    println!("  never C: a setuid image must not run the restorer as root");
    for (other, e) in other_ckpt_entries(name) {
        println!(
            "  note: entry {other} (interpreter {}) matches raw images too; the newest \
             registration ({name}) is tried first",
            e.interpreter.as_deref().unwrap_or("?")
        );
    }
    if persist {
        let p = persist::write(name, &line)?;
        println!(
            "  persisted: {} (systemd-binfmt registers it at boot)",
            p.display()
        );
        if let Some(c) = persist::find(name).into_iter().find(|c| c.path != p) {
            println!(
                "  note: {} also exists{}",
                c.path.display(),
                if c.path.starts_with("/etc") {
                    " and takes precedence at boot"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

fn print_flags(flags: &str) {
    let mut lines = text::describe_flags(flags).into_iter();
    if let Some(first) = lines.next() {
        println!("  flags: {first}");
    } else {
        println!("  flags: (none)");
    }
    for l in lines {
        println!("         {l}");
    }
}

/// Entries other than `name` that match raw images.
fn other_ckpt_entries(name: &str) -> Vec<(String, Entry)> {
    kernel::list_entries()
        .into_iter()
        .filter(|(n, _)| n != name)
        .filter_map(|(n, t)| Some((n, text::parse_entry(&t).ok()?)))
        .filter(|(_, e)| e.matches_magic(&ckpt_format::MAGIC))
        .collect()
}

fn unregister(name: &str) -> Result<()> {
    text::check_name(name)?;
    kernel::check_root()?;
    let mut did = false;
    if kernel::is_mounted() {
        if let Some(t) = kernel::read_entry(name)? {
            let e = text::parse_entry(&t)?;
            if !e.matches_magic(&ckpt_format::MAGIC) {
                bail!(
                    "the binfmt_misc entry {name} does not match ckpt images (interpreter {}); \
                     not removing it (`echo -1 > {}` would)",
                    e.interpreter.as_deref().unwrap_or("?"),
                    kernel::entry_path(name).display()
                );
            }
            kernel::remove(name)?;
            println!(
                "removed binfmt_misc entry {name} (interpreter {})",
                e.interpreter.as_deref().unwrap_or("?")
            );
            did = true;
        }
    }
    for c in persist::find(name) {
        if c.ours {
            fs::remove_file(&c.path).with_context(|| format!("removing {}", c.path.display()))?;
            println!("removed {}", c.path.display());
            did = true;
        } else {
            println!("left {}: it was not written by ckpt", c.path.display());
        }
    }
    if !did {
        if kernel::is_mounted() {
            bail!("no binfmt_misc entry named {name} is registered (`ckpt binfmt status --name {name}`)");
        }
        bail!(
            "binfmt_misc is not mounted at {}, so no entry {name} is registered",
            kernel::MOUNT
        );
    }
    Ok(())
}

fn status(name: &str) -> Result<()> {
    text::check_name(name)?;
    let installed = installed_restorer().ok();
    if !kernel::is_mounted() {
        println!(
            "binfmt_misc: not mounted at {} (`ckpt binfmt register` mounts it)",
            kernel::MOUNT
        );
        println!("entry {name}: not registered; raw images run with `ckpt resume FILE`");
    } else {
        match kernel::globally_enabled() {
            Some(false) => println!(
                "binfmt_misc: mounted at {}, but disabled as a whole (`echo 1 > {}/status`)",
                kernel::MOUNT,
                kernel::MOUNT
            ),
            _ => println!("binfmt_misc: mounted at {}, enabled", kernel::MOUNT),
        }
        match kernel::read_entry(name)? {
            None => println!(
                "entry {name}: not registered (`ckpt binfmt register` as root); raw images run with `ckpt resume FILE`"
            ),
            Some(t) => print_entry(name, &text::parse_entry(&t)?, installed.as_deref()),
        }
        for (other, e) in other_ckpt_entries(name) {
            println!(
                "other entry matching raw images: {other} (interpreter {}, {})",
                e.interpreter.as_deref().unwrap_or("?"),
                if e.enabled { "enabled" } else { "disabled" }
            );
        }
    }
    match &installed {
        Some(p) if p.exists() => println!("installed restorer: {}", p.display()),
        Some(p) => println!(
            "installed restorer: none ({} does not exist; `ckpt restorer -o {}` or `make install`)",
            p.display(),
            text::shell_quote(&p.to_string_lossy())
        ),
        None => println!("installed restorer: unknown (cannot locate the running ckpt)"),
    }
    for c in persist::find(name) {
        println!(
            "persisted: {}{}",
            c.path.display(),
            if c.ours { "" } else { " (not written by ckpt)" }
        );
    }
    Ok(())
}

fn print_entry(name: &str, e: &Entry, installed: Option<&Path>) {
    println!(
        "entry {name}: registered, {}",
        if e.enabled {
            "enabled"
        } else {
            "disabled (`echo 1 > /proc/sys/fs/binfmt_misc/NAME` enables it)"
        }
    );
    let interp = e.interpreter.as_deref().unwrap_or("?");
    println!("  interpreter: {interp}");
    print_flags(&e.flags);
    match (&e.offset, &e.magic, &e.extension) {
        (Some(off), Some(m), _) => println!(
            "  magic: {} at offset {off}{}",
            text::escape_magic(m),
            if e.matches_magic(&ckpt_format::MAGIC) {
                " (ckpt raw images)"
            } else {
                " (NOT the ckpt raw image magic)"
            }
        ),
        (_, _, Some(x)) => println!("  extension: {x} (NOT the ckpt raw image magic)"),
        _ => {}
    }
    for p in text::flag_problems(e) {
        println!("  warning: {p}");
    }
    if !e.has_ckpt_flags() {
        println!(
            "  note: ckpt registers with the flags {} (`ckpt binfmt register` again)",
            text::FLAGS
        );
    }
    let same_path = installed.is_some_and(|p| p == Path::new(interp));
    println!(
        "  installed restorer: {}",
        match installed {
            Some(_) if same_path => "the registered interpreter is the installed one".to_owned(),
            Some(p) => format!("differs: ckpt would register {}", p.display()),
            None => "unknown".to_owned(),
        }
    );
    // With F the kernel runs the file opened at registration; the path may
    // hold another file by now, so this compares what the path holds.
    println!(
        "  interpreter content: {}",
        match fs::read(interp) {
            Ok(b) if b == ckpt_linker::STUB => "the same as this ckpt's restorer".to_owned(),
            Ok(_) => "differs from this ckpt's restorer (`ckpt binfmt register` again after `make install`)".to_owned(),
            Err(err) => format!("cannot read it ({err})"),
        }
    );
    if e.has_flag('F') {
        println!("  (F: the kernel runs the file that was at this path at registration time)");
    }
}
