//! CRC-32C (Castagnoli), the checksum of every section and page run.
//!
//! Two implementations with identical results: a table-driven one for any CPU, and
//! one on the SSE4.2 `crc32` instruction (8 bytes per instruction) for the page data,
//! where speed matters. Callers pick with [`crc32c`]'s `hw` flag after checking CPUID.

const POLY: u32 = 0x82f6_3b78;

const fn make_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = make_table();

/// Continue a CRC over `data` with the portable implementation.
pub fn update_sw(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Continue a CRC over `data` with the SSE4.2 instruction.
///
/// # Safety
/// The CPU must support SSE4.2 (CPUID.1:ECX bit 20).
#[target_feature(enable = "sse4.2")]
pub unsafe fn update_hw(crc: u32, data: &[u8]) -> u32 {
    use core::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = !crc as u64;
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        let v = u64::from_le_bytes([ch[0], ch[1], ch[2], ch[3], ch[4], ch[5], ch[6], ch[7]]);
        c = _mm_crc32_u64(c, v);
    }
    let mut c = c as u32;
    for &b in chunks.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

/// Whether this CPU has the SSE4.2 `crc32` instruction.
pub fn have_hw() -> bool {
    let r = core::arch::x86_64::__cpuid(1);
    r.ecx & (1 << 20) != 0
}

/// CRC-32C of `data`, with the hardware instruction when `hw` is true.
pub fn crc32c(data: &[u8], hw: bool) -> u32 {
    update(0, data, hw)
}

/// Continue a CRC-32C over `data` (`crc32c(a ++ b) == update(crc32c(a), b)`), with
/// the hardware instruction when `hw` is true.
pub fn update(crc: u32, data: &[u8], hw: bool) -> u32 {
    if hw {
        // SAFETY: callers pass hw = have_hw().
        unsafe { update_hw(crc, data) }
    } else {
        update_sw(crc, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // RFC 3720 B.4: CRC-32C of "123456789" is 0xE3069283.
        assert_eq!(update_sw(0, b"123456789"), 0xe306_9283);
        if have_hw() {
            assert_eq!(crc32c(b"123456789", true), 0xe306_9283);
        }
    }

    #[test]
    fn hw_matches_sw_on_all_lengths() {
        if !have_hw() {
            return;
        }
        let data: [u8; 100] = core::array::from_fn(|i| (i * 37 + 11) as u8);
        for n in 0..data.len() {
            assert_eq!(crc32c(&data[..n], true), update_sw(0, &data[..n]), "len {n}");
        }
    }

    #[test]
    fn incremental_equals_whole() {
        let a = update_sw(0, b"hello ");
        assert_eq!(update_sw(a, b"world"), update_sw(0, b"hello world"));
        let hw = have_hw();
        let data: [u8; 100] = core::array::from_fn(|i| (i * 53 + 7) as u8);
        for cut in 0..data.len() {
            assert_eq!(update(crc32c(&data[..cut], hw), &data[cut..], hw), crc32c(&data, hw), "cut at {cut}");
        }
    }
}
