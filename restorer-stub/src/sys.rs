//! Raw Linux system calls: the stub's only way to talk to the kernel.
//!
//! All inline `syscall` instructions live here. The x86_64 convention (syscall(2)):
//! number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx
//! and r11; a result in [-4095, -1] is -errno.
#![allow(dead_code)]

use core::arch::asm;

pub const SYS_READ: usize = 0;
pub const SYS_WRITE: usize = 1;
pub const SYS_POLL: usize = 7;
pub const SYS_OPEN: usize = 2;
pub const SYS_CLOSE: usize = 3;
pub const SYS_FSTAT: usize = 5;
pub const SYS_LSEEK: usize = 8;
pub const SYS_MMAP: usize = 9;
pub const SYS_MPROTECT: usize = 10;
pub const SYS_MUNMAP: usize = 11;
pub const SYS_RT_SIGPROCMASK: usize = 14;
pub const SYS_PREAD64: usize = 17;
pub const SYS_MREMAP: usize = 25;
pub const SYS_MADVISE: usize = 28;
pub const SYS_DUP2: usize = 33;
pub const SYS_FCNTL: usize = 72;
pub const SYS_PRCTL: usize = 157;
pub const SYS_ARCH_PRCTL: usize = 158;
pub const SYS_SET_TID_ADDRESS: usize = 218;
pub const SYS_EXIT_GROUP: usize = 231;
pub const SYS_SET_ROBUST_LIST: usize = 273;
pub const SYS_DUP3: usize = 292;
pub const SYS_RSEQ: usize = 334;
pub const SYS_CLOSE_RANGE: usize = 436;
pub const SYS_IOCTL: usize = 16;
pub const SYS_SOCKET: usize = 41;
pub const SYS_CONNECT: usize = 42;
pub const SYS_BIND: usize = 49;
pub const SYS_LISTEN: usize = 50;
pub const SYS_SOCKETPAIR: usize = 53;
pub const SYS_SETSOCKOPT: usize = 54;
pub const SYS_SHUTDOWN: usize = 48;
pub const SYS_SENDTO: usize = 44;
pub const SYS_GETSOCKNAME: usize = 51;
pub const SYS_ACCEPT4: usize = 288;
pub const SYS_GETSOCKOPT: usize = 55;
pub const SYS_FLOCK: usize = 73;
pub const SYS_UNLINK: usize = 87;
pub const SYS_FCHMOD: usize = 91;
pub const SYS_CLOCK_GETTIME: usize = 228;
pub const SYS_EPOLL_CTL: usize = 233;
pub const SYS_INOTIFY_ADD_WATCH: usize = 254;
pub const SYS_INOTIFY_RM_WATCH: usize = 255;
pub const SYS_OPENAT: usize = 257;
pub const SYS_NEWFSTATAT: usize = 262;
pub const SYS_TIMERFD_CREATE: usize = 283;
pub const SYS_TIMERFD_SETTIME: usize = 286;
pub const SYS_SIGNALFD4: usize = 289;
pub const SYS_EVENTFD2: usize = 290;
pub const SYS_EPOLL_CREATE1: usize = 291;
pub const SYS_PIPE2: usize = 293;
pub const SYS_INOTIFY_INIT1: usize = 294;
pub const SYS_MEMFD_CREATE: usize = 319;

pub const O_RDONLY: usize = 0;
pub const O_CLOEXEC: usize = 0o2000000;
pub const O_CREAT: u32 = 0o100;
pub const O_EXCL: u32 = 0o200;
pub const O_NOCTTY: u32 = 0o400;
pub const O_TRUNC: u32 = 0o1000;
pub const O_APPEND: u32 = 0o2000;
pub const O_WRONLY: u32 = 0o1;
pub const O_RDWR: u32 = 0o2;
pub const O_ACCMODE: u32 = 0o3;
pub const O_NONBLOCK: u32 = 0o4000;
pub const O_DSYNC: u32 = 0o10000;
pub const O_ASYNC: u32 = 0o20000;
pub const O_DIRECT: u32 = 0o40000;
pub const O_DIRECTORY: u32 = 0o200000;
pub const O_NOATIME: u32 = 0o1000000;
pub const O_PATH: u32 = 0o10000000;
/// O_TMPFILE = __O_TMPFILE | O_DIRECTORY (open(2)).
pub const O_TMPFILE: u32 = 0o20000000 | O_DIRECTORY;
pub const F_DUPFD_CLOEXEC: usize = 1030;
pub const F_GETFD: usize = 1;
pub const F_SETFD: usize = 2;
pub const F_GETFL: usize = 3;
pub const F_SETFL: usize = 4;
pub const FD_CLOEXEC: usize = 1;
pub const F_SETPIPE_SZ: usize = 1031;
pub const F_GETPIPE_SZ: usize = 1032;
pub const F_ADD_SEALS: usize = 1033;
pub const F_GET_SEALS: usize = 1034;
pub const SEEK_CUR: usize = 1;
pub const AT_FDCWD: isize = -100;
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFSOCK: u32 = 0o140000;
pub const MFD_ALLOW_SEALING: usize = 2;
pub const RLIMIT_NOFILE: usize = 7;
pub const RLIMIT_MEMLOCK: usize = 8;
pub const SYS_MLOCK2: usize = 325;
pub const MLOCK_ONFAULT: usize = 1;
pub const SOL_SOCKET: usize = 1;
pub const SO_REUSEADDR: usize = 2;
pub const SO_BROADCAST: usize = 6;
pub const SO_KEEPALIVE: usize = 9;
pub const SO_REUSEPORT: usize = 15;
pub const SO_SNDBUF: usize = 7;
pub const SO_RCVBUF: usize = 8;
pub const SO_LINGER: usize = 13;
pub const SO_PASSCRED: usize = 16;
pub const SO_RCVTIMEO: usize = 20;
pub const SO_SNDTIMEO: usize = 21;
pub const SO_SNDBUFFORCE: usize = 32;
pub const SO_RCVBUFFORCE: usize = 33;
pub const MSG_DONTWAIT: usize = 0x40;
pub const MSG_NOSIGNAL: usize = 0x4000;
pub const IPPROTO_IPV6: usize = 41;
pub const IPV6_V6ONLY: usize = 26;
pub const AF_UNIX: u64 = 1;
pub const SOCK_STREAM: u64 = 1;
pub const SOCK_SEQPACKET: u64 = 5;
pub const SOCK_NONBLOCK: usize = 0o4000;
pub const SHUT_RDWR: usize = 2;
pub const EPOLL_CTL_ADD: usize = 1;
/// _IOW('T', 0, u64) (include/uapi/linux/timerfd.h), CONFIG_CHECKPOINT_RESTORE.
pub const TFD_IOC_SET_TICKS: usize = 0x4008_5400;
pub const TFD_TIMER_ABSTIME: usize = 1;
pub const IN_NONBLOCK: usize = 0o4000;
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;
pub const IN_ALL_EVENTS: u32 = 0xfff;
pub const SEEK_SET: usize = 0;
pub const SEEK_END: usize = 2;

pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const PROT_EXEC: usize = 4;
pub const MAP_SHARED: usize = 0x01;
pub const MAP_PRIVATE: usize = 0x02;
pub const MAP_FIXED: usize = 0x10;
pub const MAP_ANONYMOUS: usize = 0x20;
pub const MAP_GROWSDOWN: usize = 0x100;
pub const MAP_NORESERVE: usize = 0x4000;
pub const MAP_POPULATE: usize = 0x8000;
pub const MAP_FIXED_NOREPLACE: usize = 0x100000;
pub const MREMAP_MAYMOVE: usize = 1;
pub const MREMAP_FIXED: usize = 2;

pub const MADV_RANDOM: usize = 1;
pub const MADV_SEQUENTIAL: usize = 2;
pub const MADV_MERGEABLE: usize = 12;
pub const MADV_WIPEONFORK: usize = 18;
pub const MADV_DONTFORK: usize = 10;
pub const MADV_DONTDUMP: usize = 16;
pub const MADV_HUGEPAGE: usize = 14;
pub const MADV_NOHUGEPAGE: usize = 15;
/// Allocate the range's pages now, writable (madvise(2), Linux 5.14).
pub const MADV_POPULATE_WRITE: usize = 23;

pub const PR_SET_MM: usize = 35;
pub const PR_SET_MM_MAP: usize = 14;
pub const ARCH_SET_GS: usize = 0x1001;
pub const ARCH_SET_FS: usize = 0x1002;

pub const EPERM: isize = 1;
pub const EEXIST: isize = 17;
pub const ENOSYS: isize = 38;
pub const ESRCH: isize = 3;
pub const EINTR: isize = 4;
pub const EAGAIN: isize = 11;
pub const ENXIO: isize = 6;
pub const ENOMEM: isize = 12;
pub const EBUSY: isize = 16;
pub const EADDRINUSE: isize = 98;
pub const ECONNREFUSED: isize = 111;

/// struct stat of x86_64 (arch/x86/include/uapi/asm/stat.h), 144 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Stat {
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_nlink: u64,
    pub st_mode: u32,
    pub st_uid: u32,
    pub st_gid: u32,
    pub _pad0: u32,
    pub st_rdev: u64,
    pub st_size: i64,
    pub st_blksize: i64,
    pub st_blocks: i64,
    pub st_times: [u64; 6],
    pub _unused: [i64; 3],
}

impl Stat {
    pub fn zeroed() -> Stat {
        // SAFETY: integers only; all-zero is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

/// struct epoll_event: packed on x86_64 (include/uapi/linux/eventpoll.h).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct EpollEvent {
    pub events: u32,
    pub data: u64,
}

/// # Safety
/// The caller guarantees the system call's memory arguments are valid for it.
#[inline(always)]
pub unsafe fn syscall6(n: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize, a6: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller vouches for the arguments; rcx/r11 are declared clobbered.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1, in("rsi") a2, in("rdx") a3,
             in("r10") a4, in("r8") a5, in("r9") a6, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    ret
}

/// # Safety
/// As [`syscall6`].
#[inline(always)]
pub unsafe fn syscall3(n: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    // SAFETY: as syscall6.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a1, in("rsi") a2, in("rdx") a3,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// Result of a system call: the value, or the positive errno.
pub type Res = Result<usize, isize>;

fn res(r: isize) -> Res {
    if (-4095..0).contains(&r) {
        Err(-r)
    } else {
        Ok(r as usize)
    }
}

pub fn write(fd: usize, buf: &[u8]) -> Res {
    // SAFETY: buf is a valid readable slice.
    res(unsafe { syscall3(SYS_WRITE, fd, buf.as_ptr() as usize, buf.len()) })
}

pub fn read(fd: usize, buf: &mut [u8]) -> Res {
    // SAFETY: buf is a valid writable slice.
    res(unsafe { syscall3(SYS_READ, fd, buf.as_mut_ptr() as usize, buf.len()) })
}

/// `path` must end with a NUL byte.
pub fn open(path: &[u8], flags: usize, mode: usize) -> Res {
    if path.last() != Some(&0) {
        return Err(22);
    }
    // SAFETY: path is NUL-terminated and readable.
    res(unsafe { syscall3(SYS_OPEN, path.as_ptr() as usize, flags, mode) })
}

pub fn close(fd: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_CLOSE, fd, 0, 0) })
}

pub fn lseek(fd: usize, off: u64, whence: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_LSEEK, fd, off as usize, whence) })
}

/// Read into raw memory `[addr, addr+len)` from `off`.
///
/// # Safety
/// The range must be writable memory the caller owns.
pub unsafe fn pread_raw(fd: usize, addr: usize, len: usize, off: u64) -> Res {
    // SAFETY: the caller vouches for the destination range.
    res(unsafe { syscall6(SYS_PREAD64, fd, addr, len, off as usize, 0, 0) })
}

pub fn pread(fd: usize, buf: &mut [u8], off: u64) -> Res {
    // SAFETY: buf is a valid writable slice.
    unsafe { pread_raw(fd, buf.as_mut_ptr() as usize, buf.len(), off) }
}

/// # Safety
/// With MAP_FIXED the caller must own the replaced range.
pub unsafe fn mmap(addr: usize, len: usize, prot: usize, flags: usize, fd: isize, off: u64) -> Res {
    // SAFETY: the caller vouches for fixed ranges.
    res(unsafe { syscall6(SYS_MMAP, addr, len, prot, flags, fd as usize, off as usize) })
}

/// # Safety
/// Nothing still in use may live in the range.
pub unsafe fn munmap(addr: usize, len: usize) -> Res {
    // SAFETY: the caller vouches that the range is unused.
    res(unsafe { syscall3(SYS_MUNMAP, addr, len, 0) })
}

/// # Safety
/// The caller must not rely on the old protection of the range.
pub unsafe fn mprotect(addr: usize, len: usize, prot: usize) -> Res {
    // SAFETY: as documented.
    res(unsafe { syscall3(SYS_MPROTECT, addr, len, prot) })
}

/// # Safety
/// Nothing may use the old range afterwards; the new range must be free.
pub unsafe fn mremap_fixed(old: usize, len: usize, new: usize) -> Res {
    // SAFETY: as documented.
    res(unsafe { syscall6(SYS_MREMAP, old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, new, 0) })
}

/// mlock2(2): lock a range of our own memory (no memory is read or written).
pub fn mlock2(addr: usize, len: usize, flags: usize) -> Res {
    // SAFETY: only page-table state changes; no memory is accessed through addr.
    res(unsafe { syscall3(SYS_MLOCK2, addr, len, flags) })
}

pub fn madvise(addr: usize, len: usize, advice: usize) -> Res {
    // SAFETY: advice values used here never discard contents.
    res(unsafe { syscall3(SYS_MADVISE, addr, len, advice) })
}

pub fn dup3(old: usize, new: usize, flags: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_DUP3, old, new, flags) })
}

pub fn fcntl(fd: usize, cmd: usize, arg: usize) -> Res {
    // SAFETY: only integer commands are used.
    res(unsafe { syscall3(SYS_FCNTL, fd, cmd, arg) })
}

pub fn close_range(first: usize, last: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_CLOSE_RANGE, first, last, 0) })
}

/// # Safety
/// `a2` must point to a valid struct for the given option.
pub unsafe fn prctl(opt: usize, a2: usize, a3: usize, a4: usize) -> Res {
    // SAFETY: the caller vouches for the pointer arguments.
    res(unsafe { syscall6(SYS_PRCTL, opt, a2, a3, a4, 0, 0) })
}

pub fn arch_prctl(code: usize, addr: u64) -> Res {
    // SAFETY: SET_FS/SET_GS take a value, not a pointer.
    res(unsafe { syscall3(SYS_ARCH_PRCTL, code, addr as usize, 0) })
}

/// # Safety
/// `addr` must point to a struct rseq that stays mapped.
pub unsafe fn rseq(addr: u64, len: u32, flags: u32, sig: u32) -> Res {
    // SAFETY: as documented.
    res(unsafe { syscall6(SYS_RSEQ, addr as usize, len as usize, flags as usize, sig as usize, 0, 0) })
}

/// # Safety
/// `head` must be the task's robust list head (or 0).
pub unsafe fn set_robust_list(head: u64, len: u64) -> Res {
    // SAFETY: the kernel only stores the pointer.
    res(unsafe { syscall3(SYS_SET_ROBUST_LIST, head as usize, len as usize, 0) })
}

/// # Safety
/// `addr` must be the task's clear_child_tid word.
pub unsafe fn set_tid_address(addr: u64) -> Res {
    // SAFETY: the kernel only stores the pointer.
    res(unsafe { syscall3(SYS_SET_TID_ADDRESS, addr as usize, 0, 0) })
}

/// `path` must end with a NUL byte.
pub fn openat(dirfd: isize, path: &[u8], flags: usize, mode: usize) -> Res {
    if path.last() != Some(&0) {
        return Err(22);
    }
    // SAFETY: path is NUL-terminated and readable.
    res(unsafe { syscall6(SYS_OPENAT, dirfd as usize, path.as_ptr() as usize, flags, mode, 0, 0) })
}

/// `path` must end with a NUL byte.
pub fn unlink(path: &[u8]) -> Res {
    if path.last() != Some(&0) {
        return Err(22);
    }
    // SAFETY: path is NUL-terminated and readable.
    res(unsafe { syscall3(SYS_UNLINK, path.as_ptr() as usize, 0, 0) })
}

pub fn fstat(fd: usize, st: &mut Stat) -> Res {
    // SAFETY: st is a writable struct stat.
    res(unsafe { syscall3(SYS_FSTAT, fd, st as *mut Stat as usize, 0) })
}

/// lstat-like with `flags` AT_SYMLINK_NOFOLLOW (0x100); `path` must end with NUL.
pub fn fstatat(dirfd: isize, path: &[u8], st: &mut Stat, flags: usize) -> Res {
    if path.last() != Some(&0) {
        return Err(22);
    }
    // SAFETY: path is NUL-terminated; st is a writable struct stat.
    res(unsafe { syscall6(SYS_NEWFSTATAT, dirfd as usize, path.as_ptr() as usize, st as *mut Stat as usize, flags, 0, 0) })
}

pub fn fchmod(fd: usize, mode: u32) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_FCHMOD, fd, mode as usize, 0) })
}

/// ioctl whose argument points at a value the kernel reads.
///
/// # Safety
/// `arg` must point to what the request expects.
pub unsafe fn ioctl(fd: usize, req: usize, arg: usize) -> Res {
    // SAFETY: the caller vouches for the argument.
    res(unsafe { syscall3(SYS_IOCTL, fd, req, arg) })
}

pub fn pipe2(fds: &mut [i32; 2], flags: usize) -> Res {
    // SAFETY: fds has room for two ints.
    res(unsafe { syscall3(SYS_PIPE2, fds.as_mut_ptr() as usize, flags, 0) })
}

pub fn socket(domain: usize, ty: usize, proto: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_SOCKET, domain, ty, proto) })
}

pub fn socketpair(domain: usize, ty: usize, proto: usize, sv: &mut [i32; 2]) -> Res {
    // SAFETY: sv has room for two ints.
    res(unsafe { syscall6(SYS_SOCKETPAIR, domain, ty, proto, sv.as_mut_ptr() as usize, 0, 0) })
}

pub fn bind(fd: usize, addr: &[u8]) -> Res {
    // SAFETY: addr is a readable sockaddr of addr.len() bytes.
    res(unsafe { syscall3(SYS_BIND, fd, addr.as_ptr() as usize, addr.len()) })
}

pub fn connect(fd: usize, addr: &[u8]) -> Res {
    // SAFETY: addr is a readable sockaddr of addr.len() bytes.
    res(unsafe { syscall3(SYS_CONNECT, fd, addr.as_ptr() as usize, addr.len()) })
}

pub fn flock(fd: usize, how: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_FLOCK, fd, how, 0) })
}

pub fn shutdown(fd: usize, how: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_SHUTDOWN, fd, how, 0) })
}

pub fn listen(fd: usize, backlog: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_LISTEN, fd, backlog, 0) })
}

pub fn setsockopt_int(fd: usize, level: usize, opt: usize, val: i32) -> Res {
    // SAFETY: the option value is an int on our stack.
    res(unsafe { syscall6(SYS_SETSOCKOPT, fd, level, opt, &val as *const i32 as usize, 4, 0) })
}

/// setsockopt(2) with a value of any plain type (struct linger, struct timeval).
pub fn setsockopt<T: Copy>(fd: usize, level: usize, opt: usize, val: &T) -> Res {
    // SAFETY: val is readable for size_of::<T>() bytes.
    res(unsafe { syscall6(SYS_SETSOCKOPT, fd, level, opt, val as *const T as usize, core::mem::size_of::<T>(), 0) })
}

pub fn getsockopt_int(fd: usize, level: usize, opt: usize) -> Res {
    let mut v: i32 = 0;
    let mut len: u32 = 4;
    // SAFETY: v and len are writable ints on our stack; len says v's size.
    res(unsafe { syscall6(SYS_GETSOCKOPT, fd, level, opt, &mut v as *mut i32 as usize, &mut len as *mut u32 as usize, 0) })
        .map(|_| v as u32 as usize)
}

/// ioctl(2) whose argument points at `arg`, which the kernel only reads (TCSETS2,
/// TIOCSWINSZ, TIOCSPTLCK...).
pub fn ioctl_set<T: ?Sized>(fd: usize, req: usize, arg: &T) -> Res {
    // SAFETY: arg is readable for its size; the requests used only read it.
    res(unsafe { syscall3(SYS_IOCTL, fd, req, arg as *const T as *const u8 as usize) })
}

/// ioctl(2) that writes one int through its argument (TIOCGPTN...); returns it.
pub fn ioctl_get_int(fd: usize, req: usize) -> Res {
    let mut v: i32 = 0;
    // SAFETY: v is a writable int; the requests used write one int.
    res(unsafe { syscall3(SYS_IOCTL, fd, req, &mut v as *mut i32 as usize) }).map(|_| v as u32 as usize)
}

/// ioctl(2) whose argument is a plain value (TIOCGPTPEER's open flags).
pub fn ioctl_val(fd: usize, req: usize, val: usize) -> Res {
    // SAFETY: the requests used take an integer, no pointer.
    res(unsafe { syscall3(SYS_IOCTL, fd, req, val) })
}

/// getsockname(2) into `buf`; returns the address length.
pub fn getsockname(fd: usize, buf: &mut [u8; 128]) -> Res {
    let mut len: u32 = 128;
    // SAFETY: buf and len are writable; len says buf's size.
    res(unsafe { syscall3(SYS_GETSOCKNAME, fd, buf.as_mut_ptr() as usize, &mut len as *mut u32 as usize) })
        .map(|_| (len as usize).min(128))
}

/// accept4(2) without the peer's address.
pub fn accept4(fd: usize, flags: usize) -> Res {
    // SAFETY: no memory arguments (null address and length).
    res(unsafe { syscall6(SYS_ACCEPT4, fd, 0, 0, flags, 0, 0) })
}

pub const SYS_SENDMSG: usize = 46;
/// Most fds one SCM_RIGHTS message carries (SCM_MAX_FD, include/net/scm.h).
pub const SCM_MAX_FD: usize = 253;

/// sendmsg(2) of `buf` with `fds` passed as SCM_RIGHTS (none: a plain send).
pub fn send_fds(fd: usize, buf: &[u8], fds: &[i32], flags: usize) -> Res {
    // struct cmsghdr (u64 len, i32 level, i32 type) then the ints, 8-aligned.
    let mut ctl = [0u64; 2 + SCM_MAX_FD.div_ceil(2)];
    let n = fds.len().min(SCM_MAX_FD);
    ctl[0] = (16 + 4 * n) as u64;
    ctl[1] = 1 | (1 << 32); // SOL_SOCKET, SCM_RIGHTS
    for (k, f) in fds[..n].iter().enumerate() {
        let w = &mut ctl[2 + k / 2];
        *w |= (*f as u32 as u64) << (32 * (k % 2));
    }
    let iov = [buf.as_ptr() as usize, buf.len()];
    // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
    let (control, controllen) = if n == 0 { (0, 0) } else { (ctl.as_ptr() as usize, 16 + (4 * n).next_multiple_of(8)) };
    let msg: [usize; 7] = [0, 0, iov.as_ptr() as usize, 1, control, controllen, 0];
    // SAFETY: msg, iov, buf and ctl are readable for the sizes they give.
    res(unsafe { syscall3(SYS_SENDMSG, fd, msg.as_ptr() as usize, flags) })
}

/// sendto(2) naming the receiver's address.
pub fn sendto(fd: usize, buf: &[u8], flags: usize, to: &[u8]) -> Res {
    // SAFETY: buf and to are readable for their lengths.
    res(unsafe { syscall6(SYS_SENDTO, fd, buf.as_ptr() as usize, buf.len(), flags, to.as_ptr() as usize, to.len()) })
}

/// send(2): one datagram or message (zero bytes too, which write(2) would not send).
pub fn send(fd: usize, buf: &[u8], flags: usize) -> Res {
    // SAFETY: buf is readable for its length; no address.
    res(unsafe { syscall6(SYS_SENDTO, fd, buf.as_ptr() as usize, buf.len(), flags, 0, 0) })
}

pub fn eventfd2(initval: u32, flags: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_EVENTFD2, initval as usize, flags, 0) })
}

pub fn signalfd4(fd: isize, mask: &u64, flags: usize) -> Res {
    // SAFETY: mask is an 8-byte sigset the kernel reads.
    res(unsafe { syscall6(SYS_SIGNALFD4, fd as usize, mask as *const u64 as usize, 8, flags, 0, 0) })
}

pub fn timerfd_create(clockid: usize, flags: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_TIMERFD_CREATE, clockid, flags, 0) })
}

/// `its` is struct itimerspec: interval (s, ns), value (s, ns).
pub fn timerfd_settime(fd: usize, flags: usize, its: &[u64; 4]) -> Res {
    // SAFETY: its is a readable itimerspec; no old value is requested.
    res(unsafe { syscall6(SYS_TIMERFD_SETTIME, fd, flags, its.as_ptr() as usize, 0, 0, 0) })
}

pub const CLOCK_MONOTONIC: usize = 1;

/// Whether `fd` is a terminal: the TCGETS ioctl succeeds only on one (isatty(3)).
pub fn is_terminal(fd: usize) -> bool {
    const TCGETS: usize = 0x5401;
    // struct termios is 60 bytes on x86_64; the buffer is larger.
    let mut termios = [0u64; 8];
    // SAFETY: TCGETS writes one struct termios into the local buffer.
    unsafe { ioctl(fd, TCGETS, termios.as_mut_ptr() as usize) }.is_ok()
}

pub fn clock_gettime(clockid: usize, ts: &mut [u64; 2]) -> Res {
    // SAFETY: ts is a writable struct timespec.
    res(unsafe { syscall3(SYS_CLOCK_GETTIME, clockid, ts.as_mut_ptr() as usize, 0) })
}

pub fn epoll_create1(flags: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_EPOLL_CREATE1, flags, 0, 0) })
}

pub fn epoll_ctl(epfd: usize, op: usize, fd: usize, ev: &EpollEvent) -> Res {
    // SAFETY: ev is a readable epoll_event.
    res(unsafe { syscall6(SYS_EPOLL_CTL, epfd, op, fd, ev as *const EpollEvent as usize, 0, 0) })
}

pub fn inotify_init1(flags: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_INOTIFY_INIT1, flags, 0, 0) })
}

/// `path` must end with a NUL byte.
pub fn inotify_add_watch(fd: usize, path: &[u8], mask: u32) -> Res {
    if path.last() != Some(&0) {
        return Err(22);
    }
    // SAFETY: path is NUL-terminated and readable.
    res(unsafe { syscall3(SYS_INOTIFY_ADD_WATCH, fd, path.as_ptr() as usize, mask as usize) })
}

pub fn inotify_rm_watch(fd: usize, wd: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_INOTIFY_RM_WATCH, fd, wd, 0) })
}

/// `name` must end with a NUL byte.
pub fn memfd_create(name: &[u8], flags: usize) -> Res {
    if name.last() != Some(&0) {
        return Err(22);
    }
    // SAFETY: name is NUL-terminated and readable.
    res(unsafe { syscall3(SYS_MEMFD_CREATE, name.as_ptr() as usize, flags, 0) })
}

/// prlimit64(0, resource, new, old): `new` and `old` are (soft, hard) pairs.
pub fn prlimit(resource: usize, new: Option<&[u64; 2]>, old: Option<&mut [u64; 2]>) -> Res {
    let n = new.map_or(0, |n| n.as_ptr() as usize);
    let o = old.map_or(0, |o| o.as_mut_ptr() as usize);
    // SAFETY: both pointers are null or valid struct rlimit64 buffers.
    res(unsafe { syscall6(SYS_PRLIMIT64, 0, resource, n, o, 0, 0) })
}

/// Block every signal the kernel lets us block.
pub fn block_all_signals() {
    let all: u64 = !0;
    // SAFETY: `all` is a valid 8-byte sigset on the stack; no old set is requested.
    unsafe { syscall6(SYS_RT_SIGPROCMASK, 2, &all as *const u64 as usize, 0, 8, 0, 0) };
}

pub fn exit_group(code: i32) -> ! {
    // SAFETY: exit_group never returns.
    unsafe {
        asm!("syscall", in("rax") SYS_EXIT_GROUP, in("rdi") code as isize, options(noreturn, nostack));
    }
}

// Process state (procstate.rs).
pub const SYS_RT_SIGACTION: usize = 13;
pub const SYS_GETITIMER: usize = 36;
pub const SYS_SETITIMER: usize = 38;
pub const SYS_GETPID: usize = 39;
pub const SYS_CHDIR: usize = 80;
pub const SYS_UMASK: usize = 95;
pub const SYS_RT_SIGQUEUEINFO: usize = 129;
pub const SYS_PERSONALITY: usize = 135;
pub const SYS_GETTID: usize = 186;
pub const SYS_TIMER_CREATE: usize = 222;
pub const SYS_TIMER_SETTIME: usize = 223;
pub const SYS_TIMER_DELETE: usize = 226;
pub const SYS_RT_TGSIGQUEUEINFO: usize = 297;
pub const SYS_PRLIMIT64: usize = 302;

/// A system call whose pointer arguments point at memory the caller owns.
///
/// # Safety
/// Every pointer argument must be valid for the call.
pub unsafe fn call(n: usize, a: [usize; 6]) -> Res {
    // SAFETY: as documented.
    res(unsafe { syscall6(n, a[0], a[1], a[2], a[3], a[4], a[5]) })
}

pub fn getpid() -> usize {
    // SAFETY: no arguments.
    unsafe { syscall3(SYS_GETPID, 0, 0, 0) as usize }
}

pub fn gettid() -> usize {
    // SAFETY: no arguments.
    unsafe { syscall3(SYS_GETTID, 0, 0, 0) as usize }
}
pub const SYS_KILL: usize = 62;

// Threads (threads.rs, thread.rs).
pub const SYS_EXIT: usize = 60;
pub const SYS_FUTEX: usize = 202;
pub const SYS_SCHED_SETSCHEDULER: usize = 144;
pub const SYS_SCHED_GETSCHEDULER: usize = 145;
pub const SYS_SETPRIORITY: usize = 141;
pub const SYS_GETPRIORITY: usize = 140;
pub const SYS_CLONE3: usize = 435;
const FUTEX_WAIT_PRIVATE: usize = 128;
const FUTEX_WAKE_PRIVATE: usize = 1 | 128;

/// Sleep while `*word == expected` (futex(2) FUTEX_WAIT; returns at once if it differs).
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: `word` is a live, aligned u32; no timeout.
    let _ = unsafe { syscall6(SYS_FUTEX, word.as_ptr() as usize, FUTEX_WAIT_PRIVATE, expected as usize, 0, 0, 0) };
}

/// As [`futex_wait`], for a word the kernel wakes as a shared futex (clear_child_tid
/// at a thread's exit, set_tid_address(2)).
pub fn futex_wait_shared(word: &core::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: `word` is a live, aligned u32; no timeout.
    let _ = unsafe { syscall6(SYS_FUTEX, word.as_ptr() as usize, 0, expected as usize, 0, 0, 0) };
}

/// Wake up to `n` threads waiting on `word`.
pub fn futex_wake(word: &core::sync::atomic::AtomicU32, n: u32) {
    // SAFETY: `word` is a live, aligned u32.
    let _ = unsafe { syscall6(SYS_FUTEX, word.as_ptr() as usize, FUTEX_WAKE_PRIVATE, n as usize, 0, 0, 0) };
}

const SYS_SCHED_YIELD: usize = 24;
const SYS_TGKILL: usize = 234;

/// Send `sig` to thread `tid` of thread group `tgid` (tgkill(2)); signal 0 only
/// checks that the thread exists.
pub fn tgkill(tgid: usize, tid: usize, sig: usize) -> Res {
    // SAFETY: integer arguments only.
    res(unsafe { syscall3(SYS_TGKILL, tgid, tid, sig) })
}

/// Give up the CPU to another runnable thread (sched_yield(2)).
pub fn sched_yield() {
    // SAFETY: no arguments.
    let _ = unsafe { syscall3(SYS_SCHED_YIELD, 0, 0, 0) };
}

/// End the calling thread only (exit(2)); the rest of the group runs on.
pub fn exit_thread(code: i32) -> ! {
    // SAFETY: exit never returns.
    unsafe {
        asm!("syscall", in("rax") SYS_EXIT, in("rdi") code as isize, options(noreturn, nostack));
    }
}

// Files of the Files section, removed directories (objects.rs, deldir.rs).
pub const SYS_PWRITE64: usize = 18;
pub const SYS_FTRUNCATE: usize = 77;
pub const SYS_FCHDIR: usize = 81;
pub const SYS_MKDIR: usize = 83;
pub const SYS_RMDIR: usize = 84;
pub const SYS_FCHOWN: usize = 93;
pub const SYS_GETRANDOM: usize = 318;
pub const SYS_RENAMEAT2: usize = 316;
pub const SYS_LINK: usize = 86;
pub const RENAME_NOREPLACE: usize = 1;
pub const MFD_CLOEXEC: usize = 1;
/// memfd_create(2) flags of Linux 6.3 (include/uapi/linux/memfd.h).
pub const MFD_NOEXEC_SEAL: usize = 8;
pub const MFD_EXEC: usize = 0x10;
pub const EINVAL: isize = 22;
pub const EBADF: isize = 9;
pub const ENOENT: isize = 2;

/// pwrite(2) of all of `buf` at `off` (short writes continued).
pub fn pwrite_all(fd: usize, mut buf: &[u8], mut off: u64) -> Res {
    while !buf.is_empty() {
        // SAFETY: buf is readable for its length.
        match res(unsafe { syscall6(SYS_PWRITE64, fd, buf.as_ptr() as usize, buf.len(), off as usize, 0, 0) }) {
            Ok(0) => return Err(EAGAIN),
            Ok(n) => {
                buf = &buf[n..];
                off += n as u64;
            }
            Err(EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(0)
}

pub fn ftruncate(fd: usize, len: u64) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_FTRUNCATE, fd, len as usize, 0) })
}

pub fn fchdir(fd: usize) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_FCHDIR, fd, 0, 0) })
}

pub fn fchown(fd: usize, uid: u32, gid: u32) -> Res {
    // SAFETY: no memory arguments.
    res(unsafe { syscall3(SYS_FCHOWN, fd, uid as usize, gid as usize) })
}

/// `path` must end with a NUL byte.
pub fn mkdir(path: &[u8], mode: u32) -> Res {
    if path.last() != Some(&0) {
        return Err(EINVAL);
    }
    // SAFETY: path is NUL-terminated and readable.
    res(unsafe { syscall3(SYS_MKDIR, path.as_ptr() as usize, mode as usize, 0) })
}

/// `path` must end with a NUL byte.
pub fn rmdir(path: &[u8]) -> Res {
    if path.last() != Some(&0) {
        return Err(EINVAL);
    }
    // SAFETY: path is NUL-terminated and readable.
    res(unsafe { syscall3(SYS_RMDIR, path.as_ptr() as usize, 0, 0) })
}

/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST rather than replace `to`.
/// Both paths must end with a NUL byte.
pub fn rename_noreplace(from: &[u8], to: &[u8]) -> Res {
    if from.last() != Some(&0) || to.last() != Some(&0) {
        return Err(EINVAL);
    }
    // SAFETY: both paths are NUL-terminated and readable.
    res(unsafe {
        syscall6(SYS_RENAMEAT2, AT_FDCWD as usize, from.as_ptr() as usize, AT_FDCWD as usize, to.as_ptr() as usize, RENAME_NOREPLACE, 0)
    })
}

/// link(2); both paths must end with a NUL byte.
pub fn link(from: &[u8], to: &[u8]) -> Res {
    if from.last() != Some(&0) || to.last() != Some(&0) {
        return Err(EINVAL);
    }
    // SAFETY: both paths are NUL-terminated and readable.
    res(unsafe { syscall3(SYS_LINK, from.as_ptr() as usize, to.as_ptr() as usize, 0) })
}

/// A random u64 (getrandom(2), GRND_NONBLOCK), or one made of the pid and the
/// clock when the pool is not ready.
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: v is a writable 8-byte buffer.
    let r = unsafe { syscall3(SYS_GETRANDOM, &mut v as *mut u64 as usize, 8, 1) };
    if r == 8 {
        return v;
    }
    let mut ts = [0u64; 2];
    let _ = clock_gettime(1, &mut ts);
    (getpid() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ts[1] ^ (ts[0] << 20)
}

/// mremap(2) with old_size 0 of a shared mapping: a second mapping of the same
/// pages (the object at `old`'s file offset) at `new`, which must be free.
///
/// # Safety
/// `new..new+len` must be free of anything the restorer uses.
pub unsafe fn mremap_dup(old: usize, len: usize, new: usize) -> Res {
    // SAFETY: as documented; old_size 0 leaves the source mapping in place.
    res(unsafe { syscall6(SYS_MREMAP, old, 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, new, 0) })
}

/// clone(2) flags of the threads the restorer creates (include/uapi/linux/sched.h):
/// one address space, fs info, fd table, signal handlers, thread group and SysV
/// undo list, as pthread_create makes them.
pub const CLONE_THREAD_FLAGS: u64 = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000;
pub const CLONE_SETTLS: u64 = 0x80000;
pub const CLONE_CHILD_CLEARTID: u64 = 0x200000;

/// struct clone_args of clone3(2) (include/uapi/linux/sched.h, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// struct pollfd of poll(2).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct PollFd {
    pub fd: i32,
    pub events: i16,
    pub revents: i16,
}

pub const POLLIN: i16 = 0x1;
pub const POLLERR: i16 = 0x8;
pub const POLLHUP: i16 = 0x10;

/// poll(2) on `fds`, waiting up to `timeout_ms` (-1: no limit).
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Res {
    // SAFETY: the slice is a writable array of struct pollfd of its length.
    res(unsafe { syscall3(SYS_POLL, fds.as_mut_ptr() as usize, fds.len(), timeout_ms as isize as usize) })
}
