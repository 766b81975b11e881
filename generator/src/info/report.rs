//! Everything `ckpt info` shows, gathered once into plain values: the text output
//! and the `--json` object are two renderings of this one [`Report`], so they
//! cannot disagree.

use super::decode::{self, human};
use super::memory::ImageMemory;
use super::threads::{self, ThreadInfo};
use super::{time, xfeatures};
use crate::reader::{FileKind, ImageFile};
use ckpt_format::*;
use serde::Serialize;

/// Registers and addresses are hex strings (`"0x401a2b"`): exact in every JSON
/// reader and easy to read; sizes and counts are numbers.
fn hex(v: u64) -> String {
    format!("{v:#x}")
}

#[derive(Serialize)]
pub struct Report {
    pub file: FileInfo,
    pub frozen: Frozen,
    pub cpu: Cpu,
    pub process: Process,
    /// Every thread, the leader first.
    pub threads: Vec<ThreadInfo>,
    pub vmas: Vec<VmaInfo>,
    pub fds: Vec<FdInfo>,
    /// File locks taken again at resume.
    pub locks: Vec<LockInfo>,
    /// The processes of a `--tree` file, the root first; empty for one process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tree: Vec<TreeMemberInfo>,
    pub totals: Totals,
}

#[derive(Serialize)]
pub struct TreeMemberInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// A zombie's wait status; None for a live process.
    pub zombie_status: Option<u32>,
    /// Bytes of its own image (0 for the root, whose image this is).
    pub image_size: u64,
}

#[derive(Serialize)]
pub struct LockInfo {
    pub fd: i32,
    /// "flock", "POSIX" or "OFD".
    pub kind: &'static str,
    /// "read" or "write".
    pub mode: &'static str,
    pub start: u64,
    /// Bytes; 0: to the end of the file.
    pub len: u64,
}

#[derive(Serialize)]
pub struct FileInfo {
    pub path: String,
    /// "resume" or "raw".
    pub kind: &'static str,
    /// "resume executable" or "raw image".
    pub kind_name: &'static str,
    pub format_version: u32,
    pub image_offset: u64,
    pub image_size: u64,
    pub file_size: u64,
    pub page_data_checksums: &'static str,
}

#[derive(Serialize)]
pub struct Frozen {
    pub unix_time: u64,
    pub utc: String,
    pub kernel_release: String,
    pub pid: u32,
    /// Functions of the frozen process's vdso the file records (for jumps on a
    /// kernel whose vdso is another build).
    pub vdso_functions: usize,
    /// What becomes of the vdso on this machine (format::compat::VdsoPath).
    pub vdso_here: String,
}

#[derive(Serialize)]
pub struct Cpu {
    pub xcr0: String,
    pub features: Vec<String>,
    /// Components not in their initial state in any thread's saved registers (XSTATE_BV).
    pub in_use: Vec<String>,
    pub xstate_size: u32,
}

#[derive(Serialize)]
pub struct Process {
    pub executable: Option<String>,
    pub cmdline: Vec<String>,
    pub code: [String; 2],
    pub data: [String; 2],
    pub brk: [String; 2],
    pub stack_start: String,
    pub auxv_entries: u32,
    /// Instructions of the target's own text the restorer ends with, if found.
    pub gadget_syscall_ret: Option<String>,
    pub gadget_sigreturn: Option<String>,
    /// Process-wide state, when the image has it.
    pub state: Option<ProcState>,
}

#[derive(Serialize)]
pub struct ProcState {
    pub comm: String,
    pub cwd: String,
    pub umask: String,
    pub no_new_privs: bool,
    /// Signals whose disposition is not the default, e.g. "SIGINT: handler 0x401136".
    pub signal_handlers: Vec<String>,
    pub pending_signals: Vec<String>,
    pub posix_timers: usize,
    pub epoll_entries: usize,
}

#[derive(Serialize)]
pub struct VmaInfo {
    pub start: String,
    pub end: String,
    pub size: u64,
    pub perms: String,
    pub kind: &'static str,
    pub flags: Vec<&'static str>,
    pub file_offset: Option<String>,
    pub runs: u32,
    pub stored_bytes: u64,
    pub name: String,
}

#[derive(Serialize)]
pub struct FdInfo {
    pub fd: i32,
    /// The format's name of the fd kind: "inherited" (whatever the resumer has at
    /// that number), "file" (reopened by path), "pipe", "memfd", ...
    pub kind: &'static str,
    pub path: Option<String>,
    pub flags: Option<String>,
    pub offset: Option<u64>,
    pub cloexec: bool,
    /// A file in flight: passed in a message queued on a socket, with no number in
    /// the process (its `fd` is the image's own).
    pub in_flight: bool,
    /// The lowest fd sharing this one's open file description (dup), if another.
    pub same_as: Option<i32>,
    /// Bytes stored for it (file contents, pipe buffer, address).
    pub stored_bytes: u64,
    /// For a fd whose other end was outside the process: what it resumes as.
    pub disconnected: Option<String>,
}

/// What a disconnected fd (`FdKind::Disconnected`) resumes as.
fn disconnected(f: &ckpt_format::Fd) -> String {
    use ckpt_format::{DISC_PIPE, DISC_SOCKET};
    match (f.aux[0], f.aux[1]) {
        (DISC_PIPE, 0) => "pipe read end, peer gone: buffered bytes, then EOF".into(),
        (DISC_PIPE, _) => "pipe write end, peer gone: EPIPE".into(),
        (DISC_SOCKET, family) => {
            let fam = match family as i32 {
                libc::AF_UNIX => "unix",
                libc::AF_INET => "IPv4",
                _ => "IPv6",
            };
            match f.aux[2] as i32 {
                libc::SOCK_DGRAM => format!("{fam} datagram socket, peer gone"),
                _ => format!("{fam} stream socket, peer gone: EOF, EPIPE"),
            }
        }
        _ => "?".into(),
    }
}

#[derive(Serialize)]
pub struct Totals {
    pub vmas: usize,
    pub runs: usize,
    pub pages_stored: u64,
    pub stored_bytes: u64,
    pub mapped_bytes: u64,
    /// Pages and ranges of the working-set hint (`ckpt profile`).
    pub working_set_pages: u64,
    pub working_set_ranges: usize,
    /// `ckpt freeze --compress`: the page data's bytes in the file (None when not
    /// compressed) and the number of chunks.
    pub compressed_bytes: Option<u64>,
    pub compressed_chunks: usize,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn proc_state(t: &Tables) -> Option<ProcState> {
    let p = t.process.filter(|p| p.flags & PROC_HAVE_STATE != 0)?;
    let comm_end = p.comm.iter().position(|&b| b == 0).unwrap_or(p.comm.len());
    let signal_handlers = p
        .sigactions
        .iter()
        .enumerate()
        .filter(|(_, a)| a.handler != 0)
        .map(|(i, a)| {
            let what = if a.handler == 1 { "ignored".to_owned() } else { format!("handler {:#x}", a.handler) };
            format!("{}: {what}", decode::signal_name(i as u32 + 1))
        })
        .collect();
    Some(ProcState {
        comm: lossy(&p.comm[..comm_end]),
        cwd: lossy(t.string(p.cwd_off, p.cwd_len))
            + if p.flags & PROC_CWD_DELETED != 0 { " (deleted)" } else { "" },
        umask: format!("{:04o}", p.umask),
        no_new_privs: p.flags & PROC_NO_NEW_PRIVS != 0,
        signal_handlers,
        pending_signals: t
            .signals
            .iter()
            .map(|s| format!("{}{}", decode::signal_name(s.signo), if s.thread != 0 { " (thread)" } else { "" }))
            .collect(),
        posix_timers: t.timers.len(),
        epoll_entries: t.epoll.len(),
    })
}

pub fn build(img: &ImageFile) -> anyhow::Result<Report> {
    let t = img.tables()?;
    let mem = ImageMemory::new(img, t);
    let h = &img.header;
    let file_size = img.file.metadata()?.len();
    let m = t.mm;

    let in_use = t
        .threads
        .iter()
        .filter_map(|th| t.xstate.get(th.xstate_off as usize..(th.xstate_off + th.xstate_size as u64) as usize))
        .filter_map(xfeatures::xstate_bv)
        .fold(0, |a, b| a | b);
    let kr_end = h.kernel_release.iter().position(|&b| b == 0).unwrap_or(h.kernel_release.len());
    let cmdline = t.string(m.cmdline_off, m.cmdline_len);
    let exe = t.string(m.exe_off, m.exe_len);

    let vmas: Vec<VmaInfo> = t
        .vmas
        .iter()
        .map(|v| {
            let kind = VmaKind::from_u32(v.kind);
            let file = matches!(kind, Some(VmaKind::FilePrivate | VmaKind::SharedFile));
            VmaInfo {
                start: hex(v.start),
                end: hex(v.end),
                size: v.end - v.start,
                perms: decode::perms(v.prot, kind),
                kind: kind.map_or("?", |k| k.name()),
                flags: decode::vma_flags(v.flags),
                file_offset: file.then(|| hex(v.file_offset)),
                runs: v.nruns,
                stored_bytes: mem.runs_of(v).iter().map(|r| r.len).sum(),
                name: mem.vma_name(v),
            }
        })
        .collect();
    let locks = t
        .locks
        .iter()
        .map(|l| LockInfo {
            fd: l.fd,
            kind: match l.kind {
                LOCK_FLOCK => "flock",
                LOCK_POSIX => "POSIX",
                _ => "OFD",
            },
            mode: if l.write != 0 { "write" } else { "read" },
            start: l.start,
            len: l.len,
        })
        .collect();
    let fds = t
        .fds
        .iter()
        .map(|f| {
            let kind = FdKind::from_u32(f.kind);
            let seekable = matches!(kind, Some(FdKind::Path | FdKind::Deleted | FdKind::Memfd));
            FdInfo {
                fd: f.fd,
                kind: kind.map_or("?", FdKind::name),
                // A socket's path holds a sockaddr (a peer or its own name).
                path: (f.path_len != 0 && kind != Some(FdKind::Socket)).then(|| lossy(t.string(f.path_off, f.path_len))),
                flags: (kind != Some(FdKind::Inherit)).then(|| decode::open_flags(f.flags)),
                offset: seekable.then_some(f.offset),
                cloexec: f.cloexec & 1 != 0,
                in_flight: f.cloexec & ckpt_format::FD_INFLIGHT != 0,
                same_as: (f.desc != 0)
                    .then(|| t.fds.iter().find(|g| g.desc == f.desc).map(|g| g.fd))
                    .flatten()
                    .filter(|&fd| fd != f.fd),
                stored_bytes: match kind {
                    Some(FdKind::Deleted | FdKind::Memfd) => t.files.get(f.aux[0] as usize).map_or(0, |o| {
                        t.extents[o.first_extent as usize..(o.first_extent + o.nextents) as usize].iter().map(|e| e.len).sum()
                    }),
                    _ => f.data_len,
                },
                disconnected: (kind == Some(FdKind::Disconnected)).then(|| disconnected(f)),
            }
        })
        .collect();
    let stored_bytes: u64 = t.runs.iter().map(|r| r.len).sum();
    let totals = Totals {
        vmas: t.vmas.len(),
        runs: t.runs.len(),
        pages_stored: stored_bytes / PAGE_SIZE,
        stored_bytes,
        mapped_bytes: t.vmas.iter().map(|v| v.end - v.start).sum(),
        working_set_pages: t.working_set.iter().map(|r| r.len / PAGE_SIZE).sum(),
        working_set_ranges: t.working_set.len(),
        compressed_bytes: (h.flags & ckpt_format::HDR_COMPRESSED != 0).then(|| t.chunks.iter().map(|c| c.stored_len as u64).sum()),
        compressed_chunks: t.chunks.len(),
    };
    let gadget = |a: u64| (a != 0).then(|| hex(a));

    Ok(Report {
        file: FileInfo {
            path: img.path.display().to_string(),
            kind: match img.kind {
                FileKind::Resume => "resume",
                FileKind::Raw => "raw",
            },
            kind_name: match img.kind {
                FileKind::Resume => "resume executable",
                FileKind::Raw => "raw image",
            },
            format_version: h.version,
            image_offset: img.offset,
            image_size: h.image_size,
            file_size,
            page_data_checksums: if h.flags & HDR_SSE42_CRC != 0 { "crc32c (sse4.2)" } else { "crc32c" },
        },
        frozen: Frozen {
            unix_time: h.created_unix,
            utc: time::utc(h.created_unix),
            kernel_release: lossy(&h.kernel_release[..kr_end]),
            pid: h.pid,
            vdso_functions: t.vdso_syms.len(),
            vdso_here: crate::check::vdso_text(img),
        },
        cpu: Cpu {
            xcr0: hex(h.xcr0),
            features: xfeatures::names(h.xcr0),
            in_use: xfeatures::names(in_use),
            xstate_size: h.xstate_size,
        },
        process: Process {
            executable: (!exe.is_empty()).then(|| lossy(exe)),
            cmdline: if cmdline.is_empty() { Vec::new() } else { cmdline.split(|&b| b == 0).map(lossy).collect() },
            code: [hex(m.start_code), hex(m.end_code)],
            data: [hex(m.start_data), hex(m.end_data)],
            brk: [hex(m.start_brk), hex(m.brk)],
            stack_start: hex(m.start_stack),
            auxv_entries: m.auxv_words / 2,
            gadget_syscall_ret: gadget(h.gadget_syscall_ret),
            gadget_sigreturn: gadget(h.gadget_sigreturn),
            state: proc_state(&t),
        },
        threads: threads::build(&mem, t.threads),
        vmas,
        fds,
        locks,
        tree: t
            .tree_procs
            .iter()
            .map(|p| TreeMemberInfo {
                pid: p.pid,
                ppid: p.ppid,
                pgid: p.pgid,
                sid: p.sid,
                zombie_status: (p.flags & ckpt_format::TREE_ZOMBIE != 0).then_some(p.status),
                image_size: p.image_len,
            })
            .collect(),
        totals,
    })
}

/// Stored bytes as a share of mapped bytes, for the totals line.
pub fn stored_share(t: &Totals) -> String {
    let pct = if t.mapped_bytes == 0 { 0.0 } else { 100.0 * t.stored_bytes as f64 / t.mapped_bytes as f64 };
    format!("{} of {} mapped ({pct:.1}%)", human(t.stored_bytes), human(t.mapped_bytes))
}
