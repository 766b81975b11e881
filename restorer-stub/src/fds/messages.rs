//! Datagram and seqpacket messages queued on a unix socket pair end, sent again one
//! by one through the other end so each keeps its boundary, with the files they
//! passed (SCM_RIGHTS): records marked FD_INFLIGHT, built first (they may be
//! sockets with queues of their own) and sent as they were. The record's data is
//! the messages framed as a native-endian u32 length, a u32 count of fds, their
//! record fd numbers (i32), and the bytes (generator/src/fdplan/sockqueue.rs). A message may be larger than any stack
//! buffer, so the data is mapped read-only from the image (page aligned, as every
//! fd's data is placed), checked against its CRC-32C, walked, and unmapped.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::{build, fail, Cx};
use crate::sys;
use ckpt_format::{crc32c, Fd, PAGE_SIZE};

/// The image bytes `[off, off + len)` mapped read-only; unmapped on drop.
pub struct Mapped {
    base: usize,
    len: usize,
    skip: usize,
}

impl Mapped {
    pub fn bytes(&self, len: usize) -> &[u8] {
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

/// How deep the building of files passed in messages goes (a socket passed in a
/// message whose own queue passes a socket...); a cycle would never end.
static DEPTH: AtomicUsize = AtomicUsize::new(0);
const MAX_DEPTH: usize = 8;

/// The temporaries of the records named by `nums` (fd numbers), built first.
fn passed<'b>(cx: &Cx, f: &Fd, nums: &[u8], out: &'b mut [i32; sys::SCM_MAX_FD]) -> &'b [i32] {
    let n = nums.len() / 4;
    if n > sys::SCM_MAX_FD {
        fail(f, "a queued message passes more fds than SCM_RIGHTS can", 0);
    }
    for k in 0..n {
        let fd = i32::from_ne_bytes([nums[4 * k], nums[4 * k + 1], nums[4 * k + 2], nums[4 * k + 3]]);
        let Ok(i) = cx.t.fds.binary_search_by_key(&fd, |g| g.fd) else {
            fail(f, "a queued message passes an fd that is not in the image", 0)
        };
        if DEPTH.fetch_add(1, Ordering::Relaxed) >= MAX_DEPTH {
            fail(f, "the files passed in its queued messages nest too deep (a socket passed into its own queue?)", 0);
        }
        build(cx, i);
        DEPTH.fetch_sub(1, Ordering::Relaxed);
        out[k] = cx.temp(i) as i32;
    }
    &out[..n]
}

/// Record `f`'s data mapped from the image, its CRC-32C checked.
pub fn map_checked(cx: &Cx, f: &Fd) -> Mapped {
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
    m
}

/// Send record `f`'s messages through `out`, the other end of its new pair.
pub fn send_all(cx: &Cx, f: &Fd, out: usize) {
    let m = map_checked(cx, f);
    let mut rest = m.bytes(f.data_len as usize);
    while !rest.is_empty() {
        let Some((head, tail)) = rest.split_first_chunk::<8>() else { fail(f, "its queued messages are cut short", 0) };
        let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let nfds = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if nfds > sys::SCM_MAX_FD || nfds * 4 + len > tail.len() {
            fail(f, "its queued messages are cut short", 0);
        }
        let mut tmp = [0i32; sys::SCM_MAX_FD];
        let fds = passed(cx, f, &tail[..nfds * 4], &mut tmp);
        let tail = &tail[nfds * 4..];
        loop {
            match sys::send_fds(out, &tail[..len], fds, sys::MSG_DONTWAIT | sys::MSG_NOSIGNAL) {
                Ok(_) => break,
                Err(sys::EINTR) => {}
                Err(sys::EAGAIN) => fail(f, "its queued messages do not fit in the new socket (net.unix.max_dgram_qlen, SO_SNDBUF)", sys::EAGAIN),
                Err(e) => fail(f, "sending its queued messages again", e),
            }
        }
        rest = &tail[len..];
    }
}
