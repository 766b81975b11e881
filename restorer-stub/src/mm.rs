//! The memory descriptor fields (code/data/brk/stack/arg/env ranges) and the saved
//! auxv, set in one unprivileged call: prctl(PR_SET_MM, PR_SET_MM_MAP) (prctl(2),
//! needs CONFIG_CHECKPOINT_RESTORE). They make /proc/PID/maps label [heap] and [stack]
//! again, let brk(2) continue from the saved break, and make /proc/PID/auxv and
//! getauxval() see the frozen process's values.

use crate::layout::cpath;
use crate::out::{self, Step};
use crate::sys;
use ckpt_format::Tables;

/// struct prctl_mm_map (include/uapi/linux/prctl.h), 104 bytes.
#[repr(C)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

fn set(map: &PrctlMmMap) -> sys::Res {
    // SAFETY: map is a complete prctl_mm_map; the kernel only reads it (and auxv).
    unsafe { sys::prctl(sys::PR_SET_MM, sys::PR_SET_MM_MAP, map as *const PrctlMmMap as usize, core::mem::size_of::<PrctlMmMap>()) }
}

/// Whether the file open at `fd` has the size and mtime the executable had.
fn unchanged(fd: usize, m: &ckpt_format::Mm) -> bool {
    // struct stat (x86_64): st_size at byte 48, st_mtime at 88, st_mtime_nsec at 96.
    let mut st = [0u64; 18];
    // SAFETY: fstat writes a 144-byte struct stat into the local buffer.
    if unsafe { sys::call(sys::SYS_FSTAT, [fd, st.as_mut_ptr() as usize, 0, 0, 0, 0]) }.is_err() {
        return false;
    }
    let mtime = st[11].wrapping_mul(1_000_000_000).wrapping_add(st[12]);
    st[6] == m.exe_size && mtime == m.exe_mtime_ns
}

pub fn restore(t: &Tables) {
    let m = t.mm;
    let mut map = PrctlMmMap {
        start_code: m.start_code,
        end_code: m.end_code,
        start_data: m.start_data,
        end_data: m.end_data,
        start_brk: m.start_brk,
        brk: m.brk,
        start_stack: m.start_stack,
        arg_start: m.arg_start,
        arg_end: m.arg_end,
        env_start: m.env_start,
        env_end: m.env_end,
        auxv: m.auxv.as_ptr() as u64,
        auxv_size: m.auxv_words * 8,
        exe_fd: u32::MAX,
    };
    out::trace("set mm: brk", m.start_brk, m.brk);
    // /proc/PID/exe can be pointed at the original executable only with
    // CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE); try, then do without.
    if m.exe_len != 0 {
        let mut buf = [0u8; 4096];
        if let Ok(fd) = sys::open(cpath(t.string(m.exe_off, m.exe_len), &mut buf), sys::O_RDONLY | sys::O_CLOEXEC, 0) {
            if !unchanged(fd, m) {
                out::trace("set mm: the executable changed since the freeze; /proc/PID/exe left as is", 0, 0);
                let _ = sys::close(fd);
                out::check(set(&map), Step::Mm, m.start_code, m.end_code);
                return;
            }
            map.exe_fd = fd as u32;
            let r = set(&map);
            let _ = sys::close(fd);
            if r.is_ok() {
                out::trace("set mm: exe link restored", 0, 0);
                return;
            }
            map.exe_fd = u32::MAX;
        }
    }
    out::check(set(&map), Step::Mm, m.start_code, m.end_code);
}
