//! The data of a pseudo-terminal master's record (`FdKind::Pty`, `aux[0]`
//! [`crate::PTY_MASTER`]) and the terminal settings its queued input is typed
//! again under. Both the freeze (which takes the input from the live terminal and
//! types it back at once) and the restorer (which types it into the new pair) use
//! [`replay_termios`], so the two agree on what the line discipline does with it.
//!
//! Data layout: the terminal's struct termios2 ([`TERMIOS_LEN`] bytes) and struct
//! winsize (8), then `aux[3]` bytes of input the slave side had not read (typed
//! into the master), then the output the master had not read (written by the
//! slave), to the end.
//!
//! The input is kept as the line discipline holds it: already through input
//! processing (ICRNL, erase and kill applied), lines with their terminators
//! ('\n', VEOL, VEOL2). A line ended by the end-of-file character (VEOF, which the
//! line discipline keeps as a marker, not a byte a reader gets) is followed by the
//! byte `aux[4]` bits 8-15 ([`eof_byte`]), a value found in none of the input's
//! other bytes; `aux[5]` counts those markers. Typed again with [`replay_termios`],
//! where only '\n', VEOL, VEOL2 and that byte as VEOF end lines and nothing else is
//! special, the canonical reader gets the same lines and end-of-files, and the
//! partial line at the end stays a line not yet ended.
//!
//! Every byte typed under those settings echoes once at the master, but for the
//! end-of-file markers: once all the echo is there, the line discipline has taken
//! everything. An end-of-file marker last would give no echo to wait for, so input
//! with markers ends with two more bytes: one of no meaning, then the byte of
//! `aux[4]` bits 16-23 ([`erase_byte`]) as VERASE, which takes it off again; both
//! echo (an erase echoes itself without ECHOE, eraser()).

/// Bytes of struct termios2 (asm-generic/termbits.h): c_iflag, c_oflag, c_cflag,
/// c_lflag (u32 each), c_line, c_cc[19], c_ispeed, c_ospeed.
pub const TERMIOS_LEN: usize = 44;
/// Settings at the head of a master's data: termios2 and struct winsize.
pub const PTY_SETTINGS_LEN: usize = TERMIOS_LEN + 8;

/// `aux[4]` bit of a master: the slave was locked (TIOCGPTLCK; unlockpt(3) not
/// called, or TIOCSPTLCK since): it is locked again once its fds are open.
pub const PTY_LOCKED: u64 = 1 << 0;
/// `aux[4]` bit of a master: the input holds end-of-file markers, the byte in
/// bits 8-15.
pub const PTY_EOF_BYTE: u64 = 1 << 1;
/// `aux[4]` bit of a master: its slave's terminal was in exclusive mode (TIOCEXCL,
/// further opens fail with EBUSY): set again once every fd of the pair is open.
pub const PTY_EXCLUSIVE: u64 = 1 << 2;
/// `aux[4]` bit of a master: the input ends with a byte and its erase, the erase
/// byte in bits 16-23.
pub const PTY_ERASE_BYTE: u64 = 1 << 3;
/// Every `aux[4]` bit a pty record may have (bits 8-15: the end-of-file byte,
/// 16-23 the erase byte).
pub const PTY_FLAGS: u64 = PTY_LOCKED | PTY_EOF_BYTE | PTY_EXCLUSIVE | PTY_ERASE_BYTE | 0xff_ff00;

const IFLAG: usize = 0;
const OFLAG: usize = 4;
const LFLAG: usize = 12;
const CC: usize = 17;
/// c_lflag bits (asm-generic/termbits.h).
pub const ICANON: u32 = 0o2;
pub const ECHO: u32 = 0o10;
pub const EXTPROC: u32 = 0o200000;
/// c_lflag IEXTEN: VEOL2 (and the editing characters VWERASE, VLNEXT, VREPRINT)
/// are special only with it (n_tty_set_termios()).
pub const IEXTEN: u32 = 0o100000;
/// c_iflag IXON: START/STOP characters control output.
pub const IXON: u32 = 0o2000;
/// c_cc indices.
const VERASE: usize = 2;
const VKILL: usize = 3;
const VEOF: usize = 4;
const VEOL: usize = 11;
const VREPRINT: usize = 12;
const VDISCARD: usize = 13;
const VWERASE: usize = 14;
const VLNEXT: usize = 15;
const VEOL2: usize = 16;
const VINTR: usize = 0;
const VQUIT: usize = 1;
const VSUSP: usize = 10;
pub const VSTART: usize = 8;
pub const VSTOP: usize = 9;

fn word(t: &[u8; TERMIOS_LEN], at: usize) -> u32 {
    u32::from_ne_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]])
}

fn set_word(t: &mut [u8; TERMIOS_LEN], at: usize, v: u32) {
    t[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

/// c_lflag of saved settings.
pub fn lflag(t: &[u8; TERMIOS_LEN]) -> u32 {
    word(t, LFLAG)
}

/// c_iflag of saved settings.
pub fn iflag(t: &[u8; TERMIOS_LEN]) -> u32 {
    word(t, IFLAG)
}

/// c_cc[i] of saved settings.
pub fn cc(t: &[u8; TERMIOS_LEN], i: usize) -> u8 {
    t[CC + i]
}

/// Whether byte `c` ends a line for a canonical reader under settings `t`: '\n',
/// or VEOL, or VEOL2 with IEXTEN (0 disables a character, n_tty_set_termios()).
pub fn ends_line(t: &[u8; TERMIOS_LEN], c: u8) -> bool {
    c == b'\n' || (c != 0 && (c == cc(t, VEOL) || (c == cc(t, VEOL2) && lflag(t) & IEXTEN != 0)))
}

/// The end-of-file byte of a master's `aux[4]`, when its input holds markers.
pub fn eof_byte(aux4: u64) -> Option<u8> {
    (aux4 & PTY_EOF_BYTE != 0).then_some((aux4 >> 8) as u8)
}

/// The erase byte of a master's `aux[4]`, when its input ends with one.
pub fn erase_byte(aux4: u64) -> Option<u8> {
    (aux4 & PTY_ERASE_BYTE != 0).then_some((aux4 >> 16) as u8)
}

/// The settings input is typed again under, from the terminal's own `t`: its
/// canonical mode as it was, echo on and nothing else (so each byte the line
/// discipline takes shows once at the master, unchanged: output processing off,
/// no ECHOCTL) — which is how the typist knows every byte has been taken; no input
/// processing, no signals, no editing characters but VERASE `erase` (or none, no
/// ECHOE, so an erase echoes itself); VEOF `eof` (or none); VEOL, VEOL2
/// and IEXTEN (which makes VEOL2 a line end), VMIN and VTIME as they were. `keep_flow`: IXON, VSTART and VSTOP stay as they
/// were (a master in packet mode is told of every change of them, pty_set_termios()).
pub fn replay_termios(t: &[u8; TERMIOS_LEN], eof: Option<u8>, erase: Option<u8>, keep_flow: bool) -> [u8; TERMIOS_LEN] {
    let mut r = *t;
    set_word(&mut r, IFLAG, if keep_flow { iflag(t) & IXON } else { 0 });
    set_word(&mut r, OFLAG, 0);
    set_word(&mut r, LFLAG, (lflag(t) & (ICANON | IEXTEN)) | ECHO);
    for i in [VINTR, VQUIT, VSUSP, VERASE, VKILL, VREPRINT, VDISCARD, VWERASE, VLNEXT] {
        r[CC + i] = 0;
    }
    r[CC + VEOF] = eof.unwrap_or(0);
    r[CC + VERASE] = erase.unwrap_or(0);
    r
}

/// A byte found nowhere in `input` nor in `avoid` (and not 0, which disables a
/// character), to stand for the end-of-file markers or to be erased; None when
/// every value is used.
pub fn free_byte(input: &[u8], avoid: &[u8]) -> Option<u8> {
    let mut used = [false; 256];
    for &b in input.iter().chain(avoid) {
        used[b as usize] = true;
    }
    (1..=255u8).find(|&b| !used[b as usize])
}

/// The bytes no free byte may be under settings `t`: line ends and flow control.
pub fn special_bytes(t: &[u8; TERMIOS_LEN]) -> [u8; 5] {
    [b'\n', cc(t, VEOL), cc(t, VEOL2), cc(t, VSTART), cc(t, VSTOP)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; TERMIOS_LEN] {
        let mut t = [0u8; TERMIOS_LEN];
        set_word(&mut t, IFLAG, 0o2400 | IXON); // ICRNL | IXON
        set_word(&mut t, OFLAG, 0o5); // OPOST | ONLCR
        set_word(&mut t, LFLAG, ICANON | ECHO | 0o1 | 0o1000); // ISIG, ECHOCTL
        t[CC + VERASE] = 0x7f;
        t[CC + VEOF] = 4;
        t[CC + VEOL] = b'@';
        t[CC + VSTART] = 0x11;
        t[CC + VSTOP] = 0x13;
        t
    }

    #[test]
    fn replay_settings_keep_lines_and_drop_the_rest() {
        let t = sample();
        let r = replay_termios(&t, Some(9), Some(7), false);
        assert_eq!(iflag(&r), 0);
        assert_eq!(word(&r, OFLAG), 0);
        assert_eq!(lflag(&r), ICANON | ECHO);
        assert_eq!((cc(&r, VERASE), cc(&r, VEOF), cc(&r, VEOL)), (7, 9, b'@'));
        assert!(ends_line(&r, b'@') && ends_line(&r, b'\n') && !ends_line(&r, 0));
        let mut x = t;
        x[CC + VEOL2] = b'#';
        assert!(!ends_line(&x, b'#'));
        set_word(&mut x, LFLAG, lflag(&t) | IEXTEN);
        assert!(ends_line(&x, b'#'));
        assert_eq!(lflag(&replay_termios(&x, None, None, false)), ICANON | IEXTEN | ECHO);
        let k = replay_termios(&t, None, None, true);
        assert_eq!(iflag(&k), IXON);
        assert_eq!((cc(&k, VSTART), cc(&k, VSTOP), cc(&k, VEOF), cc(&k, VERASE)), (0x11, 0x13, 0, 0));
        let mut raw = t;
        set_word(&mut raw, LFLAG, 0);
        assert_eq!(lflag(&replay_termios(&raw, None, None, false)), ECHO);
    }

    #[test]
    fn free_byte_avoids_the_input() {
        assert_eq!(free_byte(b"abc", &[]), Some(1));
        assert_eq!(free_byte(b"\x01", &[2, 3]), Some(4));
        assert_eq!(erase_byte(PTY_ERASE_BYTE | 0x07_0000), Some(7));
        assert_eq!(erase_byte(0x07_0000), None);
        let mut all = [0u8; 255];
        for (i, b) in all.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        assert_eq!(free_byte(&all, &[]), None);
        assert_eq!(free_byte(&all[1..], &[]), Some(1));
        assert_eq!(eof_byte(PTY_EOF_BYTE | 0x0400), Some(4));
        assert_eq!(eof_byte(0x0400), None);
    }
}
