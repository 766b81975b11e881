//! Joins the restorer stub and a ckpt image into one static ELF executable, and
//! finds the image again inside such a file.
//!
//! The output keeps the stub's loadable segments at their file offsets and virtual
//! addresses, patches the stub's `CKPT_IMAGE_OFFSET` with where the image starts, and
//! adds a `CKPT` note and section headers so `readelf`, `file` and `ckpt info` can
//! see what the file holds. The image follows at a page-aligned offset, so the stub
//! can `pread` page runs straight into place. The ELF part ([`resume_prefix`]) has a
//! length that does not depend on the image, so the image can be streamed after it
//! and the prefix rewritten once the image size is known.

mod elf;
mod stub;

pub use elf::{find_image, resume_prefix};
pub use stub::StubInfo;

/// The restorer stub, built by build.rs.
pub static STUB: &[u8] = include_bytes!(env!("CKPT_STUB_PATH"));

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("restorer stub is not a usable ELF: {0}")]
    BadStub(String),
    #[error("writing the ELF headers failed: {0}")]
    Write(String),
    #[error("not a ckpt resume executable: {0}")]
    NotResume(String),
}
