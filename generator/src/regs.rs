//! What the registers must say for the task to continue correctly elsewhere.
//!
//! A task stopped inside a system call resumes as Linux would after a signal
//! (arch/x86/kernel/signal.c, handle_signal/arch_do_signal_or_restart): for
//! -ERESTARTSYS, -ERESTARTNOINTR and -ERESTARTNOHAND the `syscall` instruction is
//! executed again (rax = orig_rax, rip -= 2); for -ERESTART_RESTARTBLOCK the kernel's
//! restart state (restart_block: the time left) is lost with the task. The calls that
//! use it and are safe to run again from their registers are executed again: the
//! sleeps, poll(2) and futex(2) waits (an absolute deadline is the same deadline; a
//! relative timeout starts again in full, which callers must already accept, as a
//! timeout is a minimum); any other returns -EINTR. A task stopped and continued
//! (SIGSTOP, a debugger) never sees EINTR from these, so a program that blocks every
//! signal may rightly treat EINTR as fatal.
//! A task stopped inside an rseq critical section continues at its abort handler, as
//! the kernel would do on preemption (rseq(2)).

use crate::memory::Mem;
use anyhow::{bail, Context, Result};
use ckpt_format::Regs;

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
const EINTR: i64 = 4;

/// What happened to a system call in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Not stopped in a restartable system call.
    None,
    /// The system call `nr` will be executed again.
    Reexecute { nr: u64 },
    /// The system call `nr` will return -EINTR.
    Interrupted { nr: u64 },
}

/// The encoding of `syscall`: its only one (no prefix changes its meaning or
/// length in 64-bit mode; the unit tests decode it).
pub const SYSCALL: [u8; 2] = [0x0f, 0x05];

/// Whether the two bytes before rip are a `syscall` instruction. Compared, not
/// decoded: the decoder builds its tables on first use, a few hundred
/// microseconds of every freeze, for a fixed two-byte encoding.
pub fn is_syscall_insn(bytes: [u8; 2]) -> bool {
    bytes == SYSCALL
}

/// Apply the restart rules to `regs`, given the two bytes before rip.
pub fn fix_syscall_restart(regs: &mut Regs, before_rip: [u8; 2]) -> Result<Restart> {
    if (regs.orig_rax as i64) < 0 {
        return Ok(Restart::None);
    }
    let nr = regs.orig_rax;
    let ret = regs.rax as i64;
    let reexecute = match -ret {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => true,
        ERESTART_RESTARTBLOCK => {
            matches!(nr as i64, libc::SYS_nanosleep | libc::SYS_clock_nanosleep | libc::SYS_poll | libc::SYS_futex)
        }
        _ => return Ok(Restart::None),
    };
    if !reexecute {
        regs.rax = (-EINTR) as u64;
        return Ok(Restart::Interrupted { nr });
    }
    if !is_syscall_insn(before_rip) {
        bail!(
            "stopped in system call {nr} but the instruction before rip {:#x} is not `syscall` (bytes {:02x} {:02x})",
            regs.rip, before_rip[0], before_rip[1]
        );
    }
    regs.rax = nr;
    regs.rip -= 2;
    Ok(Restart::Reexecute { nr })
}

/// If rip is inside the rseq critical section registered in the task's struct rseq
/// at `rseq_addr`, move it to the section's abort handler. Returns the new rip.
pub fn fix_rseq(mem: &Mem, rseq_addr: u64, regs: &mut Regs) -> Result<Option<u64>> {
    let mut cs_ptr = [0u8; 8];
    mem.read_exact(rseq_addr + 8, &mut cs_ptr).context("reading struct rseq")?;
    let cs = u64::from_le_bytes(cs_ptr);
    if cs == 0 {
        return Ok(None);
    }
    // struct rseq_cs { u32 version, flags; u64 start_ip, post_commit_offset, abort_ip; }
    let mut b = [0u8; 32];
    mem.read_exact(cs, &mut b).context("reading struct rseq_cs")?;
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let (start, len, abort) = (word(8), word(16), word(24));
    if regs.rip >= start && regs.rip < start.wrapping_add(len) {
        regs.rip = abort;
        return Ok(Some(abort));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_syscall_encoding_decodes_as_syscall() {
        use iced_x86::{Decoder, DecoderOptions, Mnemonic};
        let i = Decoder::with_ip(64, &SYSCALL, 0x1000, DecoderOptions::NONE).decode();
        assert_eq!((i.mnemonic(), i.len()), (Mnemonic::Syscall, 2));
        assert!(!is_syscall_insn([0x0f, 0x34]), "sysenter");
    }

    fn regs(orig: i64, rax: i64) -> Regs {
        Regs { orig_rax: orig as u64, rax: rax as u64, rip: 0x1002, ..Default::default() }
    }

    #[test]
    fn erestartsys_reexecutes_the_syscall() {
        let mut r = regs(0, -512);
        assert_eq!(fix_syscall_restart(&mut r, [0x0f, 0x05]).unwrap(), Restart::Reexecute { nr: 0 });
        assert_eq!((r.rax, r.rip), (0, 0x1000));
    }

    #[test]
    fn restartblock_sleep_reexecutes_other_returns_eintr() {
        let mut r = regs(libc::SYS_clock_nanosleep, -516);
        assert!(matches!(fix_syscall_restart(&mut r, [0x0f, 0x05]).unwrap(), Restart::Reexecute { .. }));
        for nr in [libc::SYS_poll, libc::SYS_futex] {
            let mut r = regs(nr, -516);
            assert!(matches!(fix_syscall_restart(&mut r, [0x0f, 0x05]).unwrap(), Restart::Reexecute { .. }), "{nr}");
        }
        let mut r = regs(libc::SYS_io_getevents, -516);
        assert!(matches!(fix_syscall_restart(&mut r, [0x0f, 0x05]).unwrap(), Restart::Interrupted { .. }));
        assert_eq!(r.rax as i64, -4);
        assert_eq!(r.rip, 0x1002);
    }

    #[test]
    fn completed_or_no_syscall_is_left_alone() {
        let mut r = regs(-1, 7);
        assert_eq!(fix_syscall_restart(&mut r, [0, 0]).unwrap(), Restart::None);
        let mut r = regs(1, 5);
        assert_eq!(fix_syscall_restart(&mut r, [0x0f, 0x05]).unwrap(), Restart::None);
        assert_eq!(r.rax, 5);
    }

    #[test]
    fn refuses_when_not_a_syscall_instruction() {
        let mut r = regs(0, -512);
        assert!(fix_syscall_restart(&mut r, [0xcd, 0x80]).is_err());
    }
}
