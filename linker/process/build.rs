//! Writes `target/wit/` the way kit does before it builds a process (KINODE.md 2.2): kinode.wit
//! v1.0.0 next to the package's own `api/*.wit`, so the WIT files have no `package` line and every
//! interface lives in `kinode:process@1.0.0`.
//!
//! kinode.wit is taken from the kinode_process_lib 1.0.1 crate source (`kinode-wit/kinode.wit`),
//! found with `cargo metadata`; nothing is downloaded from GitHub. Only a wasm32 build needs it: on
//! other targets the crate is empty and this script does nothing.

#[path = "kinode_wit.rs"]
mod kinode_wit;

use std::env;
use std::fs;
use std::path::PathBuf;

use kinode_wit::{copy_if_changed, locate_kinode_wit};

fn main() {
    if let Err(error) = run() {
        eprintln!("error: linker-process build script: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("wasm32") {
        return Ok(());
    }
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let repo = crate_dir
        .ancestors()
        .nth(2)
        .ok_or("linker/process has no repository root")?;
    let api_dir = repo.join("api");
    println!("cargo:rerun-if-changed={}", api_dir.display());

    let wit_dir = crate_dir.join("target").join("wit");
    // Run again when the directory goes (a clean checkout sharing another's target directory).
    println!("cargo:rerun-if-changed={}", wit_dir.display());
    fs::create_dir_all(&wit_dir).map_err(|e| format!("creating {}: {e}", wit_dir.display()))?;
    let kinode_wit = locate_kinode_wit(&repo.join("Cargo.toml"))?;
    copy_if_changed(&kinode_wit, &wit_dir.join("kinode.wit"))?;
    let entries =
        fs::read_dir(&api_dir).map_err(|e| format!("reading {}: {e}", api_dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|ext| ext == "wit") {
            let name = path.file_name().ok_or("a WIT file without a name")?;
            copy_if_changed(&path, &wit_dir.join(name))?;
        }
    }
    Ok(())
}
