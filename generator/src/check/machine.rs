//! This machine as the restorer stub will find it, for `ckpt check`: the same
//! probes the stub makes (restorer-stub/src/probe.rs), through libc, so the
//! decision in `ckpt_format::compat` gets the same inputs on both sides.

use ckpt_format::compat::*;
use ckpt_format::{crc32c, CLOCK_IDS, NCLOCKS};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};

/// Owned inputs of a [`Machine`].
pub struct Here {
    pub release: Vec<u8>,
    pub features: u32,
    pub pid_max: u32,
    pub mmap_min_addr: u64,
    pub specials: [u64; 3],
    pub vdso: Vec<u8>,
    pub clocks: [u64; NCLOCKS],
    pub same_pid: bool,
}

fn read_num(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Effective capabilities (capget(2), version 3: two 32-bit words).
fn effective_caps() -> u64 {
    let mut hdr = [0x2008_0522u32, 0];
    let mut data = [0u32; 6];
    // SAFETY: a v3 header and room for two capability data structs.
    let r = unsafe { libc::syscall(libc::SYS_capget, hdr.as_mut_ptr(), data.as_mut_ptr()) };
    if r != 0 {
        return 0;
    }
    data[0] as u64 | (data[3] as u64) << 32
}

/// errno of a raw system call made only to see whether the kernel knows it.
fn errno_of(r: libc::c_long) -> i32 {
    if r < 0 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        0
    }
}

/// The FEAT_* bits of this kernel and this user.
fn features() -> u32 {
    let mut f = 0;
    // clone3 with a size below CLONE_ARGS_SIZE_VER0 is EINVAL where clone3 exists.
    // SAFETY: the kernel rejects the size before reading anything.
    if errno_of(unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) }) != libc::ENOSYS {
        f |= FEAT_CLONE3_SET_TID;
    }
    let mut size = 0u32;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one u32.
    if unsafe { libc::prctl(libc::PR_SET_MM, libc::PR_SET_MM_MAP_SIZE, &mut size as *mut u32, 0, 0) } == 0 && size != 0 {
        f |= FEAT_PR_SET_MM_MAP;
    }
    // rseq(NULL, 0, 0, 0) registers nothing: EINVAL (or EBUSY) where rseq exists.
    // SAFETY: no memory is passed.
    if errno_of(unsafe { libc::syscall(libc::SYS_rseq, 0usize, 0usize, 0usize, 0usize) }) != libc::ENOSYS {
        f |= FEAT_RSEQ;
    }
    if fixed_noreplace() {
        f |= FEAT_MAP_FIXED_NOREPLACE;
    }
    // MFD_EXEC (0x10): EINVAL before Linux 6.3.
    // SAFETY: a NUL-terminated name; the fd is closed at once.
    let fd = unsafe { libc::memfd_create(c"ckpt-probe".as_ptr(), libc::MFD_CLOEXEC | 0x10) };
    if fd >= 0 {
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        f |= FEAT_MFD_EXEC;
    }
    if std::path::Path::new("/proc/self/ns/time").exists() {
        f |= FEAT_TIME_NS;
    }
    let caps = effective_caps();
    let cap = |n: u32| caps & (1u64 << n) != 0;
    let root_like = cap(21);
    let unpriv_ok = read_num("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v != 0);
    if read_num("/proc/sys/user/max_user_namespaces").is_some_and(|v| v > 0) && (root_like || unpriv_ok) {
        f |= FEAT_USER_NS;
    }
    // CAP_CHECKPOINT_RESTORE (40) or CAP_SYS_ADMIN (21), capabilities(7).
    if cap(40) || root_like {
        f |= FEAT_SET_TID_HERE;
    }
    if root_like {
        f |= FEAT_SYS_ADMIN;
    }
    // setns into a new time namespace needs CAP_SYS_ADMIN, its offsets CAP_SYS_TIME (25).
    if root_like && cap(25) {
        f |= FEAT_TIME_NS_HERE;
    }
    f
}

/// MAP_FIXED_NOREPLACE on a mapped page fails with EEXIST; a kernel that does not
/// know the flag places the mapping elsewhere instead.
fn fixed_noreplace() -> bool {
    // SAFETY: fresh anonymous mappings of one page, unmapped before returning.
    unsafe {
        let a = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if a == libc::MAP_FAILED {
            return false;
        }
        let b = libc::mmap(a, 4096, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE, -1, 0);
        let ok = b == libc::MAP_FAILED && errno_of(-1) == libc::EEXIST;
        if b != libc::MAP_FAILED && b != a {
            libc::munmap(b, 4096);
        }
        libc::munmap(a, 4096);
        ok
    }
}

/// This process's [vvar], [vvar_vclock], [vdso]: sizes, and the vdso's bytes.
fn specials() -> ([u64; 3], Vec<u8>) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut sizes = [0u64; 3];
    let mut vdso = Vec::new();
    for line in maps.lines() {
        let Some(i) = SPECIAL_NAMES.iter().position(|n| line.ends_with(n)) else { continue };
        let range = line.split_whitespace().next().unwrap_or("");
        let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
        let (lo, hi) = (u64::from_str_radix(lo, 16).unwrap_or(0), u64::from_str_radix(hi, 16).unwrap_or(0));
        sizes[i] = hi.saturating_sub(lo);
        if i == 2 && hi > lo {
            // SAFETY: our own vdso, mapped readable for the life of the process.
            vdso = unsafe { std::slice::from_raw_parts(lo as *const u8, (hi - lo) as usize) }.to_vec();
        }
    }
    (sizes, vdso)
}

/// clock_gettime(2) of each CLK_* clock, in ns.
pub fn clocks() -> [u64; NCLOCKS] {
    CLOCK_IDS.map(|id| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: a valid timespec out-pointer.
        unsafe { libc::clock_gettime(id as libc::clockid_t, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    })
}

impl Here {
    pub fn probe() -> Here {
        let (specials, vdso) = specials();
        Here {
            release: crate::proc::kernel_release().into_bytes(),
            features: features(),
            pid_max: read_num("/proc/sys/kernel/pid_max").unwrap_or(32768) as u32,
            mmap_min_addr: read_num("/proc/sys/vm/mmap_min_addr").unwrap_or(4096),
            specials,
            vdso,
            clocks: clocks(),
            same_pid: std::env::var_os("CKPT_SAME_PID").is_none_or(|v| v != "0"),
        }
    }

    pub fn machine(&self) -> Machine<'_> {
        Machine {
            release: &self.release,
            xcr0: crate::inventory::xcr0(),
            features: self.features,
            pid_max: self.pid_max,
            mmap_min_addr: self.mmap_min_addr,
            specials: self.specials,
            vdso: &self.vdso,
            clocks: self.clocks,
            same_pid: self.same_pid,
            // The resume runs in a new process, never one that already has the pid.
            pid: 0,
        }
    }
}

/// Ids and files, looked at as the stub does.
pub struct Looker;

impl Probe for Looker {
    fn id_taken(&mut self, tid: u32) -> bool {
        // kill(2) with signal 0: ESRCH only for an id nobody has. A zombie is
        // waited for by the stub (pid.rs), so it does not count.
        // SAFETY: signal 0 sends nothing.
        let r = unsafe { libc::kill(tid as i32, 0) };
        let exists = r == 0 || errno_of(-1) != libc::ESRCH;
        let zombie = std::fs::read_to_string(format!("/proc/{tid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').and_then(|i| s[i + 1..].trim_start().chars().next()))
            .is_some_and(|c| c == 'Z' || c == 'X');
        exists && !zombie
    }

    fn stat(&mut self, path: &[u8]) -> Option<FileId> {
        let md = std::fs::metadata(std::ffi::OsStr::from_bytes(path)).ok()?;
        md.is_file().then(|| FileId {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime_ns: (md.mtime() as u64).wrapping_mul(1_000_000_000).wrapping_add(md.mtime_nsec() as u64),
        })
    }

    fn crc(&mut self, path: &[u8], offset: u64, len: u64) -> Option<u32> {
        let f = File::open(std::ffi::OsStr::from_bytes(path)).ok()?;
        let hw = crc32c::have_hw();
        let mut buf = vec![0u8; 1 << 20];
        let (mut at, end, mut crc) = (offset, offset + len, 0u32);
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], at).ok()?;
            crc = if hw {
                // SAFETY: hw is true only when the CPU has SSE4.2.
                unsafe { crc32c::update_hw(crc, &buf[..n]) }
            } else {
                crc32c::update_sw(crc, &buf[..n])
            };
            at += n as u64;
        }
        Some(crc)
    }
}
