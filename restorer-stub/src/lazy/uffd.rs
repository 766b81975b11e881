//! Thin typed wrappers over userfaultfd(2) and its ioctls
//! (include/uapi/linux/userfaultfd.h, Documentation/admin-guide/mm/userfaultfd.rst).
//!
//! Every `unsafe` of the lazy resume lives here: the ioctls take pointers to the
//! small structs below, and UFFDIO_COPY reads its source from the caller's memory.

use crate::sys::{self, call, Res};

const SYS_USERFAULTFD: usize = 323;
const UFFD_API: u64 = 0xaa;

// _IOWR/_IOR(0xAA, nr, struct): dir << 30 | size << 16 | 0xAA << 8 | nr.
const UFFDIO_API: usize = 0xc018_aa3f;
const UFFDIO_REGISTER: usize = 0xc020_aa00;
const UFFDIO_WAKE: usize = 0x8010_aa02;
const UFFDIO_COPY: usize = 0xc028_aa03;
const UFFDIO_ZEROPAGE: usize = 0xc020_aa04;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

/// Non-cooperative events: the helper learns of fork(), mremap(), madvise(DONTNEED)
/// and munmap() in the process. EVENT_FORK needs CAP_SYS_PTRACE in the initial user
/// namespace (fs/userfaultfd.c, userfaultfd_api()).
pub const FEATURES: u64 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6);

pub const EVENT_PAGEFAULT: u8 = 0x12;
pub const EVENT_FORK: u8 = 0x13;
pub const EVENT_REMAP: u8 = 0x14;
pub const EVENT_REMOVE: u8 = 0x15;
pub const EVENT_UNMAP: u8 = 0x16;

/// struct uffd_msg (32 bytes): the event byte, padding, then a 24-byte union whose
/// words are read according to the event.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Msg {
    pub event: u8,
    pub _r1: u8,
    pub _r2: u16,
    pub _r3: u32,
    /// pagefault: flags, address, ptid; fork: ufd; remap: from, to, len;
    /// remove/unmap: start, end.
    pub arg: [u64; 3],
}

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct Register {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct Copy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
struct Zero {
    start: u64,
    len: u64,
    mode: u64,
    zeropage: i64,
}

/// A userfaultfd with the non-cooperative events enabled (O_CLOEXEC | O_NONBLOCK).
/// Fails (EPERM) where the caller may not have kernel-mode faults or fork events.
pub fn open() -> Res {
    const O_NONBLOCK: usize = 0o4000;
    // SAFETY: no memory arguments.
    let fd = unsafe { call(SYS_USERFAULTFD, [sys::O_CLOEXEC | O_NONBLOCK, 0, 0, 0, 0, 0]) }?;
    let mut a = Api { api: UFFD_API, features: FEATURES, ioctls: 0 };
    // SAFETY: `a` is a live struct uffdio_api.
    if let Err(e) = unsafe { sys::ioctl(fd, UFFDIO_API, &mut a as *mut Api as usize) } {
        let _ = sys::close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Register `[start, start+len)` for missing-page faults.
pub fn register(fd: usize, start: u64, len: u64) -> Res {
    let mut r = Register { start, len, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
    // SAFETY: `r` is a live struct uffdio_register.
    unsafe { sys::ioctl(fd, UFFDIO_REGISTER, &mut r as *mut Register as usize) }
}

/// What a fill of missing pages did.
pub enum Filled {
    /// Every byte asked for.
    All,
    /// Only this many bytes; the page after them is the next to look at.
    Part(u64),
    /// Nothing: the kernel refused with this errno (EEXIST: the first page is
    /// present; EAGAIN: the layout is changing, read the events first; ENOENT: no
    /// registered VMA there; ESRCH: the process's memory is gone).
    Err(isize),
}

fn filled(r: Res, len: u64, done: i64) -> Filled {
    match r {
        Ok(_) => Filled::All,
        Err(_) if done > 0 && (done as u64) < len => Filled::Part(done as u64),
        Err(_) if done == len as i64 => Filled::All,
        Err(e) => Filled::Err(e),
    }
}

/// UFFDIO_COPY `len` bytes from `src` (this process's memory) to `dst` in the
/// registered process, waking the threads waiting on those pages.
pub fn copy(fd: usize, dst: u64, src: &[u8]) -> Filled {
    let mut c = Copy { dst, src: src.as_ptr() as u64, len: src.len() as u64, mode: 0, copy: 0 };
    // SAFETY: `c` is a live struct uffdio_copy whose source is the readable slice.
    let r = unsafe { sys::ioctl(fd, UFFDIO_COPY, &mut c as *mut Copy as usize) };
    filled(r, src.len() as u64, c.copy)
}

/// UFFDIO_ZEROPAGE: map zero pages at `[start, start+len)`, waking the waiters.
pub fn zero(fd: usize, start: u64, len: u64) -> Filled {
    let mut z = Zero { start, len, mode: 0, zeropage: 0 };
    // SAFETY: `z` is a live struct uffdio_zeropage.
    let r = unsafe { sys::ioctl(fd, UFFDIO_ZEROPAGE, &mut z as *mut Zero as usize) };
    filled(r, len, z.zeropage)
}

/// UFFDIO_WAKE: wake the threads waiting on a range someone else filled.
pub fn wake(fd: usize, start: u64, len: u64) {
    let mut r = [start, len];
    // SAFETY: `r` is a live struct uffdio_range.
    let _ = unsafe { sys::ioctl(fd, UFFDIO_WAKE, r.as_mut_ptr() as usize) };
}

/// Read up to `msgs.len()` pending messages without blocking; 0 when none.
pub fn read(fd: usize, msgs: &mut [Msg]) -> usize {
    let len = core::mem::size_of_val(msgs);
    // SAFETY: the slice is writable for its whole length.
    let r = unsafe { call(sys::SYS_READ, [fd, msgs.as_mut_ptr() as usize, len, 0, 0, 0]) };
    match r {
        Ok(n) => n / core::mem::size_of::<Msg>(),
        Err(_) => 0,
    }
}
