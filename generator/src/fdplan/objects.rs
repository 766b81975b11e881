//! Files whose content goes into the image — deleted files, memfds, shared
//! anonymous memory — each stored once, however many fds and mappings use it.
//!
//! One inode (device and inode number: the fd's fstat, the maps line's dev:inode)
//! is one [`FileObject`]: fds opened through different hard links or through
//! /proc/PID/fd, a MAP_SHARED and a MAP_PRIVATE mapping of it all name that one
//! record, and the resumed process has one file behind them again, so a write
//! through one is read through the others.
//!
//! Only the data ranges are stored ([`Extent`]): SEEK_DATA/SEEK_HOLE (lseek(2))
//! find them, so a 1 GiB sparse file with a few KiB written costs a few KiB, and
//! its holes are holes again after the resume.
//!
//! Where the bytes come from: a new open file description of the file
//! (/proc/PID/fd/N, or /proc/PID/map_files/A-B for a mapping, which needs
//! CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE: proc_map_files_get_link), so nothing
//! the target sees moves; else a duplicate of the target's own fd (pidfd_getfd),
//! whose offset is put back; else, for a mapping nothing else reaches, the pages of
//! its mappings read from the target's memory (zero pages left as holes), with a
//! warning that what lies outside them is lost.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

use super::target::{fcntl_int, Target};
use crate::memory::Mem;
use crate::plan::{Pages, PlannedVma, Strings};
use crate::proc::fds::FdInfo;
use ckpt_format::{Extent, FileKind, FileObject, VmaKind, FILE_MFD_EXEC, FILE_MFD_NOEXEC_SEAL, FILE_OWNER, PAGE_SIZE};

/// `HUGETLBFS_MAGIC` (linux/magic.h): memfd_create(MFD_HUGETLB) files live there,
/// and write(2) does not work on them, so their content could not be put back.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
/// F_SEAL_EXEC (Linux 6.3, include/uapi/linux/fcntl.h).
const F_SEAL_EXEC: u32 = 0x20;
/// Bytes read at once.
const CHUNK: usize = 1 << 20;

/// The files, their extents and the extents' bytes (one buffer per extent).
#[derive(Default)]
pub struct Objects {
    pub files: Vec<FileObject>,
    pub extents: Vec<Extent>,
    pub data: Vec<Vec<u8>>,
    /// (device, inode) -> the file's first record.
    by_inode: HashMap<(u64, u64), usize>,
    /// (device, inode, path) -> the record of that name of a deleted file.
    by_name: HashMap<(u64, u64, Vec<u8>), usize>,
}

/// Data ranges of `file` (`size` bytes) and their bytes, by SEEK_DATA/SEEK_HOLE on
/// `file`'s own description (the caller's to move). A filesystem without them
/// (EINVAL) has one data range: the whole file.
fn data_ranges(file: &File, size: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let fd = file.as_raw_fd();
    let seek = |off: u64, whence| {
        // SAFETY: lseek takes no pointers.
        let r = unsafe { libc::lseek(fd, off as i64, whence) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as u64)
        }
    };
    let mut ranges = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match seek(pos, libc::SEEK_DATA) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && pos == 0 => {
                ranges.push((0, size));
                break;
            }
            Err(e) => return Err(e),
        };
        let end = seek(start, libc::SEEK_HOLE)?.min(size);
        if end > start {
            ranges.push((start, end));
        }
        pos = end.max(start + 1);
    }
    let mut out = Vec::new();
    for (start, end) in ranges {
        let mut buf = vec![0u8; (end - start) as usize];
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(CHUNK);
            match file.read_at(&mut buf[done..done + n], start + done as u64) {
                Ok(0) => break,
                Ok(k) => done += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        if !buf.is_empty() {
            out.push((start, buf));
        }
    }
    Ok(out)
}

/// Grow ranges of shared memory to whole pages (its extents are mapped in).
fn whole_pages(ranges: Vec<(u64, Vec<u8>)>, size: u64) -> Vec<(u64, Vec<u8>)> {
    let mut pages: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (start, bytes) in ranges {
        for (i, b) in bytes.iter().enumerate() {
            let at = start + i as u64;
            let page = pages.entry(at / PAGE_SIZE * PAGE_SIZE).or_insert_with(|| vec![0; PAGE_SIZE as usize]);
            page[(at % PAGE_SIZE) as usize] = *b;
        }
    }
    coalesce(pages.into_iter().filter(|(p, _)| *p < size).collect())
}

/// Adjacent pages (offset, bytes) joined into ranges.
fn coalesce(pages: Vec<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    for (off, page) in pages {
        match out.last_mut() {
            Some((s, b)) if *s + b.len() as u64 == off => b.extend_from_slice(&page),
            _ => out.push((off, page)),
        }
    }
    out
}

/// What `data_ranges` reads through: a new description of the target's fd; failing
/// that, its own description (whose offset is saved and put back).
fn read_fd(tg: &Target, fd: i32, size: u64) -> Result<Vec<(u64, Vec<u8>)>, String> {
    match tg.open_proc(fd) {
        Ok(file) => data_ranges(&file, size).map_err(|e| format!("cannot read its content: {e}")),
        Err(open_err) => {
            let dup = tg.getfd(fd).map_err(|e| format!("cannot read its content: {open_err}; {e}"))?;
            let file = File::from(dup);
            // SAFETY: lseek takes no pointers.
            let pos = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_CUR) };
            let r = data_ranges(&file, size);
            if pos >= 0 {
                // SAFETY: as above; the target's offset goes back where it was.
                unsafe { libc::lseek(file.as_raw_fd(), pos, libc::SEEK_SET) };
            }
            r.map_err(|e| format!("cannot read its content: {open_err}; {e}"))
        }
    }
}

impl Objects {
    /// Index of the file with this device and inode, if met before.
    pub fn find(&self, dev: u64, ino: u64) -> Option<usize> {
        self.by_inode.get(&(dev, ino)).copied()
    }

    /// The record of file `first` as reached through `path`: a deleted file opened
    /// or mapped through several names (hard links) keeps each name, as a record
    /// that is another name of the first (`same_as`), so /proc/PID/fd and maps read
    /// the same after the resume.
    fn named(&mut self, first: usize, path: &[u8], strings: &mut Strings) -> usize {
        let o = self.files[first];
        if o.kind != FileKind::Deleted as u32 {
            return first;
        }
        let key = (o.dev, o.ino, path.to_vec());
        if let Some(&i) = self.by_name.get(&key) {
            return i;
        }
        let i = self.files.len();
        let mut alias = FileObject { same_as: first as u32 + 1, first_extent: self.extents.len() as u32, nextents: 0, ..o };
        (alias.name_off, alias.name_len) = super::add_bytes(strings, path);
        self.files.push(alias);
        self.by_name.insert(key, i);
        i
    }

    fn add(&mut self, mut o: FileObject, ranges: Vec<(u64, Vec<u8>)>, name: &[u8], strings: &mut Strings) -> usize {
        let i = self.files.len();
        (o.name_off, o.name_len) = super::add_bytes(strings, name);
        o.first_extent = self.extents.len() as u32;
        o.nextents = ranges.len() as u32;
        for (offset, bytes) in ranges {
            self.extents.push(Extent { offset, len: bytes.len() as u64, file: i as u32, ..Default::default() });
            self.data.push(bytes);
        }
        self.by_inode.insert((o.dev, o.ino), i);
        self.by_name.insert((o.dev, o.ino, name.to_vec()), i);
        self.files.push(o);
        i
    }

    /// The file behind fd `f` — deleted while open (`path` is the one it had) or a
    /// memfd ("/memfd:NAME") — added once. Err: the reason it cannot be restored.
    pub fn of_fd(&mut self, tg: &Target, f: &FdInfo, path: &[u8], strings: &mut Strings) -> Result<usize, String> {
        let md = std::fs::metadata(format!("/proc/{}/fd/{}", tg.pid, f.fd)).map_err(|e| format!("cannot stat it: {e}"))?;
        if let Some(i) = self.find(md.dev(), md.ino()) {
            return Ok(self.named(i, path, strings));
        }
        if !md.is_file() {
            return Err("it is a deleted device or special file, which cannot be recreated".into());
        }
        let mut o = FileObject {
            kind: FileKind::Deleted as u32,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.len(),
            flags: FILE_OWNER,
            dev: md.dev(),
            ino: md.ino(),
            ..Default::default()
        };
        let name = match path.strip_prefix(b"/memfd:") {
            Some(name) => {
                let dup = tg.getfd(f.fd).map_err(|e| format!("cannot reach the memfd to read its seals: {e}"))?;
                // SAFETY: statfs writes into the zeroed struct it is given.
                let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
                // SAFETY: dup is an open fd; sfs is a valid out-pointer.
                if unsafe { libc::fstatfs(dup.as_raw_fd(), &mut sfs) } == 0 && sfs.f_type == HUGETLBFS_MAGIC {
                    return Err("it is a hugetlb memfd (MFD_HUGETLB), which cannot be refilled with write(2)".into());
                }
                o.kind = FileKind::Memfd as u32;
                o.seals = fcntl_int(&dup, libc::F_GET_SEALS).map_err(|e| format!("F_GET_SEALS failed: {e}"))? as u32;
                o.flags |= memfd_flags(o.mode, o.seals);
                name
            }
            None => path,
        };
        let ranges = read_fd(tg, f.fd, o.size)?;
        Ok(self.add(o, ranges, name, strings))
    }

    /// The file behind shared mapping `v` (a deleted file, a memfd, shared anonymous
    /// memory), added once; `all` are every VMA, for the ones mapping it too.
    pub fn of_mapping(
        &mut self,
        pid: i32,
        v: &PlannedVma,
        all: &[PlannedVma],
        mem: &Mem,
        strings: &mut Strings,
        warnings: &mut Vec<String>,
    ) -> Result<usize, String> {
        let m = &v.map;
        let dev = libc::makedev(m.dev_major, m.dev_minor);
        let name = m.path().unwrap_or_default().as_bytes();
        if let Some(i) = self.find(dev, m.inode) {
            return Ok(self.named(i, name, strings));
        }
        let (kind, name) = if m.name == "/dev/zero (deleted)" {
            (FileKind::Shmem, &b""[..])
        } else if let Some(n) = name.strip_prefix(b"/memfd:") {
            (FileKind::Memfd, n)
        } else {
            (FileKind::Deleted, name)
        };
        let same = |w: &&PlannedVma| w.map.inode == m.inode && libc::makedev(w.map.dev_major, w.map.dev_minor) == dev;
        let mapped_end = all.iter().filter(same).map(|w| w.map.offset + w.map.len()).max().unwrap_or(0);
        let mut o = FileObject { kind: kind as u32, dev, ino: m.inode, ..Default::default() };
        let link = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        let ranges = match File::open(&link) {
            Ok(file) => {
                let md = file.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
                (o.mode, o.uid, o.gid, o.size) = (md.mode() & 0o7777, md.uid(), md.gid(), md.len());
                if kind == FileKind::Memfd {
                    o.seals = fcntl_int(&file.into(), libc::F_GET_SEALS).map_err(|e| format!("F_GET_SEALS failed: {e}"))? as u32;
                    o.flags |= memfd_flags(o.mode, o.seals);
                }
                let file = File::open(&link).map_err(|e| format!("cannot open it: {e}"))?;
                data_ranges(&file, o.size).map_err(|e| format!("cannot read its content: {e}"))?
            }
            Err(e) => {
                if kind != FileKind::Shmem {
                    warnings.push(format!(
                        "pid {pid}: {} is mapped at {:x}-{:x} by no fd, and {link} cannot be opened ({e}; it needs \
                         CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE): it resumes with the pages of its mappings only, \
                         mode 0{:o}{}",
                        m.name,
                        m.start,
                        m.end,
                        if kind == FileKind::Memfd { 0o777 } else { 0o600 },
                        if kind == FileKind::Memfd { " and no seals" } else { "" },
                    ));
                }
                o.mode = if kind == FileKind::Deleted { 0o600 } else { 0o777 };
                o.size = mapped_end;
                o.flags |= if kind == FileKind::Memfd { FILE_MFD_EXEC } else { 0 };
                from_memory(all.iter().filter(same), mem)
            }
        };
        if kind == FileKind::Shmem {
            // Its size is that of its first mmap; a mapping may reach past it only
            // when its length was grown, which faults there as before.
            o.size = o.size.max(PAGE_SIZE).div_ceil(PAGE_SIZE) * PAGE_SIZE;
            o.mode = 0o777;
        } else {
            o.flags |= FILE_OWNER;
        }
        let ranges = if kind == FileKind::Shmem { whole_pages(ranges, o.size) } else { ranges };
        Ok(self.add(o, ranges, name, strings))
    }
}

/// The MFD_* flags a memfd was made with, as its mode and seals show them: with
/// F_SEAL_EXEC and no exec bits, MFD_NOEXEC_SEAL; else MFD_EXEC, so the exec bits
/// can be given back whatever vm.memfd_noexec makes the default.
fn memfd_flags(mode: u32, seals: u32) -> u32 {
    if seals & F_SEAL_EXEC != 0 && mode & 0o111 == 0 {
        FILE_MFD_NOEXEC_SEAL
    } else {
        FILE_MFD_EXEC
    }
}

/// The non-zero pages of `vmas` (all mappings of one file), by file offset.
fn from_memory<'a>(vmas: impl Iterator<Item = &'a PlannedVma>, mem: &Mem) -> Vec<(u64, Vec<u8>)> {
    let mut pages: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for v in vmas {
        let mut at = v.map.start;
        while at < v.map.end {
            let n = (v.map.end - at).min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            mem.read_segments(&[(at, n)], &mut buf);
            for (k, page) in buf.chunks(PAGE_SIZE as usize).enumerate() {
                if page.iter().any(|&b| b != 0) {
                    let off = v.map.offset + (at - v.map.start) + k as u64 * PAGE_SIZE;
                    pages.entry(off).or_insert_with(|| page.to_vec());
                }
            }
            at += n as u64;
        }
    }
    coalesce(pages.into_iter().collect())
}

/// Give every mapping of a file without a path its file: shared ones (planned as
/// SharedObject) always, private ones (FilePrivate of a deleted file or memfd) when
/// the file is met through an fd or a shared mapping too; those then store only
/// the pages the process wrote (its private copies), and see the file's others.
pub fn map_vmas(
    pid: i32,
    objects: &mut Objects,
    vmas: &mut [PlannedVma],
    mem: &Mem,
    strings: &mut Strings,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    for i in 0..vmas.len() {
        if vmas[i].vma.kind != VmaKind::SharedObject as u32 {
            continue;
        }
        let o = objects
            .of_mapping(pid, &vmas[i], vmas, mem, strings, warnings)
            .map_err(|e| anyhow::anyhow!("pid {pid}: cannot save the file behind VMA {}: {e}", describe(&vmas[i])))?;
        vmas[i].vma.object = o as u32 + 1;
        vmas[i].vma.file_offset = vmas[i].map.offset;
    }
    for v in vmas.iter_mut() {
        if v.vma.kind != VmaKind::FilePrivate as u32 || !v.map.is_deleted() {
            continue;
        }
        let Some(o) = objects.find(libc::makedev(v.map.dev_major, v.map.dev_minor), v.map.inode) else { continue };
        if objects.files[o].kind == FileKind::Shmem as u32 {
            continue;
        }
        let o = objects.named(o, v.map.path().unwrap_or_default().as_bytes(), strings);
        v.vma.kind = VmaKind::PrivateObject as u32;
        v.vma.object = o as u32 + 1;
        (v.vma.name_off, v.vma.name_len) = (0, 0);
        v.pages = if v.pages == Pages::None { Pages::None } else { Pages::Written };
    }
    Ok(())
}

fn describe(v: &PlannedVma) -> String {
    format!("{:x}-{:x} {}", v.map.start, v.map.end, v.map.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_file_gives_its_data_ranges_only() {
        let dir = std::env::temp_dir().join(format!("ckpt-objects-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sparse");
        let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_at(b"head", 0).unwrap();
        f.write_at(b"middle", 20 << 20).unwrap();
        let r = data_ranges(&f, 64 << 20).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let total: usize = r.iter().map(|(_, b)| b.len()).sum();
        assert!(total < 1 << 20, "{total} bytes of data for 10 bytes written");
        assert_eq!(&r[0].1[..4], b"head");
        let mid = r.iter().find(|(s, b)| *s <= 20 << 20 && 20 << 20 < s + b.len() as u64).expect("middle range");
        let at = ((20 << 20) - mid.0) as usize;
        assert_eq!(&mid.1[at..at + 6], b"middle");
    }

    #[test]
    fn shared_memory_ranges_become_whole_pages() {
        let r = whole_pages(vec![(10, vec![1, 2]), (PAGE_SIZE, vec![3; 5]), (5 * PAGE_SIZE, vec![4])], 4 * PAGE_SIZE);
        assert_eq!(r.len(), 1, "pages 0 and 1 join, page 5 is past the size");
        assert_eq!((r[0].0, r[0].1.len() as u64), (0, 2 * PAGE_SIZE));
        assert_eq!((r[0].1[10], r[0].1[11], r[0].1[PAGE_SIZE as usize]), (1, 2, 3));
    }

    #[test]
    fn memfd_flags_follow_mode_and_seals() {
        assert_eq!(memfd_flags(0o666, F_SEAL_EXEC), FILE_MFD_NOEXEC_SEAL);
        assert_eq!(memfd_flags(0o777, 0), FILE_MFD_EXEC);
        assert_eq!(memfd_flags(0o600, 0), FILE_MFD_EXEC);
        assert_eq!(memfd_flags(0o755, F_SEAL_EXEC), FILE_MFD_EXEC);
    }
}
