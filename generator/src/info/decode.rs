//! Turning the image's numbers into words for `info`: protections, VMA and open
//! flags, signal sets, system call numbers and error codes. Only what a reader of a
//! frozen process needs; anything unknown is shown as a number.

use ckpt_format::*;

/// `rwxp` / `rwxs` like /proc/PID/maps.
pub fn perms(prot: u32, kind: Option<VmaKind>) -> String {
    let shared = matches!(kind, Some(VmaKind::SharedAnon | VmaKind::SharedFile | VmaKind::SharedObject));
    [
        if prot & PROT_READ != 0 { 'r' } else { '-' },
        if prot & PROT_WRITE != 0 { 'w' } else { '-' },
        if prot & PROT_EXEC != 0 { 'x' } else { '-' },
        if shared { 's' } else { 'p' },
    ]
    .iter()
    .collect()
}

/// The names of `Vma::flags` bits.
pub fn vma_flags(flags: u32) -> Vec<&'static str> {
    [
        (VMA_GROWSDOWN, "growsdown"),
        (VMA_HUGEPAGE, "hugepage"),
        (VMA_NOHUGEPAGE, "nohugepage"),
        (VMA_DONTFORK, "dontfork"),
        (VMA_DONTDUMP, "dontdump"),
        (VMA_LOCKED, "locked"),
        (VMA_NORESERVE, "noreserve"),
        (VMA_SEQ_READ, "sequential"),
        (VMA_RAND_READ, "random"),
        (VMA_MERGEABLE, "mergeable"),
        (VMA_WIPEONFORK, "wipeonfork"),
        (VMA_LOCKONFAULT, "lockonfault"),
        (VMA_FILE_REF, "pages from the file"),
    ]
    .iter()
    .filter(|(b, _)| flags & b != 0)
    .map(|(_, n)| *n)
    .collect()
}

/// open(2) flags as `O_WRONLY|O_APPEND`.
pub fn open_flags(flags: u32) -> String {
    let f = flags as i32;
    let mut out = vec![match f & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY".to_owned(),
        libc::O_WRONLY => "O_WRONLY".to_owned(),
        libc::O_RDWR => "O_RDWR".to_owned(),
        other => format!("accmode {other}"),
    }];
    // The kernel's O_LARGEFILE (libc's is 0 on x86_64): always set for 64-bit
    // processes, so it says nothing here.
    const KERNEL_O_LARGEFILE: i32 = 0o100000;
    let mut rest = f & !libc::O_ACCMODE & !KERNEL_O_LARGEFILE;
    for (bit, name) in [
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_SYNC, "O_SYNC"), // includes the O_DSYNC bit: test it first
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_PATH, "O_PATH"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_ASYNC, "O_ASYNC"),
    ] {
        if rest & bit == bit && bit != 0 {
            out.push(name.to_owned());
            rest &= !bit;
        }
    }
    if rest != 0 {
        out.push(format!("{rest:#o}"));
    }
    out.join("|")
}

const SIGNALS: [&str; 31] = [
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
    "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP",
    "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
    "SIGIO", "SIGPWR", "SIGSYS",
];

/// Name of signal `n` (1-64); real-time signals are `SIG32`..`SIG64`, as the
/// kernel numbers them (libc reserves some and shifts SIGRTMIN).
pub fn signal_name(n: u32) -> String {
    match n {
        1..=31 => SIGNALS[n as usize - 1].to_owned(),
        _ => format!("SIG{n}"),
    }
}

/// The signals of a mask where bit n-1 stands for signal n.
pub fn signal_set(mask: u64) -> Vec<String> {
    (1..=64).filter(|n| mask & (1u64 << (n - 1)) != 0).map(signal_name).collect()
}

macro_rules! syscalls {
    ($($name:ident),* $(,)?) => {
        &[$((libc::$name, stringify!($name)),)*]
    };
}

/// System calls a frozen process is typically found in (or just after).
static SYSCALLS: &[(i64, &str)] = syscalls![
    SYS_read, SYS_write, SYS_open, SYS_close, SYS_poll, SYS_lseek, SYS_mmap, SYS_mprotect, SYS_munmap,
    SYS_brk, SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_ioctl, SYS_pread64, SYS_pwrite64,
    SYS_readv, SYS_writev, SYS_select, SYS_sched_yield, SYS_msync, SYS_madvise, SYS_pause, SYS_nanosleep,
    SYS_alarm, SYS_sendfile, SYS_connect, SYS_accept, SYS_sendto, SYS_recvfrom, SYS_sendmsg, SYS_recvmsg,
    SYS_clone, SYS_fork, SYS_vfork, SYS_execve, SYS_exit, SYS_wait4, SYS_kill, SYS_semop, SYS_msgsnd,
    SYS_msgrcv, SYS_fcntl, SYS_flock, SYS_fsync, SYS_fdatasync, SYS_getdents64, SYS_rt_sigsuspend,
    SYS_rt_sigtimedwait, SYS_sigaltstack, SYS_futex, SYS_epoll_wait, SYS_epoll_pwait, SYS_epoll_pwait2,
    SYS_semtimedop, SYS_clock_nanosleep, SYS_exit_group, SYS_waitid, SYS_openat, SYS_pselect6, SYS_ppoll,
    SYS_accept4, SYS_recvmmsg, SYS_sendmmsg, SYS_preadv, SYS_pwritev, SYS_preadv2, SYS_pwritev2,
    SYS_getrandom, SYS_io_uring_enter, SYS_rseq, SYS_sched_getaffinity, SYS_getpid, SYS_gettid,
    SYS_clock_gettime, SYS_gettimeofday, SYS_splice, SYS_tee, SYS_copy_file_range, SYS_mq_timedreceive,
    SYS_mq_timedsend, SYS_io_getevents, SYS_pidfd_open, SYS_inotify_init1, SYS_signalfd4,
    SYS_timerfd_settime, SYS_eventfd2, SYS_epoll_create1, SYS_pipe2, SYS_dup3, SYS_socket, SYS_restart_syscall,
];

/// The name of x86_64 system call `nr` if it is in the table above.
pub fn syscall_name(nr: u64) -> Option<&'static str> {
    SYSCALLS.iter().find(|(n, _)| *n as u64 == nr).map(|(_, s)| s.trim_start_matches("SYS_"))
}

/// Name of an error number as a system call returns it (-errno), including the
/// kernel-internal restart codes a stopped task may show.
pub fn errno_name(e: i64) -> Option<&'static str> {
    Some(match e {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        5 => "EIO",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        22 => "EINVAL",
        32 => "EPIPE",
        38 => "ENOSYS",
        110 => "ETIMEDOUT",
        512 => "ERESTARTSYS",
        513 => "ERESTARTNOINTR",
        514 => "ERESTARTNOHAND",
        516 => "ERESTART_RESTARTBLOCK",
        _ => return None,
    })
}

/// Bytes as a short human-readable size: `512 B`, `4 KiB`, `1.5 MiB`.
pub fn human(n: u64) -> String {
    const K: u64 = 1024;
    let unit = |div: u64, name: &str| {
        if n.is_multiple_of(div) {
            format!("{} {name}", n / div)
        } else {
            format!("{:.1} {name}", n as f64 / div as f64)
        }
    };
    match n {
        _ if n >= K * K * K => unit(K * K * K, "GiB"),
        _ if n >= K * K => unit(K * K, "MiB"),
        _ if n >= K => unit(K, "KiB"),
        _ => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_like_proc_maps() {
        assert_eq!(perms(PROT_READ | PROT_EXEC, Some(VmaKind::FilePrivate)), "r-xp");
        assert_eq!(perms(PROT_READ | PROT_WRITE, Some(VmaKind::SharedAnon)), "rw-s");
        assert_eq!(perms(0, Some(VmaKind::Anon)), "---p");
    }

    #[test]
    fn flags_and_signals() {
        assert_eq!(vma_flags(VMA_GROWSDOWN | VMA_DONTDUMP), ["growsdown", "dontdump"]);
        assert_eq!(open_flags((libc::O_WRONLY | libc::O_APPEND | 0o100000) as u32), "O_WRONLY|O_APPEND");
        assert_eq!(open_flags((libc::O_RDONLY | libc::O_SYNC) as u32), "O_RDONLY|O_SYNC");
        assert_eq!(open_flags(libc::O_RDWR as u32), "O_RDWR");
        assert_eq!(signal_set((1 << 9) | (1 << 12)), ["SIGUSR1", "SIGPIPE"]);
        assert_eq!(signal_set(1 << 63), ["SIG64"]);
    }

    #[test]
    fn syscall_and_errno_names() {
        assert_eq!(syscall_name(34), Some("pause"));
        assert_eq!(syscall_name(230), Some("clock_nanosleep"));
        assert_eq!(syscall_name(0), Some("read"));
        assert_eq!(syscall_name(219), Some("restart_syscall"));
        assert_eq!(syscall_name(100_000), None);
        assert_eq!(errno_name(516), Some("ERESTART_RESTARTBLOCK"));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(4096), "4 KiB");
        assert_eq!(human(1536 * 1024), "1.5 MiB");
        assert_eq!(human(3 << 30), "3 GiB");
    }
}
