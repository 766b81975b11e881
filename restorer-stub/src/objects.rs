//! The files of the Files section: deleted files, memfds and shared anonymous
//! memory, each made once so that every fd and every mapping of it uses the one
//! file again (a write through one is read through the others).
//!
//! Order, around the rest of phase 2:
//! 1. [`create`], before any VMA: each deleted file or memfd is made (unlinked, see
//!    unlinked.rs; or memfd_create(2)), sized and given its data ranges (pwrite(2),
//!    so holes stay holes: SEEK_HOLE finds them as before), and parked at a fixed
//!    number above every fd the fds step uses ([`fd_of`]).
//! 2. The VMAs map them (layout.rs), shared memory included ([`map_shmem`]).
//! 3. The fds step opens them again through /proc/self/fd/N (fds/files.rs).
//! 4. [`finish`]: owner, mode and seals, last, because each can forbid what came
//!    before: F_SEAL_WRITE/GROW forbid filling it, a mode without write permission
//!    forbids opening it read-write again, F_SEAL_EXEC forbids changing the mode.
//!    Then the parked fds are closed.

use crate::ctx::Ctx;
use crate::layout::cpath;
use crate::out::{self, Line, Step};
use crate::{gap, image, sys};
use ckpt_format::crc32c;
use ckpt_format::*;

const CHUNK: usize = 16 * 1024;

/// The fd number file `i` is parked at while the restore runs: above the fds
/// step's temporaries and the image (see fds.rs).
pub fn fd_of(ctx: &Ctx, t: &Tables, i: usize) -> usize {
    crate::fds::objects_base(ctx, t) + i
}

fn kind_of(o: &FileObject) -> FileKind {
    FileKind::from_u32(o.kind).unwrap_or(FileKind::Deleted)
}

/// "restore files failed: file N (KIND NAME): WHAT: ERRNO", exit with the fds step's code.
pub fn fail(t: &Tables, i: usize, what: &str, e: isize) -> ! {
    let o = &t.files[i];
    let mut l = Line::new();
    l.s("restore files failed: file ").dec(i as u64).s(" (").s(kind_of(o).name());
    if o.name_len != 0 {
        l.s(" ").b(t.string(o.name_off, o.name_len));
    }
    l.s("): ").s(what);
    if e != 0 {
        l.s(": ");
        crate::fds::errno(&mut l, e);
    }
    l.emit();
    sys::exit_group(Step::Fds as i32)
}

fn update(crc: u32, b: &[u8], hw: bool) -> u32 {
    if hw {
        // SAFETY: `hw` is ctx.hw_crc, set only when CPUID reports SSE4.2.
        unsafe { crc32c::update_hw(crc, b) }
    } else {
        crc32c::update_sw(crc, b)
    }
}

/// The extents of file `i`.
fn extents<'a>(t: &Tables<'a>, i: usize) -> &'a [Extent] {
    let o = &t.files[i];
    &t.extents[o.first_extent as usize..(o.first_extent + o.nextents) as usize]
}

/// Write file `i`'s extents into `fd`, each checked against its CRC-32C.
fn fill(ctx: &Ctx, t: &Tables, i: usize, fd: usize) {
    let mut buf = [0u8; CHUNK];
    for e in extents(t, i) {
        let mut crc = 0;
        let mut pos = 0u64;
        while pos < e.len {
            let n = (e.len - pos).min(CHUNK as u64) as usize;
            image::read_at(ctx, buf.as_mut_ptr() as usize, n, e.data_off + pos, Step::Fds);
            crc = update(crc, &buf[..n], ctx.hw_crc);
            if let Err(err) = sys::pwrite_all(fd, &buf[..n], e.offset + pos) {
                fail(t, i, "writing its data", err);
            }
            pos += n as u64;
        }
        if crc != e.crc {
            fail(t, i, "stored data checksum mismatch (corrupted image)", 0);
        }
    }
}

/// memfd_create(2) with the name and the flags it was made with. MFD_EXEC and
/// MFD_NOEXEC_SEAL are Linux 6.3: an older kernel (EINVAL) makes a memfd whose
/// exec bits may be set anyway.
fn memfd(t: &Tables, i: usize) -> usize {
    let o = &t.files[i];
    let mut nbuf = [0u8; 4096];
    // memfd_create(2): the name is at most 249 bytes.
    let name = t.string(o.name_off, o.name_len);
    let name = cpath(&name[..name.len().min(249)], &mut nbuf);
    let base = sys::MFD_ALLOW_SEALING | sys::MFD_CLOEXEC;
    let extra = if o.flags & FILE_MFD_EXEC != 0 {
        sys::MFD_EXEC
    } else if o.flags & FILE_MFD_NOEXEC_SEAL != 0 {
        sys::MFD_NOEXEC_SEAL
    } else {
        0
    };
    match sys::memfd_create(name, base | extra) {
        Ok(x) => x,
        Err(sys::EINVAL) if extra != 0 => match sys::memfd_create(name, base) {
            Ok(x) => x,
            Err(e) => fail(t, i, "memfd_create", e),
        },
        Err(e) => fail(t, i, "memfd_create", e),
    }
}

/// Raise the soft RLIMIT_NOFILE so fd numbers up to `need` can be made; returns
/// the old limits when it changed them. The fds step raises it too (for its own
/// numbers, which are lower) and [`finish`] puts it back.
fn raise_nofile(need: u64) -> Option<[u64; 2]> {
    let mut old = [0u64; 2];
    if sys::prlimit(sys::RLIMIT_NOFILE, None, Some(&mut old)).is_err() || old[0] >= need {
        return None;
    }
    if old[1] < need {
        Line::new().s("restore files failed: ").dec(need).s(" fds are needed, but the hard RLIMIT_NOFILE is ")
            .dec(old[1]).emit();
        sys::exit_group(Step::Fds as i32);
    }
    out::check(sys::prlimit(sys::RLIMIT_NOFILE, Some(&[need, old[1]]), None), Step::Fds, 0, 0);
    Some(old)
}

/// A deleted file, with every other name it had (hard links opened or mapped before
/// they were removed): each name an fd of its own on the one file, parked, so each
/// fd and mapping reads the name it had. Returns the file, unlinked.
fn deleted(ctx: &Ctx, t: &Tables, i: usize) -> usize {
    let o = &t.files[i];
    let mut nbuf = [0u8; 4096];
    let (x, name) = match crate::unlinked::named_file(t.string(o.name_off, o.name_len), &mut nbuf) {
        Ok(r) => r,
        Err(e) => fail(t, i, "cannot make a file to hold it", e),
    };
    for (j, other) in t.files.iter().enumerate().filter(|(_, f)| f.same_as as usize == i + 1) {
        let path = t.string(other.name_off, other.name_len);
        // Without a name to link to (an O_TMPFILE file) or where the other name's
        // directory is gone or on another filesystem (EXDEV), the same file under
        // its first name.
        let y = match (name.is_empty(), path.first()) {
            (false, Some(b'/')) => crate::unlinked::link_as(name, path).ok(),
            _ => None,
        };
        let y = y.unwrap_or_else(|| {
            let mut b = [0u8; 32];
            let p = crate::fds::files::proc_fd(x, &mut b);
            match sys::open(p, sys::O_RDWR as usize | sys::O_CLOEXEC, 0) {
                Ok(y) => y,
                Err(e) => fail(t, j, "cannot open it again", e),
            }
        });
        if let Err(e) = sys::dup3(y, fd_of(ctx, t, j), sys::O_CLOEXEC) {
            fail(t, j, "dup3 to its parked fd", e);
        }
        let _ = sys::close(y);
    }
    if !name.is_empty() {
        if let Err(e) = sys::unlink(name) {
            fail(t, i, "cannot unlink it", e);
        }
    }
    x
}

/// Make every deleted file and memfd, filled, at its parked number. Returns the
/// soft fd limit to put back in [`finish`].
pub fn create(ctx: &Ctx, t: &Tables) -> Option<[u64; 2]> {
    if t.files.is_empty() {
        return None;
    }
    let old = raise_nofile(fd_of(ctx, t, t.files.len()) as u64 + 1);
    for (i, o) in t.files.iter().enumerate() {
        if o.flags & FILE_IN_TREE != 0 {
            // Made and filled once by the root of the tree (tree.rs), inherited.
            if let Err(e) = sys::dup3(o.tree_slot as usize, fd_of(ctx, t, i), sys::O_CLOEXEC) {
                fail(t, i, "dup3 of the tree's shared file", e);
            }
            continue;
        }
        let x = match kind_of(o) {
            // Shared memory is made by the first VMA mapping it; other names of a
            // deleted file with their first.
            FileKind::Shmem => continue,
            FileKind::Deleted if o.same_as != 0 => continue,
            FileKind::Memfd => memfd(t, i),
            FileKind::Deleted => deleted(ctx, t, i),
        };
        if let Err(e) = sys::ftruncate(x, o.size) {
            fail(t, i, "ftruncate to its size", e);
        }
        fill(ctx, t, i, x);
        let at = fd_of(ctx, t, i);
        if let Err(e) = sys::dup3(x, at, sys::O_CLOEXEC) {
            fail(t, i, "dup3 to its parked fd", e);
        }
        let _ = sys::close(x);
        out::trace("file made (index, size)", i as u64, o.size);
    }
    old
}

/// Shared anonymous memory `i`: one MAP_SHARED|MAP_ANONYMOUS object of its size,
/// filled, then every SharedObject VMA of it made as a second mapping of its pages
/// at their offset (mremap(2) with old_size 0), so all of them share one object.
/// The object's own first mapping sits in a hole of the target layout and is
/// unmapped at the end. Called for the first VMA of the object.
pub fn map_shmem(ctx: &Ctx, t: &Tables, i: usize, protect: impl Fn(&Vma)) {
    let o = &t.files[i];
    let size = o.size as usize;
    let Some(tmp) = gap::free_range(t, o.size) else { out::fail(Step::MapVma, 0, o.size, sys::EEXIST) };
    // SAFETY: tmp..tmp+size is the private mapping free_range just made for us, in a
    // hole of the target layout; MAP_FIXED replaces exactly it.
    let r = unsafe {
        sys::mmap(tmp as usize, size, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_SHARED | sys::MAP_ANONYMOUS | sys::MAP_FIXED, -1, 0)
    };
    out::check(r, Step::MapVma, tmp, tmp + o.size);
    for e in extents(t, i) {
        image::read_at(ctx, (tmp + e.offset) as usize, e.len as usize, e.data_off, Step::FillPages);
        // SAFETY: the extent lies inside the object (validated), mapped readable.
        let data = unsafe { core::slice::from_raw_parts((tmp + e.offset) as *const u8, e.len as usize) };
        if crc32c::crc32c(data, ctx.hw_crc) != e.crc {
            Line::new().s("fill pages failed for shared memory at offset ").hex(e.offset)
                .s(": data checksum mismatch (corrupted image)").emit();
            sys::exit_group(Step::FillPages as i32);
        }
    }
    for v in t.vmas.iter().filter(|v| v.object as usize == i + 1 && v.kind == VmaKind::SharedObject as u32) {
        let len = (v.end - v.start) as usize;
        // The offset is inside the object (validated); a mapping reaching past its
        // end faults with SIGBUS there, as it did before.
        out::trace("map shared memory vma", v.start, v.end);
        // SAFETY: v's range is free (a target VMA not made yet); the source stays mapped.
        let r = unsafe { sys::mremap_dup((tmp + v.file_offset) as usize, len, v.start as usize) };
        out::check(r, Step::MapVma, v.start, v.end);
        protect(v);
    }
    // SAFETY: the object's first mapping is ours alone; the VMAs keep the object.
    let _ = unsafe { sys::munmap(tmp as usize, size) };
}

/// Owner, mode and seals of every deleted file and memfd, then close the parked fds
/// and put the fd limit back.
pub fn finish(ctx: &Ctx, t: &Tables, old_limit: Option<[u64; 2]>) {
    for (i, o) in t.files.iter().enumerate() {
        let fd = fd_of(ctx, t, i);
        if kind_of(o) == FileKind::Shmem || o.same_as != 0 || o.flags & FILE_IN_TREE != 0 {
            let _ = sys::close(fd);
            continue;
        }
        // chown(2): only a privileged resumer may give a file away (EPERM), and an id
        // outside its user namespace is refused (EINVAL); the file is then the
        // resumer's, as any file it makes. Before the mode: chown clears set-id bits.
        if o.flags & FILE_OWNER != 0 {
            match sys::fchown(fd, o.uid, o.gid) {
                Ok(_) | Err(sys::EPERM) | Err(sys::EINVAL) => {}
                Err(e) => fail(t, i, "fchown", e),
            }
        }
        if let Err(e) = sys::fchmod(fd, o.mode) {
            fail(t, i, "fchmod", e);
        }
        if o.seals != 0 {
            if let Err(e) = sys::fcntl(fd, sys::F_ADD_SEALS, o.seals as usize) {
                fail(t, i, "F_ADD_SEALS", e);
            }
        }
        let _ = sys::close(fd);
    }
    if let Some(old) = old_limit {
        let _ = sys::prlimit(sys::RLIMIT_NOFILE, Some(&old), None);
    }
}
