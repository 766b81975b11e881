//! Reading an image safely: every field is checked before anyone acts on it.
//!
//! [`check_header`] validates the header against the file length; [`Tables::parse`]
//! verifies each section's checksum and every record (ranges inside user space, counts
//! bounded, sorted and non-overlapping VMAs and runs, strings in bounds). The stub calls
//! both before it touches its address space, so a corrupted file ends in a message,
//! never in a jump into garbage.

use crate::crc32c::crc32c;
use crate::records::*;
use crate::{DATA_START, MAGIC, MAX_AUXV, MAX_XSTATE, PAGE_SIZE, SIGEV_THREAD_ID, USER_TOP, VERSION};

/// Why an image was rejected. `index` names the record where one is at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The file ends before `need` bytes (it has `have`).
    Truncated { need: u64, have: u64 },
    BadMagic,
    BadVersion { found: u32 },
    BadHeaderSize { found: u32 },
    BadPageSize { found: u32 },
    HeaderChecksum { stored: u32, computed: u32 },
    /// A section table slot is malformed (`what` says how).
    BadSection { section: u32, what: &'static str },
    SectionChecksum { section: SectionKind, stored: u32, computed: u32 },
    TooMany { section: SectionKind, count: u64, max: u64 },
    BadThread { index: u32, what: &'static str },
    BadVma { index: u32, what: &'static str },
    BadRun { index: u32, what: &'static str },
    BadMm { what: &'static str },
    BadFd { index: u32, what: &'static str },
    BadLock { index: u32, what: &'static str },
    BadFile { index: u32, what: &'static str },
    BadExtent { index: u32, what: &'static str },
    BadSocket { index: u32, what: &'static str },
    BadSockOpt { index: u32, what: &'static str },
    BadKernel { what: &'static str },
    BadVdsoSym { index: u32, what: &'static str },
    BadTree { index: u32, what: &'static str },
    BadTreeObject { index: u32, what: &'static str },
    BadWorkingSet { index: u32, what: &'static str },
    BadChunk { index: u32, what: &'static str },
}

impl FormatError {
    /// A short, fixed description (usable without core::fmt).
    pub fn what(&self) -> &'static str {
        match self {
            FormatError::Truncated { .. } => "image is truncated",
            FormatError::BadMagic => "not a ckpt image (bad magic)",
            FormatError::BadVersion { .. } => "unsupported image format version",
            FormatError::BadHeaderSize { .. } => "header size does not match this version",
            FormatError::BadPageSize { .. } => "page size differs from this machine's",
            FormatError::HeaderChecksum { .. } => "header checksum mismatch (corrupted image)",
            FormatError::BadSection { what, .. } => what,
            FormatError::SectionChecksum { .. } => "section checksum mismatch (corrupted image)",
            FormatError::TooMany { .. } => "record count over the format's limit",
            FormatError::BadThread { what, .. }
            | FormatError::BadVma { what, .. }
            | FormatError::BadRun { what, .. }
            | FormatError::BadFd { what, .. }
            | FormatError::BadLock { what, .. }
            | FormatError::BadFile { what, .. }
            | FormatError::BadExtent { what, .. }
            | FormatError::BadSocket { what, .. }
            | FormatError::BadSockOpt { what, .. }
            | FormatError::BadKernel { what }
            | FormatError::BadVdsoSym { what, .. }
            | FormatError::BadTree { what, .. }
            | FormatError::BadTreeObject { what, .. }
            | FormatError::BadWorkingSet { what, .. }
            | FormatError::BadChunk { what, .. }
            | FormatError::BadMm { what } => what,
        }
    }

    /// The record or section the error is about, for messages.
    pub fn index(&self) -> Option<u64> {
        match *self {
            FormatError::BadSection { section, .. } => Some(section as u64),
            FormatError::SectionChecksum { section, .. } | FormatError::TooMany { section, .. } => {
                Some(section as u64)
            }
            FormatError::BadThread { index, .. }
            | FormatError::BadVma { index, .. }
            | FormatError::BadRun { index, .. }
            | FormatError::BadFd { index, .. }
            | FormatError::BadLock { index, .. }
            | FormatError::BadFile { index, .. }
            | FormatError::BadExtent { index, .. }
            | FormatError::BadSocket { index, .. }
            | FormatError::BadSockOpt { index, .. }
            | FormatError::BadVdsoSym { index, .. }
            | FormatError::BadTree { index, .. }
            | FormatError::BadTreeObject { index, .. }
            | FormatError::BadWorkingSet { index, .. }
            | FormatError::BadChunk { index, .. } => Some(index as u64),
            _ => None,
        }
    }
}

impl core::fmt::Display for FormatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            FormatError::Truncated { need, have } => {
                write!(f, "image is truncated: needs {need} bytes, file has {have}")
            }
            FormatError::BadVersion { found } => write!(
                f,
                "unsupported image format version {found} (this build reads version {VERSION})"
            ),
            FormatError::BadPageSize { found } => {
                write!(f, "image page size {found} differs from this machine's {PAGE_SIZE}")
            }
            FormatError::HeaderChecksum { stored, computed } => write!(
                f,
                "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): corrupted image"
            ),
            FormatError::BadSection { section, what } => write!(f, "section slot {section}: {what}"),
            FormatError::SectionChecksum { section, stored, computed } => write!(
                f,
                "{} section checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): corrupted image",
                section.name()
            ),
            FormatError::TooMany { section, count, max } => {
                write!(f, "{} section has {count} records, the limit is {max}", section.name())
            }
            FormatError::BadThread { index, what } => write!(f, "thread {index}: {what}"),
            FormatError::BadVma { index, what } => write!(f, "vma {index}: {what}"),
            FormatError::BadRun { index, what } => write!(f, "page run {index}: {what}"),
            FormatError::BadFd { index, what } => write!(f, "fd record {index}: {what}"),
            FormatError::BadLock { index, what } => write!(f, "file lock {index}: {what}"),
            FormatError::BadFile { index, what } => write!(f, "file {index}: {what}"),
            FormatError::BadExtent { index, what } => write!(f, "file extent {index}: {what}"),
            FormatError::BadSocket { index, what } => write!(f, "socket state {index}: {what}"),
            FormatError::BadSockOpt { index, what } => write!(f, "socket option {index}: {what}"),
            FormatError::BadKernel { what } => write!(f, "kernel state: {what}"),
            FormatError::BadVdsoSym { index, what } => write!(f, "vdso symbol {index}: {what}"),
            FormatError::BadWorkingSet { index, what } => write!(f, "working set range {index}: {what}"),
            FormatError::BadChunk { index, what } => write!(f, "compressed chunk {index}: {what}"),
            _ => f.write_str(self.what()),
        }
    }
}

/// The header's checksum over its bytes before `header_crc`.
pub fn header_crc(h: &Header) -> u32 {
    crc32c(&as_bytes(h)[..Header::CRC_OFFSET], false)
}

/// Validate the header read from the first bytes of an image of `file_len` bytes.
pub fn check_header(bytes: &[u8], file_len: u64) -> Result<Header, FormatError> {
    let need = core::mem::size_of::<Header>() as u64;
    let h: Header = read_record(bytes).ok_or(FormatError::Truncated { need, have: bytes.len() as u64 })?;
    if h.magic != MAGIC {
        return Err(FormatError::BadMagic);
    }
    if h.version != VERSION {
        return Err(FormatError::BadVersion { found: h.version });
    }
    if h.header_size as u64 != need {
        return Err(FormatError::BadHeaderSize { found: h.header_size });
    }
    let computed = header_crc(&h);
    if computed != h.header_crc {
        return Err(FormatError::HeaderChecksum { stored: h.header_crc, computed });
    }
    if h.page_size as u64 != PAGE_SIZE {
        return Err(FormatError::BadPageSize { found: h.page_size });
    }
    if h.image_size > file_len {
        return Err(FormatError::Truncated { need: h.image_size, have: file_len });
    }
    if h.nsections as usize != MAX_SECTIONS {
        return Err(FormatError::BadSection { section: h.nsections, what: "wrong number of section slots" });
    }
    if h.xstate_size > MAX_XSTATE {
        return Err(FormatError::BadThread { index: 0, what: "xstate size over the limit" });
    }
    for (i, s) in h.sections.iter().enumerate() {
        let slot = i as u32;
        let Some(kind) = SectionKind::from_slot(i) else {
            if *s != Section::default() {
                return Err(FormatError::BadSection { section: slot, what: "unknown section kind" });
            }
            continue;
        };
        if s.size == 0 {
            if s.count != 0 {
                return Err(FormatError::BadSection { section: slot, what: "empty section with records" });
            }
            continue;
        }
        if s.offset % 8 != 0 || s.offset < need {
            return Err(FormatError::BadSection { section: slot, what: "section offset misaligned or inside the header" });
        }
        let end = s.offset.checked_add(s.size).ok_or(FormatError::BadSection {
            section: slot,
            what: "section range overflows",
        })?;
        if end > h.image_size {
            return Err(FormatError::BadSection { section: slot, what: "section extends past the image end" });
        }
        if (s.count as u64).checked_mul(kind.entry_size()) != Some(s.size) {
            return Err(FormatError::BadSection { section: slot, what: "section size is not count x record size" });
        }
        let max = kind.max_count();
        if s.count as u64 > max {
            return Err(FormatError::TooMany { section: kind, count: s.count as u64, max });
        }
    }
    Ok(h)
}

/// The contiguous byte range `[lo, hi)` of the image holding every table.
pub fn tables_span(h: &Header) -> (u64, u64) {
    let mut lo = u64::MAX;
    let mut hi = 0;
    for s in h.sections.iter().filter(|s| s.size != 0) {
        lo = lo.min(s.offset);
        hi = hi.max(s.offset + s.size);
    }
    if lo == u64::MAX {
        (0, 0)
    } else {
        (lo, hi)
    }
}

/// The validated tables of an image, borrowed from a buffer holding `tables_span`.
#[derive(Clone, Copy)]
pub struct Tables<'a> {
    pub threads: &'a [Thread],
    pub vmas: &'a [Vma],
    pub runs: &'a [PageRun],
    pub mm: &'a Mm,
    pub fds: &'a [Fd],
    pub strings: &'a [u8],
    pub xstate: &'a [u8],
    pub vdso: &'a [u8],
    /// Process-wide state; None in images written without it.
    pub process: Option<&'a crate::Process>,
    pub signals: &'a [crate::PendingSignal],
    pub timers: &'a [crate::PosixTimer],
    pub epoll: &'a [crate::EpollEntry],
    /// Raw seccomp section (see [`SeccompFilters`]).
    pub seccomp: &'a [u8],
    pub locks: &'a [crate::FileLock],
    pub files: &'a [FileObject],
    pub extents: &'a [Extent],
    pub sockets: &'a [crate::SocketState],
    /// The freezing kernel's clocks and limits; None in images written without them.
    pub kernel: Option<&'a crate::KernelState>,
    pub sockopts: &'a [crate::SockOpt],
    /// The old vdso's exported functions; empty in images written without them.
    pub vdso_syms: &'a [crate::VdsoSym],
    /// The processes of a tree, the root first; empty for a single process.
    pub tree_procs: &'a [crate::TreeProc],
    pub tree_objects: &'a [crate::TreeObject],
    pub tree_data: &'a [u8],
    /// Pages to bring in first on a lazy resume; empty without a hint.
    pub working_set: &'a [crate::WorkingSetRange],
    /// The stored pieces of the runs of a compressed image; empty otherwise.
    pub chunks: &'a [crate::PageChunk],
}

/// Iterates the filters of a validated seccomp section: (instruction count, bytes).
pub struct SeccompFilters<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SeccompFilters<'a> {
    type Item = (u32, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 8 {
            return None;
        }
        let n = u32::from_le_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]);
        let len = n as usize * 8;
        if n == 0 || self.rest.len() < 8 + len {
            return None;
        }
        let insns = &self.rest[8..8 + len];
        self.rest = &self.rest[8 + len..];
        Some((n, insns))
    }
}

/// A section's bytes, its checksum verified unless `crc` is None (else it says
/// whether to use the SSE4.2 CRC).
fn section_bytes<'a>(h: &Header, buf: &'a [u8], lo: u64, kind: SectionKind, crc: Option<bool>) -> Result<&'a [u8], FormatError> {
    let s = h.section(kind);
    if s.size == 0 {
        return Ok(&[]);
    }
    let start = (s.offset - lo) as usize;
    let b = buf
        .get(start..start + s.size as usize)
        .ok_or(FormatError::Truncated { need: s.offset + s.size, have: lo + buf.len() as u64 })?;
    let Some(hw) = crc else { return Ok(b) };
    let computed = crc32c(b, hw);
    if computed != s.crc {
        return Err(FormatError::SectionChecksum { section: kind, stored: s.crc, computed });
    }
    Ok(b)
}

fn records<T: Pod>(b: &[u8], kind: SectionKind) -> Result<&[T], FormatError> {
    from_bytes(b).ok_or(FormatError::BadSection { section: kind as u32, what: "section misaligned in memory" })
}

fn str_in(strings: &[u8], off: u32, len: u32) -> bool {
    (off as u64 + len as u64) <= strings.len() as u64
}

impl<'a> Tables<'a> {
    /// Verify the checksums of every section in `buf` (the image bytes `[lo, ..)`, 8-byte
    /// aligned in memory) and validate every record. `hw` selects the SSE4.2 CRC.
    pub fn parse(h: &Header, buf: &'a [u8], lo: u64, hw: bool) -> Result<Tables<'a>, FormatError> {
        Tables::parse_with(h, buf, lo, Some(hw))
    }

    /// Validate every record of tables whose checksums [`Tables::parse`] already
    /// verified in these very bytes (moved or copied in memory since, never
    /// changed): the restorer parses its tables again once it runs from its new
    /// place, and a second CRC of them (most of a megabyte for 64 threads) would
    /// find nothing.
    pub fn parse_verified(h: &Header, buf: &'a [u8], lo: u64) -> Result<Tables<'a>, FormatError> {
        Tables::parse_with(h, buf, lo, None)
    }

    fn parse_with(h: &Header, buf: &'a [u8], lo: u64, hw: Option<bool>) -> Result<Tables<'a>, FormatError> {
        let threads: &[Thread] = records(section_bytes(h, buf, lo, SectionKind::Threads, hw)?, SectionKind::Threads)?;
        let vmas: &[Vma] = records(section_bytes(h, buf, lo, SectionKind::Vmas, hw)?, SectionKind::Vmas)?;
        let runs: &[PageRun] = records(section_bytes(h, buf, lo, SectionKind::Runs, hw)?, SectionKind::Runs)?;
        let mm: &[Mm] = records(section_bytes(h, buf, lo, SectionKind::Mm, hw)?, SectionKind::Mm)?;
        let fds: &[Fd] = records(section_bytes(h, buf, lo, SectionKind::Fds, hw)?, SectionKind::Fds)?;
        let strings = section_bytes(h, buf, lo, SectionKind::Strings, hw)?;
        let xstate = section_bytes(h, buf, lo, SectionKind::Xstate, hw)?;
        let vdso = section_bytes(h, buf, lo, SectionKind::Vdso, hw)?;
        let process: &[crate::Process] = records(section_bytes(h, buf, lo, SectionKind::Process, hw)?, SectionKind::Process)?;
        let signals = records(section_bytes(h, buf, lo, SectionKind::Signals, hw)?, SectionKind::Signals)?;
        let timers = records(section_bytes(h, buf, lo, SectionKind::Timers, hw)?, SectionKind::Timers)?;
        let epoll = records(section_bytes(h, buf, lo, SectionKind::Epoll, hw)?, SectionKind::Epoll)?;
        let seccomp = section_bytes(h, buf, lo, SectionKind::Seccomp, hw)?;
        let locks = records(section_bytes(h, buf, lo, SectionKind::Locks, hw)?, SectionKind::Locks)?;
        let files = records(section_bytes(h, buf, lo, SectionKind::Files, hw)?, SectionKind::Files)?;
        let extents = records(section_bytes(h, buf, lo, SectionKind::Extents, hw)?, SectionKind::Extents)?;
        let sockets = records(section_bytes(h, buf, lo, SectionKind::Sockets, hw)?, SectionKind::Sockets)?;
        let kernel: &[crate::KernelState] = records(section_bytes(h, buf, lo, SectionKind::Kernel, hw)?, SectionKind::Kernel)?;
        let sockopts = records(section_bytes(h, buf, lo, SectionKind::SockOpts, hw)?, SectionKind::SockOpts)?;
        let vdso_syms = records(section_bytes(h, buf, lo, SectionKind::VdsoSyms, hw)?, SectionKind::VdsoSyms)?;
        let tree_procs = records(section_bytes(h, buf, lo, SectionKind::TreeProcs, hw)?, SectionKind::TreeProcs)?;
        let tree_objects = records(section_bytes(h, buf, lo, SectionKind::TreeObjects, hw)?, SectionKind::TreeObjects)?;
        let tree_data = section_bytes(h, buf, lo, SectionKind::TreeData, hw)?;
        let working_set = records(section_bytes(h, buf, lo, SectionKind::WorkingSet, hw)?, SectionKind::WorkingSet)?;
        let chunks = records(section_bytes(h, buf, lo, SectionKind::Chunks, hw)?, SectionKind::Chunks)?;
        let mm = mm.first().ok_or(FormatError::BadMm { what: "image has no mm record" })?;
        let t = Tables {
            threads, vmas, runs, mm, fds, strings, xstate, vdso, process: process.first(), signals, timers, epoll, seccomp,
            locks, files, extents, sockets, kernel: kernel.first(), sockopts, vdso_syms, tree_procs, tree_objects, tree_data,
            working_set, chunks,
        };
        t.check(h)?;
        Ok(t)
    }

    fn check(&self, h: &Header) -> Result<(), FormatError> {
        self.check_gadgets(h)?;
        self.check_threads(h)?;
        self.check_files(h)?;
        self.check_vmas()?;
        self.check_runs(h)?;
        self.check_mm()?;
        self.check_fds(h)?;
        self.check_locks()?;
        self.check_sockets()?;
        self.check_sockopts()?;
        self.check_process()?;
        self.check_kernel()?;
        self.check_vdso_syms()?;
        crate::working_set::check(self.working_set, self.vmas)?;
        crate::compress::check(h.flags, self.runs, self.chunks, h.image_size)?;
        self.check_tree()
    }

    /// Each symbol names itself (its hash matches) and lies inside the saved vdso.
    fn check_vdso_syms(&self) -> Result<(), FormatError> {
        for (i, s) in self.vdso_syms.iter().enumerate() {
            let bad = |what| Err(FormatError::BadVdsoSym { index: i as u32, what });
            if s.name_len == 0 || s.name_len > crate::MAX_VDSO_NAME || !str_in(self.strings, s.name_off, s.name_len) {
                return bad("name out of the strings section or of a bad length");
            }
            if crate::elf_hash(self.string(s.name_off, s.name_len)) != s.name_hash {
                return bad("name hash does not match its name");
            }
            if s.flags != 0 {
                return bad("unknown flags");
            }
            let end = s.offset.checked_add(s.size.max(1));
            if end.is_none_or(|e| e > self.vdso.len() as u64) {
                return bad("function lies outside the saved vdso");
            }
        }
        Ok(())
    }

    fn check_kernel(&self) -> Result<(), FormatError> {
        let Some(k) = self.kernel else { return Ok(()) };
        let bad = |what| Err(FormatError::BadKernel { what });
        if k.flags & !crate::KERNEL_KNOWN_FLAGS != 0 {
            return bad("unknown flags");
        }
        if k.flags & crate::KERNEL_HAVE_CLOCKS == 0 {
            if k.clocks != [0; crate::NCLOCKS] {
                return bad("clock values without the flag that says they were read");
            }
            return Ok(());
        }
        if k.clocks.iter().any(|&c| c >= crate::MAX_CLOCK_NS) {
            return bad("clock value out of range");
        }
        // CLOCK_BOOTTIME is CLOCK_MONOTONIC plus the time suspended (clock_gettime(2)).
        if k.clocks[crate::CLK_MONOTONIC] > k.clocks[crate::CLK_BOOTTIME] {
            return bad("monotonic clock ahead of the boot time clock");
        }
        Ok(())
    }

    /// The exit gadgets must lie inside executable VMAs that will be restored.
    fn check_gadgets(&self, h: &Header) -> Result<(), FormatError> {
        for (i, g) in [h.gadget_syscall_ret, h.gadget_sigreturn].into_iter().enumerate() {
            if g == 0 {
                continue;
            }
            let inside = self.vmas.iter().any(|v| {
                v.prot & PROT_EXEC != 0
                    && !VmaKind::from_u32(v.kind).is_none_or(|k| k.is_special())
                    && v.start <= g
                    && g.checked_add(9).is_some_and(|e| e <= v.end)
            });
            if !inside {
                return Err(FormatError::BadSection { section: i as u32, what: "exit gadget outside the target's executable memory" });
            }
        }
        Ok(())
    }

    fn check_threads(&self, h: &Header) -> Result<(), FormatError> {
        if self.threads.is_empty() {
            return Err(FormatError::BadThread { index: 0, what: "image has no thread" });
        }
        for (i, t) in self.threads.iter().enumerate() {
            let bad = |what| Err(FormatError::BadThread { index: i as u32, what });
            if t.tid == 0 || t.tid > 1 << 22 {
                return bad("thread id out of range");
            }
            if self.threads[..i].iter().any(|o| o.tid == t.tid) {
                return bad("thread id appears twice");
            }
            if t.flags & !THREAD_KNOWN_FLAGS != 0 {
                return bad("unknown thread flags");
            }
            if t.restart > THREAD_RESTART_EINTR {
                return bad("unknown system call restart kind");
            }
            if t.flags & THREAD_EXITED != 0 {
                // Only a leader can be a zombie whose threads run on; it carries no state.
                if i != 0 || self.threads.len() < 2 {
                    return bad("an exited thread that is not a leader with live threads");
                }
                if t.xstate_size != 0 || t.xstate_off != 0 || t.rseq_addr != 0 || t.robust_list != 0 {
                    return bad("an exited thread with saved state");
                }
                continue;
            }
            if t.regs.rip >= USER_TOP || t.regs.rsp >= USER_TOP {
                return bad("rip or rsp outside user space");
            }
            if t.xstate_size != h.xstate_size {
                return bad("xstate size differs from the header's");
            }
            if t.xstate_size != 0 {
                if t.xstate_size < 576 || t.xstate_off % 64 != 0 {
                    return bad("xstate area too small or misaligned");
                }
                if t.xstate_off.checked_add(t.xstate_size as u64).is_none_or(|e| e > self.xstate.len() as u64) {
                    return bad("xstate area outside the xstate section");
                }
            } else if t.xstate_off != 0 {
                return bad("xstate offset without an xstate area");
            }
            if t.regs.rsp < PAGE_SIZE * 16 {
                return bad("rsp too low to hold the signal frame");
            }
            if t.robust_list != 0 && (t.robust_len > 4096 || t.robust_list >= USER_TOP) {
                return bad("invalid robust list");
            }
            if t.rseq_addr != 0 && (t.rseq_len < 32 || t.rseq_addr >= USER_TOP || t.rseq_addr % 32 != 0) {
                return bad("invalid rseq registration");
            }
        }
        Ok(())
    }

    /// Index in the Threads table of the live thread with saved id `tid`.
    pub fn thread_index(&self, tid: u32) -> Option<usize> {
        self.threads.iter().position(|t| t.tid == tid && t.flags & THREAD_EXITED == 0)
    }

    fn check_vmas(&self) -> Result<(), FormatError> {
        let mut prev_end = 0u64;
        let mut next_run = 0u64;
        for (i, v) in self.vmas.iter().enumerate() {
            let bad = |what| Err(FormatError::BadVma { index: i as u32, what });
            if v.start % PAGE_SIZE != 0 || v.end % PAGE_SIZE != 0 || v.start >= v.end {
                return bad("range empty or not page aligned");
            }
            if v.start < PAGE_SIZE || v.end > USER_TOP {
                return bad("range outside user space");
            }
            if v.start < prev_end {
                return bad("overlaps or is out of order with the previous vma");
            }
            prev_end = v.end;
            if v.prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
                return bad("unknown protection bits");
            }
            if v.flags & !VMA_KNOWN_FLAGS != 0 {
                return bad("unknown flags");
            }
            let kind = match VmaKind::from_u32(v.kind) {
                Some(k) => k,
                None => return bad("unknown kind"),
            };
            if !str_in(self.strings, v.name_off, v.name_len) {
                return bad("name outside the strings section");
            }
            let file = matches!(kind, VmaKind::FilePrivate | VmaKind::SharedFile);
            if file && (v.name_len == 0 || v.file_offset % PAGE_SIZE != 0 || v.file_offset.checked_add(v.end - v.start).is_none()) {
                return bad("file mapping without a path or with a misaligned offset");
            }
            if v.flags & VMA_FILE_REF != 0 && kind != VmaKind::FilePrivate {
                return bad("file reference on a mapping that is not a private file mapping");
            }
            if (kind.is_special() || matches!(kind, VmaKind::SharedFile | VmaKind::SharedObject)) && v.nruns != 0 {
                return bad("mapping whose content is not in the image has stored pages");
            }
            let object = matches!(kind, VmaKind::SharedObject | VmaKind::PrivateObject);
            if object != (v.object != 0) {
                return bad("names a file object but does not map one, or maps one without naming it");
            }
            if object {
                let Some(f) = self.files.get(v.object as usize - 1) else {
                    return bad("maps a file that is not in the image");
                };
                if v.file_offset % PAGE_SIZE != 0 || v.file_offset.checked_add(v.end - v.start).is_none() {
                    return bad("file mapping without a path or with a misaligned offset");
                }
                if kind == VmaKind::PrivateObject && f.kind == FileKind::Shmem as u32 {
                    return bad("private mapping of shared anonymous memory");
                }
                // Shared memory is mapped again from its one mapping at that offset.
                if f.kind == FileKind::Shmem as u32 && v.file_offset >= f.size {
                    return bad("maps shared memory from past its end");
                }
            }
            if v.first_run as u64 != next_run {
                return bad("page runs not in vma order");
            }
            next_run += v.nruns as u64;
        }
        if next_run != self.runs.len() as u64 {
            return Err(FormatError::BadVma { index: self.vmas.len() as u32, what: "vmas do not account for every page run" });
        }
        Ok(())
    }

    fn check_runs(&self, h: &Header) -> Result<(), FormatError> {
        let mut prev_end = 0u64;
        for (i, r) in self.runs.iter().enumerate() {
            let bad = |what| Err(FormatError::BadRun { index: i as u32, what });
            let v = match self.vmas.get(r.vma as usize) {
                Some(v) => v,
                None => return bad("names a vma that does not exist"),
            };
            if !(v.first_run..v.first_run + v.nruns).contains(&(i as u32)) {
                return bad("is not among its vma's runs");
            }
            if r.len == 0 || r.len % PAGE_SIZE != 0 || r.addr % PAGE_SIZE != 0 || r.data_off % PAGE_SIZE != 0 {
                return bad("empty or not page aligned");
            }
            let end = match r.addr.checked_add(r.len) {
                Some(e) => e,
                None => return bad("range overflows"),
            };
            if r.addr < v.start || end > v.end {
                return bad("outside its vma");
            }
            if r.addr < prev_end {
                return bad("overlaps the previous run");
            }
            if r.flags & !crate::RUN_FILE_CLEAN != 0 || r._pad != 0 {
                return bad("unknown flags");
            }
            if r.flags & crate::RUN_FILE_CLEAN != 0 && v.kind != VmaKind::FilePrivate as u32 {
                return bad("clean file pages outside a private file mapping");
            }
            if r.flags & crate::RUN_FILE_CLEAN != 0 && v.flags & VMA_FILE_REF != 0 {
                return bad("clean file pages stored for a mapping that takes them from its file");
            }
            prev_end = end;
            // A compressed image's runs are in their chunks (compress::check).
            if h.flags & crate::HDR_COMPRESSED == 0
                && (r.data_off < DATA_START || r.data_off.checked_add(r.len).is_none_or(|e| e > h.image_size))
            {
                return bad("data outside the image");
            }
        }
        Ok(())
    }

    fn check_mm(&self) -> Result<(), FormatError> {
        let m = self.mm;
        let bad = |what| Err(FormatError::BadMm { what });
        if m.auxv_words as usize > 2 * MAX_AUXV || !m.auxv_words.is_multiple_of(2) {
            return bad("auxv length invalid");
        }
        if !str_in(self.strings, m.exe_off, m.exe_len) || !str_in(self.strings, m.cmdline_off, m.cmdline_len) {
            return bad("executable path or command line outside the strings section");
        }
        let fields = [
            m.start_code, m.end_code, m.start_data, m.end_data, m.start_brk, m.brk, m.start_stack,
            m.arg_start, m.arg_end, m.env_start, m.env_end,
        ];
        if fields.iter().any(|&a| a >= USER_TOP) {
            return bad("mm field outside user space");
        }
        if m.start_brk > m.brk {
            return bad("brk below start_brk");
        }
        Ok(())
    }

    fn check_fds(&self, h: &Header) -> Result<(), FormatError> {
        let mut prev = -1i64;
        for (i, f) in self.fds.iter().enumerate() {
            let bad = |what| Err(FormatError::BadFd { index: i as u32, what });
            if (f.fd as i64) <= prev || f.fd >= 1 << 20 {
                return bad("fd numbers not ascending or out of range");
            }
            prev = f.fd as i64;
            if f.cloexec & !(1 | crate::FD_INFLIGHT) != 0 {
                return bad("unknown fd flags");
            }
            match FdKind::from_u32(f.kind) {
                None => return bad("unknown fd kind"),
                Some(FdKind::Path) if f.path_len == 0 => return bad("file without a path"),
                Some(FdKind::Path)
                    if f.aux[0] > crate::PATH_TTY_SETTINGS
                        || (f.aux[0] == crate::PATH_TTY_SETTINGS) != (f.data_len == crate::pty::PTY_SETTINGS_LEN as u64)
                        || (f.aux[0] == 0 && f.data_len != 0) =>
                {
                    return bad("file with unknown flags, or terminal settings of the wrong size")
                }
                Some(FdKind::Disconnected) => match f.aux[0] {
                    DISC_PIPE if f.aux[1] > 1 => return bad("disconnected pipe end neither read nor write"),
                    DISC_PIPE => {}
                    DISC_SOCKET if !DISC_FAMILIES.contains(&f.aux[1]) => {
                        return bad("disconnected socket of an unknown address family")
                    }
                    DISC_SOCKET => {}
                    _ => return bad("unknown kind of disconnected fd"),
                },
                Some(k @ (FdKind::Deleted | FdKind::Memfd)) => {
                    let want = if k == FdKind::Deleted { FileKind::Deleted } else { FileKind::Memfd };
                    match self.files.get(f.aux[0] as usize) {
                        None => return bad("names a file that is not in the image"),
                        Some(o) if o.kind != want as u32 => return bad("names a file of another kind"),
                        Some(_) => {}
                    }
                    if f.data_len != 0 {
                        return bad("stores data of its own besides its file's");
                    }
                }
                Some(FdKind::DeletedDir) => {
                    if f.path_len == 0 || f.aux[0] & !0o7777 != 0 || f.aux[2] > 1 {
                        return bad("deleted directory without a path, or with unknown mode bits or flags");
                    }
                    let first = f.aux[1];
                    if first != 0 && !self.fds[..i].iter().any(|g| g.fd as u64 + 1 == first && g.kind == f.kind && g.aux[1] == 0) {
                        return bad("deleted directory names an earlier one that is not in the image");
                    }
                }
                Some(FdKind::Socket) if !DISC_FAMILIES.contains(&f.aux[0]) => {
                    return bad("socket of an unknown address family")
                }
                Some(FdKind::Socket) if f.aux[2] >= crate::SOCK_ROLES => return bad("unknown socket role"),
                Some(FdKind::Pty) if f.aux[0] > crate::PTY_SLAVE => return bad("pty end neither master nor slave"),
                Some(FdKind::Pty)
                    if f.aux[0] == crate::PTY_MASTER
                        && (f.aux[2] > 1
                            || f.aux[4] & !crate::pty::PTY_FLAGS != 0
                            || f.aux[5] > f.aux[3]
                            || (f.aux[5] != 0) != (f.aux[4] & crate::pty::PTY_EOF_BYTE != 0)
                            || (f.aux[4] & crate::pty::PTY_ERASE_BYTE != 0 && f.aux[3] < f.aux[5] + 2)
                            || f.data_len < crate::pty::PTY_SETTINGS_LEN as u64
                            || f.aux[3] > f.data_len - crate::pty::PTY_SETTINGS_LEN as u64) =>
                {
                    return bad("pty master with unknown flags, or queued input not inside its data")
                }
                Some(FdKind::Tree) if f.aux[0] < 3 || f.aux[0] >= 1 << 20 || f.data_len != 0 => {
                    return bad("tree fd naming no slot, or with data of its own")
                }
                Some(FdKind::Tree) if f.aux[2] & !crate::TREE_FD_PTY_PEER != 0 => return bad("tree fd with unknown flags"),
                Some(FdKind::Pty) if f.aux[0] == crate::PTY_SLAVE => {
                    let master = |g: &Fd| g.kind == FdKind::Pty as u32 && g.aux[0] == crate::PTY_MASTER && g.aux[1] == f.aux[1];
                    if !self.fds.iter().any(master) {
                        return bad("pty slave without its master");
                    }
                }
                _ => {}
            }
            if !str_in(self.strings, f.path_off, f.path_len) {
                return bad("path outside the strings section");
            }
            if f.data_len != 0
                && (f.data_off < DATA_START || f.data_off.checked_add(f.data_len).is_none_or(|e| e > h.image_size))
            {
                return bad("data outside the image");
            }
        }
        for (i, e) in self.epoll.iter().enumerate() {
            let is_epoll = self.fds.iter().any(|f| f.fd == e.epfd && f.kind == FdKind::Epoll as u32);
            if !is_epoll || !self.fds.iter().any(|f| f.fd == e.fd) {
                return Err(FormatError::BadFd { index: i as u32, what: "epoll entry names an fd that is not in the image" });
            }
        }
        Ok(())
    }

    /// Each lock names a kind, a mode and a range the kernel takes, on an fd the
    /// stub creates (not one inherited from the resumer).
    fn check_locks(&self) -> Result<(), FormatError> {
        for (i, l) in self.locks.iter().enumerate() {
            let bad = |what| Err(FormatError::BadLock { index: i as u32, what });
            if !matches!(l.kind, crate::LOCK_FLOCK | crate::LOCK_POSIX | crate::LOCK_OFD) {
                return bad("unknown lock kind");
            }
            if l.write > 1 {
                return bad("lock neither read nor write");
            }
            if l.start > i64::MAX as u64 || l.len > i64::MAX as u64 || l.start.checked_add(l.len).is_none_or(|e| e > i64::MAX as u64) {
                return bad("lock range outside a file's offsets");
            }
            if l.kind == crate::LOCK_FLOCK && (l.start != 0 || l.len != 0) {
                return bad("flock lock with a byte range");
            }
            if !self.fds.iter().any(|f| f.fd == l.fd && f.kind != FdKind::Inherit as u32) {
                return bad("lock on an fd the image does not create");
            }
        }
        Ok(())
    }

    /// Each state belongs to a socket the image creates, in fd order, and names
    /// only shutdown bits, flags and times the stub can set.
    fn check_sockets(&self) -> Result<(), FormatError> {
        let mut prev = -1i64;
        for (i, s) in self.sockets.iter().enumerate() {
            let bad = |what| Err(FormatError::BadSocket { index: i as u32, what });
            if (s.fd as i64) <= prev {
                return bad("socket states not in fd order");
            }
            prev = s.fd as i64;
            if !self.fds.iter().any(|f| f.fd == s.fd && f.kind == FdKind::Socket as u32) {
                return bad("state for an fd that is not a socket the image creates");
            }
            if s.shutdown & !(crate::SHUT_RCV | crate::SHUT_SEND) != 0 {
                return bad("unknown shutdown bits");
            }
            if s.flags & !crate::SOCK_FLAGS_KNOWN != 0 {
                return bad("unknown socket flags");
            }
            if s.linger != 0 && s.flags & crate::SOCK_LINGER == 0 {
                return bad("linger time without SO_LINGER");
            }
            if s.rcvtimeo_us > crate::SOCK_MAX_TIMEO_US || s.sndtimeo_us > crate::SOCK_MAX_TIMEO_US {
                return bad("socket timeout out of range");
            }
            if s.sndbuf > i32::MAX as u32 || s.rcvbuf > i32::MAX as u32 {
                return bad("socket buffer size out of range");
            }
        }
        Ok(())
    }

    /// Each option is one the format carries, on a socket the image creates, sorted
    /// by fd and, within an fd, in [`crate::sockopts::KNOWN`] order (so none twice).
    fn check_sockopts(&self) -> Result<(), FormatError> {
        let mut prev = (i32::MIN, -1i64);
        for (i, o) in self.sockopts.iter().enumerate() {
            let bad = |what| Err(FormatError::BadSockOpt { index: i as u32, what });
            let Some(k) = crate::sockopts::known_index(o.level, o.name) else {
                return bad("socket option this format does not carry");
            };
            if (o.fd, k as i64) <= prev {
                return bad("socket options not in fd and option order");
            }
            prev = (o.fd, k as i64);
            if !self.fds.iter().any(|f| f.fd == o.fd && f.kind == FdKind::Socket as u32) {
                return bad("option for an fd that is not a socket the image creates");
            }
            if o.name == crate::sockopts::SO_ATTACH_FILTER && o.level == crate::sockopts::SOL_SOCKET {
                if !(1..=crate::sockopts::MAX_FILTER_INSNS).contains(&o.value) || o.data_len != o.value as u32 * 8 {
                    return bad("socket filter length does not match its instruction count");
                }
                if !str_in(self.strings, o.data_off, o.data_len) {
                    return bad("socket filter outside the strings section");
                }
            } else if o.data_off != 0 || o.data_len != 0 {
                return bad("data on an integer socket option");
            }
        }
        Ok(())
    }

    fn check_files(&self, h: &Header) -> Result<(), FormatError> {
        let mut next = 0u64;
        for (i, o) in self.files.iter().enumerate() {
            let bad = |what| Err(FormatError::BadFile { index: i as u32, what });
            let Some(kind) = FileKind::from_u32(o.kind) else { return bad("unknown kind") };
            if o.mode & !0o7777 != 0 || o.flags & !FILE_KNOWN_FLAGS != 0 {
                return bad("unknown mode bits or flags");
            }
            if !str_in(self.strings, o.name_off, o.name_len) {
                return bad("name outside the strings section");
            }
            if kind != FileKind::Memfd && (o.seals != 0 || o.flags & (FILE_MFD_EXEC | FILE_MFD_NOEXEC_SEAL) != 0) {
                return bad("seals or memfd flags on a file that is not a memfd");
            }
            if o.flags & FILE_MFD_EXEC != 0 && o.flags & FILE_MFD_NOEXEC_SEAL != 0 {
                return bad("both MFD_EXEC and MFD_NOEXEC_SEAL");
            }
            if kind == FileKind::Shmem && (o.size == 0 || o.size % PAGE_SIZE != 0) {
                return bad("shared memory of no size or not a whole number of pages");
            }
            // Past 2^62 a file offset is no longer an loff_t the kernel takes.
            if o.size > 1 << 62 {
                return bad("size over the largest file offset");
            }
            if o.flags & crate::FILE_IN_TREE != 0 {
                if o.tree_slot < 3 || o.tree_slot >= 1 << 20 || o.same_as != 0 {
                    return bad("a file of the tree without a slot, or another name of a file");
                }
            } else if o.tree_slot != 0 {
                return bad("a tree slot on a file the tree does not make");
            }
            if o.same_as != 0 {
                let first = (o.same_as as usize).checked_sub(1).and_then(|k| self.files[..i].get(k));
                if kind != FileKind::Deleted || !first.is_some_and(|f| f.kind == o.kind && f.same_as == 0) {
                    return bad("another name of a file that is not an earlier deleted file");
                }
                if o.nextents != 0 {
                    return bad("another name of a file with extents of its own");
                }
            }
            if o.first_extent as u64 != next {
                return bad("extents not in file order");
            }
            next += o.nextents as u64;
            if next > self.extents.len() as u64 {
                return bad("extents past the end of the extents section");
            }
        }
        if next != self.extents.len() as u64 {
            return Err(FormatError::BadFile { index: self.files.len() as u32, what: "files do not account for every extent" });
        }
        let mut prev_end = 0u64;
        for (i, e) in self.extents.iter().enumerate() {
            let bad = |what| Err(FormatError::BadExtent { index: i as u32, what });
            let Some(o) = self.files.get(e.file as usize) else { return bad("names a file that is not in the image") };
            if !(o.first_extent..o.first_extent + o.nextents).contains(&(i as u32)) {
                return bad("is not among its file's extents");
            }
            if i as u32 == o.first_extent {
                prev_end = 0;
            }
            let Some(end) = e.offset.checked_add(e.len).filter(|&end| e.len != 0 && end <= o.size) else {
                return bad("empty, or past its file's size");
            };
            if e.offset < prev_end {
                return bad("overlaps or is out of order with the previous extent");
            }
            if o.kind == FileKind::Shmem as u32 && (e.offset % PAGE_SIZE != 0 || e.len % PAGE_SIZE != 0) {
                return bad("shared memory extent not in whole pages");
            }
            prev_end = end;
            if e.data_off < DATA_START || e.data_off.checked_add(e.len).is_none_or(|end| end > h.image_size) {
                return bad("data outside the image");
            }
        }
        Ok(())
    }

    fn check_process(&self) -> Result<(), FormatError> {
        let bad = |what| Err(FormatError::BadMm { what });
        if let Some(p) = self.process {
            if !str_in(self.strings, p.cwd_off, p.cwd_len) {
                return bad("cwd outside the strings section");
            }
            if p.cwd_mode & !0o7777 != 0 || (p.cwd_mode != 0 && p.flags & crate::PROC_CWD_DELETED == 0) {
                return bad("cwd mode with unknown bits, or for a working directory that was not removed");
            }
            if p.sigactions.iter().any(|a| a.handler >= USER_TOP || a.restorer >= USER_TOP) {
                return bad("signal handler outside user space");
            }
            if p.flags & crate::PROC_HAVE_IDENTITY != 0 {
                if !(-1000..=1000).contains(&p.oom_score_adj) {
                    return bad("oom_score_adj out of range");
                }
                // IOPRIO_PRIO_CLASS (ioprio.h): NONE, RT, BE, IDLE; levels 0-7.
                if p.ioprio >> 13 > 3 || p.ioprio & 0x1fff > 7 {
                    return bad("io priority out of range");
                }
                if p.membarrier & !crate::MEMBARRIER_KNOWN != 0 {
                    return bad("unknown membarrier registration");
                }
                if !str_in(self.strings, p.groups_off, p.groups_len)
                    || p.groups_len % 4 != 0
                    || p.groups_len / 4 > crate::MAX_GROUPS
                {
                    return bad("supplementary groups outside the strings section or too many");
                }
            }
        }
        if self.signals.iter().any(|s| s.signo == 0 || s.signo > 64) {
            return bad("pending signal number out of range");
        }
        if self.signals.iter().any(|s| s.thread != 0 && self.thread_index(s.thread).is_none()) {
            return bad("pending signal directed at a thread that is not in the image");
        }
        if self.timers.iter().any(|t| t.notify & SIGEV_THREAD_ID != 0 && self.thread_index(t.notify_tid as u32).is_none()) {
            return bad("posix timer notifies a thread that is not in the image");
        }
        // The seccomp section must be exactly a sequence of whole filters of at most
        // BPF_MAXINSNS (4096) instructions each.
        let mut rest = self.seccomp;
        while !rest.is_empty() {
            if rest.len() < 8 {
                return bad("seccomp section truncated");
            }
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if n == 0 || n > 4096 || rest.len() < 8 + n * 8 {
                return bad("seccomp filter length invalid");
            }
            rest = &rest[8 + n * 8..];
        }
        Ok(())
    }

    /// The seccomp filters, oldest first.
    pub fn seccomp_filters(&self) -> SeccompFilters<'a> {
        SeccompFilters { rest: self.seccomp }
    }

    /// A string of the Strings section (validated to be in bounds).
    pub fn string(&self, off: u32, len: u32) -> &'a [u8] {
        &self.strings[off as usize..(off + len) as usize]
    }
}
