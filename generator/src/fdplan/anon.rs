//! Anonymous-inode fds whose whole state is in their fdinfo: eventfd, signalfd,
//! timerfd and epoll (see proc/fds.rs for the lines and their kernel sources).
//!
//! Record layouts beyond the format's doc of each `FdKind`:
//! - Timerfd: `aux[0]` = clockid | settime flags << 32 (TFD_TIMER_ABSTIME,
//!   TFD_TIMER_CANCEL_ON_SET), `aux[5]` = expirations not yet read (restored with
//!   the TFD_IOC_SET_TICKS ioctl, CONFIG_CHECKPOINT_RESTORE). The remaining time
//!   counts from the resume: the time the image spends on disk does not elapse for it.
//! - Eventfd: the semaphore flag is only known from Linux 6.6's `eventfd-semaphore`
//!   line; before that it is taken as 0 (with a warning when the count is not 0).

use super::target::Target;
use super::{Class, Planned};
use crate::proc::fds::{FdExtra, FdInfo};
use ckpt_format::{EpollEntry, FdKind};

pub fn eventfd(f: &FdInfo, warnings: &mut Vec<String>) -> Class {
    let FdExtra::Eventfd { count, semaphore } = f.extra else {
        return Class::Refuse("its fdinfo has no eventfd-count line".into());
    };
    if semaphore.is_none() && count != 0 {
        warnings.push(format!(
            "fd {}: this kernel does not tell whether the eventfd is a semaphore (EFD_SEMAPHORE); restored as a plain counter",
            f.fd
        ));
    }
    let mut rec = Planned::new(f, FdKind::Eventfd);
    rec.aux[0] = count;
    rec.aux[1] = semaphore.unwrap_or(false) as u64;
    Class::Plan(rec)
}

pub fn signalfd(f: &FdInfo) -> Class {
    let FdExtra::Signalfd { mask } = f.extra else {
        return Class::Refuse("its fdinfo has no sigmask line".into());
    };
    let mut rec = Planned::new(f, FdKind::Signalfd);
    rec.aux[0] = mask;
    Class::Plan(rec)
}

pub fn timerfd(f: &FdInfo) -> Class {
    let FdExtra::Timerfd(t) = f.extra else {
        return Class::Refuse("its fdinfo has no timer lines".into());
    };
    let mut rec = Planned::new(f, FdKind::Timerfd);
    rec.aux = [
        t.clockid as u32 as u64 | (t.settime_flags as u64) << 32,
        t.value.0,
        t.value.1,
        t.interval.0,
        t.interval.1,
        t.ticks,
    ];
    Class::Plan(rec)
}

/// An epoll instance: the fd itself, plus one entry per registration. Each
/// registration names the fd number its file had when it was added; the file must
/// still be open at that number (checked with kcmp KCMP_EPOLL_TFD, or by inode
/// where kcmp is unavailable), else the registration could not be made again.
pub fn epoll(tg: &Target, f: &FdInfo, all: &[FdInfo]) -> (Class, Vec<EpollEntry>) {
    let tfds = match &f.extra {
        FdExtra::Epoll(t) => t.as_slice(),
        _ => &[],
    };
    let mut entries = Vec::new();
    for (i, t) in tfds.iter().enumerate() {
        let toff = tfds[..i].iter().filter(|o| o.tfd == t.tfd).count() as u32;
        let open = all.iter().find(|o| o.fd == t.tfd);
        let same = match open {
            None => false,
            Some(o) => match tg.epoll_target_is(f.fd, t.tfd, toff) {
                Ok(same) => same,
                Err(_) => t.ino == 0 || o.ino == t.ino,
            },
        };
        if !same {
            return (
                Class::Refuse(format!(
                    "it has a registration for fd {}, which is closed or now refers to another file",
                    t.tfd
                )),
                Vec::new(),
            );
        }
        entries.push(EpollEntry { epfd: f.fd, fd: t.tfd, events: t.events, _pad: 0, data: t.data });
    }
    (Class::Plan(Planned::new(f, FdKind::Epoll)), entries)
}
