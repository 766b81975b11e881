//! What the freezing kernel showed the process, kept so another kernel (or the same
//! one after a reboot) can continue it: the clocks the process had read at the
//! freeze, which must never appear to go backwards, and the limits that differ
//! between kernels (for the messages that name both kernels).

/// Indexes of [`KernelState::clocks`]: clock_gettime(2) clocks.
pub const CLK_REALTIME: usize = 0;
pub const CLK_MONOTONIC: usize = 1;
pub const CLK_MONOTONIC_RAW: usize = 2;
pub const CLK_MONOTONIC_COARSE: usize = 3;
pub const CLK_BOOTTIME: usize = 4;
pub const NCLOCKS: usize = 5;
/// The clock ids (linux/time.h) at those indexes.
pub const CLOCK_IDS: [u32; NCLOCKS] = [0, 1, 4, 6, 7];
/// Largest clock value a time namespace can show, in ns (KTIME_SEC_MAX / 2 seconds,
/// kernel/time/namespace.c proc_timens_set_offset), rounded down to a power of two.
pub const MAX_CLOCK_NS: u64 = 1 << 62;

/// `KernelState::flags`: `clocks` holds the process's clocks at the freeze.
pub const KERNEL_HAVE_CLOCKS: u32 = 1 << 0;
pub const KERNEL_KNOWN_FLAGS: u32 = KERNEL_HAVE_CLOCKS;

/// The freezing kernel's view (SectionKind::Kernel, one record).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    pub flags: u32,
    /// /proc/sys/kernel/pid_max at the freeze.
    pub pid_max: u32,
    /// /proc/sys/vm/mmap_min_addr at the freeze.
    pub mmap_min_addr: u64,
    /// Nanoseconds of each CLK_* clock as the process (in its time namespace) read
    /// them while it was stopped.
    pub clocks: [u64; NCLOCKS],
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_is_pinned() {
        assert_eq!(core::mem::size_of::<super::KernelState>(), 16 + 5 * 8);
    }
}
