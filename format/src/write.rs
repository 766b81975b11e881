//! Writing an image: its header and tables, laid out as `check_header` and
//! `Tables::parse` read them. The tables follow the page data, each section 8-byte
//! aligned (64 for xstate) with its CRC-32C.
//!
//! One file, compiled into every crate that writes images (`#[path]`: the generator,
//! the fuzz targets, the format crate's tests) rather than exported by the format
//! crate, because it allocates and the restorer stub links that crate without an
//! allocator.

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use ckpt_format::crc32c;
use ckpt_format::*;

/// Everything an image holds besides its page data.
#[derive(Clone, Debug, Default)]
pub struct ImageParts {
    pub threads: Vec<Thread>,
    pub vmas: Vec<Vma>,
    pub runs: Vec<PageRun>,
    pub mm: Mm,
    pub fds: Vec<Fd>,
    pub strings: Vec<u8>,
    pub xstate: Vec<u8>,
    pub vdso: Vec<u8>,
    pub process: Option<Process>,
    pub signals: Vec<PendingSignal>,
    pub timers: Vec<PosixTimer>,
    pub epoll: Vec<EpollEntry>,
    pub seccomp: Vec<u8>,
    pub locks: Vec<FileLock>,
    pub files: Vec<FileObject>,
    pub extents: Vec<Extent>,
    pub sockets: Vec<SocketState>,
    pub kernel: Option<KernelState>,
    pub sockopts: Vec<SockOpt>,
    pub vdso_syms: Vec<VdsoSym>,
    pub tree_procs: Vec<TreeProc>,
    pub tree_objects: Vec<TreeObject>,
    pub tree_data: Vec<u8>,
    pub working_set: Vec<WorkingSetRange>,
    pub chunks: Vec<PageChunk>,
    pub xcr0: u64,
    pub xstate_size: u32,
    pub gadget_syscall_ret: u64,
    pub gadget_sigreturn: u64,
    pub pid: u32,
    pub kernel_release: String,
    pub created_unix: u64,
    pub flags: u64,
}

/// Lay out the tables from image offset `data_end` on (the page data ends there).
/// Returns the header and the bytes to write at `align_up(data_end, 64)`. With `hw`
/// the checksums are computed with SSE4.2 (the same CRC-32C, flagged in the header).
pub fn finish(p: &ImageParts, data_end: u64, hw: bool) -> (Header, Vec<u8>) {
    let base = align_up(data_end, 64);
    let mut tables: Vec<u8> = Vec::new();
    let mut sections = [Section::default(); MAX_SECTIONS];
    let blobs: [(SectionKind, &[u8], u32); KNOWN_SECTIONS] = [
        (SectionKind::Threads, slice_as_bytes(&p.threads), p.threads.len() as u32),
        (SectionKind::Vmas, slice_as_bytes(&p.vmas), p.vmas.len() as u32),
        (SectionKind::Runs, slice_as_bytes(&p.runs), p.runs.len() as u32),
        (SectionKind::Mm, as_bytes(&p.mm), 1),
        (SectionKind::Fds, slice_as_bytes(&p.fds), p.fds.len() as u32),
        (SectionKind::Strings, &p.strings, p.strings.len() as u32),
        (SectionKind::Xstate, &p.xstate, p.xstate.len() as u32),
        (SectionKind::Vdso, &p.vdso, p.vdso.len() as u32),
        (SectionKind::Process, p.process.as_ref().map_or(&[][..], as_bytes), p.process.is_some() as u32),
        (SectionKind::Signals, slice_as_bytes(&p.signals), p.signals.len() as u32),
        (SectionKind::Timers, slice_as_bytes(&p.timers), p.timers.len() as u32),
        (SectionKind::Epoll, slice_as_bytes(&p.epoll), p.epoll.len() as u32),
        (SectionKind::Seccomp, &p.seccomp, p.seccomp.len() as u32),
        (SectionKind::Locks, slice_as_bytes(&p.locks), p.locks.len() as u32),
        (SectionKind::Files, slice_as_bytes(&p.files), p.files.len() as u32),
        (SectionKind::Extents, slice_as_bytes(&p.extents), p.extents.len() as u32),
        (SectionKind::Sockets, slice_as_bytes(&p.sockets), p.sockets.len() as u32),
        (SectionKind::Kernel, p.kernel.as_ref().map_or(&[][..], as_bytes), p.kernel.is_some() as u32),
        (SectionKind::SockOpts, slice_as_bytes(&p.sockopts), p.sockopts.len() as u32),
        (SectionKind::VdsoSyms, slice_as_bytes(&p.vdso_syms), p.vdso_syms.len() as u32),
        (SectionKind::TreeProcs, slice_as_bytes(&p.tree_procs), p.tree_procs.len() as u32),
        (SectionKind::TreeObjects, slice_as_bytes(&p.tree_objects), p.tree_objects.len() as u32),
        (SectionKind::TreeData, &p.tree_data, p.tree_data.len() as u32),
        (SectionKind::WorkingSet, slice_as_bytes(&p.working_set), p.working_set.len() as u32),
        (SectionKind::Chunks, slice_as_bytes(&p.chunks), p.chunks.len() as u32),
    ];
    for (kind, bytes, count) in blobs {
        if bytes.is_empty() {
            continue;
        }
        let align = if kind == SectionKind::Xstate { 64 } else { 8 };
        tables.resize(align_up(tables.len() as u64, align) as usize, 0);
        sections[kind as usize] = Section {
            offset: base + tables.len() as u64,
            size: bytes.len() as u64,
            count,
            crc: crc32c::crc32c(bytes, hw),
        };
        tables.extend_from_slice(bytes);
    }
    let mut kr = [0u8; 64];
    let n = p.kernel_release.len().min(63);
    kr[..n].copy_from_slice(&p.kernel_release.as_bytes()[..n]);
    let mut h = Header {
        magic: MAGIC,
        version: VERSION,
        header_size: core::mem::size_of::<Header>() as u32,
        flags: p.flags | if hw { HDR_SSE42_CRC } else { 0 },
        image_size: base + tables.len() as u64,
        created_unix: p.created_unix,
        xcr0: p.xcr0,
        xstate_size: p.xstate_size,
        page_size: PAGE_SIZE as u32,
        gadget_syscall_ret: p.gadget_syscall_ret,
        gadget_sigreturn: p.gadget_sigreturn,
        pid: p.pid,
        nsections: MAX_SECTIONS as u32,
        sections,
        kernel_release: kr,
        header_crc: 0,
        _pad: 0,
    };
    h.header_crc = header_crc(&h);
    (h, tables)
}
