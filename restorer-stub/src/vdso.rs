//! Moving this process's vdso/vvar onto the addresses the frozen process knew
//! (whether they may move there, the same vdso build, is decided in probe.rs).
//!
//! The vdso is never copied from the image: its data pages (vvar) belong to the
//! running kernel. The three mappings [vvar], [vvar_vclock], [vdso] must move together
//! with the same relative offsets (moving only one breaks clock_gettime), and libc has
//! cached pointers into the vdso, so it must land exactly where it was; its code must
//! be the same build, checked byte for byte against the saved copy (probe.rs).

use crate::ctx::{Ctx, Range, VDSO, VVAR, VVAR_VCLOCK};
use crate::out::{self, Step};
use crate::sys;
use ckpt_format::{Tables, VmaKind};

/// The target's [vvar], [vvar_vclock], [vdso] ranges (empty where it had none).
pub fn target_specials(t: &Tables) -> [Range; 3] {
    let mut r = [Range::default(); 3];
    for v in t.vmas {
        let slot = match VmaKind::from_u32(v.kind) {
            Some(VmaKind::Vvar) => VVAR,
            Some(VmaKind::VvarVclock) => VVAR_VCLOCK,
            Some(VmaKind::Vdso) => VDSO,
            _ => continue,
        };
        r[slot] = Range { start: v.start, end: v.end };
    }
    r
}

/// A base where `span` bytes are free of the gap, and of both the current and the
/// target cluster of special mappings (everything else is unmapped by now).
fn temp_base(ctx: &Ctx, span: u64, cur: &Range, tgt: &Range) -> u64 {
    let gap = Range { start: ctx.gap_start as u64, end: (ctx.gap_start + ctx.gap_len) as u64 };
    for c in [0x1000_0000_0000u64, 0x2000_0000_0000, 0x4000_0000_0000, 0x1_0000_0000] {
        let r = Range { start: c, end: c + span };
        if !r.overlaps(&gap) && !r.overlaps(cur) && !r.overlaps(tgt) {
            return c;
        }
    }
    out::fail(Step::MoveVdso, cur.start, cur.end, 0)
}

/// The smallest range holding every non-empty one of `r` (the vvar/vdso pages).
pub fn cluster(r: &[Range; 3]) -> Range {
    let mut c = Range { start: u64::MAX, end: 0 };
    for x in r.iter().filter(|x| !x.is_empty()) {
        c.start = c.start.min(x.start);
        c.end = c.end.max(x.end);
    }
    if c.start == u64::MAX {
        Range::default()
    } else {
        c
    }
}

fn move_one(from: &Range, to: u64) {
    out::trace("move special mapping", from.start, from.end);
    // SAFETY: `from` is one of our own special mappings, no longer used by the stub;
    // the destination is free (everything but the gap and these was unmapped).
    let r = unsafe { sys::mremap_fixed(from.start as usize, from.len() as usize, to as usize) };
    out::check(r, Step::MoveVdso, to, to + from.len());
}

/// Move (or drop) this process's vdso/vvar so they sit where the target had them.
pub fn move_specials(ctx: &Ctx, t: &Tables) {
    let tgt = target_specials(t);
    let mut cur = ctx.cur;
    for i in 0..3 {
        if tgt[i].is_empty() && !cur[i].is_empty() {
            // SAFETY: the target had no such mapping; the stub no longer uses it.
            let _ = unsafe { sys::munmap(cur[i].start as usize, cur[i].len() as usize) };
            cur[i] = Range::default();
        }
    }
    let (cc, tc) = (cluster(&cur), cluster(&tgt));
    if cc.overlaps(&tc) && cc.start != tc.start {
        let base = temp_base(ctx, cc.len(), &cc, &tc);
        for r in cur.iter_mut().filter(|r| !r.is_empty()) {
            let to = base + (r.start - cc.start);
            move_one(r, to);
            *r = Range { start: to, end: to + r.len() };
        }
    }
    for i in 0..3 {
        if !cur[i].is_empty() && cur[i].start != tgt[i].start {
            move_one(&cur[i], tgt[i].start);
        }
    }
}
