//! Whether this machine can resume an image, and how: one decision, made by pure
//! functions over the validated tables and a description of the machine.
//!
//! `ckpt check FILE` (generator) and the restorer stub each fill in a [`Machine`]
//! (CPU features, what the kernel offers, its limits, its vdso, its clocks, the
//! resumer's privileges) and a [`Probe`] (ids in use, the files a mapping refers
//! to), then call [`check`]. Every reason the resume cannot go on is reported as a
//! [`Refusal`], which renders its own message through a [`Sink`] (a `String` in the
//! generator, the stub's fixed line buffer), so the two never disagree, not even
//! in wording. What the resume will do where the machine differs (which ids, a time
//! namespace for clocks that are behind) comes back as a [`Plan`].

use crate::records::*;
use crate::{
    align_up, KernelState, Tables, CLK_BOOTTIME, CLK_MONOTONIC, CLK_MONOTONIC_COARSE, CLK_MONOTONIC_RAW,
    CLK_REALTIME, FILE_MFD_EXEC, FILE_MFD_NOEXEC_SEAL, KERNEL_HAVE_CLOCKS, NCLOCKS, PAGE_SIZE, PROC_NO_NEW_PRIVS,
    THREAD_EXITED,
};

/// Kernel facilities and privileges the machine offers (`Machine::features`).
/// clone3(2) with `set_tid` (Linux 5.5): every thread gets its TID back.
pub const FEAT_CLONE3_SET_TID: u32 = 1 << 0;
/// prctl(PR_SET_MM, PR_SET_MM_MAP) (CONFIG_CHECKPOINT_RESTORE).
pub const FEAT_PR_SET_MM_MAP: u32 = 1 << 1;
/// rseq(2) (Linux 4.18), for threads registered with it.
pub const FEAT_RSEQ: u32 = 1 << 2;
/// mmap(2) MAP_FIXED_NOREPLACE (Linux 4.17).
pub const FEAT_MAP_FIXED_NOREPLACE: u32 = 1 << 3;
/// memfd_create(2) MFD_EXEC / MFD_NOEXEC_SEAL (Linux 6.3).
pub const FEAT_MFD_EXEC: u32 = 1 << 4;
/// Time namespaces (CLONE_NEWTIME, Linux 5.6).
pub const FEAT_TIME_NS: u32 = 1 << 5;
/// The resumer may create a user namespace (user_namespaces(7); off where
/// user.max_user_namespaces is 0 or kernel.unprivileged_userns_clone is 0).
pub const FEAT_USER_NS: u32 = 1 << 6;
/// The resumer may choose ids in its own PID namespace (CAP_CHECKPOINT_RESTORE or
/// CAP_SYS_ADMIN).
pub const FEAT_SET_TID_HERE: u32 = 1 << 7;
/// The resumer has CAP_SYS_ADMIN (seccomp filters without no_new_privs).
pub const FEAT_SYS_ADMIN: u32 = 1 << 8;
/// The resumer may make a time namespace and set its offsets here
/// (CAP_SYS_ADMIN and CAP_SYS_TIME); otherwise one comes with a user namespace.
pub const FEAT_TIME_NS_HERE: u32 = 1 << 9;

/// A feature's name and the kernel that brought it, for messages.
pub const fn feature_name(f: u32) -> (&'static str, &'static str) {
    match f {
        FEAT_CLONE3_SET_TID => ("clone3 with set_tid", "Linux 5.5"),
        FEAT_PR_SET_MM_MAP => ("prctl PR_SET_MM_MAP", "CONFIG_CHECKPOINT_RESTORE"),
        FEAT_RSEQ => ("rseq", "Linux 4.18"),
        FEAT_MAP_FIXED_NOREPLACE => ("mmap MAP_FIXED_NOREPLACE", "Linux 4.17"),
        FEAT_MFD_EXEC => ("memfd_create MFD_EXEC/MFD_NOEXEC_SEAL", "Linux 6.3"),
        FEAT_TIME_NS => ("time namespaces", "Linux 5.6"),
        FEAT_USER_NS => ("user namespaces for this user", "user.max_user_namespaces"),
        _ => ("a kernel feature", "a newer kernel"),
    }
}

/// Name of an XSAVE feature bit (the x86 XCR0 layout).
pub const fn xfeature_name(bit: u32) -> &'static str {
    match bit {
        0 => "x87",
        1 => "SSE",
        2 => "AVX",
        3 | 4 => "MPX",
        5..=7 => "AVX-512",
        9 => "PKRU",
        11 | 12 => "CET",
        17 | 18 => "AMX",
        19 => "APX",
        _ => "xstate component",
    }
}

/// Where the running kernel's [vvar], [vvar_vclock], [vdso] are, by index.
pub const SPECIAL_NAMES: [&str; 3] = ["[vvar]", "[vvar_vclock]", "[vdso]"];

/// This machine, as the caller sees it.
pub struct Machine<'a> {
    /// `uname -r`, for messages naming both kernels.
    pub release: &'a [u8],
    /// XCR0: the xstate features this CPU has enabled.
    pub xcr0: u64,
    /// FEAT_* bits.
    pub features: u32,
    /// /proc/sys/kernel/pid_max.
    pub pid_max: u32,
    /// /proc/sys/vm/mmap_min_addr.
    pub mmap_min_addr: u64,
    /// Sizes of this process's [vvar], [vvar_vclock], [vdso] (0 where absent).
    pub specials: [u64; 3],
    /// The running vdso's bytes.
    pub vdso: &'a [u8],
    /// clock_gettime(2) now, in ns, by CLK_* index, in the resumer's time namespace.
    pub clocks: [u64; NCLOCKS],
    /// The resume is to get the original ids back (not `CKPT_SAME_PID=0`).
    pub same_pid: bool,
    /// The resumer's PID (a resume that already has the right one needs no fork).
    pub pid: u32,
}

/// A file as found at resume (stat(2) of the path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: u64,
}

/// What only the caller can look at.
pub trait Probe {
    /// Whether a task other than one of ours holds id `tid` here.
    fn id_taken(&mut self, tid: u32) -> bool;
    /// The regular file at `path`, or None if there is none.
    fn stat(&mut self, path: &[u8]) -> Option<FileId>;
    /// CRC-32C (crate::crc32c) of the bytes `[offset, offset + len)` of the file at
    /// `path`, or None if they cannot be read.
    fn crc(&mut self, path: &[u8], offset: u64, len: u64) -> Option<u32>;
}

/// How the resume gets the process's ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdRoute {
    /// The resumer already has the PID and there are no other threads to place.
    Already,
    /// clone3 set_tid in the resumer's PID namespace: the real ids.
    Here,
    /// Inside a new user + PID namespace made for the process.
    Namespace,
    /// New ids (CKPT_SAME_PID=0).
    New,
}

impl IdRoute {
    pub const fn describe(self) -> &'static str {
        match self {
            IdRoute::Already => "the resumer's own pid, which is the original",
            IdRoute::Here => "the original pid and thread ids",
            IdRoute::Namespace => "the original pid and thread ids inside a new user + pid namespace",
            IdRoute::New => "new pid and thread ids (CKPT_SAME_PID=0)",
        }
    }
}

/// What becomes of the process's vdso on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VdsoPath {
    /// The image has no vdso to restore.
    Absent,
    /// This kernel's vdso is the same build: it moves to where the process had it.
    Same,
    /// Another build: the old vdso's functions become jumps into this kernel's
    /// vdso (or system calls), its data pages unreadable (crate::vdso).
    Trampolines,
}

impl VdsoPath {
    pub const fn describe(self) -> &'static str {
        match self {
            VdsoPath::Absent => "none in the file",
            VdsoPath::Same => "the same build as at the freeze: moved to where the process had it",
            VdsoPath::Trampolines => {
                "another build than at the freeze: each function of the old vdso jumps to this kernel's (or makes the system call), its data pages unreadable"
            }
        }
    }
}

/// What a resume on this machine does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub ids: IdRoute,
    pub vdso: VdsoPath,
    /// Offsets (ns) of CLOCK_MONOTONIC (and its _RAW/_COARSE variants) and
    /// CLOCK_BOOTTIME for a time namespace, when this machine's clocks are behind
    /// the freeze's; None when they are not (or the image did not record them).
    pub timens: Option<[u64; 2]>,
}

/// One reason this machine cannot resume the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The saved xstate uses features this CPU lacks.
    Cpu { saved: u64, have: u64 },
    /// A vdso/vvar mapping of another size (index into SPECIAL_NAMES).
    VdsoSize { which: usize, want: u64, have: u64 },
    /// The running vdso is another build and the image has no symbol table of
    /// the old one to build jumps from (written before VdsoSyms existed).
    VdsoBytes,
    /// A thread stopped inside the old vdso's code, not at a function's start:
    /// that code is not there on this kernel.
    VdsoInside { tid: u32, rip: u64, offset: u64 },
    /// The kernel lacks a FEAT_* the process needs; `need` says what for.
    Feature { feature: u32, need: &'static str },
    /// A saved PID/TID above this kernel's pid_max.
    PidMax { tid: u32, pid_max: u32 },
    /// A VMA below this kernel's mmap_min_addr.
    MinAddr { vma: u32, start: u64, min: u64 },
    /// A referenced file (VMA_FILE_REF) is missing or too short.
    FileMissing { vma: u32 },
    /// A referenced file has another size or other bytes.
    FileChanged { vma: u32, size: bool },
    /// The original ids cannot be had: `tid` is taken (or needs privilege) and no
    /// user namespace can be made.
    Ids { tid: u32, taken: bool },
    /// seccomp filters without no_new_privs need CAP_SYS_ADMIN.
    Seccomp,
}

/// Where a message goes: the generator's `String`, the stub's line buffer.
pub trait Sink {
    fn s(&mut self, s: &str);
    fn b(&mut self, b: &[u8]);
    fn dec(&mut self, v: u64);
    fn hex(&mut self, v: u64);
}

/// Exit codes of the stub's steps (README), which the refusals share.
pub const EXIT_MAP_VMA: u8 = 107;
pub const EXIT_CPU: u8 = 102;
pub const EXIT_VDSO: u8 = 103;
pub const EXIT_PROCESS: u8 = 114;
pub const EXIT_KERNEL: u8 = 116;

fn release(r: &[u8]) -> &[u8] {
    let n = r.iter().position(|&c| c == 0).unwrap_or(r.len());
    if n == 0 {
        b"an unknown kernel"
    } else {
        &r[..n]
    }
}

impl Refusal {
    /// The stub's exit code for this refusal (its step).
    pub const fn code(&self) -> u8 {
        match self {
            Refusal::Cpu { .. } => EXIT_CPU,
            Refusal::VdsoSize { .. } | Refusal::VdsoBytes | Refusal::VdsoInside { .. } => EXIT_VDSO,
            Refusal::Feature { .. } => EXIT_KERNEL,
            Refusal::MinAddr { .. } | Refusal::FileMissing { .. } | Refusal::FileChanged { .. } => EXIT_MAP_VMA,
            Refusal::PidMax { .. } | Refusal::Ids { .. } | Refusal::Seccomp => EXIT_PROCESS,
        }
    }

    /// The step that refuses, as the stub names it in "STEP failed: ...".
    pub const fn step(&self) -> &'static str {
        match self.code() {
            EXIT_CPU => "check cpu",
            EXIT_VDSO => "check vdso",
            EXIT_KERNEL => "check kernel",
            EXIT_MAP_VMA => "map vma",
            _ => "restore process state",
        }
    }

    /// The message (after "STEP failed: "), naming what differs and both kernels
    /// where the kernel is the difference.
    pub fn describe(&self, h: &Header, t: &Tables, m: &Machine, o: &mut dyn Sink) {
        let kernels = |o: &mut dyn Sink| {
            o.s(" (frozen on Linux ");
            o.b(release(&h.kernel_release));
            o.s(", this is Linux ");
            o.b(release(m.release));
            o.s(")");
        };
        let vma = |o: &mut dyn Sink, i: u32| {
            let v = &t.vmas[i as usize];
            o.s("for ");
            o.hex(v.start);
            o.s("-");
            o.hex(v.end);
            o.s(": ");
            o.b(t.string(v.name_off, v.name_len));
        };
        match *self {
            Refusal::Cpu { saved, have } => {
                o.s("the process was frozen on a CPU with");
                let missing = saved & !have;
                let mut last = "";
                for bit in 0..64 {
                    if missing & (1 << bit) != 0 && xfeature_name(bit) != last {
                        last = xfeature_name(bit);
                        o.s(" ");
                        o.s(last);
                    }
                }
                o.s("; this CPU lacks it (saved XCR0 ");
                o.hex(saved);
                o.s(", this CPU ");
                o.hex(have);
                o.s("); resume it on a CPU that has them, or start the program afresh here (its libraries chose their code for the CPU they started on)");
            }
            Refusal::VdsoSize { which, want, have } => {
                o.s("size of ");
                o.s(SPECIAL_NAMES[which]);
                o.s(": the image needs ");
                o.dec(want);
                o.s(" bytes, this kernel has ");
                o.dec(have);
                o.s(" (different kernel)");
                kernels(o);
            }
            Refusal::VdsoBytes => {
                o.s("the running kernel's vdso differs from the frozen process's (another kernel build), and this file has no symbol table of the old vdso to jump from (written by an older ckpt); freeze it again with this ckpt");
                kernels(o);
            }
            Refusal::VdsoInside { tid, rip, offset } => {
                o.s("thread ");
                o.dec(tid as u64);
                o.s(" was frozen inside its vdso's code at ");
                o.hex(rip);
                o.s(" (offset ");
                o.hex(offset);
                o.s("), which this kernel's vdso does not have; freeze it again (a thread leaves the vdso within microseconds)");
                kernels(o);
            }
            Refusal::Feature { feature, need } => {
                let (name, since) = feature_name(feature);
                o.s("this kernel lacks ");
                o.s(name);
                o.s(" (");
                o.s(since);
                o.s("), which the process needs: ");
                o.s(need);
                kernels(o);
            }
            Refusal::PidMax { tid, pid_max } => {
                o.s("id ");
                o.dec(tid as u64);
                o.s(" of the process is above this kernel's pid_max ");
                o.dec(pid_max as u64);
                if let Some(k) = t.kernel.filter(|k| k.pid_max != 0) {
                    o.s(" (");
                    o.dec(k.pid_max as u64);
                    o.s(" where it was frozen)");
                }
                kernels(o);
                o.s("; raise kernel.pid_max or resume with CKPT_SAME_PID=0");
            }
            Refusal::MinAddr { vma: i, start, min } => {
                vma(o, i);
                o.s(" lies at ");
                o.hex(start);
                o.s(", below this kernel's vm.mmap_min_addr ");
                o.dec(min);
                kernels(o);
            }
            Refusal::FileMissing { vma: i } => {
                vma(o, i);
                o.s(" is missing or too short; its unchanged pages are not in this file (freeze with --embed-files to carry them)");
            }
            Refusal::FileChanged { vma: i, size } => {
                vma(o, i);
                o.s(if size { " has another size than at the freeze" } else { " has other contents than at the freeze" });
                o.s("; its unchanged pages are not in this file (freeze with --embed-files to carry them)");
            }
            Refusal::Ids { tid, taken } => {
                o.s("cannot get id ");
                o.dec(tid as u64);
                o.s(if taken { " back: another process has it here" } else { " back: choosing ids needs CAP_CHECKPOINT_RESTORE" });
                o.s(", and no user namespace can be made for a new pid namespace; CKPT_SAME_PID=0 resumes it under a new pid");
            }
            Refusal::Seccomp => {
                o.s("the process has seccomp filters without no_new_privs, which only CAP_SYS_ADMIN may install");
            }
        }
    }
}

/// Decide whether this machine can resume the image: every refusal goes to
/// `refuse` (in a fixed order: CPU, vdso, kernel features, limits, files, ids,
/// privileges), and the plan for the resume comes back.
pub fn check(h: &Header, t: &Tables, m: &Machine, p: &mut dyn Probe, refuse: &mut dyn FnMut(Refusal)) -> Plan {
    if h.xcr0 & !m.xcr0 != 0 {
        refuse(Refusal::Cpu { saved: h.xcr0, have: m.xcr0 });
    }
    let vdso = check_vdso(t, m, refuse);
    let timens = clock_offsets(t.kernel, &m.clocks);
    check_features(t, m, timens.is_some(), refuse);
    check_limits(t, m, refuse);
    check_files(t, p, refuse);
    let ids = id_route(t, m, p, refuse);
    let no_new_privs = t.process.is_some_and(|pr| pr.flags & PROC_NO_NEW_PRIVS != 0);
    if !t.seccomp.is_empty() && !no_new_privs && m.features & FEAT_SYS_ADMIN == 0 {
        refuse(Refusal::Seccomp);
    }
    Plan { ids, vdso, timens }
}

/// The same build (sizes and bytes) moves into place; another build takes
/// trampolines when the image has the old vdso's symbols and no thread is stopped
/// inside its code.
fn check_vdso(t: &Tables, m: &Machine, refuse: &mut dyn FnMut(Refusal)) -> VdsoPath {
    let Some(old) = t.vmas.iter().find(|v| v.kind == VmaKind::Vdso as u32) else { return VdsoPath::Absent };
    if !t.vdso.is_empty() && !t.vdso_syms.is_empty() && !same_vdso(t, m) {
        for th in t.threads.iter().filter(|th| th.flags & THREAD_EXITED == 0) {
            let rip = th.regs.rip;
            let offset = rip.wrapping_sub(old.start);
            if rip >= old.start && rip < old.end && !t.vdso_syms.iter().any(|s| s.offset == offset) {
                refuse(Refusal::VdsoInside { tid: th.tid, rip, offset });
            }
        }
        return VdsoPath::Trampolines;
    }
    check_same_vdso(t, m, refuse);
    VdsoPath::Same
}

fn same_vdso(t: &Tables, m: &Machine) -> bool {
    let mut same = true;
    check_same_vdso(t, m, &mut |_| same = false);
    same
}

fn check_same_vdso(t: &Tables, m: &Machine, refuse: &mut dyn FnMut(Refusal)) {
    let mut sizes = [0u64; 3];
    for v in t.vmas {
        match VmaKind::from_u32(v.kind) {
            Some(VmaKind::Vvar) => sizes[0] = v.end - v.start,
            Some(VmaKind::VvarVclock) => sizes[1] = v.end - v.start,
            Some(VmaKind::Vdso) => sizes[2] = v.end - v.start,
            _ => {}
        }
    }
    for (i, (&want, &have)) in sizes.iter().zip(&m.specials).enumerate() {
        if want != 0 && want != have {
            refuse(Refusal::VdsoSize { which: i, want, have });
            return;
        }
    }
    if sizes[2] != 0 && !t.vdso.is_empty() {
        if t.vdso.len() as u64 != m.specials[2] {
            refuse(Refusal::VdsoSize { which: 2, want: t.vdso.len() as u64, have: m.specials[2] });
        } else if t.vdso != m.vdso {
            refuse(Refusal::VdsoBytes);
        }
    }
}

/// Offsets for a time namespace that keeps the process's clocks from going back:
/// each clock continues from its value at the freeze plus the time that passed
/// since (by CLOCK_REALTIME, never less than zero), when one of this machine's
/// clocks is behind its value at the freeze. One offset serves CLOCK_MONOTONIC, _RAW and _COARSE (the kernel
/// applies the monotonic offset to all three, timens_setup_vdso_data), so it is the
/// largest any of them needs.
pub fn clock_offsets(k: Option<&KernelState>, now: &[u64; NCLOCKS]) -> Option<[u64; 2]> {
    let k = k.filter(|k| k.flags & KERNEL_HAVE_CLOCKS != 0)?;
    // Only a clock that is behind needs one: the rates of the clocks differ by a
    // few parts per million (NTP slews all but _RAW), so on the machine of the
    // freeze "saved + elapsed" may pass "now" by microseconds.
    let clocks = [CLK_MONOTONIC, CLK_MONOTONIC_RAW, CLK_MONOTONIC_COARSE, CLK_BOOTTIME];
    if clocks.iter().all(|&i| now[i] >= k.clocks[i]) {
        return None;
    }
    let elapsed = now[CLK_REALTIME].saturating_sub(k.clocks[CLK_REALTIME]);
    let need = |i: usize| (k.clocks[i].saturating_add(elapsed)).saturating_sub(now[i]);
    let mono = need(CLK_MONOTONIC).max(need(CLK_MONOTONIC_RAW)).max(need(CLK_MONOTONIC_COARSE));
    let boot = need(CLK_BOOTTIME);
    (mono != 0 || boot != 0).then_some([mono, boot])
}

fn check_features(t: &Tables, m: &Machine, timens: bool, refuse: &mut dyn FnMut(Refusal)) {
    let mut need = |f: u32, why: &'static str| {
        if m.features & f == 0 {
            refuse(Refusal::Feature { feature: f, need: why });
        }
    };
    need(FEAT_MAP_FIXED_NOREPLACE, "every memory area is placed at its address without replacing another");
    need(FEAT_PR_SET_MM_MAP, "its brk, stack, arguments and auxv are set in one call");
    if m.same_pid {
        need(FEAT_CLONE3_SET_TID, "its pid and thread ids back (or resume with CKPT_SAME_PID=0)");
    }
    if t.threads.iter().any(|th| th.flags & THREAD_EXITED == 0 && th.rseq_addr != 0) {
        need(FEAT_RSEQ, "its threads were registered with rseq");
    }
    if t.files.iter().any(|f| f.flags & (FILE_MFD_EXEC | FILE_MFD_NOEXEC_SEAL) != 0) {
        need(FEAT_MFD_EXEC, "a memfd made with MFD_EXEC or MFD_NOEXEC_SEAL");
    }
    if timens {
        need(FEAT_TIME_NS, "its clocks never go back, and this machine's are behind the freeze's (a reboot)");
        if m.features & (FEAT_TIME_NS_HERE | FEAT_USER_NS) == 0 {
            need(FEAT_USER_NS, "its clocks never go back: a time namespace, which this user may only make in a user namespace");
        }
    }
}

fn check_limits(t: &Tables, m: &Machine, refuse: &mut dyn FnMut(Refusal)) {
    if m.same_pid {
        if let Some(th) = t.threads.iter().find(|th| th.tid > m.pid_max) {
            refuse(Refusal::PidMax { tid: th.tid, pid_max: m.pid_max });
        }
    }
    if let Some((i, v)) = t.vmas.iter().enumerate().find(|(_, v)| v.start < m.mmap_min_addr) {
        refuse(Refusal::MinAddr { vma: i as u32, start: v.start, min: m.mmap_min_addr });
    }
}

/// Whether the file behind a referenced mapping still holds its bytes: the very
/// file (same identity) does; another file must be as long and match the CRC-32C
/// of the mapped bytes (the stub checks the mapped bytes again after mapping).
pub fn file_verdict(v: &Vma, found: Option<FileId>, p: &mut dyn Probe, path: &[u8], vma: u32) -> Option<Refusal> {
    let Some(f) = found.filter(|f| align_up(f.size, PAGE_SIZE) >= v.file_offset + (v.end - v.start)) else {
        return Some(Refusal::FileMissing { vma });
    };
    if v.file_mtime_ns != 0 && f == (FileId { dev: v.file_dev, ino: v.file_ino, size: v.file_size, mtime_ns: v.file_mtime_ns }) {
        return None;
    }
    if f.size != v.file_size {
        return Some(Refusal::FileChanged { vma, size: true });
    }
    let len = (v.file_offset + (v.end - v.start)).min(v.file_size).saturating_sub(v.file_offset);
    (p.crc(path, v.file_offset, len) != Some(v.file_crc)).then_some(Refusal::FileChanged { vma, size: false })
}

fn check_files(t: &Tables, p: &mut dyn Probe, refuse: &mut dyn FnMut(Refusal)) {
    for (i, v) in t.vmas.iter().enumerate() {
        if v.flags & VMA_FILE_REF == 0 {
            continue;
        }
        let path = t.string(v.name_off, v.name_len);
        let found = p.stat(path);
        if let Some(r) = file_verdict(v, found, p, path, i as u32) {
            refuse(r);
        }
    }
}

/// The same decision pid.rs acts on: the real ids when the resumer may choose them
/// and all are free, else a new user + PID namespace, else a refusal.
fn id_route(t: &Tables, m: &Machine, p: &mut dyn Probe, refuse: &mut dyn FnMut(Refusal)) -> IdRoute {
    let want = t.threads[0].tid;
    if !m.same_pid {
        return IdRoute::New;
    }
    if m.pid == want {
        return IdRoute::Already;
    }
    let taken = t.threads.iter().map(|th| th.tid).find(|&tid| p.id_taken(tid));
    if taken.is_none() && m.features & FEAT_SET_TID_HERE != 0 {
        return IdRoute::Here;
    }
    if m.features & FEAT_USER_NS == 0 {
        refuse(Refusal::Ids { tid: taken.unwrap_or(want), taken: taken.is_some() });
    }
    IdRoute::Namespace
}
