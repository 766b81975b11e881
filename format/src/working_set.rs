//! The working-set hint (section WorkingSet, written by `ckpt profile`): the pages a
//! first lazy resume saw the process touch before anything else, which a later lazy
//! resume reads in before the process's first instruction instead of waiting for
//! each one's fault. A hint only moves work earlier: a page it names that is never
//! stored reads as zeros either way, and a resume that is not lazy ignores it.

use crate::records::Vma;
use crate::{FormatError, PAGE_SIZE, USER_TOP};

/// Most ranges a hint may hold.
pub const MAX_WORKING_SET: u32 = 1 << 20;

/// One range of hinted pages, in the addresses of the freeze.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkingSetRange {
    /// Page aligned.
    pub start: u64,
    /// Bytes: a non-zero multiple of the page size.
    pub len: u64,
}

impl WorkingSetRange {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Each range is page aligned, non-empty, inside one VMA, and after the previous one
/// (sorted, disjoint): so a reader can merge it with the VMAs in one pass.
pub fn check(ranges: &[WorkingSetRange], vmas: &[Vma]) -> Result<(), FormatError> {
    let mut prev_end = 0;
    for (i, r) in ranges.iter().enumerate() {
        let bad = |what| Err(FormatError::BadWorkingSet { index: i as u32, what });
        if r.start % PAGE_SIZE != 0 || r.len % PAGE_SIZE != 0 || r.len == 0 {
            return bad("range not page aligned or empty");
        }
        let end = match r.start.checked_add(r.len) {
            Some(e) if e <= USER_TOP => e,
            _ => return bad("range past the end of user space"),
        };
        if r.start < prev_end {
            return bad("ranges not sorted or overlapping");
        }
        let v = vmas.partition_point(|v| v.end <= r.start);
        if !vmas.get(v).is_some_and(|v| v.start <= r.start && end <= v.end) {
            return bad("range not inside one vma");
        }
        prev_end = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(start: u64, end: u64) -> Vma {
        Vma { start, end, ..Vma::default() }
    }

    fn r(start: u64, pages: u64) -> WorkingSetRange {
        WorkingSetRange { start, len: pages * PAGE_SIZE }
    }

    #[test]
    fn size_is_pinned() {
        assert_eq!(core::mem::size_of::<WorkingSetRange>(), 16);
    }

    const VMAS: [(u64, u64); 2] = [(0x10000, 0x20000), (0x30000, 0x40000)];

    fn vmas() -> [Vma; 2] {
        VMAS.map(|(s, e)| vma(s, e))
    }

    #[test]
    fn sorted_ranges_inside_vmas_are_accepted() {
        assert_eq!(check(&[r(0x10000, 2), r(0x13000, 1), r(0x30000, 16)], &vmas()), Ok(()));
        assert_eq!(check(&[], &vmas()), Ok(()));
    }

    fn refused(ranges: &[WorkingSetRange], index: u32, what: &str) {
        match check(ranges, &vmas()) {
            Err(FormatError::BadWorkingSet { index: i, what: w }) => assert_eq!((i, w), (index, what)),
            other => panic!("{ranges:?}: {other:?}"),
        }
    }

    #[test]
    fn misaligned_range_is_refused() {
        refused(&[WorkingSetRange { start: 0x10010, len: PAGE_SIZE }], 0, "range not page aligned or empty");
        refused(&[WorkingSetRange { start: 0x10000, len: 100 }], 0, "range not page aligned or empty");
    }

    #[test]
    fn empty_range_is_refused() {
        refused(&[r(0x10000, 1), r(0x11000, 0)], 1, "range not page aligned or empty");
    }

    #[test]
    fn range_past_user_space_is_refused() {
        refused(&[WorkingSetRange { start: USER_TOP, len: PAGE_SIZE }], 0, "range past the end of user space");
        refused(&[WorkingSetRange { start: u64::MAX & !(PAGE_SIZE - 1), len: 2 * PAGE_SIZE }], 0, "range past the end of user space");
    }

    #[test]
    fn unsorted_or_overlapping_ranges_are_refused() {
        refused(&[r(0x30000, 1), r(0x10000, 1)], 1, "ranges not sorted or overlapping");
        refused(&[r(0x10000, 2), r(0x11000, 1)], 1, "ranges not sorted or overlapping");
    }

    #[test]
    fn range_outside_or_across_vmas_is_refused() {
        refused(&[r(0x20000, 1)], 0, "range not inside one vma");
        refused(&[r(0x1f000, 2)], 0, "range not inside one vma");
        refused(&[r(0x10000, 1), r(0x3f000, 2)], 1, "range not inside one vma");
    }
}
