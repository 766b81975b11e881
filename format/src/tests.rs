//! Rejection tests for the image reader, and a bounded structure-aware fuzzer.
//!
//! [`valid_parts`] describes a small but complete image (one thread with an XSAVE area,
//! VMAs of every creation path, page runs with data, an mm record with auxv, fds) and
//! [`build`] lays it out with the writer the generator uses ([`write::finish`]):
//! header, page data from `DATA_START`, then the tables from `align_up(data_end, 64)`.
//!
//! Every way `check_header` and `Tables::parse` can reject a file has one test below,
//! which breaks exactly one thing, repairs the checksums that would otherwise fire
//! first, and asserts the exact `FormatError`.
//!
//! The fuzzer at the end ([`fuzz_one`]) mutates valid images (bit flips, truncations,
//! splices, interesting field values, with or without repaired checksums) and checks
//! that validation never panics and that an accepted image never makes the restorer
//! index out of bounds ([`stub_view`] repeats every table access the stub makes).
//! `fuzz/` includes this file to reuse the builder and the oracle in its libFuzzer
//! targets, so it must not depend on anything but the crate root's public items.
#![allow(dead_code)]

extern crate std;

use super::crc32c::{crc32c, have_hw};
use super::write::{self, ImageParts};
use super::*;
use core::mem::size_of;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

// ---------------------------------------------------------------------------
// A valid image

/// An image: what the writer lays out (`img`) and its page data, bytes placed at
/// image offsets (the runs point into them). Runs keep the `data_off`/`crc` they
/// are given, so tests can break them. Derefs to the [`ImageParts`].
#[derive(Clone)]
pub struct Parts {
    pub img: ImageParts,
    pub data: Vec<(u64, Vec<u8>)>,
}

impl core::ops::Deref for Parts {
    type Target = ImageParts;
    fn deref(&self) -> &ImageParts {
        &self.img
    }
}

impl core::ops::DerefMut for Parts {
    fn deref_mut(&mut self) -> &mut ImageParts {
        &mut self.img
    }
}

/// Deterministic filler bytes.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.next() as u8).collect()
}

fn add_string(strings: &mut Vec<u8>, s: &[u8]) -> (u32, u32) {
    let off = strings.len() as u32;
    strings.extend_from_slice(s);
    strings.push(0);
    (off, s.len() as u32)
}

pub const XSTATE_SIZE: u32 = 832;
pub const EXE: &[u8] = b"/usr/bin/counter";
pub const LOG: &[u8] = b"/tmp/counter.log";
pub const CWD: &[u8] = b"/home/user";
/// Bytes buffered in the pipe of fds 5/6 (stored like page data).
pub const PIPE_DATA: &[u8] = b"buffered in pipe\n";

// Addresses of the valid image's VMAs.
const CODE: (u64, u64) = (0x40_0000, 0x40_2000);
const HEAP: (u64, u64) = (0x60_0000, 0x60_4000);
const RESERVE: (u64, u64) = (0x7f00_0000_0000, 0x7f10_0000_0000); // 64 GiB PROT_NONE
const SHFILE: (u64, u64) = (0x7f20_0000_0000, 0x7f20_0000_1000);
const SHANON: (u64, u64) = (0x7f30_0000_0000, 0x7f30_0000_2000);
const STACK: (u64, u64) = (0x7ffd_0000_0000, 0x7ffd_0002_1000);
const VVAR: (u64, u64) = (0x7ffd_1000_0000, 0x7ffd_1000_4000);
const VDSO: (u64, u64) = (0x7ffd_1000_4000, 0x7ffd_1000_6000);
const SHOBJ: (u64, u64) = (0x7ffe_0000_0000, 0x7ffe_0000_2000);

// Index of each VMA in the valid image.
pub const V_CODE: usize = 0;
pub const V_HEAP: usize = 1;
pub const V_RESERVE: usize = 2;
pub const V_SHFILE: usize = 3;
pub const V_SHANON: usize = 4;
pub const V_STACK: usize = 5;
pub const V_VVAR: usize = 6;
pub const V_VDSO: usize = 7;
pub const V_SHOBJ: usize = 8;

/// Where the valid image's tables start: after 4 pages of runs, 1 of pipe data and
/// 2 of file extents.
pub const TABLES_AT: u64 = DATA_START + 7 * PAGE_SIZE;

// Index of some fds in the valid image.
pub const F_LOG: usize = 1;
pub const F_EPOLL: usize = 3;
pub const F_PIPE_R: usize = 5;
pub const F_MEMFD: usize = 8;
pub const F_DELDIR: usize = 9;

// Index of the files in the valid image.
pub const O_MEMFD: usize = 0;
pub const O_SHMEM: usize = 1;
/// Bytes of the memfd's one extent (at file offset MEMFD_AT of a MEMFD_SIZE file).
pub const MEMFD_DATA: &[u8] = b"memfd bytes";
pub const MEMFD_AT: u64 = 0x10_0000;
pub const MEMFD_SIZE: u64 = 0x20_0000;

/// The valid image: 9 VMAs (file-private code, heap, a 64 GiB PROT_NONE reservation,
/// a shared file, shared anonymous memory, stack, vvar, vdso, a shared mapping of a
/// file of the Files section), 4 one-page runs, one
/// thread with an 832-byte XSAVE area at offset 0, mm with auxv; fds: 0-2 (1 a
/// regular file), an epoll instance watching an eventfd, a pipe with buffered bytes
/// stored after the pages, a memfd, a deleted directory; two files (a sparse memfd
/// with one extent, shared anonymous memory of 3 pages with one); process state with
/// a cwd and a handler, one pending signal, one POSIX timer.
pub fn valid_parts() -> Parts {
    let mut strings = Vec::new();
    let exe = add_string(&mut strings, EXE);
    let cmdline = add_string(&mut strings, b"counter\x00300");
    let shfile = add_string(&mut strings, b"/dev/shm/counter-shared");
    let log = add_string(&mut strings, LOG);
    let cwd = add_string(&mut strings, CWD);
    let memfd_name = add_string(&mut strings, b"buffer");
    let gone_dir = add_string(&mut strings, b"/tmp/gone");

    let vma = |(start, end): (u64, u64), prot, kind: VmaKind, flags| Vma {
        start,
        end,
        prot,
        kind: kind as u32,
        flags,
        ..Vma::default()
    };
    let mut vmas = vec![
        vma(CODE, PROT_READ | PROT_EXEC, VmaKind::FilePrivate, 0),
        vma(HEAP, PROT_READ | PROT_WRITE, VmaKind::Heap, 0),
        vma(RESERVE, 0, VmaKind::Anon, VMA_NORESERVE),
        vma(SHFILE, PROT_READ | PROT_WRITE, VmaKind::SharedFile, 0),
        vma(SHANON, PROT_READ | PROT_WRITE, VmaKind::SharedAnon, VMA_DONTFORK),
        vma(STACK, PROT_READ | PROT_WRITE, VmaKind::Stack, VMA_GROWSDOWN),
        vma(VVAR, PROT_READ, VmaKind::Vvar, 0),
        vma(VDSO, PROT_READ | PROT_EXEC, VmaKind::Vdso, 0),
        vma(SHOBJ, PROT_READ | PROT_WRITE, VmaKind::SharedObject, VMA_MAYWRITE),
    ];
    vmas[V_SHOBJ].object = O_SHMEM as u32 + 1;
    vmas[V_SHOBJ].file_offset = PAGE_SIZE;
    (vmas[V_CODE].name_off, vmas[V_CODE].name_len) = exe;
    vmas[V_CODE].file_size = 0x2345;
    (vmas[V_SHFILE].name_off, vmas[V_SHFILE].name_len) = shfile;
    vmas[V_SHFILE].file_offset = 0x1000;
    vmas[V_SHFILE].file_size = 0x8000;

    // One page each: the first code page, two heap pages with a hole, the stack top.
    let pages: [(usize, u64); 4] = [
        (V_CODE, CODE.0),
        (V_HEAP, HEAP.0),
        (V_HEAP, HEAP.0 + 0x2000),
        (V_STACK, STACK.1 - 0x1000),
    ];
    let mut runs = Vec::new();
    let mut data = Vec::new();
    for (i, &(v, addr)) in pages.iter().enumerate() {
        let bytes = pattern(PAGE_SIZE as usize, 100 + i as u64);
        let data_off = DATA_START + i as u64 * PAGE_SIZE;
        runs.push(PageRun {
            addr,
            data_off,
            len: PAGE_SIZE,
            crc: crc32c(&bytes, false),
            vma: v as u32,
            flags: 0,
            _pad: 0,
        });
        data.push((data_off, bytes));
    }
    let mut next = 0;
    for (i, v) in vmas.iter_mut().enumerate() {
        v.first_run = next;
        v.nruns = pages.iter().filter(|p| p.0 == i).count() as u32;
        next += v.nruns;
    }

    let regs = Regs {
        rip: CODE.0 + 0x123,
        rsp: STACK.1 - 0x100,
        rbp: STACK.1 - 0x80,
        rax: u64::MAX - 3, // -EINTR-ish, as after an interrupted syscall
        orig_rax: 35,
        cs: 0x33,
        ss: 0x2b,
        eflags: 0x246,
        fs_base: SHANON.0 + 0x700,
        ..Regs::default()
    };
    let thread = Thread {
        tid: 4242,
        regs,
        sigmask: 1 << 12,
        rseq_addr: STACK.1 - 0x200,
        rseq_len: 32,
        rseq_sig: 0x5305_3053,
        xstate_size: XSTATE_SIZE,
        xstate_off: 0,
        tid_address: SHANON.0 + 0x9d0,
        robust_list: SHANON.0 + 0x9e0,
        robust_len: 24,
        ..Thread::default()
    };

    let mut mm = Mm {
        start_code: CODE.0,
        end_code: CODE.1,
        start_data: HEAP.0 - 0x1000,
        end_data: HEAP.0,
        start_brk: HEAP.0,
        brk: HEAP.1,
        start_stack: STACK.1 - 0x400,
        arg_start: STACK.1 - 0x300,
        arg_end: STACK.1 - 0x2f0,
        env_start: STACK.1 - 0x2f0,
        env_end: STACK.1 - 0x280,
        ..Mm::default()
    };
    let auxv: [(u64, u64); 4] = [(6, 4096), (9, CODE.0 + 0x100), (33, VDSO.0), (0, 0)];
    for (i, (k, v)) in auxv.iter().enumerate() {
        mm.auxv[2 * i] = *k;
        mm.auxv[2 * i + 1] = *v;
    }
    mm.auxv_words = 2 * auxv.len() as u32;
    (mm.exe_off, mm.exe_len) = exe;
    (mm.cmdline_off, mm.cmdline_len) = cmdline;

    let fd = |fd, kind: FdKind| Fd {
        fd,
        kind: kind as u32,
        ..Fd::default()
    };
    let mut fds = vec![
        fd(0, FdKind::Inherit),
        Fd {
            flags: 0o2001, // O_WRONLY | O_APPEND
            offset: 1234,
            path_off: log.0,
            path_len: log.1,
            ..fd(1, FdKind::Path)
        },
        fd(2, FdKind::Inherit),
        fd(3, FdKind::Epoll),
        Fd {
            aux: [5, 0, 0, 0, 0, 0],
            ..fd(4, FdKind::Eventfd)
        },
        Fd {
            aux: [777, 0, 0, 0, 0, 0],
            desc: 1,
            ..fd(5, FdKind::Pipe)
        },
        Fd {
            aux: [777, 1, 0, 0, 0, 0],
            desc: 2,
            ..fd(6, FdKind::Pipe)
        },
        Fd {
            aux: [1, 1, 2, 7, 0, 0], // one end of a unix stream socket pair
            ..fd(7, FdKind::Socket)
        },
    ];
    // The pipe's bytes follow the pages, padded to a page as the generator does.
    let pipe_off = DATA_START + pages.len() as u64 * PAGE_SIZE;
    fds[F_PIPE_R].data_off = pipe_off;
    fds[F_PIPE_R].data_len = PIPE_DATA.len() as u64;
    fds[F_PIPE_R].data_crc = crc32c(PIPE_DATA, false);
    let mut padded = PIPE_DATA.to_vec();
    padded.resize(PAGE_SIZE as usize, 0);
    data.push((pipe_off, padded));
    fds.push(Fd { flags: 2, offset: 5, aux: [O_MEMFD as u64, 0, 0, 0, 0, 0], ..fd(8, FdKind::Memfd) });
    fds.push(Fd {
        flags: 0o200000, // O_DIRECTORY
        path_off: gone_dir.0,
        path_len: gone_dir.1,
        aux: [0o750, 0, 1, 0, 0, 0],
        ..fd(9, FdKind::DeletedDir)
    });

    // The files: a sparse memfd (one extent in a larger file) and 3 pages of shared
    // memory with data in the middle page, each extent's bytes in a page of its own.
    let memfd_off = pipe_off + PAGE_SIZE;
    let shmem_off = memfd_off + PAGE_SIZE;
    let shmem_page = pattern(PAGE_SIZE as usize, 200);
    let mut padded = MEMFD_DATA.to_vec();
    padded.resize(PAGE_SIZE as usize, 0);
    data.push((memfd_off, padded));
    data.push((shmem_off, shmem_page.clone()));
    let files = vec![
        FileObject {
            kind: FileKind::Memfd as u32,
            mode: 0o600,
            size: MEMFD_SIZE,
            seals: 0x1f,
            flags: FILE_MFD_EXEC,
            name_off: memfd_name.0,
            name_len: memfd_name.1,
            first_extent: 0,
            nextents: 1,
            ..FileObject::default()
        },
        FileObject {
            kind: FileKind::Shmem as u32,
            mode: 0o777,
            size: 3 * PAGE_SIZE,
            first_extent: 1,
            nextents: 1,
            ..FileObject::default()
        },
    ];
    let extents = vec![
        Extent {
            offset: MEMFD_AT,
            len: MEMFD_DATA.len() as u64,
            data_off: memfd_off,
            file: O_MEMFD as u32,
            crc: crc32c(MEMFD_DATA, false),
        },
        Extent { offset: PAGE_SIZE, len: PAGE_SIZE, data_off: shmem_off, file: O_SHMEM as u32, crc: crc32c(&shmem_page, false) },
    ];

    let mut process = Process {
        flags: PROC_HAVE_STATE,
        umask: 0o027,
        ..Process::default()
    };
    (process.cwd_off, process.cwd_len) = cwd;
    process.comm[..7].copy_from_slice(b"counter");
    process.sigactions[10 - 1] = SigAction {
        handler: CODE.0 + 0x400,
        flags: 0x0400_0000, // SA_RESTORER
        restorer: CODE.0 + 0x480,
        mask: 0,
    };
    let mut info = [0u64; 16];
    info[0] = 10; // si_signo
    let signal = PendingSignal {
        thread: 0,
        signo: 10,
        info,
    };
    let timer = PosixTimer {
        id: 0,
        clock: 1,
        signo: 14,
        value: [1, 500_000_000],
        ..PosixTimer::default()
    };
    let epoll = EpollEntry {
        epfd: 3,
        fd: 4,
        events: 1,
        data: 4,
        ..EpollEntry::default()
    };

    let mut img = ImageParts {
        threads: vec![thread],
        vmas,
        runs,
        mm,
        fds,
        strings,
        xstate: pattern(XSTATE_SIZE as usize, 7),
        vdso: pattern(512, 8),
        process: Some(process),
        signals: vec![signal],
        timers: vec![timer],
        epoll: vec![epoll],
        seccomp: {
            // One filter of two instructions: load nr; return ALLOW.
            let mut b = vec![2u8, 0, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(&[0x20, 0, 0, 0, 0, 0, 0, 0, 0x06, 0, 0, 0, 0, 0, 0xff, 0x7f]);
            b
        },
        locks: vec![FileLock {
            fd: 1,
            kind: LOCK_POSIX,
            write: 1,
            start: 10,
            len: 5,
            ..FileLock::default()
        }],
        files,
        extents,
        sockets: vec![SocketState {
            fd: 7,
            shutdown: SHUT_SEND,
            sndbuf: 4608,
            flags: SOCK_PASSCRED | SOCK_LINGER,
            linger: 5,
            rcvtimeo_us: 1_500_000,
            ..SocketState::default()
        }],
        kernel: Some(KernelState {
            flags: KERNEL_HAVE_CLOCKS,
            pid_max: 32768,
            mmap_min_addr: 4096,
            clocks: [1_700_000_000_000_000_000, 5_000_000_000, 5_000_100_000, 4_999_000_000, 6_000_000_000],
        }),
        sockopts: vec![
            SockOpt { fd: 7, level: sockopts::SOL_SOCKET, name: 12, value: 3, ..SockOpt::default() },
            SockOpt { fd: 7, level: sockopts::SOL_SOCKET, name: 42, value: 10, ..SockOpt::default() },
            // A one-instruction filter (ret #-1) in the strings section's first 8 bytes.
            SockOpt { fd: 7, level: sockopts::SOL_SOCKET, name: sockopts::SO_ATTACH_FILTER, value: 1, data_off: 0, data_len: 8 },
        ],
        tree_procs: vec![
            TreeProc { pid: 4242, ppid: 1, pgid: 4242, sid: 4242, slot_base: 500, nslots: 8, ..TreeProc::default() },
            TreeProc { pid: 4243, ppid: 4242, pgid: 4242, sid: 4242, image_off: 0, image_len: 8192, slot_base: 500, nslots: 8, ..TreeProc::default() },
            TreeProc { pid: 4244, ppid: 4242, pgid: 4242, sid: 4242, flags: TREE_ZOMBIE, status: 3 << 8, slot_base: 500, nslots: 8, ..TreeProc::default() },
        ],
        tree_objects: vec![TreeObject { kind: TREE_OBJ_PIPE, creator: 4242, slot: 506, capacity: 65536, ino: 77, data_off: 0, data_len: 5, ..TreeObject::default() }],
        tree_data: b"hello, tree!".to_vec(),
        xcr0: 0x7,
        xstate_size: XSTATE_SIZE,
        gadget_syscall_ret: CODE.0 + 0x200,
        gadget_sigreturn: CODE.0 + 0x300,
        pid: 4242,
        kernel_release: "6.8.0-test".into(),
        created_unix: 1_700_000_000,
        flags: 0,
        vdso_syms: Vec::new(),
        working_set: vec![
            WorkingSetRange { start: HEAP.0, len: 2 * PAGE_SIZE },
            WorkingSetRange { start: STACK.1 - PAGE_SIZE, len: PAGE_SIZE },
        ],
        chunks: Vec::new(),
    };
    for (name, offset) in [(&b"__vdso_clock_gettime"[..], 0x100), (b"__vdso_time", 0x180)] {
        let name_off = img.strings.len() as u32;
        img.strings.extend_from_slice(name);
        img.vdso_syms.push(VdsoSym { name_off, name_len: name.len() as u32, name_hash: elf_hash(name), flags: 0, offset, size: 0x40 });
    }
    Parts { img, data }
}

/// Lay out `p` with the image writer (software CRCs) and return the image bytes.
pub fn build(p: &Parts) -> Vec<u8> {
    let data_end = p
        .data
        .iter()
        .map(|(o, d)| o + d.len() as u64)
        .max()
        .unwrap_or(DATA_START)
        .max(DATA_START);
    let (h, tables) = write::finish(&p.img, data_end, false);
    let mut img = vec![0u8; align_up(data_end, 64) as usize];
    img[..size_of::<Header>()].copy_from_slice(as_bytes(&h));
    for (off, d) in &p.data {
        img[*off as usize..*off as usize + d.len()].copy_from_slice(d);
    }
    img.extend_from_slice(&tables);
    img
}

pub fn valid_image() -> Vec<u8> {
    build(&valid_parts())
}

/// The valid image as `--compress` stores it: each run cut into chunks (stored raw
/// here: the format does not decode them), the runs' data offsets 0.
pub fn compressed_parts() -> Parts {
    let mut p = valid_parts();
    p.img.flags |= HDR_COMPRESSED;
    let mut chunks = Vec::new();
    for (i, r) in p.img.runs.iter_mut().enumerate() {
        let bytes = p.data.iter().find(|(o, _)| *o == r.data_off).expect("run data").1.clone();
        let mut a = r.addr;
        while a < r.addr + r.len {
            let e = chunk_end(a, r.addr + r.len);
            let at = (a - r.addr) as usize;
            let len = (e - a) as u32;
            let crc = crc32c(&bytes[at..at + len as usize], false);
            chunks.push(PageChunk { addr: a, data_off: r.data_off + at as u64, len, stored_len: len, crc, run: i as u32 });
            a = e;
        }
        r.data_off = 0;
    }
    p.img.chunks = chunks;
    p
}

pub fn compressed_image() -> Vec<u8> {
    build(&compressed_parts())
}

/// An image in which section `kind` is not empty.
fn image_holding(kind: SectionKind) -> Vec<u8> {
    if kind == SectionKind::Chunks {
        compressed_image()
    } else {
        valid_image()
    }
}

/// The valid image after `f` changed its parts (checksums all correct).
fn image_with(f: impl FnOnce(&mut Parts)) -> Vec<u8> {
    let mut p = valid_parts();
    f(&mut p);
    build(&p)
}

// ---------------------------------------------------------------------------
// Reading an image as the stub does

/// Bytes copied into 8-byte aligned memory (the stub reads the tables into a fresh
/// page-aligned mapping).
pub struct Aligned {
    words: Vec<u64>,
    len: usize,
    shift: usize,
}

impl Aligned {
    pub fn new(b: &[u8]) -> Aligned {
        Aligned::shifted(b, 0)
    }

    /// Starting `shift` bytes past an 8-byte boundary.
    pub fn shifted(b: &[u8], shift: usize) -> Aligned {
        let mut words = vec![0u64; (b.len() + shift).div_ceil(8)];
        let bytes = bytes_of_mut(&mut words);
        bytes[shift..shift + b.len()].copy_from_slice(b);
        Aligned {
            words,
            len: b.len(),
            shift,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &slice_as_bytes(&self.words)[self.shift..self.shift + self.len]
    }
}

fn bytes_of_mut(w: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no padding and every byte pattern is a valid u64.
    unsafe { core::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 8) }
}

pub fn header_of(img: &[u8]) -> Header {
    read_record(img).expect("image holds a header")
}

/// What the stub does with a file of `img.len()` bytes: read the header (or what
/// there is of it), check it, read `tables_span` into aligned memory, parse; then
/// give the result to `f`.
pub fn validate_with<R>(img: &[u8], hw: bool, f: impl FnOnce(&Header, &Tables) -> R) -> Result<R, FormatError> {
    let hlen = size_of::<Header>().min(img.len());
    let h = check_header(&img[..hlen], img.len() as u64)?;
    let (lo, hi) = tables_span(&h);
    assert!(
        lo <= hi,
        "tables_span ({lo:#x}, {hi:#x}) is reversed after check_header accepted"
    );
    let span = img.get(lo as usize..hi as usize).unwrap_or_else(|| {
        panic!(
            "tables_span [{lo:#x}, {hi:#x}) lies outside a file of {} bytes",
            img.len()
        )
    });
    let buf = Aligned::new(span);
    let t = Tables::parse(&h, buf.bytes(), lo, hw)?;
    Ok(f(&h, &t))
}

pub fn validate(img: &[u8]) -> Result<(), FormatError> {
    validate_with(img, false, |_, _| ())
}

/// Asserts the exact rejection, with the portable and (where the CPU has it) the
/// SSE4.2 checksum.
#[track_caller]
fn expect(img: &[u8], want: FormatError) {
    assert_eq!(validate(img), Err(want), "{want}");
    if have_hw() {
        assert_eq!(validate_with(img, true, |_, _| ()), Err(want), "{want} (hw crc)");
    }
}

/// Change the header of an image and store a correct header checksum.
fn with_header(img: &[u8], f: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut img = img.to_vec();
    let mut h = header_of(&img);
    f(&mut h);
    h.header_crc = header_crc(&h);
    img[..size_of::<Header>()].copy_from_slice(as_bytes(&h));
    img
}

/// Change the header without touching its checksum.
fn with_header_raw(img: &[u8], f: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut img = img.to_vec();
    let mut h = header_of(&img);
    f(&mut h);
    img[..size_of::<Header>()].copy_from_slice(as_bytes(&h));
    img
}

fn section(img: &[u8], kind: SectionKind) -> Section {
    *header_of(img).section(kind)
}

/// The section laid out last in the valid image (Chunks, after it, is empty in an
/// image that is not compressed).
const LAST: SectionKind = SectionKind::WorkingSet;

const BS: fn(u32, &'static str) -> FormatError = |section, what| FormatError::BadSection { section, what };
const BT: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadThread { index, what };
const BV: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadVma { index, what };
const BR: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadRun { index, what };
const BM: fn(&'static str) -> FormatError = |what| FormatError::BadMm { what };
const BF: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadFd { index, what };
const BO: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadFile { index, what };
const BE: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadExtent { index, what };

// ---------------------------------------------------------------------------
// The valid image

#[test]
fn valid_image_parses() {
    let img = valid_image();
    let p = valid_parts();
    for hw in [false, true] {
        if hw && !have_hw() {
            continue;
        }
        let summary = validate_with(&img, hw, |h, t| {
            assert_eq!(t.threads.len(), 1);
            assert_eq!(t.vmas.len(), 9);
            assert_eq!(t.runs, &p.runs[..]);
            assert_eq!(t.fds.len(), 10);
            assert_eq!((t.files.len(), t.extents.len()), (2, 2));
            let e = &t.extents[0];
            let d = &img[e.data_off as usize..(e.data_off + e.len) as usize];
            assert_eq!((d, crc32c(d, hw)), (MEMFD_DATA, e.crc));
            assert_eq!(t.sockets, &p.sockets[..]);
            assert_eq!(t.process.map(|p| p.cwd_len), Some(CWD.len() as u32));
            assert_eq!((t.signals.len(), t.timers.len(), t.epoll.len()), (1, 1, 1));
            let pipe = &t.fds[F_PIPE_R];
            let d = &img[pipe.data_off as usize..(pipe.data_off + pipe.data_len) as usize];
            assert_eq!((d, crc32c(d, hw)), (PIPE_DATA, pipe.data_crc));
            assert_eq!(t.xstate, &p.xstate[..]);
            assert_eq!(t.vdso, &p.vdso[..]);
            assert_eq!(t.string(t.mm.exe_off, t.mm.exe_len), EXE);
            assert_eq!(t.string(t.fds[1].path_off, t.fds[1].path_len), LOG);
            assert_eq!(t.string(t.vmas[V_CODE].name_off, t.vmas[V_CODE].name_len), EXE);
            assert_eq!(t.mm.auxv_words, 8);
            assert_eq!(h.image_size, img.len() as u64);
            stub_view(h, t, &img).expect("the stub's view of the valid image");
            for r in t.runs {
                let d = &img[r.data_off as usize..(r.data_off + r.len) as usize];
                assert_eq!(crc32c(d, hw), r.crc);
            }
            (tables_span(h), t.xstate.as_ptr() as usize % 64)
        });
        let ((lo, hi), _) = summary.expect("valid image");
        assert_eq!((lo, hi), (TABLES_AT, img.len() as u64));
    }
}

#[test]
fn layout_matches_the_generator() {
    let img = compressed_image();
    let h = header_of(&img);
    let mut prev_end = TABLES_AT;
    for kind in SectionKind::ALL {
        let s = h.section(kind);
        assert_ne!(s.size, 0, "{} is empty", kind.name());
        assert_eq!(s.offset % if kind == SectionKind::Xstate { 64 } else { 8 }, 0);
        assert!(
            s.offset >= prev_end && s.offset - prev_end < 64,
            "{} not packed",
            kind.name()
        );
        assert_eq!(s.size, s.count as u64 * kind.entry_size());
        prev_end = s.offset + s.size;
    }
    assert_eq!(prev_end, h.image_size);
    assert!((0..MAX_SECTIONS).filter(|&i| SectionKind::from_slot(i).is_none()).all(|i| h.sections[i] == Section::default()));
    // The xstate area is 576+ bytes at a 64-aligned offset of a 64-aligned section.
    assert!(XSTATE_SIZE >= 576 && h.section(SectionKind::Xstate).offset.is_multiple_of(64));
}

// ---------------------------------------------------------------------------
// check_header

#[test]
fn header_truncated() {
    let img = valid_image();
    let need = size_of::<Header>() as u64;
    expect(
        &img[..need as usize - 1],
        FormatError::Truncated { need, have: need - 1 },
    );
    expect(&[], FormatError::Truncated { need, have: 0 });
}

#[test]
fn bad_magic() {
    let img = with_header(&valid_image(), |h| h.magic[7] = 2);
    expect(&img, FormatError::BadMagic);
    let mut elf = valid_image();
    elf[..4].copy_from_slice(b"\x7fELF");
    expect(&elf, FormatError::BadMagic);
}

#[test]
fn bad_version() {
    let img = with_header(&valid_image(), |h| h.version = VERSION + 1);
    expect(&img, FormatError::BadVersion { found: VERSION + 1 });
}

#[test]
fn bad_header_size() {
    let n = size_of::<Header>() as u32;
    let img = with_header(&valid_image(), |h| h.header_size = n + 8);
    expect(&img, FormatError::BadHeaderSize { found: n + 8 });
}

#[test]
fn header_checksum() {
    let valid = valid_image();
    let stored = header_of(&valid).header_crc;
    let img = with_header_raw(&valid, |h| h.kernel_release[0] ^= 1);
    let computed = header_crc(&header_of(&img));
    assert_ne!(stored, computed);
    expect(&img, FormatError::HeaderChecksum { stored, computed });
    // A flip in the stored checksum itself.
    let img = with_header_raw(&valid, |h| h.header_crc ^= 1 << 31);
    expect(
        &img,
        FormatError::HeaderChecksum {
            stored: stored ^ 1 << 31,
            computed: stored,
        },
    );
}

#[test]
fn bad_page_size() {
    let img = with_header(&valid_image(), |h| h.page_size = 16384);
    expect(&img, FormatError::BadPageSize { found: 16384 });
}

#[test]
fn image_truncated() {
    let img = valid_image();
    let need = img.len() as u64;
    // Cut in the tables, in the page data, right after the header.
    for cut in [need - 1, 2 * PAGE_SIZE + 5, size_of::<Header>() as u64] {
        expect(&img[..cut as usize], FormatError::Truncated { need, have: cut });
    }
    // An image_size larger than the file.
    let img = with_header(&img, |h| h.image_size += 8);
    expect(
        &img,
        FormatError::Truncated {
            need: need + 8,
            have: need,
        },
    );
}

#[test]
fn wrong_number_of_section_slots() {
    let img = with_header(&valid_image(), |h| h.nsections = MAX_SECTIONS as u32 - 1);
    expect(&img, BS(MAX_SECTIONS as u32 - 1, "wrong number of section slots"));
}

#[test]
fn header_xstate_size_over_limit() {
    let img = with_header(&valid_image(), |h| h.xstate_size = MAX_XSTATE + 1);
    expect(&img, BT(0, "xstate size over the limit"));
}

#[test]
fn unknown_section_kind() {
    let valid = valid_image();
    for slot in (0..MAX_SECTIONS).filter(|&i| SectionKind::from_slot(i).is_none()) {
        // A copy of a real section in a slot this version does not know.
        let img = with_header(&valid, |h| h.sections[slot] = h.sections[SectionKind::Strings as usize]);
        expect(&img, BS(slot as u32, "unknown section kind"));
        // Any non-zero byte counts: here only the checksum field.
        let img = with_header(&valid, |h| h.sections[slot].crc = 1);
        expect(&img, BS(slot as u32, "unknown section kind"));
    }
}

#[test]
fn empty_section_with_records() {
    let img = with_header(&valid_image(), |h| {
        h.sections[SectionKind::Fds as usize].size = 0;
    });
    expect(&img, BS(SectionKind::Fds as u32, "empty section with records"));
}

#[test]
fn section_offset_misaligned() {
    let img = with_header(&valid_image(), |h| h.sections[SectionKind::Runs as usize].offset += 4);
    expect(
        &img,
        BS(
            SectionKind::Runs as u32,
            "section offset misaligned or inside the header",
        ),
    );
}

#[test]
fn section_offset_inside_the_header() {
    let img = with_header(&valid_image(), |h| h.sections[SectionKind::Vmas as usize].offset = 64);
    expect(
        &img,
        BS(
            SectionKind::Vmas as u32,
            "section offset misaligned or inside the header",
        ),
    );
    let img = with_header(&valid_image(), |h| h.sections[SectionKind::Threads as usize].offset = 0);
    expect(
        &img,
        BS(
            SectionKind::Threads as u32,
            "section offset misaligned or inside the header",
        ),
    );
}

#[test]
fn section_range_overflows() {
    let img = with_header(&valid_image(), |h| {
        h.sections[SectionKind::Strings as usize].offset = u64::MAX - 7
    });
    expect(&img, BS(SectionKind::Strings as u32, "section range overflows"));
}

#[test]
fn section_past_the_image_end() {
    let valid = valid_image();
    let len = valid.len() as u64;
    // The last section moved 8 bytes further.
    let img = with_header(&valid, |h| h.sections[LAST as usize].offset += 8);
    expect(&img, BS(LAST as u32, "section extends past the image end"));
    // A middle section grown past the end (count and size still agree).
    let img = with_header(&valid, |h| {
        let s = &mut h.sections[SectionKind::Threads as usize];
        s.count = ((len - s.offset) / s.size + 1) as u32;
        s.size *= s.count as u64;
    });
    expect(
        &img,
        BS(SectionKind::Threads as u32, "section extends past the image end"),
    );
}

#[test]
fn section_size_not_count_times_record_size() {
    let valid = valid_image();
    let img = with_header(&valid, |h| h.sections[SectionKind::Vmas as usize].count -= 1);
    expect(
        &img,
        BS(SectionKind::Vmas as u32, "section size is not count x record size"),
    );
    let img = with_header(&valid, |h| h.sections[SectionKind::Runs as usize].size -= 8);
    expect(
        &img,
        BS(SectionKind::Runs as u32, "section size is not count x record size"),
    );
    // Byte blobs: count must equal size.
    let img = with_header(&valid, |h| h.sections[SectionKind::Strings as usize].count += 1);
    expect(
        &img,
        BS(SectionKind::Strings as u32, "section size is not count x record size"),
    );
}

#[test]
fn too_many_records_in_each_section() {
    let limits = SectionKind::ALL.map(|k| (k, k.max_count()));
    let valid = valid_image();
    for (kind, max) in limits {
        // A huge file: the section fits, only the count is wrong. check_header needs
        // nothing but the header and the file length.
        let file_len = 1 << 40;
        let count = max + 1;
        let img = with_header(&valid, |h| {
            h.image_size = file_len;
            let s = &mut h.sections[kind as usize];
            s.offset = 1 << 39;
            s.count = count as u32;
            s.size = count * kind.entry_size();
        });
        let want = FormatError::TooMany {
            section: kind,
            count,
            max,
        };
        assert_eq!(check_header(&img, file_len).map(|_| ()), Err(want), "{want}");
        // Exactly the limit is fine.
        let img = with_header(&img, |h| {
            let s = &mut h.sections[kind as usize];
            s.count = max as u32;
            s.size = max * kind.entry_size();
        });
        assert!(check_header(&img, file_len).is_ok(), "{} at its limit", kind.name());
    }
}

// ---------------------------------------------------------------------------
// Tables::parse: sections

#[test]
fn tables_buffer_shorter_than_the_span() {
    let img = valid_image();
    let h = check_header(&img, img.len() as u64).unwrap();
    let (lo, hi) = tables_span(&h);
    let buf = Aligned::new(&img[lo as usize..hi as usize - 8]);
    let last = h.section(LAST);
    assert_eq!(last.offset + last.size, hi);
    assert_eq!(
        Tables::parse(&h, buf.bytes(), lo, false).map(|_| ()),
        Err(FormatError::Truncated { need: hi, have: hi - 8 })
    );
}

#[test]
fn section_checksum_of_each_section() {
    for kind in SectionKind::ALL {
        let valid = image_holding(kind);
        let s = section(&valid, kind);
        let mut img = valid.clone();
        let at = (s.offset + s.size / 2) as usize;
        img[at] ^= 0x10;
        let computed = crc32c(&img[s.offset as usize..(s.offset + s.size) as usize], false);
        expect(
            &img,
            FormatError::SectionChecksum {
                section: kind,
                stored: s.crc,
                computed,
            },
        );
        // The stored checksum flipped instead (the header checksum repaired).
        let img = with_header(&valid, |h| h.sections[kind as usize].crc ^= 1);
        expect(
            &img,
            FormatError::SectionChecksum {
                section: kind,
                stored: s.crc ^ 1,
                computed: s.crc,
            },
        );
    }
}

/// The phase-2 parse of tables already verified skips the checksums, and still
/// validates every record.
#[test]
fn parse_verified_skips_checksums_only() {
    let valid = valid_image();
    let img = with_header(&valid, |h| h.sections[SectionKind::Vmas as usize].crc ^= 1);
    let h = check_header(&img, img.len() as u64).unwrap();
    let (lo, hi) = tables_span(&h);
    let buf = Aligned::new(&img[lo as usize..hi as usize]);
    assert!(matches!(Tables::parse(&h, buf.bytes(), lo, false), Err(FormatError::SectionChecksum { .. })));
    let t = Tables::parse_verified(&h, buf.bytes(), lo).unwrap();
    assert_eq!(t.vmas.len(), Tables::parse(&header_of(&valid), Aligned::new(&valid[lo as usize..hi as usize]).bytes(), lo, false).unwrap().vmas.len());
    let bad = image_with(|p| p.working_set[1].start = STACK.1);
    let h = check_header(&bad, bad.len() as u64).unwrap();
    let (lo, hi) = tables_span(&h);
    let buf = Aligned::new(&bad[lo as usize..hi as usize]);
    assert_eq!(
        Tables::parse_verified(&h, buf.bytes(), lo).map(|_| ()),
        Tables::parse(&h, buf.bytes(), lo, false).map(|_| ())
    );
    assert!(Tables::parse_verified(&h, buf.bytes(), lo).is_err());
}

#[test]
fn compressed_image_parses() {
    let img = compressed_image();
    let p = compressed_parts();
    let n = validate_with(&img, false, |h, t| {
        assert_ne!(h.flags & HDR_COMPRESSED, 0);
        assert_eq!(t.chunks, &p.chunks[..]);
        for c in t.chunks {
            let d = &img[c.data_off as usize..(c.data_off + c.stored_len as u64) as usize];
            assert_eq!(crc32c(d, false), c.crc);
        }
        stub_view(h, t, &img).expect("the stub's view of the compressed image");
        t.chunks.len()
    });
    assert_eq!(n, Ok(p.runs.len()));
}

#[test]
fn compressed_image_checks_runs_and_chunks() {
    // Chunks without the flag; the flag taken off a compressed image (its runs hold
    // no data); the flag without chunks.
    let img = build(&{
        let mut p = valid_parts();
        p.img.chunks = compressed_parts().img.chunks;
        p
    });
    expect(&img, FormatError::BadChunk { index: 0, what: "chunks in an image without compressed pages" });
    let img = with_header(&compressed_image(), |h| h.flags &= !HDR_COMPRESSED);
    expect(&img, BR(0, "data outside the image"));
    let img = with_header(&valid_image(), |h| h.flags |= HDR_COMPRESSED);
    expect(&img, BR(0, "data offset set in a compressed image"));
    // A chunk's stored bytes past the image; a run a chunk short.
    let img = build(&{
        let mut p = compressed_parts();
        p.img.chunks[2].data_off = 1 << 40;
        p
    });
    expect(&img, FormatError::BadChunk { index: 2, what: "data outside the image" });
    let img = build(&{
        let mut p = compressed_parts();
        p.img.chunks.pop();
        p
    });
    expect(&img, BR(3, "not covered by its chunks"));
}

#[test]
fn working_set_outside_the_vmas() {
    let img = image_with(|p| p.working_set[1].start = STACK.1);
    expect(&img, FormatError::BadWorkingSet { index: 1, what: "range not inside one vma" });
    let img = image_with(|p| p.working_set.swap(0, 1));
    expect(&img, FormatError::BadWorkingSet { index: 1, what: "ranges not sorted or overlapping" });
}

#[test]
fn section_misaligned_in_memory() {
    let img = valid_image();
    let h = check_header(&img, img.len() as u64).unwrap();
    let (lo, hi) = tables_span(&h);
    for shift in [1, 4] {
        let buf = Aligned::shifted(&img[lo as usize..hi as usize], shift);
        assert_eq!(
            Tables::parse(&h, buf.bytes(), lo, false).map(|_| ()),
            Err(BS(SectionKind::Threads as u32, "section misaligned in memory"))
        );
    }
}

#[test]
fn no_mm_record() {
    let img = with_header(&valid_image(), |h| {
        h.sections[SectionKind::Mm as usize] = Section::default()
    });
    expect(&img, BM("image has no mm record"));
}

// ---------------------------------------------------------------------------
// Tables::parse: the thread

#[test]
fn no_thread() {
    expect(&image_with(|p| p.threads.clear()), BT(0, "image has no thread"));
}

#[test]
fn rip_or_rsp_outside_user_space() {
    let what = "rip or rsp outside user space";
    expect(&image_with(|p| p.threads[0].regs.rip = USER_TOP), BT(0, what));
    expect(
        &image_with(|p| p.threads[0].regs.rip = 0xffff_ffff_8100_0000),
        BT(0, what),
    );
    expect(&image_with(|p| p.threads[0].regs.rsp = USER_TOP + 8), BT(0, what));
}

#[test]
fn thread_xstate_size_differs_from_header() {
    let what = "xstate size differs from the header's";
    expect(&image_with(|p| p.threads[0].xstate_size = 576), BT(0, what));
    expect(&image_with(|p| p.xstate_size = XSTATE_SIZE + 64), BT(0, what));
}

#[test]
fn xstate_area_too_small_or_misaligned() {
    let what = "xstate area too small or misaligned";
    expect(
        &image_with(|p| {
            p.xstate_size = 512;
            p.threads[0].xstate_size = 512;
        }),
        BT(0, what),
    );
    expect(&image_with(|p| p.threads[0].xstate_off = 32), BT(0, what));
}

#[test]
fn xstate_area_outside_the_section() {
    let what = "xstate area outside the xstate section";
    expect(&image_with(|p| p.threads[0].xstate_off = 64), BT(0, what));
    expect(
        &image_with(|p| p.xstate.truncate(XSTATE_SIZE as usize - 1)),
        BT(0, what),
    );
    expect(&image_with(|p| p.xstate.clear()), BT(0, what));
}

/// Found by the fuzzer: `xstate_off + xstate_size` is computed unchecked in
/// check_threads. Debug builds panic there; release builds (the stub) wrap, so
/// xstate_off = 2^64 - 64 with an 832-byte area "ends" at 768 and is accepted; the
/// stub's `&t.xstate[off..off + size]` (sigframe::leave) then panics.
#[test]
fn xstate_area_offset_overflow() {
    let img = image_with(|p| p.threads[0].xstate_off = 0u64.wrapping_sub(64));
    let r = std::panic::catch_unwind(|| validate(&img));
    assert!(
        matches!(r, Ok(Err(FormatError::BadThread { index: 0, .. }))),
        "xstate_off 0xffffffffffffffc0 + xstate_size {XSTATE_SIZE}: validation {}",
        match r {
            Ok(r) => format!("returned {r:?}"),
            Err(_) => "panicked".to_string(),
        }
    );
}

/// Found by the fuzzer: with no XSAVE area (header and thread xstate_size 0) the
/// thread's xstate_off is not checked, but the stub still takes
/// `&t.xstate[off..off]`, which panics for any off past the (empty) section.
#[test]
fn xstate_offset_checked_without_xstate() {
    let img = image_with(|p| {
        p.xstate_size = 0;
        p.threads[0].xstate_size = 0;
        p.xstate.clear();
        p.threads[0].xstate_off = 64;
    });
    let r = validate_with(&img, false, |h, t| stub_view(h, t, &img));
    assert!(
        matches!(r, Err(FormatError::BadThread { index: 0, .. })),
        "xstate_size 0, xstate_off 64, empty xstate section: validation returned {r:?}"
    );
}

/// Not validated: the header's gadget addresses, to which the stub jumps at the very
/// end (sigframe::leave, arch::unmap_and_sigreturn). A header with a correct
/// checksum and `gadget_sigreturn = 0x1000` is accepted, and the stub then dies by
/// SIGSEGV (checked by hand on a real .resume file: exit status 139).
#[test]
fn gadgets_outside_executable_text() {
    for (ret, sigret) in [
        (CODE.0 + 0x200, 0x1000),
        (HEAP.0, CODE.0 + 0x300),
        (USER_TOP + 0x1000, CODE.0 + 0x300),
    ] {
        let img = with_header(&valid_image(), |h| {
            h.gadget_syscall_ret = ret;
            h.gadget_sigreturn = sigret;
        });
        let r = validate_with(&img, false, |h, t| stub_view(h, t, &img));
        assert!(
            r.is_err(),
            "gadget_syscall_ret {ret:#x}, gadget_sigreturn {sigret:#x} (code is {CODE:#x?}): validation returned {r:?}"
        );
    }
}

#[test]
fn invalid_rseq_registration() {
    let what = "invalid rseq registration";
    expect(&image_with(|p| p.threads[0].rseq_len = 16), BT(0, what));
    expect(&image_with(|p| p.threads[0].rseq_addr = USER_TOP), BT(0, what));
    expect(&image_with(|p| p.threads[0].rseq_addr += 16), BT(0, what));
    // No registration at all is fine, whatever the length says.
    assert_eq!(
        validate(&image_with(|p| {
            p.threads[0].rseq_addr = 0;
            p.threads[0].rseq_len = 0;
        })),
        Ok(())
    );
}

// ---------------------------------------------------------------------------
// Tables::parse: VMAs

#[test]
fn vma_range_empty_or_not_page_aligned() {
    let what = "range empty or not page aligned";
    let r = V_RESERVE as u32;
    expect(&image_with(|p| p.vmas[V_RESERVE].start += 8), BV(r, what));
    expect(&image_with(|p| p.vmas[V_RESERVE].end -= 1), BV(r, what));
    expect(
        &image_with(|p| p.vmas[V_RESERVE].end = p.vmas[V_RESERVE].start),
        BV(r, what),
    );
    expect(
        &image_with(|p| p.vmas[V_RESERVE].end = p.vmas[V_RESERVE].start - PAGE_SIZE),
        BV(r, what),
    );
}

#[test]
fn vma_range_outside_user_space() {
    let what = "range outside user space";
    expect(&image_with(|p| p.vmas[V_CODE].start = 0), BV(V_CODE as u32, what));
    expect(
        &image_with(|p| p.vmas[V_VDSO].end = USER_TOP + PAGE_SIZE),
        BV(V_VDSO as u32, what),
    );
}

#[test]
fn vma_overlaps_or_out_of_order() {
    let what = "overlaps or is out of order with the previous vma";
    expect(
        &image_with(|p| p.vmas[V_RESERVE].start = HEAP.1 - PAGE_SIZE),
        BV(V_RESERVE as u32, what),
    );
    expect(
        &image_with(|p| p.vmas.swap(V_RESERVE, V_SHFILE)),
        BV(V_SHFILE as u32, what),
    );
    // Touching is fine.
    assert_eq!(validate(&image_with(|p| p.vmas[V_RESERVE].start = HEAP.1)), Ok(()));
}

#[test]
fn vma_unknown_protection_bits() {
    expect(
        &image_with(|p| p.vmas[V_HEAP].prot |= 8),
        BV(V_HEAP as u32, "unknown protection bits"),
    );
}

#[test]
fn vma_unknown_flags() {
    expect(
        &image_with(|p| p.vmas[V_STACK].flags |= VMA_KNOWN_FLAGS + 1),
        BV(V_STACK as u32, "unknown flags"),
    );
}

#[test]
fn vma_unknown_kind() {
    let first_unknown = (1..).find(|&k| VmaKind::from_u32(k).is_none()).unwrap();
    for kind in [0, first_unknown, u32::MAX] {
        expect(
            &image_with(|p| p.vmas[V_SHANON].kind = kind),
            BV(V_SHANON as u32, "unknown kind"),
        );
    }
}

#[test]
fn vma_name_outside_strings() {
    let what = "name outside the strings section";
    expect(
        &image_with(|p| p.vmas[V_CODE].name_off = p.strings.len() as u32),
        BV(V_CODE as u32, what),
    );
    expect(
        &image_with(|p| p.vmas[V_HEAP].name_len = p.strings.len() as u32 + 1),
        BV(V_HEAP as u32, what),
    );
    expect(
        &image_with(|p| p.vmas[V_CODE].name_off = u32::MAX),
        BV(V_CODE as u32, what),
    );
}

#[test]
fn file_vma_without_path_or_misaligned_offset() {
    let what = "file mapping without a path or with a misaligned offset";
    expect(&image_with(|p| p.vmas[V_CODE].name_len = 0), BV(V_CODE as u32, what));
    expect(
        &image_with(|p| p.vmas[V_CODE].file_offset = 0x800),
        BV(V_CODE as u32, what),
    );
    expect(
        &image_with(|p| p.vmas[V_SHFILE].name_len = 0),
        BV(V_SHFILE as u32, what),
    );
    expect(
        &image_with(|p| p.vmas[V_SHFILE].file_offset += 1),
        BV(V_SHFILE as u32, what),
    );
}

/// The stack's run moved to VMA `to` (after the stack), run order kept.
fn run_moved_to(p: &mut Parts, to: usize) {
    assert!(to > V_STACK);
    let run = p.vmas[V_STACK].first_run;
    p.vmas[V_STACK].nruns = 0;
    for v in &mut p.vmas[V_STACK + 1..] {
        v.first_run = run;
    }
    p.vmas[to].nruns = 1;
    p.runs[run as usize].vma = to as u32;
    p.runs[run as usize].addr = p.vmas[to].start;
}

#[test]
fn vma_not_in_image_with_stored_pages() {
    let what = "mapping whose content is not in the image has stored pages";
    for to in [V_VVAR, V_VDSO] {
        expect(&image_with(|p| run_moved_to(p, to)), BV(to as u32, what));
    }
    expect(&image_with(|p| p.vmas[V_SHFILE].nruns = 1), BV(V_SHFILE as u32, what));
}

#[test]
fn vma_page_runs_not_in_order() {
    let what = "page runs not in vma order";
    expect(&image_with(|p| p.vmas[V_HEAP].first_run += 1), BV(V_HEAP as u32, what));
    expect(&image_with(|p| p.vmas[V_CODE].nruns = 2), BV(V_HEAP as u32, what));
    expect(&image_with(|p| p.vmas[V_VDSO].first_run = 0), BV(V_VDSO as u32, what));
}

#[test]
fn vmas_do_not_account_for_every_run() {
    let what = "vmas do not account for every page run";
    // A fifth run no VMA claims.
    let img = image_with(|p| {
        let mut r = p.runs[3];
        r.addr += PAGE_SIZE;
        p.runs.push(r);
    });
    expect(&img, BV(9, what));
    // The stack VMA claims one run more than there is.
    let img = image_with(|p| {
        p.vmas[V_STACK].nruns = 2;
        for v in &mut p.vmas[V_STACK + 1..] {
            v.first_run = 5;
        }
    });
    expect(&img, BV(9, what));
}

// ---------------------------------------------------------------------------
// Tables::parse: page runs

#[test]
fn run_names_missing_vma() {
    expect(
        &image_with(|p| p.runs[3].vma = 9),
        BR(3, "names a vma that does not exist"),
    );
    expect(
        &image_with(|p| p.runs[0].vma = u32::MAX),
        BR(0, "names a vma that does not exist"),
    );
}

#[test]
fn run_not_among_its_vmas_runs() {
    expect(
        &image_with(|p| p.runs[0].vma = V_HEAP as u32),
        BR(0, "is not among its vma's runs"),
    );
    expect(
        &image_with(|p| p.runs[2].vma = V_RESERVE as u32),
        BR(2, "is not among its vma's runs"),
    );
}

#[test]
fn run_empty_or_not_page_aligned() {
    let what = "empty or not page aligned";
    expect(&image_with(|p| p.runs[1].len = 0), BR(1, what));
    expect(&image_with(|p| p.runs[1].len = PAGE_SIZE - 8), BR(1, what));
    expect(&image_with(|p| p.runs[1].addr += 8), BR(1, what));
    expect(&image_with(|p| p.runs[1].data_off += 8), BR(1, what));
}

#[test]
fn run_range_overflows() {
    expect(
        &image_with(|p| {
            p.runs[3].addr = u64::MAX - PAGE_SIZE + 1;
            p.runs[3].len = 2 * PAGE_SIZE;
        }),
        BR(3, "range overflows"),
    );
}

#[test]
fn run_outside_its_vma() {
    let what = "outside its vma";
    expect(&image_with(|p| p.runs[0].addr = CODE.1), BR(0, what));
    expect(&image_with(|p| p.runs[0].len = 3 * PAGE_SIZE), BR(0, what));
    expect(&image_with(|p| p.runs[1].addr = HEAP.0 - PAGE_SIZE), BR(1, what));
}

#[test]
fn run_overlaps_previous() {
    let what = "overlaps the previous run";
    expect(&image_with(|p| p.runs[2].addr = p.runs[1].addr), BR(2, what));
    expect(&image_with(|p| p.runs[1].len = 3 * PAGE_SIZE), BR(2, what));
}

#[test]
fn run_data_outside_the_image() {
    let what = "data outside the image";
    expect(&image_with(|p| p.runs[0].data_off = 0), BR(0, what));
    let img = valid_image();
    let past = align_up(img.len() as u64, PAGE_SIZE);
    expect(&image_with(|p| p.runs[3].data_off = past), BR(3, what));
    // Starts inside, ends past the end: the run starts at the page holding the last
    // byte, so the image must not end on a page boundary (8 more string bytes if so).
    let aligned = (img.len() as u64).is_multiple_of(PAGE_SIZE);
    let last_page = if aligned { img.len() as u64 } else { past - PAGE_SIZE };
    let img = image_with(|p| {
        if aligned {
            p.strings.extend_from_slice(&[0; 8]);
        }
        p.runs[3].data_off = last_page;
    });
    expect(&img, BR(3, what));
    // data_off + len overflows.
    expect(
        &image_with(|p| p.runs[2].data_off = u64::MAX - PAGE_SIZE + 1),
        BR(2, what),
    );
}

// ---------------------------------------------------------------------------
// Tables::parse: mm

#[test]
fn mm_auxv_length_invalid() {
    let what = "auxv length invalid";
    expect(&image_with(|p| p.mm.auxv_words = 7), BM(what));
    expect(&image_with(|p| p.mm.auxv_words = 2 * MAX_AUXV as u32 + 2), BM(what));
    assert_eq!(validate(&image_with(|p| p.mm.auxv_words = 2 * MAX_AUXV as u32)), Ok(()));
}

#[test]
fn mm_strings_outside_the_section() {
    let what = "executable path or command line outside the strings section";
    expect(&image_with(|p| p.mm.exe_off = p.strings.len() as u32 - 2), BM(what));
    expect(&image_with(|p| p.mm.cmdline_len = u32::MAX), BM(what));
}

#[test]
fn mm_field_outside_user_space() {
    let what = "mm field outside user space";
    expect(&image_with(|p| p.mm.env_end = USER_TOP), BM(what));
    expect(&image_with(|p| p.mm.start_code = u64::MAX), BM(what));
}

#[test]
fn mm_brk_below_start_brk() {
    expect(
        &image_with(|p| p.mm.brk = p.mm.start_brk - PAGE_SIZE),
        BM("brk below start_brk"),
    );
}

// ---------------------------------------------------------------------------
// Tables::parse: fds

#[test]
fn fd_numbers_not_ascending_or_out_of_range() {
    let what = "fd numbers not ascending or out of range";
    expect(&image_with(|p| p.fds[2].fd = 1), BF(2, what));
    expect(&image_with(|p| p.fds.swap(0, 2)), BF(1, what));
    expect(&image_with(|p| p.fds[0].fd = -1), BF(0, what));
    expect(&image_with(|p| p.fds[2].fd = 1 << 20), BF(2, what));
    assert_eq!(
        validate(&image_with(|p| p.fds.last_mut().unwrap().fd = (1 << 20) - 1)),
        Ok(())
    );
}

#[test]
fn fd_unknown_flags() {
    expect(&image_with(|p| p.fds[2].cloexec = 4), BF(2, "unknown fd flags"));
    assert_eq!(validate(&image_with(|p| p.fds[6].cloexec = 1 | FD_INFLIGHT)), Ok(()));
}

#[test]
fn fd_pty_end_neither_master_nor_slave() {
    let img = image_with(|p| {
        p.fds[6].kind = FdKind::Pty as u32;
        p.fds[6].aux = [2, 3, 0, 0, 0, 0];
    });
    expect(&img, BF(6, "pty end neither master nor slave"));
}

#[test]
fn fd_pty_slave_without_master() {
    let slave_of = |p: &mut ImageParts, index| {
        p.fds[6].kind = FdKind::Pty as u32;
        p.fds[6].aux = [PTY_SLAVE, index, 0, 0, 0, 0];
        p.fds[5].kind = FdKind::Pty as u32;
        p.fds[5].aux = [PTY_MASTER, 3, 0, 0, 0, 0];
        (p.fds[5].data_off, p.fds[5].data_len) = (p.fds[F_PIPE_R].data_off, 52);
        p.fds[5].desc = 0;
        p.fds[6].desc = 0;
    };
    expect(&image_with(|p| slave_of(p, 4)), BF(6, "pty slave without its master"));
    assert_eq!(validate(&image_with(|p| slave_of(p, 3))), Ok(()));
}

/// A terminal reopened by path carries exactly its settings, nothing else does.
#[test]
fn fd_path_tty_settings() {
    let path_fd = |aux0: u64, len: u64| {
        image_with(move |p| {
            let i = p.fds.iter().position(|f| f.kind == FdKind::Path as u32).unwrap();
            p.fds[i].aux[0] = aux0;
            (p.fds[i].data_off, p.fds[i].data_len) = (p.fds[F_PIPE_R].data_off, len);
        })
    };
    let i = valid_parts().fds.iter().position(|f| f.kind == FdKind::Path as u32).unwrap() as u32;
    let what = "file with unknown flags, or terminal settings of the wrong size";
    assert_eq!(validate(&path_fd(PATH_TTY_SETTINGS, 52)), Ok(()));
    expect(&path_fd(PATH_TTY_SETTINGS, 44), BF(i, what));
    expect(&path_fd(0, 52), BF(i, what));
    expect(&path_fd(2, 0), BF(i, what));
}

/// A master's settings, its queued input and its flags must fit its data.
#[test]
fn fd_pty_master_data_and_flags() {
    use crate::pty::{PTY_EOF_BYTE, PTY_LOCKED};
    let master = |aux: [u64; 6], len: u64| {
        image_with(move |p| {
            p.fds[5].kind = FdKind::Pty as u32;
            p.fds[5].aux = aux;
            (p.fds[5].data_off, p.fds[5].data_len) = (p.fds[F_PIPE_R].data_off, len);
            p.fds[5].desc = 0;
            p.fds[6].desc = 0;
        })
    };
    let what = "pty master with unknown flags, or queued input not inside its data";
    assert_eq!(validate(&master([PTY_MASTER, 3, 1, 10, PTY_LOCKED | PTY_EOF_BYTE | 0x400, 2], 62)), Ok(()));
    expect(&master([PTY_MASTER, 3, 0, 0, 0, 0], 51), BF(5, what));
    expect(&master([PTY_MASTER, 3, 0, 11, 0, 0], 62), BF(5, what));
    expect(&master([PTY_MASTER, 3, 2, 0, 0, 0], 52), BF(5, what));
    expect(&master([PTY_MASTER, 3, 0, 0, 1 << 24, 0], 52), BF(5, what));
    expect(&master([PTY_MASTER, 3, 0, 10, PTY_EOF_BYTE, 11], 62), BF(5, what));
    expect(&master([PTY_MASTER, 3, 0, 10, 0, 1], 62), BF(5, what));
    let erase = crate::pty::PTY_ERASE_BYTE | PTY_EOF_BYTE | 0x07_0400;
    assert_eq!(validate(&master([PTY_MASTER, 3, 0, 3, erase, 1], 62)), Ok(()));
    expect(&master([PTY_MASTER, 3, 0, 2, erase, 1], 62), BF(5, what));
}

#[test]
fn fd_socket_of_an_unknown_family() {
    expect(&image_with(|p| p.fds[7].aux[0] = 16), BF(7, "socket of an unknown address family"));
    for family in [2, 10] {
        assert_eq!(validate(&image_with(|p| p.fds[7].aux[0] = family)), Ok(()));
    }
}

#[test]
fn fd_unknown_socket_role() {
    expect(&image_with(|p| p.fds[7].aux[2] = SOCK_ROLES), BF(7, "unknown socket role"));
    assert_eq!(validate(&image_with(|p| p.fds[7].aux[2] = SOCK_ROLES - 1)), Ok(()));
}

#[test]
fn fd_unknown_kind() {
    let first_unknown = (1..).find(|&k| FdKind::from_u32(k).is_none()).unwrap();
    for kind in [0, first_unknown, u32::MAX] {
        expect(&image_with(|p| p.fds[0].kind = kind), BF(0, "unknown fd kind"));
    }
}

#[test]
fn fd_file_without_path() {
    expect(
        &image_with(|p| p.fds[F_LOG].path_len = 0),
        BF(F_LOG as u32, "file without a path"),
    );
}

/// A disconnected fd (its peer was outside the process) must say what it was.
#[test]
fn fd_disconnected_kinds() {
    let disc = |aux: [u64; 6]| {
        image_with(move |p| {
            p.fds[F_PIPE_R] = Fd {
                fd: p.fds[F_PIPE_R].fd,
                kind: FdKind::Disconnected as u32,
                aux,
                ..Fd::default()
            }
        })
    };
    let i = F_PIPE_R as u32;
    assert_eq!(validate(&disc([DISC_PIPE, 0, 65536, 0, 0, 0])), Ok(()));
    assert_eq!(validate(&disc([DISC_PIPE, 1, 0, 0, 0, 0])), Ok(()));
    for family in DISC_FAMILIES {
        assert_eq!(validate(&disc([DISC_SOCKET, family, 1, 0, 0, 0])), Ok(()));
    }
    for kind in [0, 3, u64::MAX] {
        expect(&disc([kind, 0, 0, 0, 0, 0]), BF(i, "unknown kind of disconnected fd"));
    }
    expect(&disc([DISC_PIPE, 2, 0, 0, 0, 0]), BF(i, "disconnected pipe end neither read nor write"));
    for family in [0, 16, 17] {
        expect(
            &disc([DISC_SOCKET, family, 1, 0, 0, 0]),
            BF(i, "disconnected socket of an unknown address family"),
        );
    }
}

#[test]
fn fd_path_outside_strings() {
    let what = "path outside the strings section";
    expect(&image_with(|p| p.fds[1].path_off = p.strings.len() as u32), BF(1, what));
    // Also for inherited fds, which do not use their path.
    expect(&image_with(|p| p.fds[2].path_len = 1 << 30), BF(2, what));
}

#[test]
fn fd_data_outside_the_image() {
    let what = "data outside the image";
    let i = F_PIPE_R as u32;
    expect(&image_with(|p| p.fds[F_PIPE_R].data_off = 0), BF(i, what));
    expect(&image_with(|p| p.fds[F_PIPE_R].data_off = DATA_START - 1), BF(i, what));
    let len = valid_image().len() as u64;
    expect(&image_with(|p| p.fds[F_PIPE_R].data_off = len), BF(i, what));
    expect(&image_with(|p| p.fds[F_PIPE_R].data_len = len), BF(i, what));
    expect(&image_with(|p| p.fds[F_PIPE_R].data_len = u64::MAX), BF(i, what));
    // No data: the offset is not looked at.
    assert_eq!(
        validate(&image_with(|p| {
            p.fds[F_PIPE_R].data_len = 0;
            p.fds[F_PIPE_R].data_off = u64::MAX;
        })),
        Ok(())
    );
}

const BL: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadLock { index, what };

#[test]
fn lock_unknown_kind() {
    for kind in [0, 4, u32::MAX] {
        expect(&image_with(|p| p.locks[0].kind = kind), BL(0, "unknown lock kind"));
    }
    for kind in [LOCK_FLOCK, LOCK_OFD] {
        let img = image_with(|p| (p.locks[0].kind, p.locks[0].start, p.locks[0].len) = (kind, 0, 0));
        assert_eq!(validate(&img), Ok(()));
    }
}

#[test]
fn lock_neither_read_nor_write() {
    expect(&image_with(|p| p.locks[0].write = 2), BL(0, "lock neither read nor write"));
    assert_eq!(validate(&image_with(|p| p.locks[0].write = 0)), Ok(()));
}

#[test]
fn lock_range_outside_offsets() {
    let what = "lock range outside a file's offsets";
    expect(&image_with(|p| p.locks[0].start = 1 << 63), BL(0, what));
    expect(&image_with(|p| p.locks[0].len = u64::MAX), BL(0, what));
    expect(&image_with(|p| p.locks[0].start = i64::MAX as u64), BL(0, what));
    // To EOF from the last offset is a valid lock.
    let img = image_with(|p| (p.locks[0].start, p.locks[0].len) = (i64::MAX as u64, 0));
    assert_eq!(validate(&img), Ok(()));
}

#[test]
fn lock_flock_with_a_range() {
    expect(&image_with(|p| p.locks[0].kind = LOCK_FLOCK), BL(0, "flock lock with a byte range"));
}

#[test]
fn lock_on_an_fd_not_created() {
    let what = "lock on an fd the image does not create";
    expect(&image_with(|p| p.locks[0].fd = 99), BL(0, what));
    // fd 0 is the resumer's own (inherited).
    expect(&image_with(|p| p.locks[0].fd = 0), BL(0, what));
}

const BSK: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadSocket { index, what };

#[test]
fn socket_state_not_in_fd_order() {
    let img = image_with(|p| {
        let mut second = p.sockets[0];
        second.shutdown = 0;
        p.sockets.push(second);
    });
    expect(&img, BSK(1, "socket states not in fd order"));
}

#[test]
fn socket_state_for_an_fd_that_is_not_a_socket() {
    let what = "state for an fd that is not a socket the image creates";
    expect(&image_with(|p| p.sockets[0].fd = 6), BSK(0, what));
    expect(&image_with(|p| p.sockets[0].fd = 99), BSK(0, what));
}

#[test]
fn socket_state_unknown_shutdown_bits() {
    expect(&image_with(|p| p.sockets[0].shutdown = 4), BSK(0, "unknown shutdown bits"));
    assert_eq!(validate(&image_with(|p| p.sockets[0].shutdown = SHUT_RCV | SHUT_SEND)), Ok(()));
}

#[test]
fn socket_state_unknown_flags() {
    expect(&image_with(|p| p.sockets[0].flags |= 1 << 7), BSK(0, "unknown socket flags"));
}

#[test]
fn socket_state_linger_time_without_linger() {
    expect(&image_with(|p| p.sockets[0].flags = SOCK_PASSCRED), BSK(0, "linger time without SO_LINGER"));
    let img = image_with(|p| (p.sockets[0].flags, p.sockets[0].linger) = (SOCK_PASSCRED, 0));
    assert_eq!(validate(&img), Ok(()));
}

#[test]
fn socket_state_timeout_out_of_range() {
    let what = "socket timeout out of range";
    expect(&image_with(|p| p.sockets[0].rcvtimeo_us = SOCK_MAX_TIMEO_US + 1), BSK(0, what));
    expect(&image_with(|p| p.sockets[0].sndtimeo_us = u64::MAX), BSK(0, what));
    assert_eq!(validate(&image_with(|p| p.sockets[0].sndtimeo_us = SOCK_MAX_TIMEO_US)), Ok(()));
}

#[test]
fn socket_state_buffer_size_out_of_range() {
    let what = "socket buffer size out of range";
    expect(&image_with(|p| p.sockets[0].sndbuf = 1 << 31), BSK(0, what));
    expect(&image_with(|p| p.sockets[0].rcvbuf = u32::MAX), BSK(0, what));
}

const BSO: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadSockOpt { index, what };

#[test]
fn socket_option_not_carried() {
    let what = "socket option this format does not carry";
    // SO_TYPE (3) is read-only; level 99 is no level at all.
    expect(&image_with(|p| p.sockopts[1].name = 3), BSO(1, what));
    expect(&image_with(|p| p.sockopts[0].level = 99), BSO(0, what));
}

#[test]
fn socket_option_out_of_order() {
    let what = "socket options not in fd and option order";
    expect(&image_with(|p| p.sockopts.swap(0, 1)), BSO(1, what));
    expect(&image_with(|p| p.sockopts[1] = p.sockopts[0]), BSO(1, what));
}

#[test]
fn socket_option_filter_length() {
    let what = "socket filter length does not match its instruction count";
    expect(&image_with(|p| p.sockopts[2].value = 0), BSO(2, what));
    expect(&image_with(|p| p.sockopts[2].data_len = 16), BSO(2, what));
    expect(&image_with(|p| (p.sockopts[2].value, p.sockopts[2].data_len) = (4097, 4097 * 8)), BSO(2, what));
}

#[test]
fn socket_option_filter_outside_the_strings() {
    let what = "socket filter outside the strings section";
    expect(&image_with(|p| p.sockopts[2].data_off = p.strings.len() as u32 - 4), BSO(2, what));
    expect(&image_with(|p| p.sockopts[2].data_off = u32::MAX), BSO(2, what));
}

#[test]
fn socket_option_integer_with_data() {
    expect(&image_with(|p| p.sockopts[0].data_len = 8), BSO(0, "data on an integer socket option"));
    expect(&image_with(|p| p.sockopts[1].data_off = 1), BSO(1, "data on an integer socket option"));
}

#[test]
fn socket_option_for_an_fd_that_is_not_a_socket() {
    let what = "option for an fd that is not a socket the image creates";
    expect(&image_with(|p| p.sockopts.iter_mut().for_each(|o| o.fd = 6)), BSO(0, what));
    expect(&image_with(|p| p.sockopts[2].fd = 99), BSO(2, what));
}

#[test]
fn epoll_entry_names_missing_fd() {
    let what = "epoll entry names an fd that is not in the image";
    // The watched fd does not exist; the instance is not an epoll fd; nor exists.
    expect(&image_with(|p| p.epoll[0].fd = 10), BF(0, what));
    expect(&image_with(|p| p.epoll[0].epfd = 4), BF(0, what));
    expect(&image_with(|p| p.epoll[0].epfd = -1), BF(0, what));
    expect(
        &image_with(|p| {
            let e = p.epoll[0];
            p.epoll.push(EpollEntry { fd: 100, ..e });
        }),
        BF(1, what),
    );
}

// ---------------------------------------------------------------------------
// Tables::parse: files and their extents, and the fds and mappings using them

#[test]
fn vma_object_named_exactly_by_object_kinds() {
    let what = "names a file object but does not map one, or maps one without naming it";
    expect(&image_with(|p| p.vmas[V_SHOBJ].object = 0), BV(V_SHOBJ as u32, what));
    expect(&image_with(|p| p.vmas[V_SHANON].object = 1), BV(V_SHANON as u32, what));
}

#[test]
fn vma_maps_a_missing_file() {
    let what = "maps a file that is not in the image";
    expect(&image_with(|p| p.vmas[V_SHOBJ].object = 3), BV(V_SHOBJ as u32, what));
    expect(&image_with(|p| p.vmas[V_SHOBJ].object = u32::MAX), BV(V_SHOBJ as u32, what));
}

#[test]
fn vma_object_offset_misaligned() {
    let what = "file mapping without a path or with a misaligned offset";
    expect(&image_with(|p| p.vmas[V_SHOBJ].file_offset = 100), BV(V_SHOBJ as u32, what));
    expect(&image_with(|p| p.vmas[V_SHOBJ].file_offset = !(PAGE_SIZE - 1)), BV(V_SHOBJ as u32, what));
}

#[test]
fn vma_private_mapping_of_shared_memory() {
    let img = image_with(|p| p.vmas[V_SHOBJ].kind = VmaKind::PrivateObject as u32);
    expect(&img, BV(V_SHOBJ as u32, "private mapping of shared anonymous memory"));
    // Of a memfd it is fine.
    assert_eq!(
        validate(&image_with(|p| {
            p.vmas[V_SHOBJ].kind = VmaKind::PrivateObject as u32;
            p.vmas[V_SHOBJ].object = O_MEMFD as u32 + 1;
        })),
        Ok(())
    );
}

#[test]
fn vma_maps_shared_memory_past_its_end() {
    let what = "maps shared memory from past its end";
    expect(&image_with(|p| p.vmas[V_SHOBJ].file_offset = 3 * PAGE_SIZE), BV(V_SHOBJ as u32, what));
    // Reaching past the end from inside it is allowed (it faults there, as before).
    assert_eq!(validate(&image_with(|p| p.vmas[V_SHOBJ].file_offset = 2 * PAGE_SIZE)), Ok(()));
}

#[test]
fn vma_shared_object_with_pages() {
    let img = image_with(|p| {
        let mut r = p.runs[3];
        r.addr = SHOBJ.0;
        r.vma = V_SHOBJ as u32;
        p.runs.push(r);
        p.vmas[V_SHOBJ].first_run = 4;
        p.vmas[V_SHOBJ].nruns = 1;
    });
    expect(&img, BV(V_SHOBJ as u32, "mapping whose content is not in the image has stored pages"));
}

#[test]
fn fd_names_a_missing_file() {
    let i = F_MEMFD as u32;
    expect(&image_with(|p| p.fds[F_MEMFD].aux[0] = 2), BF(i, "names a file that is not in the image"));
    expect(&image_with(|p| p.fds[F_MEMFD].aux[0] = u64::MAX), BF(i, "names a file that is not in the image"));
}

#[test]
fn fd_names_a_file_of_another_kind() {
    let what = "names a file of another kind";
    let i = F_MEMFD as u32;
    expect(&image_with(|p| p.fds[F_MEMFD].aux[0] = O_SHMEM as u64), BF(i, what));
    expect(&image_with(|p| p.fds[F_MEMFD].kind = FdKind::Deleted as u32), BF(i, what));
}

#[test]
fn fd_of_a_file_with_data_of_its_own() {
    let img = image_with(|p| {
        p.fds[F_MEMFD].data_off = DATA_START;
        p.fds[F_MEMFD].data_len = 1;
    });
    expect(&img, BF(F_MEMFD as u32, "stores data of its own besides its file's"));
}

#[test]
fn fd_deleted_directory_fields() {
    let what = "deleted directory without a path, or with unknown mode bits or flags";
    let i = F_DELDIR as u32;
    expect(&image_with(|p| p.fds[F_DELDIR].path_len = 0), BF(i, what));
    expect(&image_with(|p| p.fds[F_DELDIR].aux[0] = 0o10000), BF(i, what));
    expect(&image_with(|p| p.fds[F_DELDIR].aux[2] = 2), BF(i, what));
}

#[test]
fn fd_deleted_directory_names_a_missing_first() {
    let what = "deleted directory names an earlier one that is not in the image";
    let i = F_DELDIR as u32;
    // No fd 4 of that kind; itself (fd 9); a later fd.
    for first in [5, 10, 11] {
        expect(&image_with(|p| p.fds[F_DELDIR].aux[1] = first), BF(i, what));
    }
    let again = image_with(|p| {
        let mut f = p.fds[F_DELDIR];
        f.fd = 10;
        f.aux[1] = 9 + 1;
        p.fds.push(f);
    });
    assert_eq!(validate(&again), Ok(()));
}

/// A deleted file with a second name (a hard link opened before both were removed).
fn with_second_name(p: &mut Parts, same_as: u32, nextents: u32) {
    let mut first = p.files[O_MEMFD];
    first.kind = FileKind::Deleted as u32;
    first.seals = 0;
    first.flags = FILE_OWNER;
    p.files[O_MEMFD] = first;
    p.fds[F_MEMFD].kind = FdKind::Deleted as u32;
    let next = p.extents.len() as u32;
    p.files.push(FileObject { same_as, first_extent: next, nextents: 0, ..first });
    if nextents != 0 {
        let e = p.extents[0];
        p.extents.push(Extent { file: 2, ..e });
        p.files[2].nextents = nextents;
    }
}

#[test]
fn file_second_name_of_a_missing_or_other_file() {
    let what = "another name of a file that is not an earlier deleted file";
    assert_eq!(validate(&image_with(|p| with_second_name(p, 1, 0))), Ok(()));
    // Of itself, of nothing, of shared memory; a second name of a memfd.
    for same_as in [3, 4, O_SHMEM as u32 + 1] {
        expect(&image_with(|p| with_second_name(p, same_as, 0)), BO(2, what));
    }
    let memfd = image_with(|p| p.files[O_SHMEM].same_as = O_MEMFD as u32 + 1);
    expect(&memfd, BO(1, what));
    expect(
        &image_with(|p| {
            with_second_name(p, 1, 0);
            p.files[2].tree_slot = 1;
        }),
        BO(2, "a tree slot on a file the tree does not make"),
    );
}

#[test]
fn file_of_the_tree_needs_a_slot() {
    let what = "a file of the tree without a slot, or another name of a file";
    expect(&image_with(|p| p.files[O_SHMEM].flags |= FILE_IN_TREE), BO(O_SHMEM as u32, what));
    let ok = image_with(|p| {
        p.files[O_SHMEM].flags |= FILE_IN_TREE;
        p.files[O_SHMEM].tree_slot = 600;
    });
    assert_eq!(validate(&ok), Ok(()));
}

#[test]
fn file_second_name_with_extents() {
    let img = image_with(|p| with_second_name(p, 1, 1));
    expect(&img, BO(2, "another name of a file with extents of its own"));
}

#[test]
fn file_unknown_kind() {
    for kind in [0, 4, u32::MAX] {
        expect(&image_with(|p| p.files[O_MEMFD].kind = kind), BO(0, "unknown kind"));
    }
}

#[test]
fn file_unknown_mode_bits_or_flags() {
    let what = "unknown mode bits or flags";
    expect(&image_with(|p| p.files[O_MEMFD].mode = 0o10000), BO(0, what));
    expect(&image_with(|p| p.files[O_SHMEM].flags = FILE_KNOWN_FLAGS + 1), BO(1, what));
}

#[test]
fn file_name_outside_strings() {
    let what = "name outside the strings section";
    expect(&image_with(|p| p.files[O_MEMFD].name_off = p.strings.len() as u32), BO(0, what));
    expect(&image_with(|p| p.files[O_SHMEM].name_len = u32::MAX), BO(1, what));
}

#[test]
fn file_seals_only_on_memfds() {
    let what = "seals or memfd flags on a file that is not a memfd";
    expect(&image_with(|p| p.files[O_SHMEM].seals = 1), BO(1, what));
    expect(&image_with(|p| p.files[O_SHMEM].flags = FILE_MFD_EXEC), BO(1, what));
}

#[test]
fn file_exec_and_noexec_seal() {
    let img = image_with(|p| p.files[O_MEMFD].flags |= FILE_MFD_NOEXEC_SEAL);
    expect(&img, BO(0, "both MFD_EXEC and MFD_NOEXEC_SEAL"));
}

#[test]
fn file_shared_memory_size() {
    let what = "shared memory of no size or not a whole number of pages";
    expect(&image_with(|p| p.files[O_SHMEM].size = 3 * PAGE_SIZE + 1), BO(1, what));
    expect(
        &image_with(|p| {
            p.files[O_SHMEM].size = 0;
            p.files[O_SHMEM].nextents = 0;
            p.extents.pop();
        }),
        BO(1, what),
    );
}

#[test]
fn file_size_over_the_largest_offset() {
    expect(&image_with(|p| p.files[O_MEMFD].size = u64::MAX), BO(0, "size over the largest file offset"));
}

#[test]
fn file_extents_not_in_order() {
    let img = image_with(|p| p.files[O_SHMEM].first_extent = 0);
    expect(&img, BO(1, "extents not in file order"));
}

#[test]
fn file_extents_past_the_section() {
    let img = image_with(|p| p.files[O_SHMEM].nextents = 2);
    expect(&img, BO(1, "extents past the end of the extents section"));
}

#[test]
fn files_do_not_account_for_every_extent() {
    let img = image_with(|p| {
        let e = p.extents[1];
        p.extents.push(Extent { offset: 2 * PAGE_SIZE, ..e });
    });
    expect(&img, BO(2, "files do not account for every extent"));
}

#[test]
fn extent_names_a_missing_file() {
    let what = "names a file that is not in the image";
    expect(&image_with(|p| p.extents[1].file = 2), BE(1, what));
    expect(&image_with(|p| p.extents[0].file = u32::MAX), BE(0, what));
}

#[test]
fn extent_not_among_its_files() {
    expect(&image_with(|p| p.extents[1].file = O_MEMFD as u32), BE(1, "is not among its file's extents"));
}

#[test]
fn extent_empty_or_past_the_size() {
    let what = "empty, or past its file's size";
    expect(&image_with(|p| p.extents[0].len = 0), BE(0, what));
    expect(&image_with(|p| p.extents[0].offset = MEMFD_SIZE), BE(0, what));
    expect(&image_with(|p| p.extents[0].offset = u64::MAX), BE(0, what));
    expect(&image_with(|p| p.extents[1].len = 3 * PAGE_SIZE), BE(1, what));
}

#[test]
fn extent_overlaps_the_previous() {
    let img = image_with(|p| {
        let e = p.extents[0];
        p.extents.insert(1, Extent { offset: e.offset + 1, ..e });
        p.files[O_MEMFD].nextents = 2;
        p.files[O_SHMEM].first_extent = 2;
    });
    expect(&img, BE(1, "overlaps or is out of order with the previous extent"));
}

#[test]
fn extent_of_shared_memory_in_whole_pages() {
    let what = "shared memory extent not in whole pages";
    expect(&image_with(|p| p.extents[1].len = 100), BE(1, what));
    expect(&image_with(|p| p.extents[1].offset = 100), BE(1, what));
}

#[test]
fn extent_data_outside_the_image() {
    let what = "data outside the image";
    let len = valid_image().len() as u64;
    expect(&image_with(|p| p.extents[0].data_off = DATA_START - 1), BE(0, what));
    expect(&image_with(|p| p.extents[1].data_off = len), BE(1, what));
    expect(&image_with(|p| p.extents[1].data_off = u64::MAX), BE(1, what));
}

// ---------------------------------------------------------------------------
// Tables::parse: process-wide state

#[test]
fn process_cwd_outside_strings() {
    let what = "cwd outside the strings section";
    expect(
        &image_with(|p| p.process.as_mut().unwrap().cwd_off = p.strings.len() as u32),
        BM(what),
    );
    expect(
        &image_with(|p| p.process.as_mut().unwrap().cwd_len = u32::MAX),
        BM(what),
    );
}

#[test]
fn process_cwd_mode() {
    let what = "cwd mode with unknown bits, or for a working directory that was not removed";
    expect(&image_with(|p| p.process.as_mut().unwrap().cwd_mode = 0o700), BM(what));
    let deleted = |mode| {
        image_with(move |p| {
            let pr = p.process.as_mut().unwrap();
            pr.flags |= PROC_CWD_DELETED;
            pr.cwd_mode = mode;
        })
    };
    expect(&deleted(0o10000), BM(what));
    assert_eq!(validate(&deleted(0o1777)), Ok(()));
}

#[test]
fn process_signal_handler_outside_user_space() {
    let what = "signal handler outside user space";
    expect(
        &image_with(|p| p.process.as_mut().unwrap().sigactions[0].handler = USER_TOP),
        BM(what),
    );
    expect(
        &image_with(|p| p.process.as_mut().unwrap().sigactions[63].restorer = u64::MAX),
        BM(what),
    );
}

#[test]
fn pending_signal_number_out_of_range() {
    let what = "pending signal number out of range";
    for signo in [0, 65, u32::MAX] {
        expect(&image_with(|p| p.signals[0].signo = signo), BM(what));
    }
    assert_eq!(validate(&image_with(|p| p.signals[0].signo = 64)), Ok(()));
}

#[test]
fn process_identity_fields() {
    let with = |f: fn(&mut Process)| {
        image_with(move |p| {
            let pr = p.process.as_mut().unwrap();
            pr.flags |= PROC_HAVE_IDENTITY;
            f(pr)
        })
    };
    assert_eq!(validate(&with(|p| (p.oom_score_adj, p.ioprio, p.membarrier) = (-1000, 3 << 13, MEMBARRIER_KNOWN))), Ok(()));
    for oom in [-1001, 1001, i32::MIN] {
        let img = image_with(move |p| {
            let pr = p.process.as_mut().unwrap();
            pr.flags |= PROC_HAVE_IDENTITY;
            pr.oom_score_adj = oom;
        });
        expect(&img, BM("oom_score_adj out of range"));
    }
    expect(&with(|p| p.ioprio = 4 << 13), BM("io priority out of range"));
    expect(&with(|p| p.ioprio = (2 << 13) | 8), BM("io priority out of range"));
    expect(&with(|p| p.membarrier = 1), BM("unknown membarrier registration"));
    let what = "supplementary groups outside the strings section or too many";
    expect(&with(|p| p.groups_len = 3), BM(what));
    expect(&with(|p| p.groups_len = 1 << 30), BM(what));
    expect(&with(|p| p.groups_off = u32::MAX), BM(what));
    // Without the flag the fields are not looked at (an image written without them).
    let img = image_with(|p| p.process.as_mut().unwrap().oom_score_adj = 5000);
    assert_eq!(validate(&img), Ok(()));
}

#[test]
fn process_state_is_optional() {
    let img = image_with(|p| {
        p.process = None;
        p.signals.clear();
        p.timers.clear();
        p.epoll.clear();
    });
    assert_eq!(validate_with(&img, false, |_, t| t.process.is_none()), Ok(true));
}

/// Compile-time list: a new `FormatError` variant must get a test above.
#[test]
fn every_error_variant_has_a_test() {
    fn test_of(e: FormatError) -> &'static str {
        match e {
            FormatError::Truncated { .. } => "header_truncated, image_truncated, tables_buffer_shorter_than_the_span",
            FormatError::BadMagic => "bad_magic",
            FormatError::BadVersion { .. } => "bad_version",
            FormatError::BadHeaderSize { .. } => "bad_header_size",
            FormatError::BadPageSize { .. } => "bad_page_size",
            FormatError::HeaderChecksum { .. } => "header_checksum",
            FormatError::BadSection { .. } => "section_* tests",
            FormatError::SectionChecksum { .. } => "section_checksum_of_each_section",
            FormatError::TooMany { .. } => "too_many_records_in_each_section",
            FormatError::BadThread { .. } => "thread tests",
            FormatError::BadVma { .. } => "vma tests",
            FormatError::BadRun { .. } => "run tests",
            FormatError::BadMm { .. } => "mm tests",
            FormatError::BadFd { .. } => "fd tests",
            FormatError::BadLock { .. } => "lock_* tests",
            FormatError::BadFile { .. } => "file_* tests",
            FormatError::BadExtent { .. } => "extent_* tests",
            FormatError::BadSocket { .. } => "socket_state_* tests",
            FormatError::BadSockOpt { .. } => "socket_option_* tests",
            FormatError::BadKernel { .. } => "kernel_state_* tests",
            FormatError::BadVdsoSym { .. } => "vdso_tests::symbols_are_validated_on_read",
            FormatError::BadTree { .. } => "tree_* tests",
            FormatError::BadTreeObject { .. } => "tree_objects_checked, tree_slots",
            FormatError::BadWorkingSet { .. } => "working_set_outside_the_vmas, working_set::tests",
            FormatError::BadChunk { .. } => "compressed_image_*, compress::tests",
        }
    }
    assert!(!test_of(FormatError::BadMagic).is_empty());
    // Messages render without panicking.
    let _ = format!("{}", FormatError::Truncated { need: 1, have: 0 });
}

// ---------------------------------------------------------------------------
// Fuzzing: mutated images must be rejected cleanly or be safe for the stub

/// xorshift64*: small, seedable, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (0 if n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

/// Everything the restorer stub does with validated tables that could index out of
/// bounds or misbehave, checked without panicking: the slices and strings it takes
/// (layout.rs, mm.rs, fds.rs, sigframe.rs), the runs it reads into its mappings.
/// An `Err` here is an image that validation accepted but the stub cannot use safely.
pub fn stub_view(h: &Header, t: &Tables, img: &[u8]) -> Result<(), String> {
    // image::load read [lo, hi) of the image; the header said the image fits the file.
    if h.image_size > img.len() as u64 {
        return Err(format!("image_size {} > file length {}", h.image_size, img.len()));
    }
    // main/sigframe: t.threads[0], &t.xstate[off .. off + size].
    let th = t.threads.first().ok_or("no thread")?;
    let off =
        usize::try_from(th.xstate_off).map_err(|_| format!("xstate_off {:#x} does not fit usize", th.xstate_off))?;
    let end = off.checked_add(th.xstate_size as usize).ok_or_else(|| {
        format!(
            "xstate_off {:#x} + xstate_size {} overflows",
            th.xstate_off, th.xstate_size
        )
    })?;
    let xs = t.xstate.get(off..end).ok_or_else(|| {
        format!(
            "thread xstate [{off:#x}, {end:#x}) is outside the {}-byte xstate section (xstate_size {})",
            t.xstate.len(),
            th.xstate_size
        )
    })?;
    // place_xstate writes the software bytes at 464..512 and the magic after the area;
    // the fallback frame area holds MAX_XSTATE + 64 bytes.
    if !xs.is_empty() && (xs.len() < 512 || xs.len() + 4 > MAX_XSTATE as usize + 64) {
        return Err(format!(
            "xstate area of {} bytes does not fit the signal frame",
            xs.len()
        ));
    }
    if th.rseq_addr != 0 && th.rseq_addr.checked_add(th.rseq_len as u64).is_none() {
        return Err("rseq range overflows".into());
    }
    // sigframe::leave jumps to the two gadgets (when both are set): they must be in
    // the target's executable memory, or the stub itself crashes.
    if h.gadget_syscall_ret != 0 && h.gadget_sigreturn != 0 {
        for (name, g) in [
            ("syscall; ret", h.gadget_syscall_ret),
            ("rt_sigreturn", h.gadget_sigreturn),
        ] {
            if !t
                .vmas
                .iter()
                .any(|v| v.start <= g && g < v.end && v.prot & PROT_EXEC != 0)
            {
                return Err(format!("the {name} gadget at {g:#x} is not in an executable vma"));
            }
        }
    }
    // layout::create_all: every VMA at its address with MAP_FIXED_NOREPLACE, then fill.
    let mut prev_end = 0;
    for (i, v) in t.vmas.iter().enumerate() {
        if v.start >= v.end || v.start < prev_end || v.end > USER_TOP {
            return Err(format!(
                "vma {i} [{:#x}, {:#x}) overlaps, is reversed or leaves user space",
                v.start, v.end
            ));
        }
        prev_end = v.end;
        let kind = match VmaKind::from_u32(v.kind) {
            Some(k) if !k.is_special() => k,
            _ => continue,
        };
        if matches!(kind, VmaKind::FilePrivate | VmaKind::SharedFile) {
            let (o, n) = (v.name_off as usize, v.name_len as usize);
            if n == 0 || t.strings.get(o..o + n).is_none() {
                return Err(format!("vma {i}: file name [{o}, +{n}) not usable"));
            }
            let _ = t.string(v.name_off, v.name_len);
        }
        let first = v.first_run as usize;
        let runs = t
            .runs
            .get(first..first + v.nruns as usize)
            .ok_or_else(|| format!("vma {i}: runs [{first}, +{}) outside the run table", v.nruns))?;
        for (j, r) in runs.iter().enumerate() {
            let r_end = r
                .addr
                .checked_add(r.len)
                .ok_or_else(|| format!("run {}: range overflows", first + j))?;
            if r.addr < v.start || r_end > v.end || r.len == 0 || r.len % PAGE_SIZE != 0 {
                return Err(format!(
                    "run {}: [{:#x}, {r_end:#x}) is not inside its vma {i}",
                    first + j,
                    r.addr
                ));
            }
            if h.flags & HDR_COMPRESSED != 0 {
                continue; // its chunks are checked below
            }
            let d_end = r
                .data_off
                .checked_add(r.len)
                .ok_or_else(|| format!("run {}: data range overflows", first + j))?;
            if r.data_off < DATA_START || d_end > h.image_size {
                return Err(format!(
                    "run {}: data [{:#x}, {d_end:#x}) outside the image",
                    first + j,
                    r.data_off
                ));
            }
        }
    }
    // decompress.rs: each chunk is found by its address, its stored bytes read from
    // the image into a buffer of COMPRESS_CHUNK bytes and decoded into its run.
    for (i, c) in t.chunks.iter().enumerate() {
        let r = t.runs.get(c.run as usize).ok_or_else(|| format!("chunk {i}: no run {}", c.run))?;
        if c.addr < r.addr || c.addr + c.len as u64 > r.addr + r.len || c.len as u64 > COMPRESS_CHUNK {
            return Err(format!("chunk {i}: [{:#x}, +{:#x}) outside its run", c.addr, c.len));
        }
        if c.stored_len > c.len || c.data_off.checked_add(c.stored_len as u64).is_none_or(|e| e > h.image_size) {
            return Err(format!("chunk {i}: stored bytes outside the image or the buffer"));
        }
        if chunk_at(t.chunks, c.addr) != Some(c) {
            return Err(format!("chunk {i}: not found by its address"));
        }
    }
    // mm::restore: auxv words and the executable path.
    if t.mm.auxv_words as usize > t.mm.auxv.len() {
        return Err(format!("auxv_words {} > {}", t.mm.auxv_words, t.mm.auxv.len()));
    }
    for (o, n) in [(t.mm.exe_off, t.mm.exe_len), (t.mm.cmdline_off, t.mm.cmdline_len)] {
        if t.strings.get(o as usize..o as usize + n as usize).is_none() {
            return Err(format!("mm string [{o}, +{n}) outside the strings section"));
        }
        let _ = t.string(o, n);
    }
    // fds::restore: the path of every reopened file.
    for (i, f) in t.fds.iter().enumerate() {
        if FdKind::from_u32(f.kind) == Some(FdKind::Path) {
            let (o, n) = (f.path_off as usize, f.path_len as usize);
            if n == 0 || t.strings.get(o..o + n).is_none() {
                return Err(format!("fd record {i}: path [{o}, +{n}) not usable"));
            }
            let _ = t.string(f.path_off, f.path_len);
        }
        if f.data_len != 0 {
            let d_end = f
                .data_off
                .checked_add(f.data_len)
                .ok_or_else(|| format!("fd record {i}: data range overflows"))?;
            if f.data_off < DATA_START || d_end > h.image_size {
                return Err(format!(
                    "fd record {i}: data [{:#x}, {d_end:#x}) outside the image",
                    f.data_off
                ));
            }
        }
    }
    // objects::create/finish, layout::map_object, fds::files: each file's name and
    // extents, the file each object mapping and each Deleted/Memfd fd names.
    for (i, o) in t.files.iter().enumerate() {
        let (first, n) = (o.first_extent as usize, o.nextents as usize);
        let ext = t.extents.get(first..first + n).ok_or_else(|| format!("file {i}: extents outside the table"))?;
        for e in ext {
            let end = e.data_off.checked_add(e.len).ok_or_else(|| format!("file {i}: extent data overflows"))?;
            if e.data_off < DATA_START || end > h.image_size || e.offset.checked_add(e.len).is_none_or(|x| x > o.size) {
                return Err(format!("file {i}: extent outside the image or the file"));
            }
        }
        if t.strings.get(o.name_off as usize..o.name_off as usize + o.name_len as usize).is_none() {
            return Err(format!("file {i}: name outside the strings section"));
        }
        if o.same_as != 0 && t.files.get(o.same_as as usize - 1).is_none() {
            return Err(format!("file {i}: another name of a missing file"));
        }
    }
    for (i, v) in t.vmas.iter().enumerate() {
        if v.object != 0 && t.files.get(v.object as usize - 1).is_none() {
            return Err(format!("vma {i}: maps a missing file"));
        }
    }
    for (i, f) in t.fds.iter().enumerate() {
        match FdKind::from_u32(f.kind) {
            Some(FdKind::Deleted | FdKind::Memfd) if t.files.get(f.aux[0] as usize).is_none() => {
                return Err(format!("fd record {i}: names a missing file"));
            }
            Some(FdKind::DeletedDir) => {
                let _ = t.string(f.path_off, f.path_len);
            }
            _ => {}
        }
    }
    if let Some(p) = t.process {
        let (o, n) = (p.cwd_off as usize, p.cwd_len as usize);
        if t.strings.get(o..o + n).is_none() {
            return Err(format!("process cwd [{o}, +{n}) outside the strings section"));
        }
        let _ = t.string(p.cwd_off, p.cwd_len);
    }
    for (i, s) in t.signals.iter().enumerate() {
        if s.signo == 0 || s.signo > 64 {
            return Err(format!("pending signal {i}: signo {}", s.signo));
        }
    }
    Ok(())
}

/// Validate as the stub does; panics if validation panics or accepts an image the stub
/// cannot use safely ([`stub_view`]). The libFuzzer targets call this.
pub fn check_image(img: &[u8], hw: bool) -> Result<(), FormatError> {
    validate_with(img, hw, |h, t| {
        if let Err(e) = stub_view(h, t, img) {
            panic!("validation accepted an image the stub cannot use: {e}");
        }
    })
}

/// Recompute every section checksum (where the section lies inside the bytes) and
/// then the header checksum, so that mutations reach the record checks.
pub fn fix_crcs(img: &mut [u8]) {
    let Some(mut h) = read_record::<Header>(img) else {
        return;
    };
    for i in 0..MAX_SECTIONS {
        let s = h.sections[i];
        let Some(end) = s.offset.checked_add(s.size) else {
            continue;
        };
        if s.size != 0 && end <= img.len() as u64 {
            h.sections[i].crc = crc32c(&img[s.offset as usize..end as usize], false);
        }
    }
    h.header_crc = header_crc(&h);
    img[..size_of::<Header>()].copy_from_slice(as_bytes(&h));
}

/// The images the fuzzer starts from: the valid image, one without an XSAVE area
/// (header and thread xstate_size 0), a minimal one (one anonymous VMA with one
/// run, no fds, no strings, no vdso copy), and the valid image compressed.
pub fn base_images() -> Vec<Vec<u8>> {
    let full = valid_parts();
    let mut no_xstate = full.clone();
    no_xstate.xstate_size = 0;
    no_xstate.threads[0].xstate_size = 0;
    no_xstate.xstate.clear();
    let mut minimal = full.clone();
    minimal.vmas = vec![minimal.vmas[V_STACK]];
    minimal.vmas[0].first_run = 0;
    minimal.runs = vec![minimal.runs[3]];
    minimal.runs[0].vma = 0;
    minimal.runs[0].data_off = DATA_START;
    minimal.data = vec![(DATA_START, full.data[3].1.clone())];
    minimal.fds.clear();
    minimal.files.clear();
    minimal.extents.clear();
    minimal.strings.clear();
    minimal.vdso.clear();
    minimal.vdso_syms.clear();
    minimal.working_set.clear();
    minimal.process = None;
    minimal.signals.clear();
    minimal.timers.clear();
    minimal.epoll.clear();
    minimal.locks.clear();
    minimal.sockets.clear();
    minimal.sockopts.clear();
    minimal.mm.exe_len = 0;
    minimal.mm.exe_off = 0;
    minimal.mm.cmdline_len = 0;
    minimal.mm.cmdline_off = 0;
    minimal.gadget_sigreturn = 0;
    minimal.gadget_syscall_ret = 0;
    let images = vec![build(&full), build(&no_xstate), build(&minimal), compressed_image()];
    for img in &images {
        assert_eq!(validate(img), Ok(()), "base image must be valid");
    }
    images
}

/// A value likely to hit a boundary of some check, given the field's current value.
fn interesting(rng: &mut Rng, old: u64, img: &[u8]) -> u64 {
    let len = img.len() as u64;
    match rng.below(11) {
        0 => rng.pick(&[
            0, 1, 2, 3, 7, 8, 16, 31, 32, 63, 64, 511, 512, 575, 576, 4095, 4096, 4097, 8192,
        ]),
        1 => rng.pick(&[
            USER_TOP,
            USER_TOP - 1,
            USER_TOP - PAGE_SIZE,
            USER_TOP + PAGE_SIZE,
            1 << 47,
            u32::MAX as u64,
            u32::MAX as u64 - 1,
            1 << 31,
            1 << 32,
            i64::MAX as u64,
            1 << 63,
            u64::MAX,
            MAX_VMAS as u64 + 1,
            MAX_RUNS as u64 + 1,
            MAX_XSTATE as u64 + 1,
            MAX_STRINGS + 1,
            MAX_FDS as u64,
            1 << 20,
        ]),
        // Values that wrap when something small is added (offset + size checks).
        2 => 0u64.wrapping_sub(64 * (1 + rng.below(16))),
        3 => 0u64.wrapping_sub(PAGE_SIZE * (1 + rng.below(4))),
        4 => {
            let d = rng.pick(&[1u64, 4, 8, 32, 64, 4096]);
            if rng.below(2) == 0 {
                old.wrapping_add(d)
            } else {
                old.wrapping_sub(d)
            }
        }
        5 => old ^ (1 << rng.below(64)),
        6 => len
            .wrapping_add(rng.pick(&[0u64, 8, 64, 4096]))
            .wrapping_sub(rng.pick(&[0u64, 8, 64, 4096])),
        7 => rng.below(USER_TOP) & !(PAGE_SIZE - 1),
        // Another field's value: confuses counts, offsets and addresses.
        8 if len >= 8 => {
            let at = (rng.below(len / 8) * 8) as usize;
            u64::from_le_bytes(img[at..at + 8].try_into().unwrap())
        }
        9 => old.wrapping_mul(2).max(old / 2),
        _ => rng.next(),
    }
}

/// Apply 1-4 random mutations to `img`, describing each in `log`; then, most of the
/// time, repair the checksums so that the mutation reaches the record checks.
pub fn mutate(rng: &mut Rng, img: &mut Vec<u8>, bases: &[Vec<u8>], log: &mut Vec<String>) {
    let h0 = read_record::<Header>(img);
    for _ in 0..1 + rng.below(4) {
        let len = img.len() as u64;
        match rng.below(16) {
            0..=1 if len > 0 => {
                let at = rng.below(len) as usize;
                let bit = rng.below(8);
                img[at] ^= 1 << bit;
                log.push(format!("flip bit {bit} of byte {at:#x}"));
            }
            2 if len > 0 => {
                let at = rng.below(len) as usize;
                let v = rng.next() as u8;
                img[at] = v;
                log.push(format!("set byte {at:#x} to {v:#04x}"));
            }
            3 => {
                // Truncate, often at an interesting place (a section boundary).
                let at = match (rng.below(2), h0) {
                    (0, Some(h)) => {
                        let s = h.sections[rng.below(KNOWN_SECTIONS as u64) as usize];
                        (s.offset + rng.below(s.size + 1)).min(len)
                    }
                    _ => rng.below(len + 1),
                };
                img.truncate(at as usize);
                log.push(format!("truncate to {at:#x}"));
            }
            4 => {
                let n = rng.pick(&[1usize, 8, 64, 4096]);
                img.extend((0..n).map(|_| rng.next() as u8));
                log.push(format!("append {n} bytes"));
            }
            5..=6 if len > 0 => {
                // Splice bytes from this or another base image.
                let src = &bases[rng.below(bases.len() as u64) as usize];
                let n = rng.pick(&[1u64, 4, 8, 24, 32, 64, 304, 1000]).min(len);
                let from = rng.below(src.len() as u64 - n.min(src.len() as u64) + 1) as usize;
                let to = rng.below(len - n + 1) as usize;
                let n = (n as usize).min(src.len() - from);
                let chunk = src[from..from + n].to_vec();
                img[to..to + n].copy_from_slice(&chunk);
                log.push(format!("splice {n} bytes from {from:#x} to {to:#x}"));
            }
            7 if len > 0 => {
                // Copy one record over another in the same table.
                let Some(h) = h0 else { continue };
                let kind = SectionKind::ALL[rng.below(5) as usize];
                let s = h.section(kind);
                let es = kind.entry_size();
                if s.count < 2 || s.offset + s.size > len {
                    continue;
                }
                let (a, b) = (rng.below(s.count as u64), rng.below(s.count as u64));
                let (a, b) = ((s.offset + a * es) as usize, (s.offset + b * es) as usize);
                img.copy_within(a..a + es as usize, b);
                log.push(format!("{}: copy record at {a:#x} over {b:#x}", kind.name()));
            }
            _ if len >= 8 => {
                // An interesting value in a field: mostly the header or a table.
                let width = if rng.below(2) == 0 { 4u64 } else { 8 };
                let (lo, hi) = match (rng.below(10), h0) {
                    (0..=2, _) => (0, (size_of::<Header>() as u64).min(len)),
                    (3..=8, Some(h)) => {
                        let s = h.sections[rng.below(KNOWN_SECTIONS as u64) as usize];
                        (s.offset.min(len), s.offset.saturating_add(s.size).min(len))
                    }
                    _ => (0, len),
                };
                if hi < lo + width {
                    continue;
                }
                let at = (lo + rng.below((hi - lo - width) / width + 1) * width) as usize;
                let w = width as usize;
                let mut old = [0u8; 8];
                old[..w].copy_from_slice(&img[at..at + w]);
                let v = interesting(rng, u64::from_le_bytes(old), img);
                img[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
                log.push(format!("set u{} at {at:#x} to {v:#x}", width * 8));
            }
            _ => {}
        }
    }
    if rng.below(4) != 0 {
        fix_crcs(img);
        log.push("checksums repaired".into());
    }
}

/// One kind of failure the fuzzer found: how often, and its first occurrence.
pub struct Failure {
    pub count: u64,
    pub iteration: u64,
    pub mutations: Vec<String>,
    /// The panic message and where it was raised.
    pub what: String,
    /// Where the first failing image was saved.
    pub saved: String,
}

/// What the fuzzer saw.
#[derive(Default)]
pub struct FuzzReport {
    pub iterations: u64,
    pub accepted: u64,
    /// Rejections by reason.
    pub rejected: std::collections::BTreeMap<String, u64>,
    /// Failures by signature (the message with its numbers blanked, and the place).
    pub failures: std::collections::BTreeMap<String, Failure>,
}

std::thread_local! {
    static QUIET: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    static PANIC_AT: core::cell::RefCell<String> = const { core::cell::RefCell::new(String::new()) };
}

/// A panic hook that, on a thread running the fuzzer, records where the panic happened
/// instead of printing it; other threads (other tests) keep the default output.
fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(std::boxed::Box::new(move |info| {
            if QUIET.with(|q| q.get()) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                prev(info)
            }
        }));
    });
}

/// The message with every number replaced by `#`, so one bug gives one signature.
fn signature(msg: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in msg.chars() {
        let start = !in_num && c.is_ascii_digit();
        in_num = start || (in_num && (c.is_ascii_hexdigit() || c == 'x'));
        if start {
            out.push('#');
        } else if !in_num {
            out.push(c);
        }
    }
    out
}

fn reason(e: &FormatError) -> String {
    let variant = format!("{e:?}");
    let variant = variant.split([' ', '{']).next().unwrap_or("").to_string();
    match e {
        FormatError::Truncated { .. }
        | FormatError::BadMagic
        | FormatError::BadVersion { .. }
        | FormatError::BadHeaderSize { .. }
        | FormatError::BadPageSize { .. }
        | FormatError::HeaderChecksum { .. } => variant,
        FormatError::SectionChecksum { section, .. } | FormatError::TooMany { section, .. } => {
            format!("{variant} ({})", section.name())
        }
        _ => format!("{variant}: {}", e.what()),
    }
}

/// Run `iterations` mutated images (or until `deadline`) from `seed`.
pub fn run_fuzz(seed: u64, iterations: u64, deadline: Option<std::time::Instant>) -> FuzzReport {
    let bases = base_images();
    let hw = have_hw();
    let mut rng = Rng::new(seed);
    let mut rep = FuzzReport::default();
    let mut log = Vec::new();
    install_quiet_panic_hook();
    QUIET.with(|q| q.set(true));
    for i in 0..iterations {
        if i % 1024 == 0 && deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            break;
        }
        let mut img = bases[rng.below(bases.len() as u64) as usize].clone();
        log.clear();
        mutate(&mut rng, &mut img, &bases, &mut log);
        // The software CRC now and then, which must agree with the SSE4.2 one.
        let both = hw && i % 16 == 0;
        let r = std::panic::catch_unwind(|| {
            let a = check_image(&img, hw);
            if both {
                assert_eq!(a, check_image(&img, false), "hw and sw checksums disagree");
            }
            a
        });
        rep.iterations += 1;
        match r {
            Ok(Ok(())) => rep.accepted += 1,
            Ok(Err(e)) => *rep.rejected.entry(reason(&e)).or_default() += 1,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                let at = PANIC_AT.with(|p| p.borrow().clone());
                let what = format!("{msg} (at {at})");
                let f = rep.failures.entry(signature(&what)).or_insert_with(|| {
                    let path = std::env::temp_dir().join(format!("ckpt-fuzz-{seed:x}-{i}.img"));
                    let saved = match std::fs::write(&path, &img) {
                        Ok(()) => path.display().to_string(),
                        Err(e) => format!("(not saved: {e})"),
                    };
                    Failure {
                        count: 0,
                        iteration: i,
                        mutations: log.clone(),
                        what,
                        saved,
                    }
                });
                f.count += 1;
            }
        }
    }
    QUIET.with(|q| q.set(false));
    rep
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The bounded fuzz run of `cargo test`: 200k mutated images from a fixed seed.
/// CKPT_FUZZ_ITERS, CKPT_FUZZ_SEED and CKPT_FUZZ_SECS (a time limit, unlimited
/// iterations) change it; `make fuzz` runs the libFuzzer targets in fuzz/ instead.
#[test]
fn fuzz_mutated_images() {
    let seed = env_u64("CKPT_FUZZ_SEED").unwrap_or(0xc4e_c4f0);
    let secs = env_u64("CKPT_FUZZ_SECS");
    let iterations = env_u64("CKPT_FUZZ_ITERS").unwrap_or(if secs.is_some() { u64::MAX } else { 200_000 });
    let deadline = secs.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    let start = std::time::Instant::now();
    let rep = run_fuzz(seed, iterations, deadline);
    std::println!(
        "fuzz: seed {seed:#x}, {} images in {:.1?}: {} accepted, {} rejected",
        rep.iterations,
        start.elapsed(),
        rep.accepted,
        rep.rejected.values().sum::<u64>()
    );
    for (why, n) in &rep.rejected {
        std::println!("  {n:>8}  {why}");
    }
    let mut msg = String::new();
    for f in rep.failures.values() {
        msg += &format!(
            "\n{} images, first at iteration {}: {}\n  mutations: {}\n  image: {}",
            f.count,
            f.iteration,
            f.what,
            f.mutations.join("; "),
            f.saved
        );
    }
    assert!(
        rep.failures.is_empty(),
        "{} kinds of failure in mutated images (seed {seed:#x}):{msg}",
        rep.failures.len()
    );
    // Sanity: the mutations get past the checksums to the record checks.
    assert!(
        rep.rejected.keys().filter(|k| k.starts_with("Bad")).count() >= 20,
        "{:?}",
        rep.rejected
    );
}

/// `CKPT_FUZZ_SEED_DIR=DIR cargo test -p ckpt-format write_fuzz_seed_corpus` writes
/// the base images into DIR as the libFuzzer seed corpus (`make fuzz` does this).
#[test]
fn write_fuzz_seed_corpus() {
    let Some(dir) = std::env::var_os("CKPT_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, img) in base_images().iter().enumerate() {
        std::fs::write(dir.join(format!("valid-{i}.img")), img).unwrap();
    }
}

#[test]
fn rejects_malformed_seccomp_section() {
    for (bytes, what) in [
        (vec![1u8, 0, 0], "seccomp section truncated"),
        (vec![0u8; 8], "seccomp filter length invalid"),
        (vec![3u8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8], "seccomp filter length invalid"),
    ] {
        let mut p = valid_parts();
        p.seccomp = bytes;
        let img = build(&p);
        expect(&img, FormatError::BadMm { what });
    }
}

#[test]
fn run_flags_are_checked() {
    // Unknown run flag bits.
    let img = image_with(|p| p.runs[0].flags = 1 << 7);
    expect(&img, BR(0, "unknown flags"));
    // Clean file pages belong to private file mappings only.
    let heap_run = valid_parts().runs.iter().position(|r| r.vma as usize == V_HEAP).expect("a heap run");
    let img = image_with(|p| p.runs[heap_run].flags = crate::RUN_FILE_CLEAN);
    expect(&img, BR(heap_run as u32, "clean file pages outside a private file mapping"));
    // ... where they are accepted.
    let code_run = valid_parts().runs.iter().position(|r| r.vma as usize == V_CODE).expect("a code run");
    let img = image_with(|p| p.runs[code_run].flags = crate::RUN_FILE_CLEAN);
    assert_eq!(validate(&img), Ok(()));
    // ... but not in a mapping whose clean pages come from its file.
    let img = image_with(|p| {
        p.runs[code_run].flags = crate::RUN_FILE_CLEAN;
        p.vmas[V_CODE].flags |= VMA_FILE_REF;
    });
    expect(&img, BR(code_run as u32, "clean file pages stored for a mapping that takes them from its file"));
}

#[test]
fn file_reference_only_on_private_file_mappings() {
    let img = image_with(|p| p.vmas[V_CODE].flags |= VMA_FILE_REF);
    assert_eq!(validate(&img), Ok(()));
    for v in [V_HEAP, V_SHFILE, V_SHANON] {
        expect(
            &image_with(|p| p.vmas[v].flags |= VMA_FILE_REF),
            BV(v as u32, "file reference on a mapping that is not a private file mapping"),
        );
    }
}

// ---------------------------------------------------------------------------
// Tables::parse: the kernel state

fn with_kernel(f: impl FnOnce(&mut KernelState)) -> Vec<u8> {
    image_with(|p| f(p.kernel.as_mut().unwrap()))
}

#[test]
fn kernel_state_is_optional() {
    let img = image_with(|p| p.kernel = None);
    let h = check_header(&img, img.len() as u64).unwrap();
    let (lo, hi) = tables_span(&h);
    let buf = Aligned::new(&img[lo as usize..hi as usize]);
    assert!(Tables::parse(&h, buf.bytes(), lo, false).unwrap().kernel.is_none());
    // Without clocks, every clock must be zero.
    let img = with_kernel(|k| (k.flags, k.clocks) = (0, [0; NCLOCKS]));
    let h = check_header(&img, img.len() as u64).unwrap();
    let (lo, hi) = tables_span(&h);
    let buf = Aligned::new(&img[lo as usize..hi as usize]);
    assert!(Tables::parse(&h, buf.bytes(), lo, false).is_ok());
}

#[test]
fn kernel_state_unknown_flags() {
    expect(&with_kernel(|k| k.flags |= 1 << 5), FormatError::BadKernel { what: "unknown flags" });
}

#[test]
fn kernel_state_clocks_without_flag() {
    expect(
        &with_kernel(|k| k.flags = 0),
        FormatError::BadKernel { what: "clock values without the flag that says they were read" },
    );
}

#[test]
fn kernel_state_clock_out_of_range() {
    for i in 0..NCLOCKS {
        expect(&with_kernel(|k| k.clocks[i] = MAX_CLOCK_NS), FormatError::BadKernel { what: "clock value out of range" });
    }
}

#[test]
fn kernel_state_monotonic_ahead_of_boottime() {
    expect(
        &with_kernel(|k| k.clocks[CLK_MONOTONIC] = k.clocks[CLK_BOOTTIME] + 1),
        FormatError::BadKernel { what: "monotonic clock ahead of the boot time clock" },
    );
}

// ---------------------------------------------------------------------------
// process trees

fn with_tree(f: impl FnOnce(&mut ImageParts)) -> Vec<u8> {
    let mut p = valid_parts();
    f(&mut p.img);
    build(&p)
}

const BTP: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadTree { index, what };
const BTO: fn(u32, &'static str) -> FormatError = |index, what| FormatError::BadTreeObject { index, what };

#[test]
fn tree_root_must_be_this_image() {
    expect(&with_tree(|p| p.tree_procs[0].pid = 9), BTP(0, "the root is not the process this image restores"));
    expect(&with_tree(|p| p.tree_procs[0].flags = TREE_ZOMBIE), BTP(0, "the root is a zombie or has an image of its own"));
}

#[test]
fn tree_pids_and_parents() {
    expect(&with_tree(|p| p.tree_procs[2].pid = 4243), BTP(2, "process id zero, out of range or repeated"));
    expect(&with_tree(|p| p.tree_procs[1].ppid = 4244), BTP(1, "parent not before its child in the tree"));
    expect(&with_tree(|p| p.tree_procs[2].ppid = 4244), BTP(2, "parent not before its child in the tree"));
    expect(&with_tree(|p| p.tree_procs[1].flags = 8), BTP(1, "unknown process flags"));
    expect(&with_tree(|p| p.tree_procs[1].nslots = 9), BTP(1, "slot range differs from the root's"));
    expect(&with_tree(|p| p.tree_procs[1]._reserved = 1), BTP(1, "reserved field not zero"));
    let fg = "a foreground group on no session leader, or no group of its session in the tree";
    expect(&with_tree(|p| p.tree_procs[1].fg_pgid = 4242), BTP(1, fg));
    expect(&with_tree(|p| p.tree_procs[0].fg_pgid = 4242), BTP(0, fg));
    expect(
        &with_tree(|p| {
            (p.tree_procs[1].sid, p.tree_procs[1].pgid) = (4243, 4243);
            p.tree_procs[1].fg_pgid = 4242;
        }),
        BTP(1, fg),
    );
    assert!(validate(&with_tree(|p| {
        (p.tree_procs[1].sid, p.tree_procs[1].pgid, p.tree_procs[1].fg_pgid) = (4243, 4243, 4243);
    }))
    .is_ok());
}

#[test]
fn tree_images_and_zombies() {
    expect(&with_tree(|p| p.tree_procs[1].image_len = 0), BTP(1, "process image missing, misaligned or out of range"));
    expect(&with_tree(|p| p.tree_procs[1].image_off = 100), BTP(1, "process image missing, misaligned or out of range"));
    expect(&with_tree(|p| p.tree_procs[2].image_len = 4096), BTP(2, "a zombie with an image"));
    expect(
        &with_tree(|p| p.tree_procs.push(TreeProc { pid: 4245, ppid: 4244, ..p.tree_procs[1] })),
        BTP(3, "a zombie has children"),
    );
}

#[test]
fn tree_slots() {
    expect(
        &with_tree(|p| p.tree_procs.iter_mut().for_each(|t| t.slot_base = 1)),
        BTP(0, "slot range below fd 3, too small or out of range"),
    );
    expect(&with_tree(|p| p.tree_objects[0].slot = 507), BTO(0, "slot out of order or outside the tree's slots"));
    expect(
        &with_tree(|p| p.tree_procs.iter_mut().for_each(|t| t.nslots = 7)),
        BTO(0, "slot out of order or outside the tree's slots"),
    );
}

#[test]
fn tree_objects_checked() {
    expect(&with_tree(|p| p.tree_objects[0].kind = 9), BTO(0, "unknown tree object kind"));
    expect(&with_tree(|p| p.tree_objects[0].creator = 4243), BTO(0, "created by another process than the root"));
    expect(&with_tree(|p| p.tree_objects[0].flags = 4), BTO(0, "unknown object flags"));
    expect(&with_tree(|p| p.tree_objects[0].data_len = 13), BTO(0, "bytes outside the tree data or beyond the pipe's capacity"));
    expect(&with_tree(|p| p.tree_objects[0].capacity = 4), BTO(0, "bytes outside the tree data or beyond the pipe's capacity"));
    expect(
        &with_tree(|p| {
            p.tree_objects[0].kind = TREE_OBJ_MEMORY;
            p.tree_objects[0].capacity = 0;
            p.tree_objects[0].data_len = 0;
        }),
        BTO(0, "memory of no size or beyond the largest file offset"),
    );
    expect(
        &with_tree(|p| {
            p.tree_objects[0].kind = TREE_OBJ_ROOT_FD;
            p.tree_objects[0].capacity = 0;
            p.tree_objects[0].data_len = 0;
        }),
        BTO(0, "names no fd the root makes (above 2, or not the resumer's), or carries bytes"),
    );
    // Fd 1 is a regular file the root reopens, not the resumer's: it may be shared.
    let stdio_file = with_tree(|p| {
        (p.tree_objects[0].kind, p.tree_objects[0].capacity, p.tree_objects[0].data_len) = (TREE_OBJ_ROOT_FD, 1, 0);
    });
    assert!(!matches!(validate(&stdio_file), Err(FormatError::BadTreeObject { .. })));
    expect(
        &with_tree(|p| p.tree_procs.clear()),
        BTO(0, "tree objects without tree processes"),
    );
}

#[test]
fn tree_root_fd_hidden_flag() {
    let root_fd = |flags: u32| {
        with_tree(|p| {
            let fd = p.fds.iter().find(|f| f.fd > 2).unwrap().fd;
            let o = &mut p.tree_objects[0];
            (o.kind, o.capacity, o.data_len, o.flags) = (TREE_OBJ_ROOT_FD, fd as u64, 0, flags);
        })
    };
    assert!(!matches!(validate(&root_fd(TREE_ROOT_FD_HIDDEN)), Err(FormatError::BadTreeObject { .. })));
    expect(&root_fd(TREE_ROOT_FD_HIDDEN | 1), BTO(0, "unknown object flags"));
}

#[test]
fn tree_fd_names_a_slot() {
    let img = with_tree(|p| {
        let f = p.fds.iter_mut().find(|f| f.kind == FdKind::Path as u32).unwrap();
        f.kind = FdKind::Tree as u32;
        f.aux[0] = 2;
        f.data_len = 0;
    });
    assert!(matches!(validate(&img), Err(FormatError::BadFd { what: "tree fd naming no slot, or with data of its own", .. })));
}

#[test]
fn tree_fd_flags() {
    let tree_fd = |flags: u64| {
        with_tree(|p| {
            let f = p.fds.iter_mut().find(|f| f.kind == FdKind::Path as u32).unwrap();
            f.kind = FdKind::Tree as u32;
            f.aux = [500, 0, flags, 0, 0, 0];
            (f.data_len, f.path_off, f.path_len) = (0, 0, 0);
        })
    };
    assert!(matches!(validate(&tree_fd(2)), Err(FormatError::BadFd { what: "tree fd with unknown flags", .. })));
    assert!(!matches!(validate(&tree_fd(TREE_FD_PTY_PEER)), Err(FormatError::BadFd { .. })));
}
