//! The restorer's working area: a range free both in the current layout (the stub as
//! the kernel loaded it, its stack, vdso/vvar, the tables) and in the target's, so the
//! restorer can keep running while everything else is unmapped and recreated.
//!
//! The kernel's layout is only probed, never parsed: MAP_FIXED_NOREPLACE fails with
//! EEXIST on any collision (mmap(2)), so we try candidate addresses that are free in
//! the target until one is also free here.

use crate::arch;
use crate::ctx::Ctx;
use crate::out::{self, Step};
use crate::{reloc, sys};
use ckpt_format::{align_up, Tables, PAGE_SIZE, USER_TOP};

const STACK_LEN: u64 = 256 * 1024;
/// The top of the restorer's stack, allocated with the gap (the restore's deepest
/// calls stay within it).
const STACK_POPULATE: u64 = 32 * 1024;
/// Lowest address considered (well above mmap_min_addr).
const LOW: u64 = 0x1_0000;
/// Addresses few programs use, tried first; then every hole of the target layout.
const PREFERRED: [u64; 3] = [0x3ff0_0000_0000, 0x1ff0_0000_0000, 0x0ff0_0000_0000];

fn free_in_target(t: &Tables, lo: u64, hi: u64) -> bool {
    lo >= LOW && hi <= USER_TOP && !t.vmas.iter().any(|v| v.start < hi && lo < v.end)
}

fn try_map(lo: u64, len: u64) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let r = unsafe {
        sys::mmap(lo as usize, len as usize, sys::PROT_READ | sys::PROT_WRITE | sys::PROT_EXEC,
                  sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED_NOREPLACE, -1, 0)
    };
    match r {
        Ok(a) if a as u64 == lo => true,
        Ok(a) => {
            // A kernel without MAP_FIXED_NOREPLACE treated it as a hint.
            // SAFETY: we just created this mapping.
            let _ = unsafe { sys::munmap(a, len as usize) };
            false
        }
        Err(_) => false,
    }
}

/// A range of `len` bytes free both now and in the target layout, mapped private
/// and anonymous for the caller to replace (MAP_FIXED) and unmap when done; None
/// when there is no such range. Used for the first mapping of shared memory, which
/// no target VMA may cover (objects.rs).
pub fn free_range(t: &Tables, len: u64) -> Option<u64> {
    find_in(t, align_up(len, PAGE_SIZE))
}

/// Find and map a gap of `len` bytes.
fn find(t: &Tables, len: u64) -> u64 {
    match find_in(t, len) {
        Some(c) => c,
        None => out::fail(Step::Gap, 0, len, sys::EEXIST),
    }
}

fn find_in(t: &Tables, len: u64) -> Option<u64> {
    for &c in PREFERRED.iter() {
        if free_in_target(t, c, c + len) && try_map(c, len) {
            return Some(c);
        }
    }
    // Holes between target VMAs, each tried from its top down in steps.
    let mut prev_end = LOW;
    for i in 0..=t.vmas.len() {
        let hole_end = t.vmas.get(i).map_or(USER_TOP, |v| v.start);
        let hole_start = prev_end.max(LOW);
        prev_end = t.vmas.get(i).map_or(USER_TOP, |v| v.end);
        if hole_end < hole_start + len {
            continue;
        }
        let step = len.max(1 << 20);
        let mut c = (hole_end - len) & !(PAGE_SIZE - 1);
        for _ in 0..64 {
            if c < hole_start {
                break;
            }
            if try_map(c, len) {
                return Some(c);
            }
            c = c.saturating_sub(step);
        }
    }
    None
}

/// Move the tables (their own page-aligned mapping, image::load) to `to` in the gap:
/// mremap(2) moves the pages instead of copying them, which for a process with
/// many threads (about 11 KiB of xstate each) is most of a megabyte. Copied when
/// the move fails.
fn move_tables(tables: &[u8], to: u64) {
    let len = align_up(tables.len().max(1) as u64, PAGE_SIZE) as usize;
    // SAFETY: the source is the tables' own mapping of `len` bytes, used no more in
    // phase 1 after this; the destination is inside the gap, ours.
    if unsafe { sys::mremap_fixed(tables.as_ptr() as usize, len, to as usize) }.is_err() {
        // SAFETY: as above; both ranges are mapped and disjoint.
        unsafe { core::ptr::copy_nonoverlapping(tables.as_ptr(), to as *mut u8, tables.len()) };
    }
}

/// Copy the stub and `ctx` into a gap, move the tables there, and continue in phase
/// 2 there.
pub fn enter(ctx: &mut Ctx, t: &Tables, tables: &[u8]) -> ! {
    let (start, end) = (reloc::stub_start(), reloc::stub_end());
    let code_len = align_up((end - start) as u64, PAGE_SIZE);
    let tables_len = align_up(tables.len() as u64, PAGE_SIZE);
    let ctx_len = align_up(core::mem::size_of::<Ctx>() as u64, PAGE_SIZE);
    let stacks_len = (t.threads.len() as u64 - 1) * crate::threads::STACK;
    let len = code_len + tables_len + ctx_len + stacks_len + STACK_LEN;
    let base = find(t, len);
    out::trace("restorer gap", base, base + len);
    // The code, the Ctx and the top of the stack are written at once: allocated in
    // one call each rather than a page fault per page (MADV_POPULATE_WRITE, Linux
    // 5.14; best effort). The tables are moved in, the threads' stacks used little.
    let _ = sys::madvise(base as usize, code_len as usize, sys::MADV_POPULATE_WRITE);
    let _ = sys::madvise((base + len - STACK_POPULATE) as usize, STACK_POPULATE as usize, sys::MADV_POPULATE_WRITE);

    let tables_addr = base + code_len;
    let ctx_addr = tables_addr + tables_len;
    ctx.tables_addr = tables_addr as usize;
    ctx.tables_len = tables.len();
    ctx.gap_start = base as usize;
    ctx.gap_len = len as usize;
    ctx.thread_stacks = (ctx_addr + ctx_len) as usize;
    // SAFETY: the gap is a fresh RWX mapping of `len` bytes, disjoint from the
    // sources; the stub image [start, end) is mapped (link.ld keeps it contiguous).
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, base as *mut u8, end - start);
        core::ptr::copy_nonoverlapping(ctx as *const Ctx, ctx_addr as *mut Ctx, 1);
    }
    move_tables(tables, tables_addr);
    let old_bias = reloc::bias();
    let new_bias = base as usize - (start - old_bias);
    // SAFETY: the copy at new_bias has the same layout as the running image.
    unsafe { reloc::apply(new_bias) };
    let f = crate::phase2 as *const () as usize - old_bias + new_bias;
    // SAFETY: the stack is the top of the gap; f is phase2 inside the relocated copy.
    unsafe { arch::call_on_stack((base + len) as usize, f, ctx_addr as usize) }
}
