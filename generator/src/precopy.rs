//! `--leave-running` with a stop that does not grow with the target's memory:
//! its big private anonymous VMAs are copied while it runs, and only the pages
//! it wrote meanwhile are copied again while it is stopped.
//!
//! 1. [`start`], the target running: its smaps is read, the VMAs worth it are
//!    chosen (private, writable, anonymous, at least [`MIN_VMA`] resident, and
//!    [`MIN_TOTAL`] in all); one thread is stopped just long enough to inject a
//!    userfaultfd(2), which ckpt takes over (uffd_wp.rs), and let go again. From
//!    ckpt's side, the VMAs are registered in write-protect mode, and
//!    PAGEMAP_SCAN write-protects their pages and lists the ones holding data
//!    (wp_scan.rs), which are copied into a temporary file next to the output
//!    (stash.rs), the target running on.
//! 2. [`Precopy::snapshot`], at the freeze's stop (all threads stopped, state
//!    captured as for any freeze): for each VMA still registered with the same
//!    range, the pages holding data now and not written since their protection
//!    are taken from the copy; written or new ones, and every page of any other
//!    VMA, are copied now. A page dropped meanwhile (MADV_DONTNEED, reclaimed
//!    MADV_FREE) no longer holds data: it resumes as zero, as it reads in the
//!    target. The target is let go, then ckpt closes the userfaultfd, which
//!    ends the tracking; the writer reads every page from the snapshot.
//!
//! Anything that keeps this from working (a target with a userfaultfd of its
//! own, seccomp filters, a kernel without WP_ASYNC or PAGEMAP_SCAN) makes the
//! caller use the copy-on-write fork instead (cow.rs); the reason is traced
//! (CKPT_TRACE=1). The target's fd table never holds the userfaultfd while it
//! runs, and a freeze that fails ends the tracking by closing ckpt's fd (the
//! drop), so the target is left as it was found.

use crate::gadgets;
use crate::inject::Injector;
use crate::memory::Mem;
use crate::pagemap::{Pagemap, Recorded};
use crate::plan::{self, Pages, PlannedVma, Strings};
use crate::proc::maps::Mapping;
use crate::ptrace::Seized;
use crate::stash::{Extent, Snapshot, Stash};
use crate::wp_scan::WpScan;
use crate::{proc, trace, uffd_wp};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A VMA is tracked from this many resident bytes on...
pub const MIN_VMA: u64 = 1 << 20;
/// ...when the tracked VMAs hold this many in all; below, the fork of the
/// copy-on-write freeze costs less than the extra stop.
pub const MIN_TOTAL: u64 = 32 << 20;

/// The tracking of the target's writes and what was copied while it ran.
pub struct Precopy {
    pid: i32,
    /// Held until the target is let go after the snapshot.
    _tracker: uffd_wp::Tracker,
    /// The registered VMAs.
    ranges: Vec<(u64, u64)>,
    /// The target's page map (opened through a live thread; the open file
    /// keeps reading the process's memory whichever thread exits).
    wp: WpScan,
    stash: Option<Stash>,
    /// Where the pre-copied ranges are in the stash.
    copied: Vec<Extent>,
    /// How long one thread of the target was stopped for the injection.
    pub stopped: Duration,
}

/// VmFlags of a VMA registered with a userfaultfd: missing, write-protect,
/// minor-fault mode (proc(5)).
const UFFD_FLAGS: [&str; 3] = ["um", "uw", "ui"];

/// The VMAs to track, or why none are.
fn choose(pid: i32, maps: &[Mapping]) -> Result<Vec<(u64, u64)>> {
    if let Some(m) = maps.iter().find(|m| UFFD_FLAGS.iter().any(|f| m.has_flag(f))) {
        bail!("pid {pid} has a userfaultfd of its own (VMA {:x}-{:x} is registered)", m.start, m.end);
    }
    let anon = |m: &&Mapping| m.name.is_empty() || m.name == "[heap]" || m.name.starts_with("[anon:");
    let ranges: Vec<&Mapping> = maps.iter().filter(|m| !m.shared && m.write && anon(m) && m.rss + m.swap >= MIN_VMA).collect();
    let total: u64 = ranges.iter().map(|m| m.rss + m.swap).sum();
    if total < MIN_TOTAL {
        bail!("pid {pid} has {} MiB in big private anonymous VMAs, less than the {} MiB worth a pre-copy", total >> 20, MIN_TOTAL >> 20);
    }
    Ok(ranges.iter().map(|m| (m.start, m.end)).collect())
}

/// Set up the tracking and copy the chosen VMAs while pid `pid` runs; the stash
/// goes into `dir`. An error says why the pre-copy is not used (the target is
/// then as it was).
pub fn start(pid: i32, dir: &Path) -> Result<Precopy> {
    let st = proc::status::read_status(pid)?;
    if st.seccomp != 0 {
        // A filter could refuse the injected userfaultfd(2), or kill the task for it.
        bail!("pid {pid} runs under seccomp filters");
    }
    let maps = proc::maps::read_smaps(pid).with_context(|| format!("reading the memory map of pid {pid}"))?;
    let ranges = choose(pid, &maps)?;
    let vmas = plan::plan(&maps, &mut Strings::default())?;
    let syscall_at = gadgets::find(&Mem::open(pid).with_context(|| format!("opening the memory of pid {pid}"))?, &vmas).syscall;
    if syscall_at == 0 {
        bail!("pid {pid}: no `syscall` instruction in its executable memory");
    }
    let stash = Stash::create(dir).with_context(|| format!("creating a temporary file in {}", dir.display()))?;

    // One thread is enough for the injected call (the mm is the process's);
    // the others run on.
    let tid = proc::threads(pid)?
        .into_iter()
        .find(|&tid| crate::group::state_letter(pid, tid) != 'Z' as u32)
        .with_context(|| format!("pid {pid} has no live thread"))?;
    let t0 = Instant::now();
    let mut t = Seized::seize(tid)?;
    t.request_stop()?;
    t.wait_stop()?;
    let writable = |lo: u64, hi: u64| vmas.iter().any(|v| v.vma.start <= lo && hi <= v.vma.end && v.map.write);
    let mut tracker = {
        let inj = Injector::new(&t, t.regs()?, syscall_at, writable)?;
        uffd_wp::create(&inj, pid, tid)?
    };
    drop(t);
    let stopped = t0.elapsed();
    trace::mark(&format!("pre-copy: userfaultfd created; thread {tid} was stopped {:.3} ms for it", stopped.as_secs_f64() * 1e3));
    let wp = WpScan::open(tid).with_context(|| format!("opening the page map of pid {pid}"))?;
    let mem = Mem::open(tid).with_context(|| format!("opening the memory of pid {pid}"))?;
    let ranges = tracker.track(&ranges)?;
    if ranges.is_empty() {
        bail!("pid {pid}: none of its VMAs could be registered");
    }
    trace::mark(&format!("pre-copy: {} VMAs registered", ranges.len()));
    let mut held = Vec::new();
    for &(lo, hi) in &ranges {
        held.extend(wp.protect(lo, hi)?.into_iter().map(|h| (h.start, h.end)));
    }
    let mut pc = Precopy { pid, _tracker: tracker, ranges, wp, stash: Some(stash), copied: Vec::new(), stopped };
    trace::mark("pre-copy: pages write-protected");
    let stash = pc.stash.as_mut().expect("the stash exists until the snapshot");
    let (copied, _) = stash.copy(&mem, &held).with_context(|| format!("copying the memory of pid {pid} into {}", dir.display()))?;
    pc.copied = copied;
    trace::mark(&format!("pre-copy: {} MiB copied while the target ran", stash.len() >> 20));
    Ok(pc)
}

/// What the pages are read from once the target runs on: a copy, which a
/// death of the target no longer affects.
pub struct Copied;

impl crate::emit::Alive for Copied {
    fn alive(&self) -> Result<()> {
        Ok(())
    }
}

/// Sorted ranges with the adjacent ones joined.
fn merge(r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(l) if l.1 == lo => l.1 = hi,
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// An address range, `[start, end)`.
type Range = (u64, u64);

/// Per registered VMA, the ranges changed since their protection.
pub struct Changed(Vec<(Range, Vec<Range>)>);

/// The parts of the pre-copied `copied` (address order) inside `vma` and
/// outside the `changed` ranges (address order).
fn unchanged(copied: &[Extent], vma: (u64, u64), changed: &[(u64, u64)]) -> Vec<Extent> {
    let mut out = Vec::new();
    let mut i = copied.partition_point(|e| e.addr + e.len <= vma.0);
    let mut a = vma.0;
    for &(lo, hi) in changed.iter().chain(std::iter::once(&(vma.1, vma.1))) {
        // [a, lo) is unchanged.
        while let Some(e) = copied.get(i).filter(|e| e.addr < lo) {
            let (s, t) = (e.addr.max(a), (e.addr + e.len).min(lo));
            if s < t {
                out.push(Extent { addr: s, len: t - s, off: e.off + (s - e.addr) });
            }
            if e.addr + e.len > lo {
                break;
            }
            i += 1;
        }
        a = hi;
    }
    out
}

impl Precopy {
    /// With every thread of the target stopped and `vmas` planned: the snapshot
    /// the pages are written from, and the page map answers that go with it.
    /// With every thread of the target stopped: the ranges of each registered
    /// VMA that changed since their protection (wp_scan.rs). Reads only the page
    /// map, so it runs beside the capture of the rest of the state; a VMA the scan
    /// refuses (no longer registered: unmapped or replaced) is left out and read
    /// as any other.
    pub fn changed(&self) -> Changed {
        let r = self.ranges.iter().filter_map(|&(lo, hi)| self.wp.unprotected(lo, hi).ok().map(|c| ((lo, hi), c))).collect();
        trace::mark("pre-copy: changed pages listed");
        Changed(r)
    }

    /// With every thread of the target stopped and `vmas` planned: the snapshot
    /// the pages are written from, and the page map answers that go with it.
    /// `mem`/`pm` read the stopped target; `changed` is [`Precopy::changed`],
    /// found at this stop.
    pub fn snapshot(&mut self, vmas: &[PlannedVma], mem: &Mem, pm: &mut Pagemap, changed: Changed) -> Result<(Arc<Snapshot>, Arc<Recorded>)> {
        let wp = &self.wp;
        let mut rec = Recorded::default();
        let mut clean: Vec<Extent> = Vec::new();
        let mut again: Vec<(u64, u64)> = Vec::new();
        let (mut reused, mut tracked) = (0u64, 0usize);
        for v in vmas {
            let key = (v.vma.start, v.vma.end);
            let what = || format!("reading the page map of {:x}-{:x} of pid {}", key.0, key.1, self.pid);
            match v.pages {
                Pages::Populated if v.map.has_flag("uw") && changed.0.iter().any(|c| c.0 == key) => {
                    tracked += 1;
                    // Pages still protected are as they were copied; the others
                    // were written, faulted in, or dropped since.
                    let changed = &changed.0.iter().find(|c| c.0 == key).expect("just found").1;
                    let kept = unchanged(&self.copied, key, changed);
                    let mut populated: Vec<(u64, u64)> = kept.iter().map(|e| (e.addr, e.addr + e.len)).collect();
                    for &(lo, hi) in changed {
                        for h in wp.held(lo, hi).with_context(what)? {
                            again.push((h.start, h.end));
                            populated.push((h.start, h.end));
                        }
                    }
                    reused += kept.iter().map(|e| e.len).sum::<u64>();
                    clean.extend(kept);
                    populated.sort_unstable();
                    if let Some(w) = populated.windows(2).find(|w| w[0].1 > w[1].0) {
                        bail!("pid {}: ranges {:x}-{:x} and {:x}-{:x} of VMA {:x}-{:x} overlap (changed {changed:x?})", self.pid, w[0].0, w[0].1, w[1].0, w[1].1, key.0, key.1);
                    }
                    rec.populated.insert(key, merge(populated));
                }
                Pages::None => {}
                Pages::Populated => {
                    let r = pm.populated(key.0, key.1).with_context(what)?;
                    again.extend(&r);
                    rec.populated.insert(key, r);
                }
                Pages::All => {
                    again.push(key);
                    rec.copies.insert(key, pm.private_copies(key.0, key.1).with_context(what)?);
                }
                Pages::Written => {
                    let r = pm.private_copies(key.0, key.1).with_context(what)?;
                    again.extend(&r);
                    rec.copies.insert(key, r);
                }
            }
        }
        trace::mark(&format!("pre-copy: page maps read at the stop ({tracked} of {} registered VMAs still in place)", self.ranges.len()));
        again.sort_unstable();
        let stash = self.stash.as_mut().expect("the stash exists until the snapshot");
        let before = stash.len();
        let (fresh, unreadable) = stash.copy(mem, &again).with_context(|| format!("copying the pages of pid {} at the stop", self.pid))?;
        trace::mark(&format!(
            "pre-copy: {:.1} MiB copied at the stop, {:.1} MiB taken from the pre-copy",
            (stash.len() - before) as f64 / (1 << 20) as f64,
            reused as f64 / (1 << 20) as f64
        ));
        if unreadable > 0 {
            // The fork path reads them as zero and counts them in the report.
            bail!("{unreadable} pages of pid {} could not be read at the stop", self.pid);
        }
        clean.extend(fresh);
        let snap = Snapshot::new(self.stash.take().expect("the stash exists until the snapshot"), clean);
        Ok((Arc::new(snap), Arc::new(rec)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_parts_are_the_copied_ones_outside_changed_ranges() {
        let copied = [Extent { addr: 0x1000, len: 0x3000, off: 0 }, Extent { addr: 0x6000, len: 0x2000, off: 0x3000 }];
        let got = unchanged(&copied, (0x2000, 0x7000), &[(0x3000, 0x4000), (0x5000, 0x6800)]);
        assert_eq!(
            got,
            [Extent { addr: 0x2000, len: 0x1000, off: 0x1000 }, Extent { addr: 0x6800, len: 0x800, off: 0x3800 }]
        );
        assert_eq!(unchanged(&copied, (0x1000, 0x8000), &[]), copied);
        assert!(unchanged(&copied, (0x1000, 0x8000), &[(0x1000, 0x8000)]).is_empty());
    }

    #[test]
    fn a_target_with_its_own_userfaultfd_is_not_tracked() {
        let mut m = Mapping { start: 0x1000, end: 0x10_0000_0000, write: true, rss: 1 << 30, ..Default::default() };
        assert_eq!(choose(1, std::slice::from_ref(&m)).unwrap(), [(0x1000, 0x10_0000_0000)]);
        m.vm_flags = vec!["rd".into(), "uw".into()];
        assert!(choose(1, &[m]).unwrap_err().to_string().contains("userfaultfd of its own"));
    }
}
