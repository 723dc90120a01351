//! Writes `target/wit/` as linker/process/build.rs does (kinode.wit v1.0.0 from the
//! kinode_process_lib 1.0.1 crate, found with `cargo metadata` on the main workspace, next to
//! `api/*.wit`), so the `request` target generates the process's request types natively.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    copy(
        &kinode_wit(&repo.join("Cargo.toml"))?,
        &wit_dir.join("kinode.wit"),
    )?;
    for entry in
        fs::read_dir(&api_dir).map_err(|e| format!("reading {}: {e}", api_dir.display()))?
    {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|ext| ext == "wit") {
            let name = path.file_name().ok_or("a WIT file without a name")?;
            copy(&path, &wit_dir.join(name))?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = fs::read(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    if fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        fs::write(to, bytes).map_err(|e| format!("writing {}: {e}", to.display()))?;
    }
    Ok(())
}

/// `kinode-wit/kinode.wit` of kinode_process_lib 1.0.1, a dependency of the linker process.
fn kinode_wit(manifest: &Path) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(manifest)
        // cargo-fuzz's sanitizer flags are for this build, not for the workspace's metadata.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let manifest_path = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "kinode_process_lib" && p["version"] == "1.0.1")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("the workspace does not depend on kinode_process_lib 1.0.1")?;
    let wit = Path::new(manifest_path)
        .parent()
        .ok_or("a manifest path without a directory")?
        .join("kinode-wit")
        .join("kinode.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    Ok(wit)
}
