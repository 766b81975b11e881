//! Tearing down the stub's own layout and recreating the target's VMAs.
//!
//! Each VMA is created at its exact address with MAP_FIXED_NOREPLACE (a collision is
//! a bug, reported with the range), writable while its pages are read straight from
//! the image into place, then given its final protection and madvise flags.

use crate::backing::LastFile;
use crate::ctx::{Ctx, Range};
use crate::fill;
use crate::image;
use crate::out::{self, Line, Step};
use crate::progress;
use crate::sys;
use ckpt_format::crc32c::crc32c;
use ckpt_format::*;

/// The most one read brings in between two progress updates.
const FILL_PIECE: u64 = 32 << 20;

/// Unmap everything but the gap and the current vdso/vvar.
pub fn unmap_old(ctx: &Ctx) {
    let mut keep = [Range::default(); 4];
    keep[0] = Range { start: ctx.gap_start as u64, end: (ctx.gap_start + ctx.gap_len) as u64 };
    keep[1..].copy_from_slice(&ctx.cur);
    keep.sort_unstable_by_key(|r| r.start);
    let mut lo = PAGE_SIZE;
    for r in keep.iter().filter(|r| !r.is_empty()).chain(core::iter::once(&Range { start: USER_TOP, end: USER_TOP })) {
        if r.start > lo {
            out::trace("unmap", lo, r.start);
            // SAFETY: nothing the restorer uses lies outside the kept ranges.
            out::check(unsafe { sys::munmap(lo as usize, (r.start - lo) as usize) }, Step::Unmap, lo, r.start);
        }
        lo = lo.max(r.end);
    }
}

/// Copy a string of the image into `buf` with a NUL terminator.
pub fn cpath<'a>(s: &[u8], buf: &'a mut [u8; 4096]) -> &'a [u8] {
    let n = s.len().min(buf.len() - 1);
    buf[..n].copy_from_slice(&s[..n]);
    buf[n] = 0;
    &buf[..n + 1]
}

/// The file behind a private file mapping if it still exists and covers the whole
/// mapped range (writing a page past EOF of a private file mapping is SIGBUS),
/// from `last` (opened once for a row of mappings of one file). Also says whether
/// it is the very file that was mapped at the freeze (same device, inode, size and
/// mtime): then its bytes are the clean pages' bytes.
fn open_backing<'a>(t: &Tables<'a>, v: &Vma, last: &mut LastFile<'a>) -> Option<(usize, bool, u64)> {
    let (fd, st) = last.open(t.string(v.name_off, v.name_len))?;
    if align_up(st.size, PAGE_SIZE) < v.file_offset + (v.end - v.start) {
        return None;
    }
    let same = v.file_mtime_ns != 0 && (st.dev, st.ino, st.size, st.mtime_ns) == (v.file_dev, v.file_ino, v.file_size, v.file_mtime_ns);
    Some((fd, same, st.size))
}

/// A shared file mapping's content is the file: it must still be there.
fn open_shared(t: &Tables, v: &Vma) -> usize {
    let mut buf = [0u8; 4096];
    let path = cpath(t.string(v.name_off, v.name_len), &mut buf);
    let mode = if v.prot & PROT_WRITE != 0 { 2 /* O_RDWR */ } else { sys::O_RDONLY };
    match sys::open(path, mode | sys::O_CLOEXEC, 0) {
        Ok(fd) => fd,
        Err(e) => {
            Line::new().s("map vma failed for ").range(v.start, v.end).s(": cannot open shared file ")
                .b(&path[..path.len() - 1]).s(": ").errno(e).emit();
            sys::exit_group(Step::MapVma as i32)
        }
    }
}

fn advise(v: &Vma, bit: u32, advice: usize) {
    if v.flags & bit != 0 {
        // Advice is best effort: e.g. MADV_HUGEPAGE fails without THP support.
        let _ = sys::madvise(v.start as usize, (v.end - v.start) as usize, advice);
    }
}

/// The runs of a VMA.
fn runs<'a>(t: &Tables<'a>, v: &Vma) -> &'a [PageRun] {
    &t.runs[v.first_run as usize..(v.first_run + v.nruns) as usize]
}

/// A mapping whose clean pages are not in the image cannot do without its file.
fn file_ref_fails(t: &Tables, v: &Vma, why: &str) -> ! {
    Line::new().s("map vma failed for ").range(v.start, v.end).s(": ").b(t.string(v.name_off, v.name_len))
        .s(" ").s(why).s("; its unchanged pages are not in this file (freeze with --embed-files to carry them)").emit();
    sys::exit_group(Step::MapVma as i32)
}

/// After mapping a referenced file that is not the very inode of the freeze: its
/// mapped bytes must still be the ones the freeze saw (fileref.rs in the generator).
fn check_file_ref(ctx: &Ctx, t: &Tables, v: &Vma, file_size: u64) {
    let end = (v.file_offset + (v.end - v.start)).min(v.file_size);
    if file_size != v.file_size {
        file_ref_fails(t, v, "has another size than at the freeze");
    }
    let len = end.saturating_sub(v.file_offset) as usize;
    // SAFETY: the file mapping covers [start, start + len): len stops at the file's end.
    let data = unsafe { core::slice::from_raw_parts(v.start as *const u8, len) };
    if crc32c(data, ctx.hw_crc) != v.file_crc {
        file_ref_fails(t, v, "has other contents than at the freeze");
    }
    out::trace("referenced file checked by its contents", v.start, v.end);
}

/// Create the VMA; returns whether it maps the very file it mapped at the freeze,
/// and the protection it was mapped with (its final one unless pages are to be
/// written or a referenced file's contents read).
fn create<'a>(ctx: &Ctx, t: &Tables<'a>, v: &Vma, kind: VmaKind, lazy: bool, last: &mut LastFile<'a>) -> (bool, usize) {
    let len = (v.end - v.start) as usize;
    let file_ref = v.flags & VMA_FILE_REF != 0;
    if kind != VmaKind::FilePrivate {
        last.close();
    }
    let backing = match kind {
        VmaKind::FilePrivate => open_backing(t, v, last),
        VmaKind::SharedFile => Some((open_shared(t, v), false, 0)),
        _ => None,
    };
    if file_ref && backing.is_none() {
        file_ref_fails(t, v, "is missing or too short");
    }
    let same = backing.is_some_and(|b| b.1);
    let filling = !lazy && runs(t, v).iter().any(|r| !same || r.flags & RUN_FILE_CLEAN == 0);
    // A referenced file that is not the same inode is checked through its mapping.
    let check = file_ref && !same;
    let prot_fill = if check && v.prot & PROT_READ == 0 { prot_fill_of(filling, v) | sys::PROT_READ } else { prot_fill_of(filling, v) };
    let mut flags = sys::MAP_FIXED_NOREPLACE;
    flags |= if kind == VmaKind::SharedAnon { sys::MAP_SHARED } else { sys::MAP_PRIVATE };
    if v.flags & VMA_GROWSDOWN != 0 {
        flags |= sys::MAP_GROWSDOWN;
    }
    if v.flags & VMA_NORESERVE != 0 {
        flags |= sys::MAP_NORESERVE;
    }
    // Anonymous pages are allocated chunk by chunk as they are filled (fill.rs).
    if kind == VmaKind::SharedFile {
        flags = (flags & !sys::MAP_PRIVATE) | sys::MAP_SHARED;
    }
    out::trace(
        if same { "map file vma (same file: clean pages from it)" } else if backing.is_some() { "map file vma" } else { "map vma" },
        v.start,
        v.end,
    );
    // SAFETY: MAP_FIXED_NOREPLACE only creates; the range is free in the target.
    let r = unsafe {
        match backing {
            Some((fd, _, _)) => sys::mmap(v.start as usize, len, prot_fill, flags, fd as isize, v.file_offset),
            None => sys::mmap(v.start as usize, len, prot_fill, flags | sys::MAP_ANONYMOUS, -1, 0),
        }
    };
    // A private mapping's file stays open in `last` for the next VMA of its row.
    if let (Some((fd, _, _)), VmaKind::SharedFile) = (backing, kind) {
        let _ = sys::close(fd);
    }
    out::check(r, Step::MapVma, v.start, v.end);
    if check {
        check_file_ref(ctx, t, v, backing.map_or(0, |b| b.2));
    }
    advise_all(v);
    // A referenced file's clean pages are its own whether or not it is the same inode.
    (same || file_ref, prot_fill)
}

/// The protection while filling: writable when pages are to be written.
fn prot_fill_of(filling: bool, v: &Vma) -> usize {
    if filling {
        sys::PROT_READ | sys::PROT_WRITE
    } else {
        v.prot as usize
    }
}

/// mlock(2) a VMA that was locked (mlock, MAP_LOCKED, mlock2 MLOCK_ONFAULT), once
/// its pages are in. Locking is charged to RLIMIT_MEMLOCK unless the process has
/// CAP_IPC_LOCK (mlock(2)): the soft limit is raised to the hard one if needed
/// (the saved limits come back with the process state); beyond that the resume
/// stops, naming the range, rather than run with the memory unlocked.
fn lock(v: &Vma) {
    if v.flags & VMA_LOCKED == 0 {
        return;
    }
    let flags = if v.flags & VMA_LOCKONFAULT != 0 { sys::MLOCK_ONFAULT } else { 0 };
    let len = (v.end - v.start) as usize;
    let mut r = sys::mlock2(v.start as usize, len, flags);
    let mut lim = [0u64; 2];
    if matches!(r, Err(sys::ENOMEM) | Err(sys::EPERM)) && sys::prlimit(sys::RLIMIT_MEMLOCK, None, Some(&mut lim)).is_ok() && lim[0] < lim[1] {
        let _ = sys::prlimit(sys::RLIMIT_MEMLOCK, Some(&[lim[1], lim[1]]), None);
        r = sys::mlock2(v.start as usize, len, flags);
    }
    if let Err(e) = r {
        let mut l = Line::new();
        l.s("lock memory failed for ").range(v.start, v.end).s(": ").errno(e);
        if sys::prlimit(sys::RLIMIT_MEMLOCK, None, Some(&mut lim)).is_ok() {
            l.s("; the memory it locked does not fit in RLIMIT_MEMLOCK (hard limit ").dec(lim[1])
                .s(" bytes) without CAP_IPC_LOCK");
        }
        l.emit();
        sys::exit_group(Step::LockMemory as i32);
    }
    out::trace("mlock", v.start, v.end);
}

/// Read the VMA's runs into place (clean file pages are skipped when the file is
/// the same one). Returns whether anything was written.
fn fill(ctx: &Ctx, t: &Tables, v: &Vma, same: bool) -> bool {
    let mut wrote = false;
    for r in runs(t, v) {
        if same && r.flags & RUN_FILE_CLEAN != 0 {
            progress::add(r.len);
            continue;
        }
        wrote = true;
        // In pieces, so the progress moves during a run of gigabytes.
        let mut done = 0;
        if crate::decompress::active(ctx) {
            crate::decompress::fill(ctx, r.addr, r.len);
            progress::add(r.len);
            done = r.len;
        }
        while done < r.len {
            let n = (r.len - done).min(FILL_PIECE);
            image::read_at(ctx, (r.addr + done) as usize, n as usize, r.data_off + done, Step::FillPages);
            progress::add(n);
            done += n;
        }
        // SAFETY: the run was just written in a mapped, readable range.
        let data = unsafe { core::slice::from_raw_parts(r.addr as *const u8, r.len as usize) };
        if crc32c(data, ctx.hw_crc) != r.crc {
            Line::new().s("fill pages failed for ").range(r.addr, r.addr + r.len)
                .s(": page data checksum mismatch (corrupted image)").emit();
            sys::exit_group(Step::FillPages as i32);
        }
    }
    wrote
}

fn advise_all(v: &Vma) {
    advise(v, VMA_HUGEPAGE, sys::MADV_HUGEPAGE);
    advise(v, VMA_NOHUGEPAGE, sys::MADV_NOHUGEPAGE);
    advise(v, VMA_DONTFORK, sys::MADV_DONTFORK);
    advise(v, VMA_DONTDUMP, sys::MADV_DONTDUMP);
    advise(v, VMA_SEQ_READ, sys::MADV_SEQUENTIAL);
    advise(v, VMA_RAND_READ, sys::MADV_RANDOM);
    advise(v, VMA_MERGEABLE, sys::MADV_MERGEABLE);
    advise(v, VMA_WIPEONFORK, sys::MADV_WIPEONFORK);
}

fn protect(v: &Vma) {
    // SAFETY: the range is the target's VMA we just made.
    let r = unsafe { sys::mprotect(v.start as usize, (v.end - v.start) as usize, v.prot as usize) };
    out::check(r, Step::Protect, v.start, v.end);
}

/// A mapping of a file of the Files section (objects.rs made it): shared, its
/// content is the file's; private, the file's pages with the process's own copies
/// written over them.
fn map_object(ctx: &Ctx, t: &Tables, index: usize, v: &Vma, kind: VmaKind) {
    let obj = v.object as usize - 1;
    if t.files[obj].kind == FileKind::Shmem as u32 && t.files[obj].flags & FILE_IN_TREE == 0 {
        // Shared memory is made with all its mappings when its first VMA comes.
        if !t.vmas[..index].iter().any(|w| w.object == v.object) {
            crate::objects::map_shmem(ctx, t, obj, |w| {
                protect(w);
                advise_all(w);
            });
        }
        return;
    }
    let fd = crate::objects::fd_of(ctx, t, obj);
    let len = (v.end - v.start) as usize;
    let mut flags = sys::MAP_FIXED_NOREPLACE | if v.flags & VMA_NORESERVE != 0 { sys::MAP_NORESERVE } else { 0 };
    let filling = kind == VmaKind::PrivateObject && v.nruns != 0;
    let prot = if filling { sys::PROT_READ | sys::PROT_WRITE } else { v.prot as usize };
    // A shared mapping that could never be made writable was made through a
    // read-only fd (no VM_MAYWRITE): the file may be sealed against writes later.
    let mut reopened = None;
    if kind == VmaKind::SharedObject {
        flags |= sys::MAP_SHARED;
        if v.prot & PROT_WRITE == 0 && v.flags & VMA_MAYWRITE == 0 {
            let mut b = [0u8; 32];
            let p = crate::fds::files::proc_fd(fd, &mut b);
            reopened = Some(out::check(sys::open(p, sys::O_RDONLY | sys::O_CLOEXEC, 0), Step::MapVma, v.start, v.end));
        }
    } else {
        flags |= sys::MAP_PRIVATE;
    }
    out::trace(if kind == VmaKind::SharedObject { "map shared file vma" } else { "map private file vma" }, v.start, v.end);
    // SAFETY: MAP_FIXED_NOREPLACE only creates; the range is free in the target.
    let r = unsafe { sys::mmap(v.start as usize, len, prot, flags, reopened.unwrap_or(fd) as isize, v.file_offset) };
    if let Some(x) = reopened {
        let _ = sys::close(x);
    }
    out::check(r, Step::MapVma, v.start, v.end);
    advise_all(v);
    if filling && fill(ctx, t, v, false) && v.prot as usize != prot {
        protect(v);
    }
}

/// Create, fill and protect every VMA except the kernel-provided ones: every VMA
/// first, then all their pages at once (fill.rs, on both cores), then each one's
/// final protection and lock.
pub fn create_all<'a>(ctx: &Ctx, t: &Tables<'a>, lazy: Option<&crate::lazy::Lazy>) {
    progress::begin(t.runs.iter().map(|r| r.len).sum());
    let mut plan = fill::Plan::new(t);
    let _buffers = crate::decompress::prepare(ctx, t);
    let mut last = LastFile::new();
    for (index, v) in t.vmas.iter().enumerate() {
        let kind = match VmaKind::from_u32(v.kind) {
            Some(k) if !k.is_special() => k,
            _ => continue,
        };
        if matches!(kind, VmaKind::SharedObject | VmaKind::PrivateObject) {
            last.close();
            map_object(ctx, t, index, v, kind);
            lock(v);
            continue;
        }
        if let Some(l) = lazy.filter(|_| crate::lazy::eligible(v)) {
            // Created with its final protection, empty: the helper brings its pages.
            create(ctx, t, v, kind, true, &mut last);
            last.close();
            l.register(ctx, t, v);
            continue;
        }
        let (same, prot) = create(ctx, t, v, kind, false, &mut last);
        let anon = !matches!(kind, VmaKind::FilePrivate | VmaKind::SharedFile);
        plan.add(t, runs(t, v), same, anon);
        // create mapped it writable exactly when there are pages to write (or
        // readable to check a referenced file's contents): one mprotect then.
        plan.finish_later(index, prot != v.prot as usize);
    }
    last.close();
    plan.run(ctx);
    plan.verify(t);
    for (index, v) in t.vmas.iter().enumerate() {
        match plan.finish(index) {
            fill::Finish::Nothing => continue,
            fill::Finish::Protect => protect(v),
            fill::Finish::Keep => {}
        }
        lock(v);
    }
    drop(plan);
    progress::clear();
}
