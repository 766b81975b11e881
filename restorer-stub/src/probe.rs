//! This machine, described for `ckpt_format::compat::check` before anything is
//! changed: CPU features, what the kernel offers (each probed with a call that
//! changes nothing), its limits, its vdso, its clocks, and the resumer's
//! privileges. `ckpt check` probes the same way (generator/src/check/machine.rs), so
//! it and the resume reach the same decision. The first refusal stops the resume
//! with its step's exit code.

use crate::arch;
use crate::ctx::{Ctx, VDSO};
use crate::layout::cpath;
use crate::out::Line;
use crate::sys::{self, call};
use ckpt_format::compat::{self, *};
use ckpt_format::crc32c::crc32c;
use ckpt_format::{Tables, CLOCK_IDS, NCLOCKS};

const SYS_CAPGET: usize = 125;
const SYS_CLONE3: usize = 435;
const PR_SET_MM: usize = 35;
const PR_SET_MM_MAP_SIZE: usize = 15;
const MFD_CLOEXEC: usize = 1;
const MFD_EXEC: usize = 0x10;

impl ckpt_format::compat::Sink for Line {
    fn s(&mut self, s: &str) {
        Line::s(self, s);
    }
    fn b(&mut self, b: &[u8]) {
        Line::b(self, b);
    }
    fn dec(&mut self, v: u64) {
        Line::dec(self, v);
    }
    fn hex(&mut self, v: u64) {
        Line::hex(self, v);
    }
}

/// The number in a small /proc/sys file, if it can be read.
fn read_num(path: &[u8]) -> Option<u64> {
    let fd = sys::open(path, sys::O_RDONLY | sys::O_CLOEXEC, 0).ok()?;
    let mut b = [0u8; 32];
    let n = sys::read(fd, &mut b).unwrap_or(0);
    let _ = sys::close(fd);
    let digits = b[..n].iter().take_while(|c| c.is_ascii_digit());
    (n > 0).then(|| digits.fold(0u64, |a, &c| a.wrapping_mul(10).wrapping_add((c - b'0') as u64)))
}

/// Effective capabilities (capget(2), version 3).
fn effective_caps() -> u64 {
    let hdr = [0x2008_0522u32, 0];
    let mut data = [0u32; 6];
    // SAFETY: a v3 header and room for two capability data structs.
    match unsafe { call(SYS_CAPGET, [hdr.as_ptr() as usize, data.as_mut_ptr() as usize, 0, 0, 0, 0]) } {
        Ok(_) => data[0] as u64 | (data[3] as u64) << 32,
        Err(_) => 0,
    }
}

/// MAP_FIXED_NOREPLACE over a mapped page fails with EEXIST; a kernel without the
/// flag places the mapping elsewhere.
fn fixed_noreplace() -> bool {
    // SAFETY: fresh anonymous one-page mappings, unmapped again.
    unsafe {
        let Ok(a) = sys::mmap(0, 4096, 0, sys::MAP_PRIVATE | sys::MAP_ANONYMOUS, -1, 0) else { return false };
        let b = sys::mmap(a, 4096, 0, sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED_NOREPLACE, -1, 0);
        if let Ok(b) = b {
            if b != a {
                let _ = sys::munmap(b, 4096);
            }
        }
        let _ = sys::munmap(a, 4096);
        b == Err(sys::EEXIST)
    }
}

fn features() -> u32 {
    let mut f = 0;
    // clone3 with a size below CLONE_ARGS_SIZE_VER0 is EINVAL where clone3 exists.
    // SAFETY: the kernel rejects the size before reading anything.
    if unsafe { call(SYS_CLONE3, [0; 6]) } != Err(sys::ENOSYS) {
        f |= FEAT_CLONE3_SET_TID;
    }
    let mut size = 0u32;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one u32.
    if unsafe { sys::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &mut size as *mut u32 as usize, 0) }.is_ok() && size != 0 {
        f |= FEAT_PR_SET_MM_MAP;
    }
    // rseq(NULL, 0, 0, 0) registers nothing: EINVAL where rseq exists.
    // SAFETY: no memory is passed.
    if unsafe { sys::rseq(0, 0, 0, 0) } != Err(sys::ENOSYS) {
        f |= FEAT_RSEQ;
    }
    if fixed_noreplace() {
        f |= FEAT_MAP_FIXED_NOREPLACE;
    }
    if let Ok(fd) = sys::memfd_create(b"ckpt-probe\0", MFD_CLOEXEC | MFD_EXEC) {
        let _ = sys::close(fd);
        f |= FEAT_MFD_EXEC;
    }
    if let Ok(fd) = sys::open(b"/proc/self/ns/time\0", sys::O_RDONLY | sys::O_CLOEXEC, 0) {
        let _ = sys::close(fd);
        f |= FEAT_TIME_NS;
    }
    let caps = effective_caps();
    let cap = |n: u32| caps & (1u64 << n) != 0;
    let unpriv_ok = read_num(b"/proc/sys/kernel/unprivileged_userns_clone\0").is_none_or(|v| v != 0);
    if read_num(b"/proc/sys/user/max_user_namespaces\0").is_some_and(|v| v > 0) && (cap(21) || unpriv_ok) {
        f |= FEAT_USER_NS;
    }
    // CAP_CHECKPOINT_RESTORE (40) or CAP_SYS_ADMIN (21), capabilities(7).
    if cap(40) || cap(21) {
        f |= FEAT_SET_TID_HERE;
    }
    if cap(21) {
        f |= FEAT_SYS_ADMIN;
    }
    // A time namespace needs CAP_SYS_ADMIN, its offsets CAP_SYS_TIME (25).
    if cap(21) && cap(25) {
        f |= FEAT_TIME_NS_HERE;
    }
    f
}

pub fn clocks() -> [u64; NCLOCKS] {
    CLOCK_IDS.map(|id| {
        let mut ts = [0u64; 2];
        let _ = sys::clock_gettime(id as usize, &mut ts);
        ts[0].wrapping_mul(1_000_000_000).wrapping_add(ts[1])
    })
}

/// Longest path whose identity [`Look`] remembers.
const LAST_PATH: usize = 512;

/// Ids and files, looked at from here.
struct Look {
    hw: bool,
    /// The last file asked about and what stat said: a library is mapped as four
    /// or five VMAs in a row, each asking for the same path.
    last_path: [u8; LAST_PATH],
    last_len: usize,
    last: Option<Option<FileId>>,
}

impl Look {
    fn stat_uncached(path: &[u8]) -> Option<FileId> {
        let mut buf = [0u8; 4096];
        let fd = sys::open(cpath(path, &mut buf), sys::O_RDONLY | sys::O_CLOEXEC, 0).ok()?;
        let mut st = sys::Stat::zeroed();
        let ok = sys::fstat(fd, &mut st).is_ok() && st.st_mode & sys::S_IFMT == sys::S_IFREG;
        let _ = sys::close(fd);
        // st_times: atime, atime_nsec, mtime, mtime_nsec, ctime, ctime_nsec.
        let mtime_ns = st.st_times[2].wrapping_mul(1_000_000_000).wrapping_add(st.st_times[3]);
        ok.then_some(FileId { dev: st.st_dev, ino: st.st_ino, size: st.st_size as u64, mtime_ns })
    }
}

impl Probe for Look {
    fn id_taken(&mut self, tid: u32) -> bool {
        crate::pid::taken(tid) && !crate::pid::is_zombie(tid)
    }

    fn stat(&mut self, path: &[u8]) -> Option<FileId> {
        if let Some(id) = self.last.filter(|_| self.last_path[..self.last_len] == *path) {
            return id;
        }
        let id = Look::stat_uncached(path);
        if path.len() <= LAST_PATH {
            self.last_path[..path.len()].copy_from_slice(path);
            self.last_len = path.len();
            self.last = Some(id);
        }
        id
    }

    fn crc(&mut self, path: &[u8], offset: u64, len: u64) -> Option<u32> {
        let mut buf = [0u8; 4096];
        let fd = sys::open(cpath(path, &mut buf), sys::O_RDONLY | sys::O_CLOEXEC, 0).ok()?;
        if len == 0 {
            let _ = sys::close(fd);
            return Some(0);
        }
        // SAFETY: a fresh read-only private mapping of the file, unmapped below.
        let m = unsafe { sys::mmap(0, len as usize, sys::PROT_READ, sys::MAP_PRIVATE, fd as isize, offset) };
        let _ = sys::close(fd);
        let at = m.ok()?;
        // SAFETY: the mapping covers `len` bytes, all inside the file (the caller
        // checked its size), so reading them does not fault.
        let crc = crc32c(unsafe { core::slice::from_raw_parts(at as *const u8, len as usize) }, self.hw);
        // SAFETY: our own mapping from above.
        let _ = unsafe { sys::munmap(at, len as usize) };
        Some(crc)
    }
}

/// Decide, before anything changes, whether this machine can resume the image;
/// stop at the first refusal with its message and exit code, else return the plan.
pub fn check(ctx: &Ctx, t: &Tables) -> Plan {
    let mut release = [0u8; 65];
    if let Ok(fd) = sys::open(b"/proc/sys/kernel/osrelease\0", sys::O_RDONLY | sys::O_CLOEXEC, 0) {
        let n = sys::read(fd, &mut release[..64]).unwrap_or(0);
        let _ = sys::close(fd);
        release[..n].iter_mut().filter(|c| **c == b'\n').for_each(|c| *c = 0);
    }
    let vdso = ctx.cur[VDSO];
    // SAFETY: our own vdso, mapped readable where /proc/self/maps said.
    let vdso_bytes = unsafe { core::slice::from_raw_parts(vdso.start as *const u8, vdso.len() as usize) };
    let m = Machine {
        release: &release,
        xcr0: arch::xcr0(),
        features: features(),
        pid_max: read_num(b"/proc/sys/kernel/pid_max\0").unwrap_or(u32::MAX as u64) as u32,
        mmap_min_addr: read_num(b"/proc/sys/vm/mmap_min_addr\0").unwrap_or(0),
        specials: ctx.cur.map(|r| r.len()),
        vdso: vdso_bytes,
        clocks: clocks(),
        same_pid: ctx.same_pid,
        pid: sys::getpid() as u32,
    };
    let hdr = ctx.hdr;
    check_with(&hdr, t, &m, &mut Look { hw: ctx.hw_crc, last_path: [0; LAST_PATH], last_len: 0, last: None })
}

fn check_with(h: &ckpt_format::Header, t: &Tables, m: &Machine, p: &mut Look) -> Plan {
    compat::check(h, t, m, p, &mut |r: Refusal| {
        let mut l = Line::new();
        l.s(r.step()).s(" failed: ");
        r.describe(h, t, m, &mut l);
        l.emit();
        sys::exit_group(r.code() as i32)
    })
}
