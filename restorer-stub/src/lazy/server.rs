//! The helper's loop: answer faults, follow the process's changes of layout, and
//! stream the rest of its pages in file order until nothing is owed.
//!
//! Under `ckpt profile` (a profile fd, see profile.rs in the generator) nothing is
//! streamed: each fault of the resumed process is answered with its one page and
//! its address written to the profile fd, until the reader closes it; from then on
//! the helper streams the rest as usual. Otherwise the pages of the file's
//! working-set hint, read in before the first instruction (prefetch.rs), count as
//! settled from the start.
//!
//! One process is served per userfaultfd: the resumed one, and each child it forks
//! while pages are still owed (UFFD_EVENT_FORK hands the helper a userfaultfd for
//! the child, whose missing pages are the parent's at the fork). Faults of every
//! thread queue on the same userfaultfd; between two background chunks (at most
//! [`CHUNK`] bytes) the helper reads them all, so a fault waits for at most one.

use super::pages::{Done, Index};
use super::uffd::{self, Filled, Msg};
use crate::ctx::Ctx;
use crate::out::Line;
use crate::sys::{self, call};
use ckpt_format::crc32c;
use ckpt_format::{align_up, Tables, PAGE_SIZE};

/// The most one background copy brings in.
const CHUNK: u64 = 1 << 20;
/// The most a fault brings in around the faulting page (within its run).
const AROUND: u64 = 16 * PAGE_SIZE;
/// Processes served at once (the resumed one and its children forked while
/// pages are owed).
const MAX_TARGETS: usize = 4096;
const SYS_SETSID: usize = 112;
const SYS_SCHED_YIELD: usize = 24;
const PR_SET_NAME: usize = 15;
const SIGKILL: usize = 9;

struct Target {
    fd: usize,
    done: Done,
    /// Background cursor: index in the runs and offset in that run.
    run: usize,
    off: u64,
}

struct Server<'a> {
    t: &'a Tables<'a>,
    /// The whole file, mapped by the helper (it stays valid if the file is removed
    /// or replaced by rename: the mapping holds the inode).
    img: &'static [u8],
    base: u64,
    index: Index,
    targets: &'static mut [Option<Target>],
    /// Targets at or above this index were never used.
    used: usize,
    hw_crc: bool,
    pid: usize,
    /// The checksum of the runs, computed in file order a chunk ahead of the
    /// stream (see [`Server::verify_upto`]).
    crc: Verify,
    /// Faults read while an event was being handled, answered after it (target,
    /// address). One that does not fit is answered anyway, later: by the
    /// background copy of its page, or by the end of the registration.
    deferred: [(usize, u64); 256],
    ndeferred: usize,
    /// Unmapped ranges not yet settled (target, start, end): mremap(2) reports
    /// the unmapping of a moved range before the move itself
    /// (mremap_userfaultfd_complete() after userfaultfd_unmap_complete()), and the
    /// move needs the range's owed pages. Settled at the next other event.
    unmapped: [(usize, u64, u64); 16],
    nunmapped: usize,
    /// `ckpt profile`'s fd while it reads (0 once it stopped), the faulting page
    /// addresses not yet written to it (u64, native order), and the fds to poll
    /// while nothing streams.
    profile: usize,
    log: [u8; 4096],
    nlog: usize,
    polls: &'static mut [sys::PollFd],
    /// The go pipe until the process is released (mod.rs, Serving), and when
    /// streaming starts anyway (CLOCK_MONOTONIC ns).
    go: usize,
    go_deadline: u64,
}

/// The longest the stream waits for the process's release.
const RELEASE_WAIT_NS: u64 = 200_000_000;

fn now_ns() -> u64 {
    let mut ts = [0u64; 2];
    let _ = sys::clock_gettime(1, &mut ts);
    ts[0] * 1_000_000_000 + ts[1]
}

/// Entry of the helper, in a fresh double-forked process; never returns.
pub fn run(ctx: &Ctx, t: &Tables, pid: usize, fd: usize, go: usize) -> ! {
    // Out of the terminal's process group: a ^C meant for the process must not end
    // the helper (a killed helper would leave the owed pages zero).
    // SAFETY: no memory arguments.
    let _ = unsafe { call(SYS_SETSID, [0; 6]) };
    // Named for the process it serves ("ckpt-lazy-PID", at most 15 bytes with
    // pid_max <= 99999), so ps(1) and waiting scripts can find it.
    let mut name = [0u8; 16];
    let mut digits = [0u8; 20];
    let d = crate::out::decimal(pid as u64, &mut digits);
    name[..10].copy_from_slice(b"ckpt-lazy-");
    let n = d.len().min(5);
    name[10..10 + n].copy_from_slice(&d[..n]);
    // SAFETY: a NUL-terminated name of 16 bytes at most.
    let _ = unsafe { sys::prctl(PR_SET_NAME, name.as_ptr() as usize, 0, 0) };
    let profile = ctx.profile_fd;
    keep_only(&mut [2, fd, go, ctx.fd, if profile != 0 { profile } else { 2 }]);
    let mut b = [0u8; 1];
    if !matches!(sys::read(go, &mut b), Ok(1)) {
        // The restore failed before the process could run: nothing to serve.
        sys::exit_group(0)
    }
    let len = align_up(ctx.image_base + ctx.file_len, PAGE_SIZE) as usize;
    // SAFETY: a new read-only private mapping of the image file.
    let img = match unsafe { sys::mmap(0, len, sys::PROT_READ, sys::MAP_PRIVATE, ctx.fd as isize, 0) } {
        // SAFETY: the mapping is never unmapped; reads past the file's end are not made
        // (runs are validated inside the image).
        Ok(a) => unsafe { core::slice::from_raw_parts(a as *const u8, len) },
        Err(e) => {
            Line::new().s("lazy resume: cannot map the image: ").errno(e).s("; the process is killed").emit();
            kill(pid);
        }
    };
    let _ = sys::close(ctx.fd);
    let index = Index::build(t);
    let mut done = Done::new(index.nbits);
    if profile == 0 {
        for r in t.working_set {
            done.set_range(&index, r.start, r.end());
        }
    }
    let mut s = Server {
        t,
        img,
        base: ctx.image_base,
        index,
        targets: targets(),
        used: 1,
        hw_crc: ctx.hw_crc,
        pid,
        crc: Verify { run: 0, off: 0, crc: 0 },
        deferred: [(0, 0); 256],
        ndeferred: 0,
        unmapped: [(0, 0, 0); 16],
        nunmapped: 0,
        profile,
        log: [0; 4096],
        nlog: 0,
        polls: polls(),
        go,
        go_deadline: now_ns() + RELEASE_WAIT_NS,
    };
    s.targets[0] = Some(Target { fd, done, run: 0, off: 0 });
    s.serve()
}

/// Where the checksum stands: bytes `[0, off)` of run `run` give `crc`.
struct Verify {
    run: usize,
    off: u64,
    crc: u32,
}

fn targets() -> &'static mut [Option<Target>] {
    let p = super::pages::alloc(MAX_TARGETS * core::mem::size_of::<Option<Target>>()) as *mut Option<Target>;
    for i in 0..MAX_TARGETS {
        // SAFETY: i < MAX_TARGETS, inside the allocation.
        unsafe { p.add(i).write(None) };
    }
    // SAFETY: MAX_TARGETS entries were written; the memory is never freed.
    unsafe { core::slice::from_raw_parts_mut(p, MAX_TARGETS) }
}

fn polls() -> &'static mut [sys::PollFd] {
    let n = MAX_TARGETS + 1;
    let p = super::pages::alloc(n * core::mem::size_of::<sys::PollFd>()) as *mut sys::PollFd;
    // SAFETY: a zeroed allocation of n pollfds (all-zero is a valid PollFd), never freed.
    unsafe { core::slice::from_raw_parts_mut(p, n) }
}

fn kill(pid: usize) -> ! {
    // SAFETY: no memory arguments.
    let _ = unsafe { call(sys::SYS_KILL, [pid, SIGKILL, 0, 0, 0, 0]) };
    sys::exit_group(1)
}

/// Close every fd but those in `keep`.
fn keep_only(keep: &mut [usize]) {
    keep.sort_unstable();
    let mut lo = 0;
    for &k in keep.iter() {
        if k > lo {
            let _ = sys::close_range(lo, k - 1);
        }
        lo = k + 1;
    }
    let _ = sys::close_range(lo, u32::MAX as usize);
}

impl Server<'_> {
    fn serve(&mut self) -> ! {
        loop {
            for i in 0..self.used {
                self.drain(i, 0);
            }
            while self.ndeferred > 0 {
                self.ndeferred -= 1;
                let (i, addr) = self.deferred[self.ndeferred];
                if self.targets[i].is_some() && self.fault(i, addr, 0).is_err() {
                    self.close(i);
                }
            }
            let Some(i) = (0..self.used).find(|&i| self.targets[i].is_some()) else {
                sys::exit_group(0)
            };
            if self.profile != 0 || self.go != 0 {
                self.flush_profile();
                self.wait();
                continue;
            }
            if !self.stream(i) {
                self.close(i);
            }
        }
    }

    /// Write the recorded fault addresses to the profile fd; a reader that is gone
    /// (EPIPE: SIGPIPE is blocked here) ends the profile.
    fn flush_profile(&mut self) {
        let mut at = 0;
        while at < self.nlog && self.profile != 0 {
            match sys::write(self.profile, &self.log[at..self.nlog]) {
                Ok(n) => at += n,
                Err(sys::EINTR) => {}
                Err(_) => self.stop_profile(),
            }
        }
        self.nlog = 0;
    }

    fn stop_profile(&mut self) {
        let _ = sys::close(self.profile);
        self.profile = 0;
    }

    /// While nothing streams (profiling, or the process not yet released): sleep
    /// until a process has a message, the profile's reader closes its end (POLLERR
    /// on a pipe's write end, pipe(7)) or the go pipe ends (POLLHUP once every
    /// write end is closed).
    fn wait(&mut self) {
        let mut n = 0;
        for tg in self.targets[..self.used].iter().flatten() {
            self.polls[n] = sys::PollFd { fd: tg.fd as i32, events: sys::POLLIN, revents: 0 };
            n += 1;
        }
        let (p, g) = (n, n + 1);
        self.polls[p] = sys::PollFd { fd: if self.profile != 0 { self.profile as i32 } else { -1 }, events: 0, revents: 0 };
        self.polls[g] = sys::PollFd { fd: if self.go != 0 { self.go as i32 } else { -1 }, events: sys::POLLIN, revents: 0 };
        let timeout = if self.go != 0 { (self.go_deadline.saturating_sub(now_ns()) / 1_000_000) as i32 } else { -1 };
        if sys::poll(&mut self.polls[..g + 1], timeout).is_err() {
            return;
        }
        if self.polls[p].revents & (sys::POLLERR | sys::POLLHUP) != 0 {
            self.stop_profile();
        }
        if self.go != 0 && (self.polls[g].revents != 0 || now_ns() >= self.go_deadline) {
            let _ = sys::close(self.go);
            self.go = 0;
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(tg) = self.targets[i].take() {
            // Ends the registration of every VMA of that process.
            let _ = sys::close(tg.fd);
        }
    }

    /// Read and handle every pending message of target `i`.
    fn drain(&mut self, i: usize, depth: u32) {
        let mut msgs = [Msg::default(); 32];
        loop {
            let Some(fd) = self.targets[i].as_ref().map(|tg| tg.fd) else { return };
            let n = uffd::read(fd, &mut msgs);
            if n == 0 {
                return;
            }
            for m in &msgs[..n] {
                if self.handle(i, m, depth).is_err() {
                    self.close(i);
                    return;
                }
            }
        }
    }

    /// Settle the unmapped ranges kept for a move that did not come.
    fn settle_unmapped(&mut self) {
        for k in 0..self.nunmapped {
            let (i, start, end) = self.unmapped[k];
            if let Some(tg) = self.targets[i].as_mut() {
                tg.done.set_range(&self.index, start, end);
            }
        }
        self.nunmapped = 0;
    }

    fn handle(&mut self, i: usize, m: &Msg, depth: u32) -> Result<(), ()> {
        if m.event != uffd::EVENT_PAGEFAULT && m.event != uffd::EVENT_REMAP && m.event != uffd::EVENT_UNMAP {
            self.settle_unmapped();
        }
        match m.event {
            // A fault read while an event is half handled (a copy of the event met
            // EAGAIN) waits until the event is done: the layout it sees is not
            // settled yet.
            uffd::EVENT_PAGEFAULT if depth > 0 => {
                if self.ndeferred < self.deferred.len() {
                    self.deferred[self.ndeferred] = (i, m.arg[1] & !(PAGE_SIZE - 1));
                    self.ndeferred += 1;
                }
                Ok(())
            }
            uffd::EVENT_PAGEFAULT => self.fault(i, m.arg[1] & !(PAGE_SIZE - 1), depth),
            uffd::EVENT_FORK => {
                let fd = m.arg[0] as u32 as usize;
                let Some(p) = self.targets[i].as_ref() else { return Ok(()) };
                let child = Target { fd, done: p.done.copy(), run: p.run, off: p.off };
                match self.targets.iter().position(|t| t.is_none()) {
                    Some(slot) => {
                        self.targets[slot] = Some(child);
                        self.used = self.used.max(slot + 1);
                    }
                    None => {
                        // Not served: the child's missing pages read as zeros once
                        // the helper is gone. Said, never silent.
                        Line::new().s("lazy resume: more than ").dec(MAX_TARGETS as u64)
                            .s(" processes forked while memory was arriving; a child gets zero pages where its memory had not arrived").emit();
                        let _ = sys::close(fd);
                    }
                }
                Ok(())
            }
            uffd::EVENT_REMAP => {
                let r = self.remap(i, m.arg[0], m.arg[1], m.arg[2], depth);
                self.settle_unmapped();
                r
            }
            uffd::EVENT_UNMAP => {
                if self.nunmapped == self.unmapped.len() {
                    self.settle_unmapped();
                }
                self.unmapped[self.nunmapped] = (i, m.arg[0], m.arg[1]);
                self.nunmapped += 1;
                Ok(())
            }
            uffd::EVENT_REMOVE => {
                let idx = &self.index;
                if let Some(tg) = self.targets[i].as_mut() {
                    tg.done.set_range(idx, m.arg[0], m.arg[1]);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A fault at `addr`: its stored page (and the owed pages after it in its run),
    /// or a zero page.
    fn fault(&mut self, i: usize, addr: u64, depth: u32) -> Result<(), ()> {
        let owed = match self.index.find(addr) {
            Some((s, bit)) if !self.targets[i].as_ref().is_some_and(|tg| tg.done.test(bit)) => Some((*s, bit)),
            _ => None,
        };
        if i == 0 && self.profile != 0 {
            if self.nlog == self.log.len() {
                self.flush_profile();
            }
            self.log[self.nlog..self.nlog + 8].copy_from_slice(&addr.to_ne_bytes());
            self.nlog += 8;
        }
        let Some((s, bit)) = owed else {
            return self.put(i, addr, None, PAGE_SIZE, None, depth);
        };
        let Some(r) = self.index.run_at(self.t, &s, addr) else {
            return self.put(i, addr, None, PAGE_SIZE, Some(bit), depth);
        };
        // A profile records each page the process touches: one page per fault.
        let around = if self.profile != 0 { PAGE_SIZE } else { AROUND };
        let end = (r.addr + r.len).min(addr + around);
        let tg = self.targets[i].as_ref().ok_or(())?;
        let mut n = 1;
        while addr + n * PAGE_SIZE < end && !tg.done.test(bit + n) {
            n += 1;
        }
        let src = r.data_off + (addr - r.addr);
        self.put(i, addr, Some(src), n * PAGE_SIZE, Some(bit), depth)
    }

    /// The process moved `[from, from+len)` to `to`: bring the owed pages to their
    /// new place now; their old addresses are settled (see pages.rs).
    fn remap(&mut self, i: usize, from: u64, to: u64, len: u64, depth: u32) -> Result<(), ()> {
        let mut a = from;
        while a < from + len {
            let Some((s, bit)) = self.index.find(a).map(|(s, b)| (*s, b)) else {
                a += PAGE_SIZE;
                continue;
            };
            let owed = !self.targets[i].as_ref().ok_or(())?.done.test(bit);
            match self.index.run_at(self.t, &s, a) {
                Some(r) if owed => {
                    let n = ((r.addr + r.len).min(from + len) - a).min(PAGE_SIZE);
                    self.put(i, to + (a - from), Some(r.data_off + (a - r.addr)), n, Some(bit), depth)?;
                }
                _ => {}
            }
            a += PAGE_SIZE;
        }
        if let Some(tg) = self.targets[i].as_mut() {
            tg.done.set_range(&self.index, from, from + len);
        }
        Ok(())
    }

    /// Copy `len` bytes of the image at `src` (or zeros when `None`) to `dst` in
    /// target `i`, settling the pages from `bit` on as they land. A page already
    /// there is left as it is; EAGAIN (the process is changing its layout) reads the
    /// pending events first and tries again. Err when the process is gone.
    fn put(&mut self, i: usize, dst: u64, src: Option<u64>, len: u64, bit: Option<u64>, depth: u32) -> Result<(), ()> {
        let mut off = 0;
        while off < len {
            let Some(fd) = self.targets[i].as_ref().map(|tg| tg.fd) else { return Err(()) };
            let r = match src {
                Some(s) => {
                    let at = (self.base + s + off) as usize;
                    uffd::copy(fd, dst + off, &self.img[at..at + (len - off) as usize])
                }
                None => uffd::zero(fd, dst + off, len - off),
            };
            let step = match r {
                Filled::All => len - off,
                Filled::Part(n) => n,
                Filled::Err(sys::EAGAIN) => {
                    if depth < 4 {
                        self.drain(i, depth + 1);
                    }
                    // The event may not be queued yet, or its thread not yet past it.
                    // SAFETY: no arguments.
                    let _ = unsafe { call(SYS_SCHED_YIELD, [0; 6]) };
                    // A page settled by an event just read (removed, unmapped,
                    // moved) is no longer to be copied.
                    if let (Some(b), Some(tg)) = (bit, self.targets[i].as_ref()) {
                        if tg.done.test(b + off / PAGE_SIZE) {
                            off += PAGE_SIZE;
                        }
                    }
                    continue;
                }
                Filled::Err(sys::ESRCH) => return Err(()),
                Filled::Err(sys::EEXIST) => {
                    uffd::wake(fd, dst + off, PAGE_SIZE);
                    PAGE_SIZE
                }
                // No registered VMA there any more (unmapped: its event follows).
                Filled::Err(_) => PAGE_SIZE,
            };
            if let (Some(b), Some(tg)) = (bit, self.targets[i].as_mut()) {
                tg.done.set(b + off / PAGE_SIZE, step / PAGE_SIZE);
            }
            off += step;
        }
        Ok(())
    }

    /// Bring the next owed chunk of target `i` in file order; false when none is
    /// left (or the process is gone).
    fn stream(&mut self, i: usize) -> bool {
        let t = self.t;
        loop {
            let Some(tg) = self.targets[i].as_mut() else { return false };
            let Some(r) = t.runs.get(tg.run) else {
                // Runs served by faults alone are checked too before the end.
                self.verify_upto(t.runs.len(), 0);
                return false;
            };
            if !super::eligible(&t.vmas[r.vma as usize]) || tg.off >= r.len {
                tg.run += 1;
                tg.off = 0;
                continue;
            }
            let Some((_, bit)) = self.index.find(r.addr + tg.off) else {
                tg.off = r.len;
                continue;
            };
            if tg.done.test(bit) {
                tg.off += PAGE_SIZE;
                continue;
            }
            let max = (r.len - tg.off).min(CHUNK) / PAGE_SIZE;
            let mut n = 1;
            while n < max && !tg.done.test(bit + n) {
                n += 1;
            }
            let (run, addr, src) = (tg.run, r.addr + tg.off, r.data_off + tg.off);
            tg.off += n * PAGE_SIZE;
            let upto = tg.off;
            self.verify_upto(run, upto);
            return self.put(i, addr, Some(src), n * PAGE_SIZE, Some(bit), 0).is_ok();
        }
    }

    /// Checksum the image's runs in file order up to `off` bytes into run `run`.
    /// A run is checked when the cursor reaches its end: a mismatch means the
    /// process may already run on corrupt pages, and it is killed, with the range
    /// named. Checking as the stream goes, rather than a whole run before its first
    /// chunk, keeps the helper answering faults: a run can be gigabytes long.
    fn verify_upto(&mut self, run: usize, off: u64) {
        let t = self.t;
        while (self.crc.run, self.crc.off) < (run, off) {
            let Some(r) = t.runs.get(self.crc.run) else { return };
            // The eager fill checked the others.
            if !super::eligible(&t.vmas[r.vma as usize]) {
                self.crc = Verify { run: self.crc.run + 1, off: 0, crc: 0 };
                continue;
            }
            let end = if self.crc.run < run { r.len } else { off.min(r.len) };
            let at = (self.base + r.data_off + self.crc.off) as usize;
            let bytes = &self.img[at..at + (end - self.crc.off) as usize];
            self.crc.crc = crc32c::update(self.crc.crc, bytes, self.hw_crc);
            self.crc.off = end;
            if end < r.len {
                return;
            }
            if self.crc.crc != r.crc {
                Line::new().s("lazy resume: page data checksum mismatch for ").range(r.addr, r.addr + r.len)
                    .s(" (corrupted image); the process is killed").emit();
                kill(self.pid);
            }
            self.crc = Verify { run: self.crc.run + 1, off: 0, crc: 0 };
        }
    }
}
