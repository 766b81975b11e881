//! `ckpt freeze`: stop every thread, take the inventory, plan, stream the pages into a
//! temp file, commit it, and only then let the original go (kill it, or detach).

use crate::write::ImageParts;

use crate::memory::Mem;
use crate::output::Output;
use crate::pagemap::Pagemap;
use crate::plan::{self, Strings};
use crate::group::Group;
use crate::ptrace::Release;
use crate::inject::Injector;
use crate::outcome::{Report, Stage};
use crate::{cow, emit, precopy, trace, fdplan, fileref, gadgets, inventory, proc, procstate, progress, thread_state};
use anyhow::{bail, Context, Result};
use ckpt_format::*;
use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

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
    /// Draw the progress bar (progress.rs) when stderr is a terminal.
    pub progress: bool,
    /// Root only: freeze a process that holds setuid/setgid/file-capability privileges.
    pub force: bool,
    /// Record that missing/shrunk files become /dev/null at resume.
    pub missing_files_ignore: bool,
    /// Set HDR_LAZY: resume lazily unless CKPT_LAZY=0.
    pub lazy: bool,
    /// Store the clean pages of mapped files too (fileref.rs), so the file depends on
    /// no library or executable at resume.
    pub embed_files: bool,
    /// Freeze the process with every descendant, in one file (tree.rs).
    pub tree: bool,
    /// With After::Continue, read the pages from a copy-on-write copy (cow.rs) so
    /// the process runs on while they are written.
    pub cow: bool,
    /// Store the pages compressed (compress.rs, HDR_COMPRESSED).
    pub compress: bool,
    /// With `cow`, copy a process with much anonymous memory while it runs and
    /// only its written pages while it is stopped (precopy.rs), rather than fork it.
    pub precopy: bool,
}

/// Whether a process runs with privileges it got from its executable (setuid,
/// setgid or file capabilities): its ids differ, or a non-root process holds
/// permitted capabilities (proc(5) Uid/Gid/CapPrm; capabilities(7)).
fn elevated(st: &proc::status::Status) -> bool {
    st.uid.iter().any(|&u| u != st.uid[0]) || st.gid.iter().any(|&g| g != st.gid[0]) || (st.uid[0] != 0 && st.cap_prm != 0)
}

/// Checks that need no tracing: the process exists, is not a zombie (a leader that
/// exited while its threads run on is not one: group.rs), is not traced already and
/// does not hold privileges a resume file could not carry.
pub fn precheck(pid: i32, force: bool) -> Result<()> {
    if pid <= 0 {
        bail!("invalid pid {pid}");
    }
    if pid as u32 == std::process::id() {
        bail!("pid {pid} is ckpt itself");
    }
    let st = proc::status::read_status(pid)?;
    if (st.state == 'Z' || st.state == 'X') && st.threads <= 1 {
        bail!("pid {pid} is a zombie (it has exited and waits for its parent to reap it)");
    }
    if st.tgid != pid {
        bail!("pid {pid} is a thread of process {}; freeze the process", st.tgid);
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

/// Child processes of any thread of `pid` (each thread has its own list, proc(5)).
pub fn children(pid: i32) -> Vec<String> {
    let tids = proc::threads(pid).unwrap_or_default();
    tids.iter()
        .filter_map(|tid| proc::read_file_text(format!("/proc/{pid}/task/{tid}/children")).ok())
        .flat_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

/// seccomp filters can be read (and installed again) only with CAP_SYS_ADMIN;
/// without it a filtered process is refused rather than resumed unconfined. Runs
/// before any system call is injected: with the filters read, the filters are
/// suspended for the injected calls (in every thread: the option is per tracee),
/// which a filter could otherwise fail or answer by killing the task. Filters are
/// per thread (seccomp(2)); threads with different filters are refused, since the
/// resume installs one set for all (SECCOMP_FILTER_FLAG_TSYNC).
/// `status`: the text of the reader thread's /proc/PID/status, read after the stop.
fn seccomp(g: &Group, status: &str) -> Result<Vec<u8>> {
    let st = proc::status::parse_status(status).map_err(|e| anyhow::anyhow!("/proc/{}/status: {e}", g.reader().pid))?;
    if st.seccomp == 0 {
        return Ok(Vec::new());
    }
    let mut first: Option<Vec<Vec<u8>>> = None;
    for t in &g.threads {
        let filters = t.seccomp_filters().map_err(|e| {
            anyhow::anyhow!("pid {} has seccomp filters; reading (and restoring) them needs CAP_SYS_ADMIN: {e}", g.pid)
        })?;
        match &first {
            None => first = Some(filters),
            Some(f) if *f != filters => bail!("pid {}: thread {} has other seccomp filters than thread {}; refused", g.pid, t.pid, g.reader().pid),
            Some(_) => {}
        }
        t.suspend_seccomp()?;
    }
    let mut out = Vec::new();
    for f in first.unwrap_or_default() {
        out.extend_from_slice(&((f.len() / 8) as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 4]);
        out.extend_from_slice(&f);
    }
    Ok(out)
}

/// Every thread's record, the leader first (an exited leader as such), and their
/// XSAVE areas laid one after another, each 64-byte aligned.
struct Threads {
    records: Vec<Thread>,
    xstate: Vec<u8>,
    signals: Vec<PendingSignal>,
}

/// `injected`: what the system calls run in each thread told, in the order of
/// `g.threads`.
fn capture_threads(g: &Group, mem: &Mem, injected: Vec<thread_state::Injected>, warnings: &mut Vec<String>) -> Result<Threads> {
    let mut out = Threads { records: Vec::new(), xstate: Vec::new(), signals: Vec::new() };
    if g.leader_exited {
        out.records.push(thread_state::exited_leader(g.pid));
    }
    for (t, inj) in g.threads.iter().zip(injected) {
        let c = thread_state::capture(g.pid, t, g.state_before(t.pid), mem, inj)
            .with_context(|| format!("reading the state of thread {} of pid {}", t.pid, g.pid))?;
        let mut th = c.thread;
        if !c.xstate.is_empty() {
            while !out.xstate.len().is_multiple_of(64) {
                out.xstate.push(0);
            }
            th.xstate_off = out.xstate.len() as u64;
            out.xstate.extend_from_slice(&c.xstate);
        }
        out.records.push(th);
        out.signals.extend(c.signals);
        warnings.extend(c.warnings);
    }
    if out.records.len() > MAX_THREADS as usize {
        bail!("pid {} has {} threads, more than the format's {MAX_THREADS}", g.pid, out.records.len());
    }
    Ok(out)
}

/// The system calls run inside the process: the process-wide ones and the first
/// thread's own in one batch, then each other thread's own from the same code
/// page (syscall_batch.rs), which is unmapped at the end, whatever happened.
fn inject_all(g: &Group, syscall_at: u64, writable: &dyn Fn(u64, u64) -> bool, status: &str, strings: &mut Strings) -> Result<(procstate::Captured, Vec<thread_state::Injected>)> {
    let (pid, reader) = (g.pid, g.reader());
    let inj = Injector::new(reader, reader.regs()?, syscall_at, writable)?;
    let ps = procstate::capture(reader, &inj, &thread_state::calls(), status, strings).with_context(|| format!("reading the kernel state of pid {pid}"))?;
    let others = || -> Result<Vec<thread_state::Injected>> {
        let mut all = vec![thread_state::injected(reader.pid, inj.task_sigmask(), &ps.own).with_context(|| format!("pid {pid}"))?];
        for t in &g.threads[1..] {
            all.push(
                thread_state::inject(pid, t, ps.page.as_ref(), syscall_at, writable)
                    .with_context(|| format!("reading the state of thread {} of pid {pid}", t.pid))?,
            );
        }
        Ok(all)
    };
    let all = others();
    if let Some(p) = ps.page {
        p.unmap(&inj, pid)?;
    }
    Ok((ps.state, all?))
}

/// Everything one process's image needs, read while every process being frozen
/// is stopped; nothing is written yet.
pub struct Captured {
    pub parts: ImageParts,
    vmas: Vec<crate::plan::PlannedVma>,
    /// The smaps read before the stop, whose flags are checked against a
    /// copy-on-write child's (cow.rs); None when smaps was read while stopped.
    early_maps: Option<Vec<crate::proc::maps::Mapping>>,
    /// The `syscall` instruction system calls are injected at.
    syscall_at: u64,
    mem: Mem,
    pm: Pagemap,
    blobs: Vec<(usize, Vec<u8>)>,
    extent_data: Vec<Vec<u8>>,
    file_crcs: Option<crate::fileref::Pending>,
    pub tcp_ends: Vec<std::os::fd::OwnedFd>,
    /// The made-up fd numbers of [`ExtraFds::exports`], in their order.
    pub exported: Vec<i32>,
    pub nthreads: usize,
    pub exe: Option<String>,
}

/// Fds the caller plans itself (a process tree's shared pipes): left out of the
/// fd plan and added as they are; and files of other processes the plan makes
/// too (a tree's root makes what processes below it share: fdplan/exports.rs).
#[derive(Default)]
pub struct ExtraFds {
    pub fds: Vec<Fd>,
    pub exports: Vec<std::os::fd::OwnedFd>,
}

/// Read process `g` (stopped) into a [`Captured`]: its inventory, memory plan, fds
/// (those in `extra` as given), kernel state and threads.
/// `early`: smaps read before the stop (inventory.rs), for a copy-on-write freeze.
pub fn capture(o: &Options, g: &Group, extra: ExtraFds, early: Option<Vec<crate::proc::maps::Mapping>>, warnings: &mut Vec<String>) -> Result<Captured> {
    let pid = g.pid;
    let reader = g.reader();
    let rpid = reader.pid;
    let tids: Vec<i32> = g.threads.iter().map(|t| t.pid).collect();
    let all_locks = if fdplan::needs_proc_locks(&tids) { proc::locks::Prefetch::start() } else { proc::locks::Prefetch::skip() };
    trace::mark("seized");
    let mut inv = inventory::take(rpid, early).with_context(|| format!("reading the state of pid {pid}"))?;
    trace::mark("inventory");
    inv.fds.retain(|f| !extra.fds.iter().any(|e| e.fd == f.fd));
    let mem = Mem::open(rpid).with_context(|| format!("opening the memory of pid {pid}"))?;
    let mut strings = Strings::default();
    let mut vmas = plan::plan(&inv.maps, &mut strings).with_context(|| format!("pid {pid}"))?;
    trace::mark("plan");
    let file_crcs = (!o.embed_files).then(|| fileref::reference(&mut vmas, &strings.buf));
    trace::mark("file references");
    let mut fdp = fdplan::plan(reader, fdplan::Sources { fds: &inv.fds, locks: all_locks, exports: extra.exports }, &mut vmas, &mem, o.strict_fds, &mut strings, warnings)?;
    trace::mark("fds planned");
    merge_fds(&mut fdp, extra.fds);

    let gd = gadgets::find(&mem, &vmas);
    if gd.syscall == 0 {
        bail!("pid {pid}: no `syscall` instruction in its executable memory to read its kernel state with");
    }
    let writable = |lo: u64, hi: u64| vmas.iter().any(|v| v.vma.start <= lo && hi <= v.vma.end && v.map.write);
    trace::mark("gadgets");
    // Read once for the seccomp mode, the umask and the groups (procstate.rs).
    let status = proc::read_file_text(format!("/proc/{rpid}/status")).with_context(|| format!("reading /proc/{rpid}/status"))?;
    let seccomp_filters = seccomp(g, &status)?;
    let (state, injected) = inject_all(g, gd.syscall, &writable, &status, &mut strings)?;
    trace::mark("process state");
    let threads = capture_threads(g, &mem, injected, warnings)?;
    trace::mark("threads");
    if gd.syscall_ret == 0 {
        warnings.push(format!("pid {pid}: no `syscall; ret` and rt_sigreturn instructions in the target's text: the restorer will leave one mapping behind"));
    }

    let live = threads.records.iter().find(|t| t.flags & THREAD_EXITED == 0).expect("a live thread");
    let mut parts = ImageParts {
        xcr0: inventory::xcr0(),
        xstate_size: live.xstate_size,
        gadget_syscall_ret: gd.syscall_ret,
        gadget_sigreturn: gd.sigreturn,
        pid: pid as u32,
        kernel_release: proc::kernel_release(),
        flags: if o.missing_files_ignore { HDR_MISSING_FILES_IGNORE } else { 0 } | if o.lazy { HDR_LAZY } else { 0 }
            | if o.compress { ckpt_format::HDR_COMPRESSED } else { 0 },
        created_unix: SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        ..Default::default()
    };
    let nthreads = threads.records.len();
    parts.xstate = threads.xstate;
    parts.process = Some(state.process);
    parts.kernel = Some(crate::kernel_state::capture(pid));
    parts.seccomp = seccomp_filters;
    parts.timers = state.timers;
    parts.signals = threads.signals;
    parts.signals.extend(state.signals);
    parts.threads = threads.records;
    if let Some(v) = vmas.iter().find(|v| v.vma.kind == VmaKind::Vdso as u32) {
        let mut b = vec![0u8; (v.vma.end - v.vma.start) as usize];
        mem.read_exact(v.vma.start, &mut b).context("reading the vdso")?;
        parts.vdso_syms = crate::vdso_syms::read(&b, &mut strings).with_context(|| format!("pid {}", o.pid))?;
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
        bail!("pid {pid} has {} auxv entries, more than the format's {MAX_AUXV}", inv.auxv.len());
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
    parts.fds = std::mem::take(&mut fdp.fds);
    parts.epoll = std::mem::take(&mut fdp.epoll);
    parts.locks = std::mem::take(&mut fdp.locks);
    parts.files = std::mem::take(&mut fdp.files);
    parts.extents = std::mem::take(&mut fdp.extents);
    parts.sockets = std::mem::take(&mut fdp.sockets);
    parts.sockopts = std::mem::take(&mut fdp.sockopts);
    parts.strings = strings.buf;
    let pm = Pagemap::open(rpid).with_context(|| format!("opening the page map of pid {pid}"))?;
    Ok(Captured {
        parts,
        early_maps: inv.maps_early.then_some(inv.maps),
        syscall_at: gd.syscall,
        vmas,
        mem,
        pm,
        blobs: fdp.blobs,
        extent_data: fdp.extent_data,
        file_crcs,
        tcp_ends: fdp.tcp_ends,
        exported: fdp.exported,
        nthreads,
        exe: inv.exe,
    })
}

/// Add the records planned by the caller, keeping the fds in ascending order and
/// the blobs pointing at their records.
fn merge_fds(fdp: &mut fdplan::FdPlan, extra: Vec<Fd>) {
    if extra.is_empty() {
        return;
    }
    let old = std::mem::take(&mut fdp.fds);
    let mut all: Vec<(Option<usize>, Fd)> = old.into_iter().enumerate().map(|(i, f)| (Some(i), f)).collect();
    all.extend(extra.into_iter().map(|f| (None, f)));
    all.sort_by_key(|(_, f)| f.fd);
    let mut new_index = vec![0usize; all.len()];
    for (n, (o, _)) in all.iter().enumerate() {
        if let Some(o) = o {
            new_index[*o] = n;
        }
    }
    for (i, _) in fdp.blobs.iter_mut() {
        *i = new_index[*i];
    }
    fdp.fds = all.into_iter().map(|(_, f)| f).collect();
}

/// Where a captured image goes.
pub enum Sink<'a> {
    File(&'a std::fs::File),
    Stdout,
}

impl Captured {
    /// Write the image (a `.resume` executable when `resume_exe`); returns the page
    /// statistics, the bytes written and the image's own size.
    pub fn write(&mut self, sink: Sink, g: &dyn emit::Alive, resume_exe: bool) -> Result<(crate::pages::Stats, u64, u64)> {
        let compress = self.parts.flags & ckpt_format::HDR_COMPRESSED != 0;
        let mut src = emit::Source {
            mem: &self.mem,
            pm: &mut self.pm,
            vmas: &mut self.vmas,
            parts: &mut self.parts,
            blobs: &self.blobs,
            extent_data: &self.extent_data,
            resume_exe,
            file_crcs: self.file_crcs.take(),
            compress,
        };
        match sink {
            Sink::File(f) => emit::to_file(&mut src, f, g),
            Sink::Stdout => emit::to_stream(&mut src, std::io::stdout().lock(), g),
        }
    }

    /// Read the pages from here on from a copy-on-write child of the stopped
    /// process (cow.rs), which can then be let go; None with a warning saying why
    /// the process stays stopped until its pages are written.
    pub fn copy_on_write(&mut self, g: &Group, warnings: &mut Vec<String>) -> Result<Option<cow::CowCopy>> {
        let vmas = &self.vmas;
        let writable = |lo: u64, hi: u64| vmas.iter().any(|v| v.vma.start <= lo && hi <= v.vma.end && v.map.write);
        let why = match cow::obstacle(vmas) {
            Some(why) => why,
            None => match cow::fork(g.reader(), g.pid, self.syscall_at, writable) {
                Ok(c) => {
                    self.mem = Mem::open(c.pid).with_context(|| format!("opening the memory of the copy-on-write child {} of pid {}", c.pid, g.pid))?;
                    self.pm = Pagemap::open(c.pid).with_context(|| format!("opening the page map of the copy-on-write child {}", c.pid))?;
                    return Ok(Some(c));
                }
                Err(e) => format!("{e:#}"),
            },
        };
        warnings.push(format!("pid {}: {why}; it stays stopped until its pages are written", g.pid));
        Ok(None)
    }

    /// Read the pages from here on from what `p` copied, with the written pages
    /// copied again now (the process is stopped), so the process can be let go.
    /// False, with the reason traced, if that failed: the caller falls back to
    /// the fork.
    pub fn use_precopy(&mut self, p: &mut precopy::Precopy, changed: precopy::Changed, g: &Group) -> bool {
        let made = p.snapshot(&self.vmas, &self.mem, &mut self.pm, changed).and_then(|(snap, rec)| {
            let mem = Mem::from_snapshot(g.pid, snap).with_context(|| format!("opening the memory of pid {}", g.pid))?;
            let pm = Pagemap::recorded(g.reader().pid, rec).with_context(|| format!("opening the page map of pid {}", g.pid))?;
            Ok((mem, pm))
        });
        match made {
            Ok((mem, pm)) => {
                (self.mem, self.pm) = (mem, pm);
                true
            }
            Err(e) => {
                trace::mark(&format!("pre-copy not used: {e:#}"));
                false
            }
        }
    }

    pub fn nvmas(&self) -> usize {
        self.vmas.len()
    }

    /// Size and content (up to its last data byte; the rest is a hole) of the
    /// image's file of inode `ino`, if it has one.
    pub fn file_content(&self, ino: u64) -> Option<(u64, Vec<u8>)> {
        let f = self.parts.files.iter().find(|f| f.ino == ino && f.same_as == 0)?;
        let range = f.first_extent as usize..(f.first_extent + f.nextents) as usize;
        let exts = &self.parts.extents[range.clone()];
        let end = exts.iter().map(|e| e.offset + e.len).max().unwrap_or(0);
        let mut buf = vec![0u8; end as usize];
        for (e, d) in exts.iter().zip(&self.extent_data[range]) {
            buf[e.offset as usize..(e.offset + e.len) as usize].copy_from_slice(d);
        }
        Some((f.size, buf))
    }

    /// The image's file of inode `ino` is the tree's, made by the root at `slot`.
    pub fn mark_tree_file(&mut self, ino: u64, slot: u32) {
        for f in self.parts.files.iter_mut().filter(|f| f.ino == ino && f.same_as == 0) {
            f.flags |= FILE_IN_TREE;
            f.tree_slot = slot;
        }
    }
}

/// Freeze as `o` says; `stage` follows the work, so a failure can say where it
/// happened (outcome.rs).
pub fn run(o: &Options, stage: &Cell<Stage>) -> Result<Report> {
    if o.tree {
        return crate::tree::run(o, stage);
    }
    let t0 = Instant::now();
    stage.set(Stage::Check);
    precheck(o.pid, o.force)?;
    // The output location is checked before the target is touched; "-" streams
    // the file to standard output.
    stage.set(Stage::Output);
    let out = if o.output.as_os_str() == "-" { None } else { Some(Output::create(&o.output)?) };
    let bar = progress::Bar::start(o.progress);
    stage.set(Stage::Seize);
    trace::mark("start");
    // A copy-on-write freeze reads smaps (whose cost grows with the resident size)
    // before the stop, and only the cheap layout while stopped (inventory.rs).
    let use_cow = o.after == After::Continue && o.cow;
    let mut pre = if use_cow && o.precopy { start_precopy(o) } else { None };
    let early_maps = if use_cow { proc::maps::read_smaps(o.pid).ok() } else { None };
    trace::mark("early smaps");
    let t_seize = Instant::now();
    let g = Group::seize(o.pid, release(o.after))?;
    stage.set(Stage::Capture);
    let mut warnings = Vec::new();
    let kids = children(o.pid);
    if !kids.is_empty() {
        warnings.push(format!(
            "pid {} has child processes ({}); they are not frozen, and the resumed process will not be their parent (--tree freezes them with it)",
            o.pid,
            kids.join(" ")
        ));
    }
    // The pre-copy's scan for changed pages reads only the page map: it runs on
    // the other core while the rest of the state is captured.
    let (c, changed) = std::thread::scope(|s| {
        let scan = pre.as_ref().map(|p| s.spawn(|| p.changed()));
        let c = capture(o, &g, ExtraFds::default(), early_maps, &mut warnings);
        (c, scan.map(|h| h.join()))
    });
    let mut c = c?;
    // Every piece of state but the pages is read: a process that runs on is let go
    // now, its pages read from what was copied while it ran and the pages it
    // wrote since, copied now, or else from a copy-on-write copy of its memory.
    let precopied = match (pre.as_mut(), changed) {
        (Some(p), Some(Ok(changed))) => c.use_precopy(p, changed, &g),
        _ => false,
    };
    trace::mark("pre-copy snapshot");
    let cow = if use_cow && !precopied { c.copy_on_write(&g, &mut warnings)? } else { None };
    trace::mark("copy-on-write fork");
    // The stop for the pre-copy's injection counts too.
    let setup_stop = pre.as_ref().map_or(Duration::ZERO, |p| p.stopped);
    let mut stopped = None;
    let g = if cow.is_some() || precopied {
        drop(g);
        stopped = Some(t_seize.elapsed() + setup_stop);
        None
    } else {
        Some(g)
    };
    trace::mark("released");
    if let Some(p) = pre.take() {
        // Ends the tracking, in ckpt: no longer part of the stop.
        drop(p);
        trace::mark("pre-copy: userfaultfd closed");
    }
    if let (Some(cp), Some(early)) = (&cow, &c.early_maps) {
        cow::verify_flags(early, cp).with_context(|| format!("pid {}", o.pid))?;
        trace::mark("flags checked");
    }
    let alive: &dyn emit::Alive = match (&cow, &g) {
        (Some(cp), _) => cp,
        (None, Some(g)) => g,
        (None, None) => &precopy::Copied,
    };
    stage.set(Stage::Write);
    let (stats, file_size, _) = match &out {
        Some(out) => c.write(Sink::File(&out.file), alive, !o.raw_image).with_context(|| format!("writing {}", o.output.display()))?,
        None => c.write(Sink::Stdout, alive, !o.raw_image).context("writing the image to standard output")?,
    };
    trace::mark("written");
    // Every byte is written now. A process that keeps running need not wait for the
    // disk; one that is killed is killed only once the file is durable.
    if let Some(cp) = cow {
        match cp.finish() {
            Ok(reap) => {
                trace::mark(&format!("copy-on-write child reaped; the target was stopped {:.3} ms for it", reap.as_secs_f64() * 1e3));
                stopped = stopped.map(|s| s + reap);
            }
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    let g = match (o.after, g) {
        (After::Kill, g) => g,
        (After::Continue | After::Stop, g) => {
            if g.is_some() {
                drop(g);
                stopped = Some(t_seize.elapsed() + setup_stop);
            }
            None
        }
    };
    stage.set(Stage::Commit);
    progress::syncing();
    let t_sync = Instant::now();
    if let Some(out) = out {
        out.commit()?;
    }
    let fsync = t_sync.elapsed();
    trace::mark("committed");
    let frozen = t0.elapsed();
    // A process that is killed is stopped from the seize to its end.
    let stopped = stopped.unwrap_or_else(|| t_seize.elapsed());
    let tcp_ends = std::mem::take(&mut c.tcp_ends);
    if let Some(g) = g {
        fdplan::end_with_reset(&tcp_ends);
        g.kill();
        trace::mark("killed");
    }
    drop(tcp_ends);
    drop(bar);
    let mut report = Report::new(o.pid, o.output.clone(), file_size, c.nthreads, c.nvmas(), stats, [frozen, stopped, fsync], c.exe.clone());
    report.warnings = warnings;
    Ok(report)
}

/// Set up the pre-copy of process `o.pid` (precopy.rs), its temporary file next
/// to the output; None, with the reason traced, where it cannot be used.
fn start_precopy(o: &Options) -> Option<precopy::Precopy> {
    let dir = match o.output.parent() {
        _ if o.output.as_os_str() == "-" => std::env::temp_dir(),
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match precopy::start(o.pid, &dir) {
        Ok(p) => Some(p),
        Err(e) => {
            trace::mark(&format!("pre-copy not used: {e:#}"));
            None
        }
    }
}

/// How the seized threads are let go when nothing killed them.
pub fn release(after: After) -> Release {
    match after {
        After::Stop => Release::Stop,
        _ => Release::Continue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_fds_stay_in_order_and_blobs_follow_their_records() {
        let fd = |n: i32, kind: FdKind| Fd { fd: n, kind: kind as u32, ..Default::default() };
        let mut p = fdplan::FdPlan { fds: vec![fd(0, FdKind::Inherit), fd(4, FdKind::Pipe), fd(9, FdKind::Path)], ..Default::default() };
        p.blobs = vec![(1, b"pipe".to_vec()), (2, b"file".to_vec())];
        merge_fds(&mut p, vec![fd(7, FdKind::Tree), fd(1, FdKind::Tree)]);
        assert_eq!(p.fds.iter().map(|f| f.fd).collect::<Vec<_>>(), [0, 1, 4, 7, 9]);
        assert_eq!(p.fds[p.blobs[0].0].fd, 4);
        assert_eq!(p.fds[p.blobs[1].0].fd, 9);
        assert_eq!(p.fds[1].kind, FdKind::Tree as u32);
    }
}
