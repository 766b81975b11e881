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
/// `oom_score_adj`, `ioprio`, `membarrier` and the groups were read.
pub const PROC_HAVE_IDENTITY: u32 = 1 << 3;
/// The working directory had been removed (/proc/PID/cwd ends in " (deleted)"):
/// `cwd` is the path it had, `cwd_mode` its permission bits; the resume makes an
/// empty directory, enters it and removes it again.
pub const PROC_CWD_DELETED: u32 = 1 << 4;
/// The fields below were read (an image may be written without them).
pub const PROC_HAVE_STATE: u32 = 1 << 31;

/// `Process::membarrier` bits: the membarrier(2) registration commands the process
/// had made (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, _SYNC_CORE, _RSEQ).
pub const MEMBARRIER_REGISTER_PRIVATE_EXPEDITED: u32 = 1 << 4;
pub const MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u32 = 1 << 6;
pub const MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_RSEQ: u32 = 1 << 8;
pub const MEMBARRIER_KNOWN: u32 =
    MEMBARRIER_REGISTER_PRIVATE_EXPEDITED | MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE | MEMBARRIER_REGISTER_PRIVATE_EXPEDITED_RSEQ;
/// Most supplementary groups (NGROUPS_MAX).
pub const MAX_GROUPS: u32 = 65_536;

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
    /// /proc/PID/oom_score_adj (-1000..=1000).
    pub oom_score_adj: i32,
    /// ioprio_get(2) of the process: class << 13 | level; 0 when never set.
    pub ioprio: u32,
    /// MEMBARRIER_REGISTER_* bits.
    pub membarrier: u32,
    /// Supplementary group ids, u32 each (native endian), in the Strings section.
    pub groups_off: u32,
    pub groups_len: u32,
    pub _pad2: u32,
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
            oom_score_adj: 0,
            ioprio: 0,
            membarrier: 0,
            groups_off: 0,
            groups_len: 0,
            _pad2: 0,
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

/// `FileLock::kind`: flock(2), owned by the open file description.
pub const LOCK_FLOCK: u32 = 1;
/// `FileLock::kind`: a POSIX record lock (fcntl(2) F_SETLK), owned by the process.
pub const LOCK_POSIX: u32 = 2;
/// `FileLock::kind`: an open file description lock (fcntl(2) F_OFD_SETLK).
pub const LOCK_OFD: u32 = 3;

/// A file lock the process held, taken again through fd `fd` before any of its
/// code runs (from /proc/PID/fdinfo's `lock:` lines).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileLock {
    pub fd: i32,
    /// LOCK_FLOCK, LOCK_POSIX or LOCK_OFD.
    pub kind: u32,
    /// 1: a write (exclusive) lock; 0: a read (shared) one.
    pub write: u32,
    pub _pad: u32,
    /// First byte; 0 for flock.
    pub start: u64,
    /// Bytes; 0: to the end of the file, however far it grows (flock: always 0).
    pub len: u64,
}

/// `SocketState::shutdown`: the receive side is shut (SHUT_RD, or the peer's SHUT_WR).
pub const SHUT_RCV: u32 = 1;
/// `SocketState::shutdown`: the send side is shut (SHUT_WR, or the peer's SHUT_RD).
pub const SHUT_SEND: u32 = 2;
/// `SocketState::flags`: SO_PASSCRED is on.
pub const SOCK_PASSCRED: u32 = 1 << 0;
/// `SocketState::flags`: SO_LINGER is on, for `linger` seconds.
pub const SOCK_LINGER: u32 = 1 << 1;
/// `SocketState::flags`: SO_KEEPALIVE is on.
pub const SOCK_KEEPALIVE: u32 = 1 << 2;
/// `SocketState::flags`: SO_REUSEADDR is on.
pub const SOCK_REUSEADDR: u32 = 1 << 3;
/// `SocketState::flags`: SO_REUSEPORT is on.
pub const SOCK_REUSEPORT: u32 = 1 << 4;
/// Every `SocketState::flags` bit this version knows.
pub const SOCK_FLAGS_KNOWN: u32 = SOCK_PASSCRED | SOCK_LINGER | SOCK_KEEPALIVE | SOCK_REUSEADDR | SOCK_REUSEPORT;
/// Longest SO_RCVTIMEO/SO_SNDTIMEO kept, in microseconds (a timeval's seconds fit an
/// int; socket(7) turns larger ones into "never").
pub const SOCK_MAX_TIMEO_US: u64 = i32::MAX as u64 * 1_000_000;

/// What a socket the image creates had besides its Fd record, set again after the
/// socket exists and its queued data is back (socket(7)).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketState {
    pub fd: i32,
    /// SHUT_RCV | SHUT_SEND, as sk_shutdown (sock_diag's UNIX_DIAG_SHUTDOWN).
    pub shutdown: u32,
    /// SO_SNDBUF / SO_RCVBUF as getsockopt reports them (twice what was set);
    /// 0: a new socket's default, left alone.
    pub sndbuf: u32,
    pub rcvbuf: u32,
    /// SOCK_PASSCRED, SOCK_LINGER, SOCK_KEEPALIVE, SOCK_REUSEADDR, SOCK_REUSEPORT.
    pub flags: u32,
    /// SO_LINGER seconds (0 unless SOCK_LINGER).
    pub linger: u32,
    /// SO_RCVTIMEO / SO_SNDTIMEO in microseconds; 0: none.
    pub rcvtimeo_us: u64,
    pub sndtimeo_us: u64,
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    #[test]
    fn sizes_are_pinned() {
        assert_eq!(size_of::<super::SigAction>(), 32);
        assert_eq!(size_of::<super::Process>(), 32 + 16 + 64 * 32 + 16 * 16 + 3 * 32 + 40 + 8 + 24);
        assert_eq!(size_of::<super::PendingSignal>(), 8 + 128);
        assert_eq!(size_of::<super::PosixTimer>(), 32 + 32);
        assert_eq!(size_of::<super::EpollEntry>(), 24);
        assert_eq!(size_of::<super::FileLock>(), 32);
        assert_eq!(size_of::<super::SocketState>(), 40);
    }
}
