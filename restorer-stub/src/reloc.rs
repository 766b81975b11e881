//! Self-relocation. The stub is a static PIE: the kernel loads it at a random base and
//! nobody applies its R_X86_64_RELATIVE relocations (pointers stored in data). We
//! apply them at entry, and again to the copy made in the gap, for its new base.

/// Address of a linker symbol, computed RIP-relative. Taking `&SYMBOL` of an extern
/// static would go through the GOT, which holds nothing usable before relocation.
macro_rules! sym_addr {
    ($s:literal) => {{
        let a: usize;
        // SAFETY: lea only computes an address.
        unsafe { core::arch::asm!(concat!("lea {}, [rip + ", $s, "]"), out(reg) a, options(nomem, nostack, preserves_flags)) };
        a
    }};
}

/// Link-time address of `__stub_start` (see link.ld).
const LINK_BASE: usize = 0x1000;
const R_X86_64_RELATIVE: u64 = 8;

#[repr(C)]
struct Rela {
    offset: u64,
    info: u64,
    addend: i64,
}

pub fn stub_start() -> usize {
    sym_addr!("__stub_start")
}

pub fn stub_end() -> usize {
    sym_addr!("__stub_end")
}

/// Load bias of the running copy: runtime address minus link-time address.
pub fn bias() -> usize {
    stub_start() - LINK_BASE
}

/// Apply the relocation table found at `rela_start..rela_end` for an image loaded at
/// `new_bias`.
///
/// # Safety
/// The image at `new_bias` must be writable and hold the same layout as this one.
pub unsafe fn apply(new_bias: usize) {
    // Linker symbols delimit the .rela.dyn table of the running copy; the table is
    // the same in every copy.
    let (lo, hi) = (sym_addr!("__rela_start"), sym_addr!("__rela_end"));
    let n = (hi - lo) / core::mem::size_of::<Rela>();
    for i in 0..n {
        // SAFETY: i < n entries of the table.
        let r = unsafe { &*((lo as *const Rela).add(i)) };
        if r.info & 0xffff_ffff != R_X86_64_RELATIVE {
            crate::out::fail_msg(crate::out::Step::Validate, "restorer has an unsupported relocation", b"");
        }
        let slot = new_bias + r.offset as usize;
        // SAFETY: the slot lies inside the writable data segment of the image.
        unsafe { core::ptr::write_volatile(slot as *mut u64, (new_bias as i64 + r.addend) as u64) };
    }
}

/// Relocate the copy the kernel loaded.
///
/// # Safety
/// Must run before anything reads a relocated pointer.
pub unsafe fn relocate_self() {
    // SAFETY: the running image is ours and its data segment is writable.
    unsafe { apply(bias()) }
}
