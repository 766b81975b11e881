//! `ckpt freeze`: attach, take the inventory, plan, stream the pages into a temp file,
//! commit it, and only then let the original go (kill it, or detach).

use crate::write::ImageParts;
use crate::memory::Mem;
use crate::output::Output;
use crate::pagemap::Pagemap;
use crate::plan::{self, Strings};
use crate::ptrace::{Release, Seized};
use crate::regs::{self, Restart};
use crate::inject::Injector;
use crate::{emit, fdplan, gadgets, inventory, proc, procstate};
use anyhow::{bail, Context, Result};
use ckpt_format::*;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Kill,
    Continue,
    Stop,
}

pub struct Options {
    pub pid: i32,
    pub output: PathBuf,
    pub after: After,
    pub raw_image: bool,
    /// Refuse fds whose other end is outside the process (else they resume disconnected).
    pub strict_fds: bool,
    pub verbose: bool,
    /// Root only: freeze a process that holds setuid/setgid/file-capability privileges.
    pub force: bool,
    /// Record that missing/shrunk files become /dev/null at resume.
    pub missing_files_ignore: bool,
}

/// Whether a process runs with privileges it got from its executable (setuid,
/// setgid or file capabilities): its ids differ, or a non-root process holds
/// permitted capabilities (proc(5) Uid/Gid/CapPrm; capabilities(7)).
fn elevated(st: &proc::status::Status) -> bool {
    st.uid.iter().any(|&u| u != st.uid[0]) || st.gid.iter().any(|&g| g != st.gid[0]) || (st.uid[0] != 0 && st.cap_prm != 0)
}

/// Checks that need no tracing: the process exists, is alive, is one thread, is not
/// traced already and does not hold privileges a resume file could not carry.
fn precheck(pid: i32, force: bool) -> Result<()> {
    if pid <= 0 {
        bail!("invalid pid {pid}");
    }
    if pid as u32 == std::process::id() {
        bail!("pid {pid} is ckpt itself");
    }
    let st = proc::status::read_status(pid)?;
    if st.state == 'Z' || st.state == 'X' {
        bail!("pid {pid} is a zombie (it has exited and waits for its parent to reap it)");
    }
    if st.tgid != pid {
        bail!("pid {pid} is a thread of process {}; freeze the process", st.tgid);
    }
    if st.threads > 1 {
        bail!("pid {pid} has {} threads; multi-threaded processes are not supported yet", st.threads);
    }
    if st.seccomp == 1 {
        // Checked before anything is injected: in strict mode any system call but
        // read, write, _exit and rt_sigreturn kills the task (seccomp(2)).
        bail!("pid {pid} runs in strict seccomp mode, which cannot be restored");
    }
    if st.tracer_pid != 0 {
        bail!("pid {pid} is already being traced by pid {} (another ckpt freeze, or a debugger)", st.tracer_pid);
    }
    if elevated(&st) {
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !(force && root) {
            bail!(
                "pid {pid} runs with privileges from a setuid/setgid or file-capability executable (uids {:?}, gids {:?}, CapPrm {:#x}): a resume file cannot carry them, and its memory may hold secrets; refused{}",
                st.uid,
                st.gid,
                st.cap_prm,
                if root { " (use --force to freeze it anyway)" } else { "" }
            );
        }
    }
    Ok(())
}

fn children(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// seccomp filters can be read (and installed again) only with CAP_SYS_ADMIN;
/// without it a filtered process is refused rather than resumed unconfined. Runs
/// before any system call is injected: with the filters read, the filters are
/// suspended for the injected calls, which a filter could otherwise fail or answer
/// by killing the task.
fn seccomp(t: &Seized) -> Result<Vec<u8>> {
    let st = proc::status::read_status(t.pid)?;
    if st.seccomp == 0 {
        return Ok(Vec::new());
    }
    let filters = t.seccomp_filters().map_err(|e| {
        anyhow::anyhow!("pid {} has seccomp filters; reading (and restoring) them needs CAP_SYS_ADMIN: {e}", t.pid)
    })?;
    t.suspend_seccomp()?;
    let mut out = Vec::new();
    for f in filters {
        out.extend_from_slice(&((f.len() / 8) as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&f);
    }
    Ok(out)
}

pub fn run(o: &Options) -> Result<()> {
    let t0 = Instant::now();
    precheck(o.pid, o.force)?;
    // The output location is checked before the target is touched; "-" streams
    // the file to standard output.
    let out = if o.output.as_os_str() == "-" { None } else { Some(Output::create(&o.output)?) };
    let mut t = Seized::seize(o.pid)?;
    t.set_release(match o.after {
        After::Stop => Release::Stop,
        _ => Release::Continue,
    });
    t.interrupt()?;
    let inv = inventory::take(&t).with_context(|| format!("reading the state of pid {}", o.pid))?;
    if inv.threads.len() > 1 {
        bail!("pid {} has {} threads; multi-threaded processes are not supported yet", o.pid, inv.threads.len());
    }
    let mut warnings = Vec::new();
    let kids = children(o.pid);
    if !kids.is_empty() {
        warnings.push(format!(
            "pid {} has child processes ({}); they are not frozen, and the resumed process will not be their parent",
            o.pid,
            kids.join(" ")
        ));
    }
    if t.pending_signal() != 0 {
        warnings.push(format!("signal {} was being delivered at the freeze; it is not in the image", t.pending_signal()));
    }

    let mem = Mem::open(o.pid).with_context(|| format!("opening the memory of pid {}", o.pid))?;
    let mut strings = Strings::default();
    let mut vmas = plan::plan(&inv.maps, &mut strings).with_context(|| format!("pid {}", o.pid))?;
    let fdp = fdplan::plan(&t, &inv.fds, o.strict_fds, &mut strings, &mut warnings)?;

    let g = gadgets::find(&mem, &vmas);
    if g.syscall == 0 {
        bail!("pid {}: no `syscall` instruction in its executable memory to read its kernel state with", o.pid);
    }
    let writable = |lo: u64, hi: u64| vmas.iter().any(|v| v.vma.start <= lo && hi <= v.vma.end && v.map.write);
    let seccomp_filters = seccomp(&t)?;
    let state = {
        let inj = Injector::new(&t, inv.regs, g.syscall, writable)?;
        procstate::capture(&t, &inj, &mut strings).with_context(|| format!("reading the kernel state of pid {}", o.pid))?
    };
    let mut r = inv.regs;
    let mut before = [0u8; 2];
    let restart = if (r.orig_rax as i64) >= 0 && r.rip >= 2 {
        mem.read_exact(r.rip - 2, &mut before).context("reading the instruction before rip")?;
        regs::fix_syscall_restart(&mut r, before).with_context(|| format!("pid {}", o.pid))?
    } else {
        Restart::None
    };
    if let Some(rs) = inv.rseq {
        if let Some(abort) = regs::fix_rseq(&mem, rs.addr, &mut r)? {
            warnings.push(format!("stopped inside an rseq critical section; resumes at its abort handler {abort:#x}"));
        }
    }
    if g.syscall_ret == 0 {
        warnings.push("no `syscall; ret` and rt_sigreturn instructions in the target's text: the restorer will leave one mapping behind".into());
    }

    let mut parts = ImageParts {
        xcr0: inventory::xcr0(),
        xstate_size: inv.xstate.len() as u32,
        gadget_syscall_ret: g.syscall_ret,
        gadget_sigreturn: g.sigreturn,
        pid: o.pid as u32,
        kernel_release: proc::kernel_release(),
        flags: if o.missing_files_ignore { HDR_MISSING_FILES_IGNORE } else { 0 },
        created_unix: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        ..Default::default()
    };
    parts.xstate = inv.xstate.clone();
    parts.process = Some(state.process);
    parts.seccomp = seccomp_filters;
    parts.timers = state.timers;
    parts.signals = state.signals;
    let (robust_list, robust_len) = inv.robust;
    parts.threads.push(Thread {
        tid: o.pid as u32,
        regs: r,
        sigmask: state.sigmask,
        ss_sp: state.ss.0,
        ss_flags: state.ss.1,
        ss_size: state.ss.2,
        tid_address: state.tid_address,
        rseq_addr: inv.rseq.map_or(0, |x| x.addr),
        rseq_len: inv.rseq.map_or(0, |x| x.len),
        rseq_sig: inv.rseq.map_or(0, |x| x.sig),
        xstate_size: inv.xstate.len() as u32,
        robust_list,
        robust_len,
        ..Default::default()
    });
    if let Some(v) = vmas.iter().find(|v| v.vma.kind == VmaKind::Vdso as u32) {
        let mut b = vec![0u8; (v.vma.end - v.vma.start) as usize];
        mem.read_exact(v.vma.start, &mut b).context("reading the vdso")?;
        parts.vdso = b;
    }
    let st = &inv.stat;
    let heap_end = vmas.iter().find(|v| v.vma.kind == VmaKind::Heap as u32).map(|v| v.vma.end);
    let mut mm = Mm {
        start_code: st.start_code,
        end_code: st.end_code,
        start_data: st.start_data,
        end_data: st.end_data,
        start_brk: st.start_brk,
        brk: heap_end.unwrap_or(st.start_brk).max(st.start_brk),
        start_stack: st.start_stack,
        arg_start: st.arg_start,
        arg_end: st.arg_end,
        env_start: st.env_start,
        env_end: st.env_end,
        ..Default::default()
    };
    if inv.auxv.len() > MAX_AUXV {
        bail!("pid {} has {} auxv entries, more than the format's {MAX_AUXV}", o.pid, inv.auxv.len());
    }
    for (i, (k, v)) in inv.auxv.iter().enumerate() {
        mm.auxv[2 * i] = *k;
        mm.auxv[2 * i + 1] = *v;
    }
    mm.auxv_words = 2 * inv.auxv.len() as u32;
    if let Some(exe) = &inv.exe {
        (mm.exe_off, mm.exe_len) = strings.add(exe);
        if let Ok(md) = std::fs::metadata(exe) {
            use std::os::unix::fs::MetadataExt;
            mm.exe_size = md.len();
            mm.exe_mtime_ns = (md.mtime() as u64).wrapping_mul(1_000_000_000).wrapping_add(md.mtime_nsec() as u64);
        }
    }
    (mm.cmdline_off, mm.cmdline_len) = strings.add(&inv.cmdline.join("\0"));
    parts.mm = mm;
    parts.fds = fdp.fds;
    parts.epoll = fdp.epoll;
    parts.locks = fdp.locks;

    parts.strings = strings.buf;
    let mut pm = Pagemap::open(o.pid).with_context(|| format!("opening the page map of pid {}", o.pid))?;
    let mut src = emit::Source { mem: &mem, pm: &mut pm, vmas: &mut vmas, parts: &mut parts, blobs: &fdp.blobs, resume_exe: !o.raw_image };
    let (stats, file_size) = match &out {
        Some(out) => emit::to_file(&mut src, &out.file, &t).with_context(|| format!("writing {}", o.output.display()))?,
        None => emit::to_stream(&mut src, std::io::stdout().lock(), &t).context("writing the image to standard output")?,
    };
    // Every byte is written now. A process that keeps running need not wait for the
    // disk; one that is killed is killed only once the file is durable.
    let t = match o.after {
        After::Kill => Some(t),
        After::Continue | After::Stop => {
            drop(t);
            None
        }
    };
    if let Some(out) = out {
        out.commit()?;
    }
    let frozen = t0.elapsed();
    if let Some(t) = t {
        t.kill();
    }
    for w in &warnings {
        eprintln!("ckpt: warning: {w}");
    }
    if o.verbose {
        if let Some(exe) = &inv.exe {
            eprintln!(
                "ckpt: /proc/PID/exe of the resumed process names {exe} only when it is resumed with CAP_SYS_ADMIN \
                 (or CAP_CHECKPOINT_RESTORE) and that file is unchanged; otherwise it names the file that was run"
            );
        }
        eprintln!(
            "ckpt: froze pid {} into {} ({} bytes): {} vmas, {} pages stored, {} zero pages skipped, {} unreadable; {:?}{}",
            o.pid,
            o.output.display(),
            file_size,
            vmas.len(),
            stats.stored_pages,
            stats.zero_pages,
            stats.unreadable_pages,
            frozen,
            match restart {
                Restart::None => String::new(),
                Restart::Reexecute { nr } => format!("; system call {nr} will be restarted"),
                Restart::Interrupted { nr } => format!("; system call {nr} will return EINTR"),
            }
        );
    }
    Ok(())
}
