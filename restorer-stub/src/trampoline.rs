//! Resuming on a kernel whose vdso is another build (format::compat chose
//! VdsoPath::Trampolines): the process keeps pointers into its old vdso (glibc's
//! cached functions, a Go runtime's parsed symbols, AT_SYSINFO_EHDR), so the old
//! vdso's range gets back its saved bytes with, at every exported function, a jump
//! to this kernel's function of the same name, or the system call where this
//! kernel's vdso lacks it (format::vdso). This kernel's own [vvar], [vvar_vclock]
//! and [vdso] stay together (moving one alone breaks clock_gettime) at a place free
//! in the target's layout, near the old vdso so the jumps are 5-byte `jmp rel32`.
//! The old [vvar] ranges become PROT_NONE reservations: any stale read faults
//! rather than returning another kernel's time data.

use crate::ctx::{Ctx, Range, VDSO};
use crate::out::{self, Step};
use crate::sys;
use crate::vdso::{cluster, target_specials};
use ckpt_format::{encode, patch_for, Patch, Tables, VmaKind, MAX_PATCH, PAGE_SIZE, USER_TOP};

/// Whether `r` is free in the target's layout and away from the restorer's gap.
/// The VMAs are sorted and disjoint (validated on read): the first one ending
/// after `r.start` is the only one that may overlap it first.
fn free(ctx: &Ctx, t: &Tables, r: &Range) -> bool {
    let gap = Range { start: ctx.gap_start as u64, end: (ctx.gap_start + ctx.gap_len) as u64 };
    let i = t.vmas.partition_point(|v| v.end <= r.start);
    let hit = t.vmas.get(i).is_some_and(|v| v.start < r.end);
    r.start >= 1 << 20 && r.end <= USER_TOP && !r.overlaps(&gap) && !hit
}

/// A base for `span` bytes free in the target's layout and not overlapping `avoid`
/// (the cluster's current place), as close to `near` as the layout allows:
/// candidates are the edges of every target VMA and of the gap.
fn place(ctx: &Ctx, t: &Tables, span: u64, near: u64, avoid: &Range) -> Option<u64> {
    let gap = (ctx.gap_start as u64, (ctx.gap_start + ctx.gap_len) as u64);
    let edges = t.vmas.iter().map(|v| (v.start, v.end)).chain(core::iter::once(gap));
    let mut best: Option<u64> = None;
    for (s, e) in edges {
        for c in [s.wrapping_sub(span + PAGE_SIZE), e + PAGE_SIZE] {
            let r = Range { start: c, end: c.wrapping_add(span) };
            if r.end < r.start || r.overlaps(avoid) || !free(ctx, t, &r) {
                continue;
            }
            if best.is_none_or(|b| b.abs_diff(near) > c.abs_diff(near)) {
                best = Some(c);
            }
        }
    }
    best
}


/// Put this kernel's vdso cluster where it is free in the target's layout; returns
/// the new [vdso] range (empty if this kernel maps none).
fn settle_own(ctx: &Ctx, t: &Tables, near: u64) -> Range {
    let mut cur = ctx.cur;
    let cc = cluster(&cur);
    // Within reach of `jmp rel32` from the old vdso and free: it can stay.
    let close = cc.start.abs_diff(near) < 1 << 30;
    if cc.is_empty() || (close && free(ctx, t, &cc)) {
        return cur[VDSO];
    }
    let base = match place(ctx, t, cc.len(), near, &cc) {
        Some(b) => b,
        None if free(ctx, t, &cc) => return cur[VDSO],
        None => out::fail(Step::MoveVdso, cc.start, cc.end, 0),
    };
    for r in cur.iter_mut().filter(|r| !r.is_empty()) {
        let to = base + (r.start - cc.start);
        out::trace("move this kernel's vdso/vvar", to, to + r.len());
        // SAFETY: our own special mapping, not used by the stub now; the destination
        // is free (nothing but the gap and these is mapped, and it overlaps neither).
        let m = unsafe { sys::mremap_fixed(r.start as usize, r.len() as usize, to as usize) };
        out::check(m, Step::MoveVdso, to, to + r.len());
        *r = Range { start: to, end: to + r.len() };
    }
    cur[VDSO]
}

fn map_anon(r: &Range, prot: usize) {
    // SAFETY: MAP_FIXED_NOREPLACE only creates; the range is the target's and free.
    let m = unsafe {
        sys::mmap(r.start as usize, r.len() as usize, prot, sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_NORESERVE | sys::MAP_FIXED_NOREPLACE, -1, 0)
    };
    out::check(m, Step::MoveVdso, r.start, r.end);
}

/// Rebuild the old vdso as saved bytes plus jumps, and fence its old data pages.
pub fn install(ctx: &Ctx, t: &Tables) {
    let old = target_specials(t);
    let new = settle_own(ctx, t, old[VDSO].start);
    // SAFETY: this kernel's vdso, mapped readable at `new` (or empty).
    let elf = unsafe { core::slice::from_raw_parts(new.start as *const u8, new.len() as usize) };
    let vdso = old[VDSO];
    map_anon(&vdso, sys::PROT_READ | sys::PROT_WRITE);
    let n = t.vdso.len().min(vdso.len() as usize);
    // SAFETY: the fresh writable mapping covers `n` bytes.
    unsafe { core::ptr::copy_nonoverlapping(t.vdso.as_ptr(), vdso.start as *mut u8, n) };
    // In offset order, so a symbol's patch is never overwritten by a longer one
    // of a symbol before it (aliases share an offset and get the same patch).
    let mut last = None;
    for _ in 0..t.vdso_syms.len() {
        let Some(s) = t.vdso_syms.iter().filter(|s| last.is_none_or(|l| s.offset > l)).min_by_key(|s| s.offset) else { break };
        last = Some(s.offset);
        let at = vdso.start + s.offset;
        let name = t.string(s.name_off, s.name_len);
        let patch = patch_for(name, elf, new.start);
        let mut b = [0u8; MAX_PATCH];
        let len = encode(patch, at, &mut b).min(vdso.len().saturating_sub(s.offset) as usize);
        // SAFETY: [at, at + len) lies in the writable mapping made above.
        unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), at as *mut u8, len) };
        out::trace(if matches!(patch, Patch::Jump(_)) { "vdso function jumps to this kernel's" } else { "vdso function makes the system call" }, at, at + len as u64);
    }
    let prot = t.vmas.iter().find(|v| v.kind == VmaKind::Vdso as u32).map_or(sys::PROT_READ | sys::PROT_EXEC, |v| v.prot as usize);
    // SAFETY: the mapping made above.
    out::check(unsafe { sys::mprotect(vdso.start as usize, vdso.len() as usize, prot) }, Step::MoveVdso, vdso.start, vdso.end);
    for r in old[..VDSO].iter().filter(|r| !r.is_empty()) {
        out::trace("old vvar fenced (PROT_NONE)", r.start, r.end);
        map_anon(r, 0);
    }
}
