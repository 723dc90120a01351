//! Finding kinode.wit v1.0.0 and writing WIT files for a build, shared by the build scripts of the
//! linker process (and its scripts), the guard and the fuzz targets (`#[path]`-included: build
//! scripts share no crate).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate whose `kinode-wit/kinode.wit` is the runtime's WIT, and its exact version.
const PROCESS_LIB: &str = "kinode_process_lib";
const PROCESS_LIB_VERSION: &str = "1.0.1";

/// Copies `from` to `to` unless `to` already has the same content (keeps rebuilds incremental).
pub fn copy_if_changed(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = fs::read(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    if fs::read(to).ok().as_deref() != Some(bytes.as_slice()) {
        fs::write(to, bytes).map_err(|e| format!("writing {}: {e}", to.display()))?;
    }
    Ok(())
}

/// `kinode-wit/kinode.wit` of kinode_process_lib 1.0.1, through `cargo metadata` on the workspace.
pub fn locate_kinode_wit(manifest: &Path) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", "wasm32-wasip1", "--manifest-path"])
        .arg(manifest)
        // Flags meant for the build running this script (cargo-fuzz's sanitizers) are not for
        // the workspace's metadata.
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
