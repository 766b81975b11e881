//! What phase 1 hands to phase 2 (copied into the gap with the tables).

use ckpt_format::Header;

/// An address range `[start, end)`; empty when `start == end`.
#[derive(Clone, Copy, Default)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub fn overlaps(&self, o: &Range) -> bool {
        !self.is_empty() && !o.is_empty() && self.start < o.end && o.start < self.end
    }
}

/// Index of the kernel-provided mappings in `Ctx::cur`.
pub const VVAR: usize = 0;
pub const VVAR_VCLOCK: usize = 1;
pub const VDSO: usize = 2;

pub struct Ctx {
    /// Open fd of the file holding the image, and where the image starts in it.
    pub fd: usize,
    pub image_base: u64,
    pub file_len: u64,
    pub hdr: Header,
    /// The tables: image offset they start at, and where they are in memory.
    pub tables_lo: u64,
    pub tables_addr: usize,
    pub tables_len: usize,
    /// The restorer's working area.
    pub gap_start: usize,
    pub gap_len: usize,
    /// The stacks of the threads the restorer creates (threads.rs), one after another.
    pub thread_stacks: usize,
    /// This process's own [vvar], [vvar_vclock], [vdso].
    pub cur: [Range; 3],
    pub hw_crc: bool,
    /// Try to get the original PID back (pid.rs); off with CKPT_SAME_PID=0.
    pub same_pid: bool,
    /// Replace missing or shrunk files with /dev/null instead of failing.
    pub missing_ignore: bool,
    /// Resume lazily (lazy/): CKPT_LAZY=1, or the file's HDR_LAZY unless CKPT_LAZY=0.
    pub lazy: bool,
    /// `ckpt profile`: the fd (>= 3) the lazy helper writes the faulting addresses
    /// to (CKPT_LAZY_PROFILE_FD), or 0.
    pub profile_fd: usize,
    /// Offsets (ns) of CLOCK_MONOTONIC and CLOCK_BOOTTIME for a time namespace,
    /// when probe.rs found this machine's clocks behind the freeze's; zero if not.
    pub timens: [u64; 2],
    /// This kernel's vdso is another build: the old one's functions become jumps
    /// (trampoline.rs) instead of moving this one into place (vdso.rs).
    pub vdso_trampolines: bool,
    /// The image is inside this executable (a `.resume`), not a raw image file.
    pub embedded: bool,
    /// Process trees (tree.rs): this process's image offset from the tree data
    /// start (0 for the root), its tree fds `[tree_slot_base, +tree_nslots)`
    /// (0, 0 outside a tree), and whether the root forked it.
    pub tree_at: u64,
    pub tree_slot_base: usize,
    pub tree_nslots: usize,
    pub tree_member: bool,
    /// A session leader of a tree: its terminal's foreground group to set once
    /// the tree is released (0: none).
    pub tree_fg: u32,
}

impl Ctx {
    pub fn zeroed() -> Ctx {
        // SAFETY: every field is an integer, a bool or an array of them; all-zero is
        // a valid value for each (false for the bool).
        unsafe { core::mem::zeroed() }
    }

    pub fn tables(&self) -> &'static [u8] {
        // SAFETY: tables_addr/len describe the copy made by gap::enter, which stays
        // mapped until the restorer leaves.
        unsafe { core::slice::from_raw_parts(self.tables_addr as *const u8, self.tables_len) }
    }
}
