//! Writes `target/wit/` the way kit does before it builds a process (KINODE.md 2.2): kinode.wit
//! v1.0.0 next to the package's own `api/*.wit`, so the WIT files have no `package` line and every
//! interface lives in `kinode:process@1.0.0`.
//!
//! kinode.wit is taken from the kinode_process_lib 1.0.1 crate source (`kinode-wit/kinode.wit`),
//! found with `cargo metadata`; nothing is downloaded from GitHub. Only a wasm32 build needs it: on
//! other targets the crate is empty and this script does nothing.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROCESS_LIB: &str = "kinode_process_lib";
const PROCESS_LIB_VERSION: &str = "1.0.1";

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

/// Copies `from` to `to` unless `to` already has the same content (keeps rebuilds incremental).
fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = fs::read(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    if fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        fs::write(to, bytes).map_err(|e| format!("writing {}: {e}", to.display()))?;
    }
    Ok(())
}

/// `kinode-wit/kinode.wit` of kinode_process_lib 1.0.1, through `cargo metadata` on the workspace.
fn locate_kinode_wit(manifest: &Path) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", "wasm32-wasip1", "--manifest-path"])
        .arg(manifest)
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
        .find(|p| p["name"] == PROCESS_LIB && p["version"] == PROCESS_LIB_VERSION)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or(format!(
            "the workspace does not depend on {PROCESS_LIB} {PROCESS_LIB_VERSION}"
        ))?;
    let wit = Path::new(manifest_path)
        .parent()
        .ok_or("a manifest path without a directory")?
        .join("kinode-wit")
        .join("kinode.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    Ok(wit)
}
