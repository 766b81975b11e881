//! File descriptors of the resumed process. Version 1 provides fds 0-2: inherited
//! from whoever runs the resume file, except an original regular file, which is
//! reopened by path with its flags and offset. Every other fd of the resumer
//! (including the image) is closed so the process sees only its own.

use crate::layout::cpath;
use crate::out::{self, Line, Step};
use crate::sys;
use ckpt_format::{FdKind, Tables};

fn reopen(t: &Tables, f: &ckpt_format::Fd) {
    let mut buf = [0u8; 4096];
    let path = cpath(t.string(f.path_off, f.path_len), &mut buf);
    let flags = f.flags & !(sys::O_CREAT | sys::O_EXCL | sys::O_TRUNC | sys::O_NOCTTY) & !(sys::O_CLOEXEC as u32);
    let tmp = match sys::open(path, flags as usize, 0) {
        Ok(fd) => fd,
        Err(e) => {
            Line::new().s("restore fds failed: fd ").dec(f.fd as u64).s(": cannot reopen ")
                .b(&path[..path.len() - 1]).s(": ").errno(e).emit();
            sys::exit_group(Step::Fds as i32)
        }
    };
    if f.flags & sys::O_APPEND == 0 {
        let end = out::check(sys::lseek(tmp, 0, sys::SEEK_END), Step::Fds, 0, 0) as u64;
        if f.offset > end {
            Line::new().s("restore fds failed: fd ").dec(f.fd as u64).s(": ")
                .b(&path[..path.len() - 1]).s(" is shorter (").dec(end)
                .s(" bytes) than the saved offset ").dec(f.offset).emit();
            sys::exit_group(Step::Fds as i32);
        }
        out::check(sys::lseek(tmp, f.offset, sys::SEEK_SET), Step::Fds, 0, 0);
    }
    let cloexec = if f.cloexec != 0 { sys::O_CLOEXEC } else { 0 };
    if tmp != f.fd as usize {
        out::check(sys::dup3(tmp, f.fd as usize, cloexec), Step::Fds, 0, 0);
        let _ = sys::close(tmp);
    } else if cloexec != 0 {
        out::check(sys::fcntl(tmp, 2 /* F_SETFD */, 1 /* FD_CLOEXEC */), Step::Fds, 0, 0);
    }
    out::trace("reopened file for fd", f.fd as u64, f.offset);
}

pub fn restore(t: &Tables) {
    // Closes the image too: every page is in place by now.
    let _ = sys::close_range(3, u32::MAX as usize);
    for f in t.fds {
        if FdKind::from_u32(f.kind) == Some(FdKind::Path) {
            reopen(t, f);
        }
    }
}
