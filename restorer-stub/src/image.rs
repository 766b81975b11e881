//! Finding, reading and validating the image before anything else is touched.
//!
//! Three ways in: a `.resume` executable carries its image after the stub, at the
//! offset the linker patched into `CKPT_IMAGE_OFFSET`; binfmt_misc with the O flag
//! passes the raw image as AT_EXECFD; otherwise the raw image path is argv[1]
//! (binfmt_misc without O, or `ckpt resume FILE`).

use crate::ctx::Ctx;
use crate::out::{self, Line, Step};
use crate::startup::{Startup, AT_EXECFD};
use crate::sys;
use ckpt_format::{check_header, tables_span, FormatError, Header, Tables, PAGE_SIZE, VERSION};

/// File offset of the image inside this executable; 0 in the plain restorer. Written
/// by the linker crate, which finds it through the symbol table.
#[no_mangle]
#[used]
#[link_section = ".ckpt_params"]
pub static CKPT_IMAGE_OFFSET: u64 = 0;

fn image_offset() -> u64 {
    // SAFETY: a plain read of our own static; volatile so the linker-patched value is
    // read from memory rather than folded to the compile-time 0.
    unsafe { core::ptr::read_volatile(&raw const CKPT_IMAGE_OFFSET) }
}

fn bad_image(e: FormatError) -> ! {
    let mut l = Line::new();
    l.s("invalid image: ").s(e.what());
    if let Some(i) = e.index() {
        l.s(" (#").dec(i).s(")");
    }
    // The numbers behind the fixed text (core::fmt stays out of the stub).
    match e {
        FormatError::Truncated { need, have } => {
            l.s(": needs ").dec(need).s(" bytes, has ").dec(have);
        }
        FormatError::BadVersion { found } => {
            l.s(": the image is version ").dec(found as u64).s(", this restorer reads version ").dec(VERSION as u64);
        }
        FormatError::BadPageSize { found } => {
            l.s(": the image's is ").dec(found as u64).s(", this machine's ").dec(PAGE_SIZE);
        }
        FormatError::HeaderChecksum { stored, computed } | FormatError::SectionChecksum { stored, computed, .. } => {
            l.s(": stored ").hex(stored as u64).s(", computed ").hex(computed as u64);
        }
        _ => {}
    }
    l.emit();
    sys::exit_group(Step::Validate as i32)
}

/// Open the file holding the image and record where the image starts.
pub fn open(st: &Startup, ctx: &mut Ctx) {
    let off = image_offset();
    ctx.embedded = off != 0;
    let (fd, base) = if off != 0 {
        (out::check(sys::open(b"/proc/self/exe\0", sys::O_RDONLY | sys::O_CLOEXEC, 0), Step::OpenImage, 0, 0), off)
    } else if let Some(fd) = st.aux(AT_EXECFD) {
        (fd, 0)
    } else if let Some(path) = st.arg(1) {
        match sys::open(path, sys::O_RDONLY | sys::O_CLOEXEC, 0) {
            Ok(fd) => (fd, 0),
            Err(e) => {
                Line::new().s("open image failed: ").b(&path[..path.len() - 1]).s(": ").errno(e).emit();
                sys::exit_group(Step::OpenImage as i32)
            }
        }
    } else {
        out::fail_msg(Step::OpenImage, "no image: run a .resume file, or give a .ckpt image path", b"")
    };
    // Keep the image off fds 0-2, which belong to the resumed process.
    let fd = if fd < 3 {
        let n = out::check(sys::fcntl(fd, sys::F_DUPFD_CLOEXEC, 3), Step::OpenImage, 0, 0);
        let _ = sys::close(fd);
        n
    } else {
        fd
    };
    // A process of a tree (tree.rs): its own image follows the root's.
    let base = base + ctx.tree_at;
    let len = out::check(sys::lseek(fd, 0, sys::SEEK_END), Step::OpenImage, 0, 0) as u64;
    if len < base {
        bad_image(FormatError::Truncated { need: base, have: len });
    }
    ctx.fd = fd;
    ctx.image_base = base;
    ctx.file_len = len - base;
    out::trace("image found at file offset", base, base + ctx.file_len);
}

/// Read exactly `len` bytes at image offset `off` into `addr`, or fail `step`.
pub fn read_at(ctx: &Ctx, addr: usize, len: usize, off: u64, step: Step) {
    let mut done = 0;
    while done < len {
        // SAFETY: callers pass memory they mapped writable for [addr, addr+len).
        let r = unsafe { sys::pread_raw(ctx.fd, addr + done, len - done, ctx.image_base + off + done as u64) };
        match r {
            Ok(0) => bad_image(FormatError::Truncated { need: off + len as u64, have: off + done as u64 }),
            Ok(n) => done += n,
            Err(sys::EINTR) => {}
            Err(e) => out::fail(step, addr as u64, (addr + len) as u64, e),
        }
    }
}

/// Read and check the header, then read every table into fresh memory.
pub fn load(ctx: &mut Ctx) -> &'static [u8] {
    let mut page = [0u64; (PAGE_SIZE / 8) as usize];
    let hlen = core::mem::size_of::<Header>().min(ctx.file_len as usize);
    read_at(ctx, page.as_mut_ptr() as usize, hlen, 0, Step::OpenImage);
    // SAFETY: viewing the initialised u64 buffer as bytes.
    let bytes = unsafe { core::slice::from_raw_parts(page.as_ptr() as *const u8, hlen) };
    ctx.hdr = match check_header(bytes, ctx.file_len) {
        Ok(h) => h,
        Err(e) => bad_image(e),
    };
    let (lo, hi) = tables_span(&ctx.hdr);
    let len = (hi - lo) as usize;
    let map_len = ckpt_format::align_up(len.max(1) as u64, PAGE_SIZE) as usize;
    // Populated at once: one call allocates every page instead of a fault per page
    // inside the read. Moved (not copied) into the gap later (gap::enter).
    // SAFETY: a new anonymous mapping at an address of the kernel's choice.
    let addr = out::check(
        unsafe { sys::mmap(0, map_len, sys::PROT_READ | sys::PROT_WRITE, sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_POPULATE, -1, 0) },
        Step::OpenImage, 0, map_len as u64,
    );
    read_at(ctx, addr, len, lo, Step::OpenImage);
    ctx.tables_lo = lo;
    out::trace("tables read from image offsets", lo, hi);
    // SAFETY: the mapping stays until gap::enter moves it into the gap.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// Verify checksums and validate every record of the tables in `buf`.
pub fn parse(ctx: &Ctx, buf: &'static [u8]) -> Tables<'static> {
    match Tables::parse(&ctx.hdr, buf, ctx.tables_lo, ctx.hw_crc) {
        Ok(t) => t,
        Err(e) => bad_image(e),
    }
}

/// The tables again in phase 2, from the bytes [`parse`] verified in phase 1 and
/// gap::enter moved (or, failing that, copied) into the gap: records validated,
/// checksums not computed twice.
pub fn parse_moved(ctx: &Ctx, buf: &'static [u8]) -> Tables<'static> {
    match Tables::parse_verified(&ctx.hdr, buf, ctx.tables_lo) {
        Ok(t) => t,
        Err(e) => bad_image(e),
    }
}
