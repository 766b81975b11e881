//! Kernel objects made from a few numbers: pipes (with their buffered bytes),
//! eventfd, signalfd, timerfd and epoll instances (registrations come later, once
//! every fd has its final number). Record layouts: generator/src/fdplan/anon.rs.

use super::{check, data, fail, set_status, to_temp, to_temps2, Cx};
use crate::out::Line;
use crate::sys;
use ckpt_format::FdKind;

const EFD_SEMAPHORE: usize = 1;

/// The first record of pipe `ino` whose end is `end` (0 read, 1 write).
fn pipe_end(cx: &Cx, ino: u64, end: u64) -> Option<usize> {
    cx.t.fds.iter().position(|g| g.kind == FdKind::Pipe as u32 && g.aux[0] == ino && g.aux[1] == end)
}

/// A pipe: the first of its records creates it with pipe2(2) and puts both ends at
/// the temporaries of the first record of each end; the bytes that were buffered
/// are written into it, with the saved capacity (F_SETPIPE_SZ) so they fit.
/// A later record of the same pipe with a description of its own (the pipe opened
/// again through /proc) reopens it the same way.
pub fn pipe(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let (ino, end) = (f.aux[0], f.aux[1]);
    let first = pipe_end(cx, ino, 0).zip(pipe_end(cx, ino, 1));
    let Some((r_idx, w_idx)) = first else { fail(f, "the pipe's other end is not in the image", 0) };
    let built = |k| super::exists(cx.temp(k));
    if !built(r_idx) && !built(w_idx) {
        create_pipe(cx, f, ino, r_idx, w_idx);
    }
    if i == r_idx || i == w_idx {
        return;
    }
    // A separate open of one of its ends (built in any order: a file in flight may
    // be built before the pipe's other fds): through /proc/self/fd of an end made.
    let mut b = [0u8; 32];
    let src = cx.temp(if built(r_idx) { r_idx } else { w_idx });
    let p = super::files::proc_fd(src, &mut b);
    let mode = if end == 0 { sys::O_RDONLY } else { sys::O_WRONLY as usize };
    let x = check(f, "reopening the pipe through /proc/self/fd", sys::open(p, mode | sys::O_NONBLOCK as usize, 0));
    set_status(f, x);
    to_temp(cx, i, x);
}

/// The pipe itself, for its first read and write records, with its bytes.
fn create_pipe(cx: &Cx, f: &ckpt_format::Fd, ino: u64, r_idx: usize, w_idx: usize) {
    let mut p = [0i32; 2];
    let direct = if f.flags & sys::O_DIRECT != 0 { sys::O_DIRECT as usize } else { 0 };
    check(f, "pipe2", sys::pipe2(&mut p, sys::O_NONBLOCK as usize | direct));
    let (r, w) = (p[0] as usize, p[1] as usize);
    if f.aux[2] != 0 {
        let cur = sys::fcntl(w, sys::F_GETPIPE_SZ, 0).unwrap_or(0) as u64;
        if cur < f.aux[2] {
            // Above /proc/sys/fs/pipe-max-size this needs CAP_SYS_RESOURCE; the
            // write below says so if the bytes then do not fit.
            let _ = sys::fcntl(w, sys::F_SETPIPE_SZ, f.aux[2] as usize);
        }
    }
    if let Some(with_data) = cx.t.fds.iter().find(|g| g.kind == FdKind::Pipe as u32 && g.aux[0] == ino && g.data_len != 0) {
        data::copy_to(cx, with_data, w);
    }
    set_status(&cx.t.fds[r_idx], r);
    set_status(&cx.t.fds[w_idx], w);
    to_temps2(cx, (r_idx, r), (w_idx, w));
}

pub fn eventfd(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let flags = if f.aux[1] != 0 { EFD_SEMAPHORE } else { 0 };
    let x = check(f, "eventfd2", sys::eventfd2(0, flags));
    if f.aux[0] != 0 {
        // write(2) adds to the counter; the full u64 range goes through it, not
        // through eventfd2's unsigned int initval.
        let n = check(f, "setting the eventfd counter", sys::write(x, &f.aux[0].to_ne_bytes()));
        if n != 8 {
            fail(f, "setting the eventfd counter: short write", 0);
        }
    }
    set_status(f, x);
    to_temp(cx, i, x);
}

pub fn signalfd(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let x = check(f, "signalfd4", sys::signalfd4(-1, &f.aux[0], 0));
    set_status(f, x);
    to_temp(cx, i, x);
}

/// timerfd: armed again with the time that remained at the freeze (relative, or
/// made absolute again for a TFD_TIMER_ABSTIME timer so TFD_TIMER_CANCEL_ON_SET
/// keeps its meaning); expirations not yet read are put back with
/// TFD_IOC_SET_TICKS (timerfd_create(2), CONFIG_CHECKPOINT_RESTORE).
pub fn timerfd(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let clockid = (f.aux[0] & 0xffff_ffff) as usize;
    let sflags = (f.aux[0] >> 32) as usize;
    let x = check(f, "timerfd_create", sys::timerfd_create(clockid, 0));
    let (mut vs, mut vns) = (f.aux[1], f.aux[2]);
    let (is, ins) = (f.aux[3], f.aux[4]);
    if vs == 0 && vns == 0 && (is != 0 || ins != 0) {
        // A periodic timer that had expired unread: the kernel re-arms it when the
        // expirations are read; from here, the next one is an interval away.
        (vs, vns) = (is, ins);
    }
    if vs != 0 || vns != 0 {
        let mut flags = 0;
        if sflags & sys::TFD_TIMER_ABSTIME != 0 {
            let mut now = [0u64; 2];
            check(f, "clock_gettime", sys::clock_gettime(clockid, &mut now));
            vs += now[0];
            vns += now[1];
            if vns >= 1_000_000_000 {
                vs += 1;
                vns -= 1_000_000_000;
            }
            flags = sflags;
        }
        check(f, "timerfd_settime", sys::timerfd_settime(x, flags, &[is, ins, vs, vns]));
    }
    if f.aux[5] != 0 {
        // SAFETY: TFD_IOC_SET_TICKS reads one u64.
        if let Err(e) = unsafe { sys::ioctl(x, sys::TFD_IOC_SET_TICKS, &f.aux[5] as *const u64 as usize) } {
            let mut l = Line::new();
            l.s("warning: fd ").dec(f.fd as u64).s(" (timerfd): ").dec(f.aux[5])
                .s(" unread expirations are lost: TFD_IOC_SET_TICKS: ");
            super::errno(&mut l, e).emit();
        }
    }
    set_status(f, x);
    to_temp(cx, i, x);
}

pub fn epoll(cx: &Cx, i: usize) {
    let f = &cx.t.fds[i];
    let x = check(f, "epoll_create1", sys::epoll_create1(0));
    set_status(f, x);
    to_temp(cx, i, x);
}
