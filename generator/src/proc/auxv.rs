//! The ELF auxiliary vector the kernel gave the process at exec
//! (`/proc/PID/auxv`). The restorer installs it again with PR_SET_MM_MAP and
//! patches AT_SYSINFO_EHDR; the freezer reads AT_ENTRY, AT_PHDR, AT_BASE etc.

use super::{read_bytes, ProcError};

// Keys from <elf.h> / getauxval(3).
pub const AT_NULL: u64 = 0;
pub const AT_EXECFD: u64 = 2;
pub const AT_PHDR: u64 = 3;
pub const AT_BASE: u64 = 7;
pub const AT_ENTRY: u64 = 9;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_EXECFN: u64 = 31;
pub const AT_SYSINFO_EHDR: u64 = 33;
pub const AT_MINSIGSTKSZ: u64 = 51;

/// Decode native-endian (key, value) u64 pairs, up to and including the
/// terminating AT_NULL pair; a trailing partial pair is ignored.
///
/// proc(5): the file holds the vector as passed at exec, ending with AT_NULL;
/// it is empty for kernel threads.
pub fn parse_auxv(bytes: &[u8]) -> Vec<(u64, u64)> {
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("8-byte chunk"));
    let mut out = Vec::new();
    for pair in bytes.chunks_exact(16) {
        let (key, value) = (word(&pair[..8]), word(&pair[8..]));
        out.push((key, value));
        if key == AT_NULL {
            break;
        }
    }
    out
}

/// Read `/proc/PID/auxv` (needs ptrace-read access to the process).
pub fn read_auxv(pid: i32) -> Result<Vec<(u64, u64)>, ProcError> {
    Ok(parse_auxv(&read_bytes(pid, "auxv")?))
}

/// The value of the first entry with `key`, stopping at AT_NULL.
pub fn lookup(auxv: &[(u64, u64)], key: u64) -> Option<u64> {
    auxv.iter()
        .take_while(|(k, _)| *k != AT_NULL)
        .find(|(k, _)| *k == key)
        .map(|&(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `od -t x8 /proc/self/auxv` of a dynamically linked `od` on this machine.
    const SAMPLE: [(u64, u64); 23] = [
        (0x21, 0x7f39adcae000), // AT_SYSINFO_EHDR
        (0x33, 0xd30),          // AT_MINSIGSTKSZ
        (0x10, 0x178bfbff),     // AT_HWCAP
        (0x06, 0x1000),         // AT_PAGESZ
        (0x11, 0x64),           // AT_CLKTCK
        (0x03, 0x55598b20a040), // AT_PHDR
        (0x04, 0x38),           // AT_PHENT
        (0x05, 0xd),            // AT_PHNUM
        (0x07, 0x7f39adcb0000), // AT_BASE
        (0x08, 0),              // AT_FLAGS
        (0x09, 0x55598b20d4c0), // AT_ENTRY
        (0x0b, 0),              // AT_UID
        (0x0c, 0),              // AT_EUID
        (0x0d, 0),              // AT_GID
        (0x0e, 0),              // AT_EGID
        (0x17, 0),              // AT_SECURE
        (0x19, 0x7ffef9fc2319), // AT_RANDOM
        (0x1a, 0x2),            // AT_HWCAP2
        (0x1f, 0x7ffef9fc2fec), // AT_EXECFN
        (0x0f, 0x7ffef9fc2329), // AT_PLATFORM
        (0x1b, 0x1c),           // AT_RSEQ_FEATURE_SIZE
        (0x1c, 0x20),           // AT_RSEQ_ALIGN
        (0, 0),                 // AT_NULL
    ];

    fn encode(pairs: &[(u64, u64)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()])
            .flatten()
            .collect()
    }

    #[test]
    fn real_sample() {
        let auxv = parse_auxv(&encode(&SAMPLE));
        assert_eq!(auxv, SAMPLE);
        assert_eq!(lookup(&auxv, AT_SYSINFO_EHDR), Some(0x7f39adcae000));
        assert_eq!(lookup(&auxv, AT_ENTRY), Some(0x55598b20d4c0));
        assert_eq!(lookup(&auxv, AT_PHDR), Some(0x55598b20a040));
        assert_eq!(lookup(&auxv, AT_BASE), Some(0x7f39adcb0000));
        assert_eq!(lookup(&auxv, AT_MINSIGSTKSZ), Some(0xd30));
        assert_eq!(lookup(&auxv, AT_HWCAP2), Some(2));
        assert_eq!(lookup(&auxv, AT_EXECFD), None);
        assert_eq!(lookup(&auxv, AT_NULL), None);
    }

    #[test]
    fn stops_at_null_and_ignores_partial() {
        let mut bytes = encode(&[(AT_EXECFD, 3), (0, 0), (AT_ENTRY, 1)]);
        assert_eq!(parse_auxv(&bytes), [(AT_EXECFD, 3), (0, 0)]);
        bytes = encode(&[(AT_RANDOM, 5)]);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse_auxv(&bytes), [(AT_RANDOM, 5)]);
        assert!(parse_auxv(&[]).is_empty());
        assert_eq!(lookup(&[(AT_RANDOM, 5)], AT_RANDOM), Some(5));
    }

    #[test]
    fn live_self() {
        let auxv = read_auxv(std::process::id() as i32).unwrap();
        assert_eq!(auxv.last(), Some(&(0, 0)));
        assert_eq!(lookup(&auxv, 6), Some(4096), "AT_PAGESZ");
        let ehdr = lookup(&auxv, AT_SYSINFO_EHDR).expect("vdso");
        let maps = super::super::maps::read_smaps(std::process::id() as i32).unwrap();
        let vdso = maps.iter().find(|m| m.name == "[vdso]").unwrap();
        assert_eq!(vdso.start, ehdr);
        assert!(lookup(&auxv, AT_ENTRY).is_some() && lookup(&auxv, AT_RANDOM).is_some());
    }
}
