//! inotify instances: the watches are added again in ascending wd order, each
//! getting the wd it had (the program knows its watches by wd).
//!
//! Encoding (written by generator/src/fdplan/inotify.rs): `aux[0]` records in the
//! Strings span of the fd, each `"WD MASK PATH\0"`, WD and MASK in hex. The kernel
//! allocates wds cyclically from 1 (idr_alloc_cyclic in inotify_add_to_idr), also
//! past removed ones, so a gap is recreated by adding and removing a throw-away
//! watch on the next real watch's path (not watched yet, so it gets a new wd).
//! Removing it queues an IN_IGNORED event, which is read away before the program
//! sees the instance. Events that were queued at the freeze are not restored.

use super::{check, fail, fail_path, head, set_status, to_temp, Cx};
use crate::layout::cpath;
use crate::out::Step;
use crate::sys;
use ckpt_format::Fd;

/// Flags of inotify_add_watch(2) that change how a watch is added rather than what
/// it reports; IN_DONT_FOLLOW is always added (the saved path is the watched
/// object itself, from d_path, so a symlink there is the watched inode).
const IN_MASK_CREATE: u32 = 0x1000_0000;
const IN_MASK_ADD: u32 = 0x2000_0000;

fn hex(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v << 4 | d as u64;
    }
    Some(v)
}

/// One "WD MASK PATH" record (without its NUL).
fn parse(rec: &[u8]) -> Option<(u64, u32, &[u8])> {
    let sp1 = rec.iter().position(|&c| c == b' ')?;
    let rest = &rec[sp1 + 1..];
    let sp2 = rest.iter().position(|&c| c == b' ')?;
    let wd = hex(&rec[..sp1])?;
    let mask = hex(&rest[..sp2])?;
    Some((wd, mask as u32, &rest[sp2 + 1..]))
}

fn records<'a>(f: &Fd, s: &'a [u8]) -> impl Iterator<Item = (u64, u32, &'a [u8])> + 'a {
    let n = f.aux[0] as usize;
    let fd = *f;
    s.split(|&c| c == 0).take(n).map(move |r| match parse(r) {
        Some(w) => w,
        None => fail(&fd, "malformed inotify watch record", 0),
    })
}

pub fn inotify(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let s = cx.t.string(f.path_off, f.path_len);
    if s.iter().filter(|&&c| c == 0).count() < f.aux[0] as usize {
        fail(f, "fewer inotify watch records than its count", 0);
    }
    let x = check(f, "inotify_init1", sys::inotify_init1(sys::IN_NONBLOCK));
    let mut next = 1u64;
    let mut buf = [0u8; 4096];
    for (wd, mask, path) in records(f, s) {
        let p = cpath(path, &mut buf);
        if wd < next {
            fail(f, "inotify watches not in ascending wd order", 0);
        }
        while next < wd {
            let w = match sys::inotify_add_watch(x, p, sys::IN_ALL_EVENTS | sys::IN_DONT_FOLLOW) {
                Ok(w) => w as u64,
                Err(e) => fail_path(f, "inotify_add_watch (to skip a removed wd)", p, e),
            };
            let _ = sys::inotify_rm_watch(x, w as usize);
            if w != next {
                break;
            }
            next += 1;
        }
        let want = (mask & !(IN_MASK_CREATE | IN_MASK_ADD)) | sys::IN_DONT_FOLLOW;
        let got = match sys::inotify_add_watch(x, p, want) {
            Ok(w) => w as u64,
            Err(e) => fail_path(f, "inotify_add_watch", p, e),
        };
        if got != wd {
            let mut l = head(f);
            l.s("watch on ").b(path).s(" got wd ").dec(got).s(" instead of ").dec(wd);
            l.emit();
            sys::exit_group(Step::Fds as i32);
        }
        next = wd + 1;
    }
    // Read away the IN_IGNORED events of the throw-away watches.
    loop {
        match sys::read(x, &mut buf) {
            Ok(n) if n > 0 => continue,
            Err(sys::EINTR) => continue,
            _ => break,
        }
    }
    set_status(f, x);
    to_temp(cx, i, x);
}
