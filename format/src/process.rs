//! Process-wide state around the memory: signal dispositions, pending signals,
//! timers, limits, and the small per-process settings (umask, personality, comm,
//! cwd, prctl flags). Read at freeze time by syscalls injected into the task, and
//! applied by the stub before the final jump.

/// One signal's disposition (the kernel's struct sigaction for rt_sigaction(2)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// Process flags (`Process::flags`).
pub const PROC_NO_NEW_PRIVS: u32 = 1 << 0;
pub const PROC_THP_DISABLE: u32 = 1 << 1;
/// stdin was a terminal: `termios` holds its settings (struct termios, TCGETS).
pub const PROC_HAVE_TTY: u32 = 1 << 2;
/// The working directory had been removed (/proc/PID/cwd ends in " (deleted)"):
/// `cwd` is the path it had, `cwd_mode` its permission bits; the resume makes an
/// empty directory, enters it and removes it again.
pub const PROC_CWD_DELETED: u32 = 1 << 3;
/// The fields below were read (an image may be written without them).
pub const PROC_HAVE_STATE: u32 = 1 << 31;

/// Number of resource limits (RLIMIT_NLIMITS).
pub const NLIMITS: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Process {
    pub flags: u32,
    pub umask: u32,
    pub personality: u32,
    pub pdeathsig: u32,
    pub dumpable: u32,
    pub cwd_off: u32,
    pub cwd_len: u32,
    /// Permission bits of a removed working directory (PROC_CWD_DELETED), else 0.
    pub cwd_mode: u32,
    pub comm: [u8; 16],
    /// Signals 1..=64 at index signo - 1.
    pub sigactions: [SigAction; 64],
    /// (soft, hard) per resource.
    pub rlimits: [[u64; 2]; NLIMITS],
    /// ITIMER_REAL, VIRTUAL, PROF: interval (s, us), value (s, us).
    pub itimers: [[u64; 4]; 3],
    /// The terminal settings of stdin (kernel struct termios, 36 bytes, padded).
    pub termios: [u8; 40],
    /// Its window size (struct winsize: rows, cols, xpixel, ypixel).
    pub winsize: [u16; 4],
}

impl Default for Process {
    fn default() -> Self {
        Process {
            flags: 0,
            umask: 0o022,
            personality: 0,
            pdeathsig: 0,
            dumpable: 1,
            cwd_off: 0,
            cwd_len: 0,
            cwd_mode: 0,
            comm: [0; 16],
            sigactions: [SigAction::default(); 64],
            rlimits: [[u64::MAX; 2]; NLIMITS],
            itimers: [[0; 4]; 3],
            termios: [0; 40],
            winsize: [0; 4],
        }
    }
}

/// A queued signal, re-sent with rt_tgsigqueueinfo(2) / rt_sigqueueinfo(2).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingSignal {
    /// 0: directed at the process (rt_sigqueueinfo); otherwise the saved id of the
    /// thread it is directed at (rt_tgsigqueueinfo).
    pub thread: u32,
    pub signo: u32,
    /// The kernel's siginfo_t (128 bytes).
    pub info: [u64; 16],
}

/// sigevent notify flag: deliver to the thread `notify_tid` (timer_create(2)).
pub const SIGEV_THREAD_ID: i32 = 4;

/// A POSIX timer (timer_create(2)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    /// sigevent: notify (SIGEV_*), signal, value.
    pub notify: i32,
    pub signo: i32,
    pub sigval: u64,
    pub notify_tid: i32,
    pub _pad: i32,
    /// Remaining (s, ns) and interval (s, ns).
    pub value: [u64; 2],
    pub interval: [u64; 2],
}

/// One registration of an epoll instance (epoll_ctl(2) EPOLL_CTL_ADD).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EpollEntry {
    pub epfd: i32,
    pub fd: i32,
    pub events: u32,
    pub _pad: u32,
    pub data: u64,
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    #[test]
    fn sizes_are_pinned() {
        assert_eq!(size_of::<super::SigAction>(), 32);
        assert_eq!(size_of::<super::Process>(), 32 + 16 + 64 * 32 + 16 * 16 + 3 * 32 + 40 + 8);
        assert_eq!(size_of::<super::PendingSignal>(), 8 + 128);
        assert_eq!(size_of::<super::PosixTimer>(), 32 + 32);
        assert_eq!(size_of::<super::EpollEntry>(), 24);
    }
}
