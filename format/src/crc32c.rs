//! CRC-32C (Castagnoli), the checksum of every section and page run.
//!
//! Two implementations with identical results: a table-driven one for any CPU, and
//! one on the SSE4.2 `crc32` instruction (8 bytes per instruction) for the page data,
//! where speed matters. Callers pick with [`crc32c`]'s `hw` flag after checking CPUID.
//!
//! The instruction has a latency of three cycles and a throughput of one per cycle, so
//! one dependent chain uses a third of it: long inputs are cut into three equal
//! streams checksummed side by side and joined with [`combine`], which is also how
//! pieces checksummed apart (by two threads, in any order) give the CRC of the whole.

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

/// Inputs at least this long are checksummed as three interleaved streams.
const THREE_WAY_MIN: usize = 3 * 1024;

/// Continue a CRC over `data` with the SSE4.2 instruction on three independent
/// streams (same result as [`update_hw`]).
///
/// # Safety
/// The CPU must support SSE4.2 (CPUID.1:ECX bit 20).
#[target_feature(enable = "sse4.2")]
pub unsafe fn update_hw_3way(crc: u32, data: &[u8]) -> u32 {
    use core::arch::x86_64::_mm_crc32_u64;
    if data.len() < THREE_WAY_MIN {
        // SAFETY: same CPU requirement as ours.
        return unsafe { update_hw(crc, data) };
    }
    let k = (data.len() / 3) & !7;
    let (a, rest) = data.split_at(k);
    let (b, rest) = rest.split_at(k);
    let (c, tail) = rest.split_at(k);
    // Stream a continues `crc`; b and c are checksummed as inputs of their own.
    let (mut ca, mut cb, mut cc) = (!crc as u64, !0u32 as u64, !0u32 as u64);
    let (pa, pb, pc) = (a.as_ptr(), b.as_ptr(), c.as_ptr());
    let mut i = 0;
    while i < k {
        // SAFETY: i + 8 <= k, the length of each stream; unaligned loads.
        unsafe {
            ca = _mm_crc32_u64(ca, core::ptr::read_unaligned(pa.add(i) as *const u64).to_le());
            cb = _mm_crc32_u64(cb, core::ptr::read_unaligned(pb.add(i) as *const u64).to_le());
            cc = _mm_crc32_u64(cc, core::ptr::read_unaligned(pc.add(i) as *const u64).to_le());
        }
        i += 8;
    }
    // combine() twice over the same length, with the shift worked out once.
    let shift = x_pow_8n(k as u64);
    let ab = mul_mod(shift, !(ca as u32)) ^ !(cb as u32);
    let abc = mul_mod(shift, ab) ^ !(cc as u32);
    // SAFETY: same CPU requirement as ours.
    unsafe { update_hw(abc, tail) }
}

/// The CRC polynomial's bit-reflected representation of the product `a * b` modulo
/// the polynomial, both operands in the same representation (x^0 is the top bit).
const fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        bit >>= 1;
    }
    product
}

/// x^(8 * 2^i) modulo the polynomial, for i in 0..64.
static X_POW_8_POW2: [u32; 64] = {
    let mut t = [0u32; 64];
    t[0] = 1 << (31 - 8); // x^8
    let mut i = 1;
    while i < 64 {
        t[i] = mul_mod(t[i - 1], t[i - 1]);
        i += 1;
    }
    t
};

/// x^(8 * n) modulo the polynomial: appending n zero bytes to a message multiplies
/// its (unconditioned) CRC by this.
fn x_pow_8n(n: u64) -> u32 {
    let mut result = 1u32 << 31; // x^0
    for (i, &p) in X_POW_8_POW2.iter().enumerate() {
        if n >> i == 0 {
            break;
        }
        if n >> i & 1 != 0 {
            result = mul_mod(result, p);
        }
    }
    result
}

/// The CRC-32C of `A || B` from `crc_a` = CRC-32C(A), `crc_b` = CRC-32C(B) and the
/// length of B. The pre- and post-inversion cancel out: shifting A's CRC over B's
/// length in zero bytes and adding B's gives the whole.
pub fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    mul_mod(x_pow_8n(len_b), crc_a) ^ crc_b
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
        unsafe { update_hw_3way(crc, data) }
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
    fn three_way_matches_sw() {
        if !have_hw() {
            return;
        }
        let data: [u8; 20_000] = core::array::from_fn(|i| (i * 131 + (i >> 7) * 17 + 3) as u8);
        for n in [0, 1, 3071, 3072, 3073, 3080, 4096, 9999, 19_999, 20_000] {
            // SAFETY: have_hw() said the CPU has SSE4.2.
            assert_eq!(unsafe { update_hw_3way(0, &data[..n]) }, update_sw(0, &data[..n]), "len {n}");
            // SAFETY: as above.
            assert_eq!(unsafe { update_hw_3way(0x1234_5678, &data[..n]) }, update_sw(0x1234_5678, &data[..n]), "len {n}");
        }
    }

    #[test]
    fn combine_joins_pieces_in_order() {
        let data: [u8; 5000] = core::array::from_fn(|i| (i * 7 + 1) as u8);
        let whole = update_sw(0, &data);
        for cut in [0, 1, 8, 4095, 4096, 4999, 5000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(combine(update_sw(0, a), update_sw(0, b), b.len() as u64), whole, "cut {cut}");
        }
        // Three pieces, joined left to right.
        let (a, rest) = data.split_at(1000);
        let (b, c) = rest.split_at(2500);
        let ab = combine(update_sw(0, a), update_sw(0, b), b.len() as u64);
        assert_eq!(combine(ab, update_sw(0, c), c.len() as u64), whole);
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
