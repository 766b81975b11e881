//! The records of an image: header, section table and the fixed-size table entries.
//!
//! Every type is `#[repr(C)]`, made only of integers and arrays of integers, with
//! explicit padding, so any byte pattern is a valid value ([`Pod`]) and the layout is
//! the same for the writer and the stub. Sizes are pinned by unit tests.

/// Marker for plain-old-data records that may be viewed from raw bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only integer fields or arrays of them,
/// have no implicit padding, and accept every bit pattern.
pub unsafe trait Pod: Copy + 'static {}

/// Where each section lives. The section table is indexed by this value.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    Threads = 0,
    Vmas = 1,
    Runs = 2,
    Mm = 3,
    Fds = 4,
    Strings = 5,
    Xstate = 6,
    Vdso = 7,
    Process = 8,
    Signals = 9,
    Timers = 10,
    Epoll = 11,
    /// seccomp filters, oldest first: per filter a u32 instruction count and 4 bytes
    /// of padding, then the struct sock_filter instructions (8 bytes each).
    Seccomp = 12,
    /// File locks (flock, POSIX, OFD), in fd order.
    Locks = 13,
    /// Files whose content is in the image (deleted files, memfds, shared anonymous
    /// memory): one [`FileObject`] each, however many fds and mappings use it.
    Files = 14,
    /// The data ranges of those files ([`Extent`]), file by file.
    Extents = 15,
    /// Socket state beyond the Fd record (shutdown, buffer sizes, options), one
    /// [`crate::SocketState`] per socket the image creates, in fd order.
    Sockets = 16,
    /// What the freezing kernel showed the process ([`crate::KernelState`]): its
    /// clocks, pid_max, mmap_min_addr. Absent from images written before it existed.
    Kernel = 17,
    /// Integer socket options a new socket lacks ([`crate::SockOpt`]), sorted by fd,
    /// each fd's options in [`crate::sockopts::KNOWN`] order.
    SockOpts = 18,
    /// The exported functions of the frozen process's vdso ([`crate::VdsoSym`]),
    /// for the jumps written over the old vdso on a kernel whose vdso differs.
    VdsoSyms = 19,
    /// The processes of a tree (`ckpt freeze --tree`), one [`crate::TreeProc`] each,
    /// parents before their children; the first is the root this image restores.
    TreeProcs = 20,
    /// Kernel objects the processes of a tree share, one [`crate::TreeObject`] each:
    /// created once by the root before it forks, inherited by the others.
    TreeObjects = 21,
    /// The bytes the tree objects carry (a pipe's buffered bytes), one after another.
    TreeData = 22,
    /// Pages a lazy resume brings in before the first instruction
    /// ([`crate::WorkingSetRange`], sorted; `ckpt profile` writes it).
    WorkingSet = 23,
    /// The stored pieces of the page runs of a compressed image
    /// ([`crate::PageChunk`], in run order; see compress.rs).
    Chunks = 24,
}

/// Number of slots in the section table; slots past the last kind must be empty.
pub const MAX_SECTIONS: usize = 32;
/// Number of section kinds this version knows (their numbers need not be dense:
/// a slot no kind has must be empty).
pub const KNOWN_SECTIONS: usize = 25;

impl SectionKind {
    /// The kind stored in section slot `slot`, if this version knows one there.
    pub fn from_slot(slot: usize) -> Option<SectionKind> {
        SectionKind::ALL.iter().copied().find(|k| *k as usize == slot)
    }

    pub const ALL: [SectionKind; KNOWN_SECTIONS] = [
        SectionKind::Threads,
        SectionKind::Vmas,
        SectionKind::Runs,
        SectionKind::Mm,
        SectionKind::Fds,
        SectionKind::Strings,
        SectionKind::Xstate,
        SectionKind::Vdso,
        SectionKind::Process,
        SectionKind::Signals,
        SectionKind::Timers,
        SectionKind::Epoll,
        SectionKind::Seccomp,
        SectionKind::Locks,
        SectionKind::Files,
        SectionKind::Extents,
        SectionKind::Sockets,
        SectionKind::Kernel,
        SectionKind::SockOpts,
        SectionKind::VdsoSyms,
        SectionKind::TreeProcs,
        SectionKind::TreeObjects,
        SectionKind::TreeData,
        SectionKind::WorkingSet,
        SectionKind::Chunks,
    ];

    /// Most entries (bytes for blobs) a section may hold, checked on read so a
    /// corrupted count cannot make a reader walk off.
    pub const fn max_count(self) -> u64 {
        match self {
            SectionKind::Threads => crate::MAX_THREADS as u64,
            SectionKind::Vmas => crate::MAX_VMAS as u64,
            SectionKind::Runs => crate::MAX_RUNS as u64,
            SectionKind::Mm | SectionKind::Process | SectionKind::Kernel => 1,
            SectionKind::Fds => crate::MAX_FDS as u64,
            SectionKind::Strings => crate::MAX_STRINGS,
            SectionKind::Xstate => crate::MAX_XSTATE as u64 * crate::MAX_THREADS as u64,
            SectionKind::Vdso => crate::MAX_VDSO,
            SectionKind::Signals => crate::MAX_SIGNALS as u64,
            SectionKind::Timers => crate::MAX_TIMERS as u64,
            SectionKind::Epoll => crate::MAX_EPOLL as u64,
            SectionKind::Seccomp => crate::MAX_SECCOMP,
            SectionKind::Locks => crate::MAX_LOCKS as u64,
            SectionKind::Files => crate::MAX_FILES as u64,
            SectionKind::Extents => crate::MAX_EXTENTS as u64,
            SectionKind::Sockets => crate::MAX_FDS as u64,
            SectionKind::SockOpts => crate::MAX_SOCKOPTS as u64,
            SectionKind::VdsoSyms => crate::MAX_VDSO_SYMS as u64,
            SectionKind::TreeProcs => crate::MAX_TREE_PROCS as u64,
            SectionKind::TreeObjects => crate::MAX_TREE_OBJECTS as u64,
            SectionKind::TreeData => crate::MAX_TREE_DATA,
            SectionKind::WorkingSet => crate::MAX_WORKING_SET as u64,
            SectionKind::Chunks => crate::MAX_CHUNKS as u64,
        }
    }

    /// Size of one entry, or 1 for byte blobs.
    pub const fn entry_size(self) -> u64 {
        match self {
            SectionKind::Threads => core::mem::size_of::<Thread>() as u64,
            SectionKind::Vmas => core::mem::size_of::<Vma>() as u64,
            SectionKind::Runs => core::mem::size_of::<PageRun>() as u64,
            SectionKind::Mm => core::mem::size_of::<Mm>() as u64,
            SectionKind::Fds => core::mem::size_of::<Fd>() as u64,
            SectionKind::Strings | SectionKind::Xstate | SectionKind::Vdso | SectionKind::Seccomp => 1,
            SectionKind::Process => core::mem::size_of::<crate::Process>() as u64,
            SectionKind::Signals => core::mem::size_of::<crate::PendingSignal>() as u64,
            SectionKind::Timers => core::mem::size_of::<crate::PosixTimer>() as u64,
            SectionKind::Epoll => core::mem::size_of::<crate::EpollEntry>() as u64,
            SectionKind::Locks => core::mem::size_of::<crate::FileLock>() as u64,
            SectionKind::Files => core::mem::size_of::<FileObject>() as u64,
            SectionKind::Extents => core::mem::size_of::<Extent>() as u64,
            SectionKind::Sockets => core::mem::size_of::<crate::SocketState>() as u64,
            SectionKind::Kernel => core::mem::size_of::<crate::KernelState>() as u64,
            SectionKind::SockOpts => core::mem::size_of::<crate::SockOpt>() as u64,
            SectionKind::VdsoSyms => core::mem::size_of::<crate::VdsoSym>() as u64,
            SectionKind::TreeProcs => core::mem::size_of::<crate::TreeProc>() as u64,
            SectionKind::TreeObjects => core::mem::size_of::<crate::TreeObject>() as u64,
            SectionKind::TreeData => 1,
            SectionKind::WorkingSet => core::mem::size_of::<crate::WorkingSetRange>() as u64,
            SectionKind::Chunks => core::mem::size_of::<crate::PageChunk>() as u64,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            SectionKind::Threads => "threads",
            SectionKind::Vmas => "vmas",
            SectionKind::Runs => "page runs",
            SectionKind::Mm => "mm",
            SectionKind::Fds => "fds",
            SectionKind::Strings => "strings",
            SectionKind::Xstate => "xstate",
            SectionKind::Vdso => "vdso",
            SectionKind::Process => "process",
            SectionKind::Signals => "pending signals",
            SectionKind::Timers => "posix timers",
            SectionKind::Epoll => "epoll entries",
            SectionKind::Seccomp => "seccomp filters",
            SectionKind::Locks => "file locks",
            SectionKind::Files => "files",
            SectionKind::Extents => "file extents",
            SectionKind::Sockets => "socket states",
            SectionKind::Kernel => "kernel state",
            SectionKind::SockOpts => "socket options",
            SectionKind::VdsoSyms => "vdso symbols",
            SectionKind::TreeProcs => "tree processes",
            SectionKind::TreeObjects => "tree objects",
            SectionKind::TreeData => "tree data",
            SectionKind::WorkingSet => "working set",
            SectionKind::Chunks => "compressed chunks",
        }
    }
}

/// One slot of the section table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// Offset from the image start; 8-byte aligned.
    pub offset: u64,
    /// Bytes; equals `count * entry_size`.
    pub size: u64,
    /// Number of entries (bytes for blobs).
    pub count: u32,
    /// CRC-32C of the section bytes.
    pub crc: u32,
}

/// Image header flags.
pub const HDR_SSE42_CRC: u64 = 1 << 0;
/// At resume, open /dev/null in place of a file that is missing or shorter than its
/// saved offset (with a warning) instead of failing.
pub const HDR_MISSING_FILES_IGNORE: u64 = 1 << 1;
/// Resume lazily by default (`ckpt freeze --lazy`): anonymous memory arrives on
/// demand through userfaultfd after the first instruction. `CKPT_LAZY=0` or `=1` in
/// the resumer's environment overrides it.
pub const HDR_LAZY: u64 = 1 << 2;

/// The image header, at offset 0 of the image.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    /// `size_of::<Header>()`, so a reader can reject a header of another layout.
    pub header_size: u32,
    pub flags: u64,
    /// Total bytes of the image, header to last table byte.
    pub image_size: u64,
    /// Seconds since the epoch at the freeze.
    pub created_unix: u64,
    /// XSAVE feature bits present in the saved xstate (must be a subset of XCR0 at resume).
    pub xcr0: u64,
    pub xstate_size: u32,
    pub page_size: u32,
    /// Address of the bytes `0f 05 c3` (`syscall; ret`) in the target's own text, 0 if none.
    pub gadget_syscall_ret: u64,
    /// Address of `mov eax|rax, 15; syscall` (rt_sigreturn) in the target's text, 0 if none.
    pub gadget_sigreturn: u64,
    /// PID of the frozen process (informational).
    pub pid: u32,
    pub nsections: u32,
    pub sections: [Section; MAX_SECTIONS],
    /// `uname -r` of the freezing kernel, NUL padded (informational).
    pub kernel_release: [u8; 64],
    /// CRC-32C of the header bytes before this field.
    pub header_crc: u32,
    pub _pad: u32,
}

impl Header {
    /// Byte offset of `header_crc` (the checksum covers everything before it).
    pub const CRC_OFFSET: usize = core::mem::size_of::<Header>() - 8;

    pub fn section(&self, kind: SectionKind) -> &Section {
        &self.sections[kind as usize]
    }
}

/// General registers in the order of the kernel's `struct user_regs_struct`
/// (NT_PRSTATUS), including fs_base and gs_base.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

/// One thread of the process. The first is the thread-group leader (its tid is the
/// PID); the others follow in the order they are created again at resume.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Thread {
    pub tid: u32,
    /// THREAD_* flags.
    pub flags: u32,
    pub regs: Regs,
    /// Blocked signal mask (bit n-1 for signal n).
    pub sigmask: u64,
    pub rseq_addr: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    pub ss_sp: u64,
    pub ss_size: u64,
    pub ss_flags: u32,
    /// Bytes of XSAVE area in the Xstate section for this thread.
    pub xstate_size: u32,
    /// Offset of this thread's XSAVE area inside the Xstate section.
    pub xstate_off: u64,
    /// clear_child_tid address, 0 if unknown.
    pub tid_address: u64,
    pub robust_list: u64,
    pub robust_len: u64,
    /// The thread's name (/proc/PID/task/TID/comm, PR_SET_NAME), NUL padded.
    pub comm: [u8; 16],
    /// sched_setscheduler(2) policy and static priority; nice value (setpriority(2)).
    pub sched_policy: u32,
    pub sched_priority: u32,
    pub nice: i32,
    /// The system call the thread was in at the freeze (orig_rax), or -1.
    pub syscall_nr: i32,
    /// THREAD_RESTART_*: what happens to that system call at resume.
    pub restart: u32,
    /// The scheduler state letter of /proc/PID/task/TID/stat at the freeze (R, S, D...).
    pub state: u32,
}

/// `Thread::flags`: the thread-group leader had already exited (a main thread that
/// called pthread_exit while other threads run on). Its registers are meaningless; the
/// resume recreates it only to end it again, so the process shows the same zombie
/// leader.
pub const THREAD_EXITED: u32 = 1 << 0;
pub const THREAD_KNOWN_FLAGS: u32 = THREAD_EXITED;

/// `Thread::restart`: not in a system call, or one that had completed.
pub const THREAD_RESTART_NONE: u32 = 0;
/// Interrupted system call executed again (rip moved back onto `syscall`).
pub const THREAD_RESTART_AGAIN: u32 = 1;
/// Interrupted system call whose kernel restart state is lost: returns EINTR.
pub const THREAD_RESTART_EINTR: u32 = 2;

/// What a VMA is; decides how the stub creates it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
    Anon = 1,
    Heap = 2,
    Stack = 3,
    FilePrivate = 4,
    SharedAnon = 5,
    Vdso = 6,
    Vvar = 7,
    VvarVclock = 8,
    /// MAP_SHARED of a file: mapped again from the file, whose content it is.
    SharedFile = 9,
    /// MAP_SHARED of a file in the Files section (`Vma::object`): a deleted file, a
    /// memfd, shared anonymous memory. Its content is the file's: no page runs.
    SharedObject = 10,
    /// MAP_PRIVATE of a file in the Files section: mapped from it, with the pages
    /// the process had written (its private copies) in page runs.
    PrivateObject = 11,
}

impl VmaKind {
    pub const fn from_u32(v: u32) -> Option<VmaKind> {
        Some(match v {
            1 => VmaKind::Anon,
            2 => VmaKind::Heap,
            3 => VmaKind::Stack,
            4 => VmaKind::FilePrivate,
            5 => VmaKind::SharedAnon,
            6 => VmaKind::Vdso,
            7 => VmaKind::Vvar,
            8 => VmaKind::VvarVclock,
            9 => VmaKind::SharedFile,
            10 => VmaKind::SharedObject,
            11 => VmaKind::PrivateObject,
            _ => return None,
        })
    }

    /// Mappings the kernel provides; the stub moves its own instead of creating them.
    pub const fn is_special(self) -> bool {
        matches!(self, VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock)
    }

    pub const fn name(self) -> &'static str {
        match self {
            VmaKind::Anon => "anon",
            VmaKind::Heap => "heap",
            VmaKind::Stack => "stack",
            VmaKind::FilePrivate => "file",
            VmaKind::SharedAnon => "shared-anon",
            VmaKind::Vdso => "vdso",
            VmaKind::Vvar => "vvar",
            VmaKind::VvarVclock => "vvar_vclock",
            VmaKind::SharedFile => "shared-file",
            VmaKind::SharedObject => "shared-object",
            VmaKind::PrivateObject => "private-object",
        }
    }
}

/// VMA flags (`Vma::flags`).
pub const VMA_GROWSDOWN: u32 = 1 << 0;
pub const VMA_HUGEPAGE: u32 = 1 << 1;
pub const VMA_NOHUGEPAGE: u32 = 1 << 2;
pub const VMA_DONTFORK: u32 = 1 << 3;
pub const VMA_DONTDUMP: u32 = 1 << 4;
pub const VMA_LOCKED: u32 = 1 << 5;
/// Created with MAP_NORESERVE (smaps "nr"): no swap space is reserved.
pub const VMA_NORESERVE: u32 = 1 << 6;
/// MADV_SEQUENTIAL / MADV_RANDOM read-ahead advice (smaps "sr" / "rr").
pub const VMA_SEQ_READ: u32 = 1 << 7;
pub const VMA_RAND_READ: u32 = 1 << 8;
/// MADV_MERGEABLE: offered to KSM (smaps "mg").
pub const VMA_MERGEABLE: u32 = 1 << 9;
/// MADV_WIPEONFORK: a child sees zeros there (smaps "wf").
pub const VMA_WIPEONFORK: u32 = 1 << 10;
/// mlock2(MLOCK_ONFAULT): with VMA_LOCKED, pages are locked as they are faulted in
/// rather than all at once (smaps "lf").
pub const VMA_LOCKONFAULT: u32 = 1 << 11;
/// A private file mapping whose clean pages (never written by the process) are not in
/// the image: they come from the file, which must be the same at resume (identity
/// `file_dev`/`file_ino`/`file_size`/`file_mtime_ns`, or else the CRC-32C `file_crc`
/// of the mapped bytes). Its runs hold only the pages the process wrote.
pub const VMA_FILE_REF: u32 = 1 << 31;
/// A shared mapping that may be made writable (smaps "mw", VM_MAYWRITE): the file
/// behind it was opened for writing. Without it the file cannot be sealed against
/// writes while it is mapped, nor the mapping made writable (mprotect(2) EACCES).
pub const VMA_MAYWRITE: u32 = 1 << 12;
pub const VMA_KNOWN_FLAGS: u32 = ((1 << 13) - 1) | VMA_FILE_REF;

/// Protection bits, as PROT_* of mmap(2).
pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;

/// One memory area of the target, in address order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// Offset in the mapped file (file and object mappings).
    pub file_offset: u64,
    pub prot: u32,
    pub kind: u32,
    pub flags: u32,
    /// File path (FilePrivate) in the Strings section.
    pub name_off: u32,
    pub name_len: u32,
    /// Index of the first PageRun of this VMA and how many follow.
    pub first_run: u32,
    pub nruns: u32,
    /// With VMA_FILE_REF: CRC-32C of the mapped file bytes (from `file_offset`, up to
    /// the end of the mapping or of the file, whichever comes first).
    pub file_crc: u32,
    /// SharedObject/PrivateObject: index of the mapped file in the Files section
    /// plus one; 0 for every other kind.
    pub object: u32,
    pub _pad: u32,
    /// Size of the mapped file at the freeze (FilePrivate), to decide whether the
    /// stub may map the file itself or must use anonymous memory.
    pub file_size: u64,
    /// Identity of the mapped file at the freeze (st_dev, st_ino, mtime in ns): when
    /// the file found at resume matches, its clean pages need not be copied in.
    pub file_dev: u64,
    pub file_ino: u64,
    pub file_mtime_ns: u64,
}

/// Page-aligned bytes stored in the image for one address range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRun {
    pub addr: u64,
    /// Offset of the bytes from the image start (page aligned, >= DATA_START).
    pub data_off: u64,
    /// Bytes (multiple of the page size, non-zero).
    pub len: u64,
    /// CRC-32C of the bytes.
    pub crc: u32,
    /// Index of the VMA holding this run.
    pub vma: u32,
    /// RUN_* flags.
    pub flags: u32,
    pub _pad: u32,
}

/// The run's pages were never written by the process: they are the mapped file's
/// own bytes. When the file is still the same one (identity in the VMA), the stub
/// lets the file mapping provide them instead of copying them in.
pub const RUN_FILE_CLEAN: u32 = 1 << 0;

/// Memory-descriptor fields for prctl(PR_SET_MM, PR_SET_MM_MAP) and the saved auxv.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Mm {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Number of u64 words used in `auxv` (pairs, AT_NULL included).
    pub auxv_words: u32,
    /// Executable path in the Strings section (informational; exe_fd needs privileges).
    pub exe_off: u32,
    pub exe_len: u32,
    /// Command line (arguments separated by NUL) in the Strings section (informational).
    pub cmdline_off: u32,
    pub cmdline_len: u32,
    pub _pad: u32,
    /// Size and modification time (ns) of the executable at the freeze: /proc/PID/exe
    /// is pointed back at it only if it is unchanged.
    pub exe_size: u64,
    pub exe_mtime_ns: u64,
    pub auxv: [u64; 2 * crate::MAX_AUXV],
}

impl Default for Mm {
    fn default() -> Self {
        Mm {
            start_code: 0,
            end_code: 0,
            start_data: 0,
            end_data: 0,
            start_brk: 0,
            brk: 0,
            start_stack: 0,
            arg_start: 0,
            arg_end: 0,
            env_start: 0,
            env_end: 0,
            auxv_words: 0,
            exe_off: 0,
            exe_len: 0,
            cmdline_off: 0,
            cmdline_len: 0,
            _pad: 0,
            exe_size: 0,
            exe_mtime_ns: 0,
            auxv: [0; 2 * crate::MAX_AUXV],
        }
    }
}

/// How the stub provides a file descriptor.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// Keep whatever the resumer has at this number (stdio pipes, terminals, sockets).
    Inherit = 1,
    /// Reopen `path` with `flags` and seek to `offset` (regular files, directories,
    /// character devices such as /dev/null). `aux[0]` [`PATH_TTY_SETTINGS`]: a
    /// terminal (a virtual console, a serial line) whose struct termios2 (44 bytes)
    /// and struct winsize (8) are the `data`, set again once it is open.
    Path = 2,
    /// A file deleted while open: the file `aux[0]` of the Files section (which holds
    /// its content, mode and owner), opened again with `flags`; `path` is the path
    /// it had, for messages.
    Deleted = 3,
    /// memfd_create(2): the file `aux[0]` of the Files section (name, content,
    /// mode, seals), opened again with `flags`.
    Memfd = 4,
    /// One end of a pipe whose both ends are in the task: `aux[0]` pipe inode,
    /// `aux[1]` 0 read end / 1 write end; buffered bytes in `data` (on the read end).
    Pipe = 5,
    /// eventfd(2): `aux[0]` counter, `aux[1]` EFD_SEMAPHORE.
    Eventfd = 6,
    /// epoll instance; its registrations are in the Epoll section.
    Epoll = 7,
    /// signalfd(2): `aux[0]` the signal mask.
    Signalfd = 8,
    /// timerfd: `aux[0]` clockid, `aux[1..3]` remaining (s, ns), `aux[3..5]` interval (s, ns).
    Timerfd = 9,
    /// A socket (unix, IPv4 or IPv6): `aux[0]` family, `aux[1]` type, `aux[2]` its
    /// role (a `SOCK_*` value below), `aux[3]` the listen backlog, or the id
    /// both ends of a pair or connection share, or a waiting connection's place;
    /// `aux[4]` option bits, `aux[5]` protocol. `offset`, for roles 3-6 and 8-9:
    /// the fd of the socket it connects through (listener, bound datagram
    /// socket; `u64::MAX`: none, a TCP connection whose listener is gone).
    /// `path`: a sockaddr — its own name for a connecting end, its peer for a
    /// connected UDP socket, its name when `data` holds queued datagrams. `data`:
    /// its address (bound/listening), or the data queued for it: a stream's bytes,
    /// or messages one after another, each a native-endian u32 length, a u32
    /// count of the fds passed with it, their numbers as i32 — records with
    /// [`FD_INFLIGHT`] —, then its bytes (also a stream's when fds were passed in
    /// it). Its shutdown state and options, when not a new socket's, are in the
    /// Sockets section. Details: generator/src/fdplan/sockets.rs and the modules
    /// it names.
    Socket = 10,
    /// inotify instance: watches in the Strings section, `aux[0]` count.
    Inotify = 11,
    /// An fd whose other end was outside the process (a pipe or a connected socket
    /// inherited from a shell, make's jobserver, a daemon connection): it resumes
    /// as the same kind of object whose peer has gone away. `aux[0]` is a `DISC_*`
    /// value. Pipe: `aux[1]` 0 read end / 1 write end, `aux[2]` capacity; the read
    /// end's buffered bytes in `data`. Socket: `aux[1]` family, `aux[2]` type,
    /// `aux[3]` protocol; a stream socket's queued bytes, or a datagram socket's
    /// local address (sockaddr), in `data`. `path` holds the original link
    /// ("pipe:[N]", "socket:[N]"), for messages.
    Disconnected = 12,
    /// A directory removed while open: an empty directory is made, opened and
    /// removed again. `path` is the path it had, `aux[0]` its permission bits;
    /// `aux[1]` is 1 + the fd number of an earlier record of the same directory
    /// (opened again through it), or 0; `aux[2]` is 1 when it is also the
    /// process's working directory.
    DeletedDir = 13,
    /// One end of a pseudo-terminal whose master is in the process: `aux[0]`
    /// [`PTY_MASTER`] or [`PTY_SLAVE`], `aux[1]` the pair's index (/dev/pts/N),
    /// `aux[2]` 1 in packet mode (TIOCPKT). A master's `aux[3]` is the length of
    /// the queued input in its data, `aux[4]` its flags ([`crate::pty::PTY_FLAGS`]),
    /// `aux[5]` the end-of-file markers in that input; its `data`: the terminal's
    /// struct termios2 (44 bytes) and struct winsize (8 bytes), the input, the
    /// output (layout in [`crate::pty`]).
    Pty = 14,
    /// An object of the tree that another process of it shares (a pipe between
    /// the processes of a pipeline): `aux[0]` is the number of the fd the root
    /// created it at, before it forked (tree.rs); this process duplicates that fd
    /// and closes the tree's fds before it continues.
    Tree = 15,
}

/// `Fd::aux[0]` of an `FdKind::Path` record: a terminal whose settings are its data.
pub const PATH_TTY_SETTINGS: u64 = 1;

/// `Fd::aux[0]` of an `FdKind::Pty` record: the master (/dev/ptmx).
pub const PTY_MASTER: u64 = 0;
/// `Fd::aux[0]` of an `FdKind::Pty` record: the slave (/dev/pts/N).
pub const PTY_SLAVE: u64 = 1;

/// `Fd::aux[2]` of an `FdKind::Socket` record: bound or new (0), listening (1),
/// one end of a unix socket pair (2), a unix connection's connecting end (3), its
/// accepted end (4), a connection waiting to be accepted (5), a unix datagram
/// socket connected to one of the process (6), a connected UDP socket (7), a TCP
/// connection's connecting end (8), its accepted end (9).
pub const SOCK_ROLES: u64 = 10;

/// `Fd::cloexec` bit: a file in flight, passed (SCM_RIGHTS) in a message queued on
/// one of the process's sockets. The process has no fd for it: the stub builds it,
/// sends it with that message, and closes it; `fd` is a number above every fd of
/// the process, named by the message.
pub const FD_INFLIGHT: u32 = 2;

/// `Fd::aux[0]` of an `FdKind::Disconnected` record: one end of a pipe.
pub const DISC_PIPE: u64 = 1;
/// `Fd::aux[0]` of an `FdKind::Disconnected` record: a connected socket.
pub const DISC_SOCKET: u64 = 2;
/// Address families a disconnected socket may have (AF_UNIX, AF_INET, AF_INET6).
pub const DISC_FAMILIES: [u64; 3] = [1, 2, 10];

impl FdKind {
    pub const fn from_u32(v: u32) -> Option<FdKind> {
        Some(match v {
            1 => FdKind::Inherit,
            2 => FdKind::Path,
            3 => FdKind::Deleted,
            4 => FdKind::Memfd,
            5 => FdKind::Pipe,
            6 => FdKind::Eventfd,
            7 => FdKind::Epoll,
            8 => FdKind::Signalfd,
            9 => FdKind::Timerfd,
            10 => FdKind::Socket,
            11 => FdKind::Inotify,
            12 => FdKind::Disconnected,
            13 => FdKind::DeletedDir,
            14 => FdKind::Pty,
            15 => FdKind::Tree,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            FdKind::Inherit => "inherited",
            FdKind::Path => "file",
            FdKind::Deleted => "deleted file",
            FdKind::Memfd => "memfd",
            FdKind::Pipe => "pipe",
            FdKind::Eventfd => "eventfd",
            FdKind::Epoll => "epoll",
            FdKind::Signalfd => "signalfd",
            FdKind::Timerfd => "timerfd",
            FdKind::Socket => "socket",
            FdKind::Inotify => "inotify",
            FdKind::Disconnected => "disconnected",
            FdKind::DeletedDir => "deleted directory",
            FdKind::Pty => "pty",
            FdKind::Tree => "shared with the tree",
        }
    }
}

/// One file descriptor to provide at resume, in ascending fd order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Fd {
    pub fd: i32,
    pub kind: u32,
    /// open(2) flags as in /proc/PID/fdinfo (O_CREAT/O_TRUNC/O_EXCL never set).
    pub flags: u32,
    /// 1 if FD_CLOEXEC; | [`FD_INFLIGHT`] for a file in flight.
    pub cloexec: u32,
    pub offset: u64,
    pub path_off: u32,
    pub path_len: u32,
    /// Open file description: fds with the same non-zero value share one (dup(2)),
    /// so the first one is opened and the others are duplicated from it.
    pub desc: u32,
    pub data_crc: u32,
    /// Bytes stored for this fd (file contents, pipe buffer, address), in the data
    /// area like page runs.
    pub data_off: u64,
    pub data_len: u64,
    pub aux: [u64; 6],
}

/// What a [`FileObject`] is, which decides how the stub creates it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file deleted while open or mapped: recreated unlinked, in its old
    /// directory when that is still there (`name` is its old path).
    Deleted = 1,
    /// memfd_create(2); `name` is the memfd's name.
    Memfd = 2,
    /// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, "/dev/zero (deleted)"):
    /// only mappings reach it, no name.
    Shmem = 3,
}

impl FileKind {
    pub const fn from_u32(v: u32) -> Option<FileKind> {
        Some(match v {
            1 => FileKind::Deleted,
            2 => FileKind::Memfd,
            3 => FileKind::Shmem,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            FileKind::Deleted => "deleted file",
            FileKind::Memfd => "memfd",
            FileKind::Shmem => "shared memory",
        }
    }
}

/// `FileObject::flags`: restore the owner (`uid`, `gid`) with fchown(2); the kernel
/// lets only a privileged resumer give a file away.
pub const FILE_OWNER: u32 = 1 << 0;
/// memfd_create(2) flags the memfd was made with, as far as they show: MFD_EXEC
/// (Linux 6.3) makes a memfd whose exec bits may be set, MFD_NOEXEC_SEAL one whose
/// exec bits are cleared and sealed (F_SEAL_EXEC).
pub const FILE_MFD_EXEC: u32 = 1 << 1;
pub const FILE_MFD_NOEXEC_SEAL: u32 = 1 << 2;
/// A file several processes of a tree share (tree.rs): the root made it before it
/// forked and it waits at fd `tree_slot`; this process parks and maps that one
/// instead of making its own (its content is the tree's, not filled again).
pub const FILE_IN_TREE: u32 = 1 << 3;
pub const FILE_KNOWN_FLAGS: u32 = (1 << 4) - 1;

/// One file whose content is in the image, stored once however many fds and
/// mappings use it: at resume it is made once and every fd and mapping uses that
/// one file, so a write through one is seen through the others.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FileObject {
    /// FileKind.
    pub kind: u32,
    /// Permission bits (st_mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// st_size; bytes past the last extent up to it are a hole.
    pub size: u64,
    /// F_GET_SEALS (memfds), applied once every fd and mapping is made.
    pub seals: u32,
    /// FILE_* flags.
    pub flags: u32,
    /// Memfd name or deleted file's old path, in the Strings section.
    pub name_off: u32,
    pub name_len: u32,
    /// Its data ranges: `nextents` records of the Extents section from `first_extent`.
    pub first_extent: u32,
    pub nextents: u32,
    /// Device and inode at the freeze (informational).
    pub dev: u64,
    pub ino: u64,
    /// A deleted file that had several names (hard links, each opened or mapped
    /// before it was removed): 1 + the index of the file this is another name of,
    /// an earlier Deleted record; this one then has no extents of its own. 0 for
    /// a file's first name.
    pub same_as: u32,
    /// With [`FILE_IN_TREE`]: the fd the root of the tree made it at; else 0.
    pub tree_slot: u32,
}

/// One data range of a file: `len` bytes at file offset `offset`, stored at image
/// offset `data_off`. What lies between a file's extents is a hole (SEEK_HOLE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub data_off: u64,
    /// Index of its file in the Files section.
    pub file: u32,
    /// CRC-32C of the bytes.
    pub crc: u32,
}

// SAFETY: each of these is #[repr(C)], made of integers with explicit padding fields,
// and every bit pattern is a valid value (sizes pinned in the tests below).
unsafe impl Pod for Header {}
// SAFETY: as above.
unsafe impl Pod for Section {}
// SAFETY: as above.
unsafe impl Pod for Thread {}
// SAFETY: as above.
unsafe impl Pod for Regs {}
// SAFETY: as above.
unsafe impl Pod for Vma {}
// SAFETY: as above.
unsafe impl Pod for PageRun {}
// SAFETY: as above.
unsafe impl Pod for Mm {}
// SAFETY: as above.
unsafe impl Pod for Fd {}
// SAFETY: as above.
unsafe impl Pod for crate::Process {}
// SAFETY: as above.
unsafe impl Pod for crate::SocketState {}
// SAFETY: as above.
unsafe impl Pod for crate::SigAction {}
// SAFETY: as above.
unsafe impl Pod for crate::PendingSignal {}
// SAFETY: as above.
unsafe impl Pod for crate::PosixTimer {}
// SAFETY: as above.
unsafe impl Pod for crate::EpollEntry {}
// SAFETY: as above.
unsafe impl Pod for crate::FileLock {}
// SAFETY: as above.
unsafe impl Pod for FileObject {}
// SAFETY: as above.
unsafe impl Pod for Extent {}
// SAFETY: as above.
unsafe impl Pod for crate::KernelState {}
// SAFETY: as above.
unsafe impl Pod for crate::VdsoSym {}
// SAFETY: two u64 fields, no padding.
unsafe impl Pod for crate::WorkingSetRange {}
// SAFETY: as above.
unsafe impl Pod for crate::TreeProc {}
// SAFETY: two u64 and four u32 fields, no padding.
unsafe impl Pod for crate::PageChunk {}
// SAFETY: as above.
unsafe impl Pod for crate::TreeObject {}
// SAFETY: u8 and u64 accept every bit pattern.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}

/// View a record as its bytes (for writing and checksums).
pub fn as_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod (no padding, no pointers), so its bytes are initialised.
    unsafe { core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>()) }
}

/// View a slice of records as bytes.
pub fn slice_as_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: as in as_bytes; the length covers exactly the slice.
    unsafe { core::slice::from_raw_parts(v.as_ptr() as *const u8, core::mem::size_of_val(v)) }
}

/// View bytes as a slice of records, checking alignment and that the length is a
/// whole number of records. Returns None otherwise.
pub fn from_bytes<T: Pod>(b: &[u8]) -> Option<&[T]> {
    let sz = core::mem::size_of::<T>();
    if b.is_empty() {
        return Some(&[]);
    }
    if !b.len().is_multiple_of(sz) || !(b.as_ptr() as usize).is_multiple_of(core::mem::align_of::<T>()) {
        return None;
    }
    // SAFETY: alignment and length checked above; T accepts any bit pattern.
    Some(unsafe { core::slice::from_raw_parts(b.as_ptr() as *const T, b.len() / sz) })
}

/// Read one record from the start of `b` (any alignment).
pub fn read_record<T: Pod>(b: &[u8]) -> Option<T> {
    if b.len() < core::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; read_unaligned copes with any alignment; T is Pod.
    Some(unsafe { core::ptr::read_unaligned(b.as_ptr() as *const T) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn sizes_are_pinned() {
        assert_eq!(size_of::<Section>(), 24);
        assert_eq!(size_of::<Regs>(), 27 * 8);
        assert_eq!(size_of::<Thread>(), 344);
        assert_eq!(size_of::<Vma>(), 96);
        assert_eq!(size_of::<PageRun>(), 40);
        assert_eq!(size_of::<Mm>(), 11 * 8 + 24 + 16 + 2 * 64 * 8);
        assert_eq!(size_of::<Fd>(), 104);
        assert_eq!(size_of::<FileObject>(), 72);
        assert_eq!(size_of::<Extent>(), 32);
        assert_eq!(Header::CRC_OFFSET, offset_of!(Header, header_crc));
        assert!(size_of::<Header>() <= crate::DATA_START as usize);
    }

    #[test]
    fn regs_match_kernel_user_regs_struct_order() {
        // struct user_regs_struct (arch/x86/include/asm/user_64.h): r15 first,
        // orig_ax at 15, ip at 16, sp at 19, fs_base at 21.
        assert_eq!(offset_of!(Regs, r15), 0);
        assert_eq!(offset_of!(Regs, orig_rax), 15 * 8);
        assert_eq!(offset_of!(Regs, rip), 16 * 8);
        assert_eq!(offset_of!(Regs, rsp), 19 * 8);
        assert_eq!(offset_of!(Regs, fs_base), 21 * 8);
        assert_eq!(offset_of!(Regs, gs), 26 * 8);
    }

    #[test]
    fn from_bytes_checks_length_and_alignment() {
        let words = [0u64; 10];
        let b = slice_as_bytes(&words);
        assert_eq!(from_bytes::<PageRun>(b).map(|s| s.len()), Some(2));
        assert!(from_bytes::<PageRun>(&b[..48]).is_none());
        assert!(from_bytes::<u64>(&b[1..9]).is_none());
    }
}
