//! Build the restorer stub (a separate no_std executable) with its own profile and
//! target directory, and hand its path to the crate as CKPT_STUB_PATH.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out.join("stub-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Cargo.toml: the stub profile is defined in the workspace root.
    for p in ["restorer-stub/src", "restorer-stub/link.ld", "restorer-stub/build.rs", "restorer-stub/Cargo.toml", "format/src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "-p", "ckpt-restorer", "--profile", "stub", "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("cannot run cargo to build the restorer stub");
    assert!(status.success(), "building the restorer stub failed");
    let stub = target_dir.join("stub").join("ckpt-restorer");
    println!("cargo:rustc-env=CKPT_STUB_PATH={}", stub.display());
}
