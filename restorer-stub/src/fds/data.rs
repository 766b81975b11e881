//! The bytes some fds carry in the image (file contents, pipe buffers, socket
//! addresses), read from the image in chunks through a small stack buffer (the stub
//! has no allocator) and checked against the record's CRC-32C as they pass.

use super::{fail, Cx};
use crate::sys;
use ckpt_format::crc32c;
use ckpt_format::Fd;

const CHUNK: usize = 16 * 1024;

fn update(crc: u32, b: &[u8], hw: bool) -> u32 {
    if hw {
        // SAFETY: `hw` is ctx.hw_crc, set only when CPUID reports SSE4.2.
        unsafe { crc32c::update_hw(crc, b) }
    } else {
        crc32c::update_sw(crc, b)
    }
}

/// pread exactly `buf.len()` bytes of the image at image offset `off`.
fn read_image(cx: &Cx, f: &Fd, buf: &mut [u8], off: u64) {
    let mut done = 0;
    while done < buf.len() {
        match sys::pread(cx.img, &mut buf[done..], cx.ctx.image_base + off + done as u64) {
            Ok(0) => fail(f, "the image ends inside this fd's stored data", 0),
            Ok(n) => done += n,
            Err(sys::EINTR) => {}
            Err(e) => fail(f, "reading its stored data from the image", e),
        }
    }
}

fn write_all(f: &Fd, fd: usize, mut b: &[u8]) {
    while !b.is_empty() {
        match sys::write(fd, b) {
            Ok(0) => fail(f, "writing its stored data: no progress", 0),
            Ok(n) => b = &b[n..],
            Err(sys::EINTR) => {}
            Err(sys::EAGAIN) => fail(f, "writing its stored data: the new pipe is too small to hold it", sys::EAGAIN),
            Err(e) => fail(f, "writing its stored data", e),
        }
    }
}

fn check_crc(f: &Fd, crc: u32) {
    if crc != f.data_crc {
        fail(f, "stored data checksum mismatch (corrupted image)", 0);
    }
}

/// Write record `f`'s data to `out` (whose offset moves to the end of it).
pub fn copy_to(cx: &Cx, f: &Fd, out: usize) {
    copy_tail(cx, f, 0, out);
}

/// Write record `f`'s data from byte `skip` on to `out`; the checksum covers all.
pub fn copy_tail(cx: &Cx, f: &Fd, skip: u64, out: usize) {
    copy_range(cx, f, skip, f.data_len, out);
}

/// Write bytes `skip..end` of record `f`'s data to `out`; the checksum covers all.
pub fn copy_range(cx: &Cx, f: &Fd, skip: u64, end: u64, out: usize) {
    let mut buf = [0u8; CHUNK];
    let mut crc = 0;
    let mut pos = 0u64;
    while pos < f.data_len {
        let n = (f.data_len - pos).min(CHUNK as u64) as usize;
        read_image(cx, f, &mut buf[..n], f.data_off + pos);
        crc = update(crc, &buf[..n], cx.ctx.hw_crc);
        let from = skip.saturating_sub(pos).min(n as u64) as usize;
        let to = end.saturating_sub(pos).clamp(from as u64, n as u64) as usize;
        write_all(f, out, &buf[from..to]);
        pos += n as u64;
    }
    check_crc(f, crc);
}

/// Read the first `buf.len()` bytes of record `f`'s data (checked by the copy
/// that reads it all, [`copy_tail`]).
pub fn read_head<'b>(cx: &Cx, f: &Fd, buf: &'b mut [u8]) -> &'b [u8] {
    if f.data_len < buf.len() as u64 {
        fail(f, "stored data shorter than expected", 0);
    }
    read_image(cx, f, buf, f.data_off);
    buf
}

/// Read record `f`'s (small) data into `buf`; returns its length.
pub fn read_small<'b>(cx: &Cx, f: &Fd, buf: &'b mut [u8]) -> &'b [u8] {
    if f.data_len > buf.len() as u64 {
        fail(f, "stored data larger than expected", 0);
    }
    let b = &mut buf[..f.data_len as usize];
    read_image(cx, f, b, f.data_off);
    check_crc(f, update(0, b, cx.ctx.hw_crc));
    b
}
