//! Shared code of the fuzz targets: the format crate's own test module (the valid
//! image builder, the checksum repair and the oracle that repeats every table
//! access of the restorer stub), compiled here against the public API.

pub use ckpt_format::*;

#[path = "../../format/src/tests.rs"]
pub mod tests;

#[path = "../../format/src/write.rs"]
pub mod write;
