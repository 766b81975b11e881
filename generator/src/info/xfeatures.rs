//! Names of the XSAVE state components (bits of XCR0 / XSTATE_BV), so `info` can
//! say which CPU features a resume needs ("AVX-512 ZMM_Hi256") rather than a mask.
//! Bit numbers: Intel SDM vol. 1, 13.1 "XSAVE-supported features and state-component
//! bitmaps"; APX is component 19 (Intel APX architecture specification).

const COMPONENTS: [(u32, &str); 20] = [
    (0, "x87"),
    (1, "SSE"),
    (2, "AVX"),
    (3, "MPX BNDREGS"),
    (4, "MPX BNDCSR"),
    (5, "AVX-512 opmask"),
    (6, "AVX-512 ZMM_Hi256"),
    (7, "AVX-512 Hi16_ZMM"),
    (8, "PT"),
    (9, "PKRU"),
    (10, "PASID"),
    (11, "CET user"),
    (12, "CET supervisor"),
    (13, "HDC"),
    (14, "UINTR"),
    (15, "LBR"),
    (16, "HWP"),
    (17, "AMX TILECFG"),
    (18, "AMX TILEDATA"),
    (19, "APX"),
];

/// The component names of `mask`, lowest bit first; unknown bits as "bit N".
pub fn names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| match COMPONENTS.iter().find(|(n, _)| *n == b) {
            Some((_, name)) => (*name).to_owned(),
            None => format!("bit {b}"),
        })
        .collect()
}

/// XSTATE_BV of a saved XSAVE area: the components not in their initial state
/// (bytes 512..520, the first field of the XSAVE header). None if too short.
pub fn xstate_bv(area: &[u8]) -> Option<u64> {
    area.get(512..520).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_common_masks() {
        assert_eq!(names(0), Vec::<String>::new());
        assert_eq!(names(0x7), ["x87", "SSE", "AVX"]);
        assert_eq!(
            names(0x2e7),
            ["x87", "SSE", "AVX", "AVX-512 opmask", "AVX-512 ZMM_Hi256", "AVX-512 Hi16_ZMM", "PKRU"]
        );
        assert_eq!(names((1 << 17) | (1 << 18)), ["AMX TILECFG", "AMX TILEDATA"]);
        assert_eq!(names(1 << 40 | 1), ["x87", "bit 40"]);
    }

    #[test]
    fn reads_xstate_bv() {
        let mut area = vec![0u8; 576];
        area[512] = 0x3;
        assert_eq!(xstate_bv(&area), Some(3));
        assert_eq!(xstate_bv(&area[..100]), None);
    }
}
