//! The ckpt image format: the contract between the generator (which writes it), the
//! linker (which places it after the restorer stub) and the stub (which reads it).
//!
//! Everything here is plain `#[repr(C)]` data with explicit widths, so the stub can use
//! it without parsing, allocation or formatting. Every record is validated on read.
//!
//! # Layout of an image (the raw `.ckpt` file, or the tail of a `.resume` ELF)
//! ```text
//! 0            Header (HEADER_SIZE bytes, padded to one page)
//!                magic "CKPTIMG\x01", version, sizes, CPU needs,
//!                section table [Section; MAX_SECTIONS], header checksum
//! 4096         page data: one run after another, each 4 KiB aligned,
//!              each with its own crc32c in its PageRun record; in a compressed
//!              image (HDR_COMPRESSED) the runs' chunks, packed (compress.rs)
//! tables       Threads, Vmas, PageRuns, Mm, Fds, Strings, Xstate, Vdso, Process,
//!              Signals, Timers, Epoll, Seccomp, Locks, Files, Extents, Sockets,
//!              Kernel, SockOpts, VdsoSyms, TreeProcs, TreeObjects, TreeData,
//!              WorkingSet, Chunks (SectionKind order; a tree's other processes' own images follow
//!              the image, see tree.rs):
//!              each section 8-byte aligned and checked by its own crc32c
//! ```
//! All offsets are relative to the start of the image (the header). In a `.resume`
//! ELF the image starts at a page-aligned file offset, so every page run is page
//! aligned in the file too and can be `pread` straight into place.
//!
//! Compatibility: `version` changes whenever a record's layout changes; a reader
//! accepts exactly [`VERSION`]. Unknown section kinds are rejected.
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

// write.rs names this crate as `ckpt_format`, as it is named where write.rs is
// compiled in by path (the generator, the fuzz targets).
#[cfg(test)]
extern crate self as ckpt_format;

pub mod compat;
mod compress;
#[cfg(test)] mod compat_tests;
pub mod crc32c;
mod kernel;
mod process;
pub mod pty;
mod records;
pub mod sockopts;
mod tree;
mod validate;
mod vdso;
#[cfg(test)] mod vdso_tests;
mod working_set;
#[cfg(test)] mod tests;
/// The image writer. Not part of the library: it needs an allocator and the stub,
/// which links this crate, has none. The generator and the fuzz targets compile the
/// same file in with `#[path]`; here it serves the tests.
#[cfg(test)]
pub mod write;

pub use compress::{chunk_at, chunk_end, PageChunk, COMPRESS_CHUNK, HDR_COMPRESSED, MAX_CHUNKS};
pub use kernel::*;
pub use process::*;
pub use records::*;
pub use sockopts::{SockOpt, MAX_SOCKOPTS};
pub use tree::*;
pub use validate::*;
pub use vdso::*;
pub use working_set::{WorkingSetRange, MAX_WORKING_SET};

/// First bytes of every image. Deliberately not `\x7fELF`, so binfmt_misc can tell a
/// raw image from the self-contained executable.
pub const MAGIC: [u8; 8] = *b"CKPTIMG\x01";
/// Layout version; bump on any change to a record.
pub const VERSION: u32 = 3;
/// The only page size this format supports (x86_64).
pub const PAGE_SIZE: u64 = 4096;
/// Where page data starts, relative to the image.
pub const DATA_START: u64 = PAGE_SIZE;
/// Highest user address on x86_64 with 4-level paging (TASK_SIZE_MAX).
pub const USER_TOP: u64 = 0x7fff_ffff_f000;
/// Name of the ELF note (and note type) that points at the image inside a `.resume`.
pub const NOTE_NAME: &[u8] = b"CKPT";
pub const NOTE_TYPE_IMAGE: u32 = 0x434b_5031;

/// Upper bounds checked on read, so a corrupted count cannot make the stub walk off.
pub const MAX_THREADS: u32 = 4096;
pub const MAX_VMAS: u32 = 65_536;
pub const MAX_RUNS: u32 = 1 << 24;
pub const MAX_FDS: u32 = 4096;
pub const MAX_STRINGS: u64 = 1 << 20;
pub const MAX_XSTATE: u32 = 16_384;
pub const MAX_VDSO: u64 = 1 << 20;
pub const MAX_AUXV: usize = 64;
pub const MAX_SIGNALS: u32 = 4096;
pub const MAX_TIMERS: u32 = 4096;
pub const MAX_EPOLL: u32 = 65_536;
pub const MAX_SECCOMP: u64 = 1 << 20;
pub const MAX_LOCKS: u32 = 4096;
pub const MAX_FILES: u32 = 4096;
pub const MAX_EXTENTS: u32 = 1 << 20;

/// Round `v` up to a multiple of `a` (a power of two).
pub const fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}
