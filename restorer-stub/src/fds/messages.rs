//! Datagram and seqpacket messages queued on a unix socket pair end, sent again one
//! by one through the other end so each keeps its boundary. The record's data is the
//! messages framed as a native-endian u32 length and its bytes
//! (generator/src/fdplan/sockqueue.rs). A message may be larger than any stack
//! buffer, so the data is mapped read-only from the image (page aligned, as every
//! fd's data is placed), checked against its CRC-32C, walked, and unmapped.

use super::{fail, Cx};
use crate::sys;
use ckpt_format::{crc32c, Fd, PAGE_SIZE};

/// The image bytes `[off, off + len)` mapped read-only; unmapped on drop.
struct Mapped {
    base: usize,
    len: usize,
    skip: usize,
}

impl Mapped {
    fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: the mapping covers skip + len readable bytes until drop.
        unsafe { core::slice::from_raw_parts((self.base + self.skip) as *const u8, len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer borrowed.
        let _ = unsafe { sys::munmap(self.base, self.len) };
    }
}

fn map(cx: &Cx, f: &Fd) -> Mapped {
    let at = cx.ctx.image_base + f.data_off;
    let start = at & !(PAGE_SIZE - 1);
    let skip = (at - start) as usize;
    let len = (skip as u64 + f.data_len).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    // SAFETY: a new private read-only mapping at an address the kernel picks.
    let r = unsafe { sys::mmap(0, len as usize, sys::PROT_READ, sys::MAP_PRIVATE, cx.img as isize, start) };
    match r {
        Ok(base) => Mapped { base, len: len as usize, skip },
        Err(e) => fail(f, "mapping its queued messages from the image", e),
    }
}

/// Send record `f`'s messages through `out`, the other end of its new pair.
pub fn send_all(cx: &Cx, f: &Fd, out: usize) {
    let m = map(cx, f);
    let data = m.bytes(f.data_len as usize);
    let crc = if cx.ctx.hw_crc {
        // SAFETY: hw_crc is set only when CPUID reports SSE4.2.
        unsafe { crc32c::update_hw(0, data) }
    } else {
        crc32c::update_sw(0, data)
    };
    if crc != f.data_crc {
        fail(f, "stored data checksum mismatch (corrupted image)", 0);
    }
    let mut rest = data;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else { fail(f, "its queued messages are cut short", 0) };
        let len = u32::from_ne_bytes(*len) as usize;
        if len > tail.len() {
            fail(f, "its queued messages are cut short", 0);
        }
        loop {
            match sys::send(out, &tail[..len], sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL) {
                Ok(_) => break,
                Err(sys::EINTR) => {}
                Err(sys::EAGAIN) => fail(f, "its queued messages do not fit in the new socket (net.unix.max_dgram_qlen, SO_SNDBUF)", sys::EAGAIN),
                Err(e) => fail(f, "sending its queued messages again", e),
            }
        }
        rest = &tail[len..];
    }
}
