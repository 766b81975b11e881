//! The integer socket options of the image's SockOpts section (ckpt_format::sockopts),
//! set on each socket at its temporary number once every socket is built and its
//! queued data is back: SO_PEEK_OFF counts into that data, and TCP_CORK on a socket
//! whose bytes were written back would otherwise hold them as the original did not.
//! A classic socket filter is attached from its instructions in the Strings section.

use super::{errno, Cx};
use crate::out::{self, Line, Step};
use crate::sys;
use ckpt_format::sockopts::{label, SOL_SOCKET, SO_ATTACH_FILTER};
use ckpt_format::SockOpt;
use ckpt_format::Tables;

/// struct sock_fprog (linux/filter.h): instruction count, then a pointer to them.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockFprog {
    len: u16,
    _pad: [u8; 6],
    filter: usize,
}

fn set(t: &Tables, x: usize, o: &SockOpt) -> sys::Res {
    if (o.level, o.name) == (SOL_SOCKET, SO_ATTACH_FILTER) {
        // Validated: 1..=4096 instructions inside the strings section.
        let insns = t.string(o.data_off, o.data_len);
        let prog = SockFprog { len: o.value as u16, _pad: [0; 6], filter: insns.as_ptr() as usize };
        return sys::setsockopt(x, o.level as usize, o.name as usize, &prog);
    }
    sys::setsockopt_int(x, o.level as usize, o.name as usize, o.value)
}

pub fn restore(cx: &Cx) {
    let t = cx.t;
    for o in t.sockopts {
        // Validated: the fd is a socket the image creates.
        let Some(i) = t.fds.iter().position(|f| f.fd == o.fd) else { continue };
        let x = cx.temp(i);
        if let Err(e) = set(t, x, o) {
            let mut l = Line::new();
            l.s("restore fds failed: fd ").dec(o.fd as u64).s(": cannot set socket option ")
                .s(label(o.level, o.name)).s(" to ").s(if o.value < 0 { "-" } else { "" })
                .dec(o.value.unsigned_abs() as u64).s(": ");
            errno(&mut l, e).emit();
            sys::exit_group(Step::Fds as i32);
        }
        out::trace("socket option (fd, value)", o.fd as u64, o.value as u64);
    }
}
