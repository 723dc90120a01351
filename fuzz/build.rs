//! Writes `target/wit/` as linker/process/build.rs does (kinode.wit v1.0.0 from the
//! kinode_process_lib 1.0.1 crate, found with `cargo metadata` on the main workspace, next to
//! `api/*.wit`), so the `request` target generates the process's request types natively.

#[path = "../linker/process/kinode_wit.rs"]
mod kinode_wit;

use std::env;
use std::fs;
use std::path::PathBuf;

use kinode_wit::{copy_if_changed, locate_kinode_wit};

fn main() {
    if let Err(error) = run() {
        eprintln!("error: linker-fuzz build script: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let repo = crate_dir.parent().ok_or("fuzz/ has no repository root")?;
    let api_dir = repo.join("api");
    println!("cargo:rerun-if-changed={}", api_dir.display());
    let wit_dir = crate_dir.join("target").join("wit");
    fs::create_dir_all(&wit_dir).map_err(|e| format!("creating {}: {e}", wit_dir.display()))?;
    copy_if_changed(
        &locate_kinode_wit(&repo.join("Cargo.toml"))?,
        &wit_dir.join("kinode.wit"),
    )?;
    for entry in
        fs::read_dir(&api_dir).map_err(|e| format!("reading {}: {e}", api_dir.display()))?
    {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|ext| ext == "wit") {
            let name = path.file_name().ok_or("a WIT file without a name")?;
            copy_if_changed(&path, &wit_dir.join(name))?;
        }
    }
    Ok(())
}
