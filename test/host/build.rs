//! Generates the host's `bindgen!` invocation over kinode.wit v1.0.0.
//!
//! The Kinode runtime runs `wasmtime::component::bindgen!({ path: "wit-v1.0.0", world:
//! "process-v1", async: true, trappable_imports: true })` over the kinode.wit it downloads at build
//! time. We must not download anything from GitHub nor commit a copy, so we take the identical file
//! from the kinode_process_lib 1.0.1 crate source (`kinode-wit/kinode.wit`), which the fixture
//! workspace (`test/fixtures`) already depends on:
//!
//! 1. `cargo metadata` on the fixture workspace finds the manifest directory of
//!    `kinode_process_lib` 1.0.1 (and, as a side effect, makes sure its source is downloaded into
//!    the cargo registry);
//! 2. the WIT text is read from there and written into `$OUT_DIR/bindings.rs` as the `inline:`
//!    source of the very same `bindgen!` invocation; `src/bindings.rs` `include!`s it.
//!
//! `bindgen!` takes a path only as a literal relative to this crate, which cannot point into
//! `$OUT_DIR` or the cargo registry; hence the inline form.
//!
//! Set `LINKER_FIXTURES_MANIFEST` to use another manifest that depends on `kinode_process_lib =
//! "=1.0.1"`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate that ships kinode.wit, and the exact version the runtime's WIT (v1.0.0) comes with.
const PROCESS_LIB: &str = "kinode_process_lib";
const PROCESS_LIB_VERSION: &str = "1.0.1";
/// The file inside that crate.
const WIT_IN_CRATE: &str = "kinode-wit/kinode.wit";
/// The package line the file must carry.
const WIT_PACKAGE: &str = "package kinode:process@1.0.0;";

fn main() {
    if let Err(error) = run() {
        // A build script reports failure by exiting non-zero; the message shows in cargo's output.
        eprintln!("error: linker-test-host build script: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    println!("cargo:rerun-if-env-changed=LINKER_FIXTURES_MANIFEST");
    let fixtures_manifest = match env::var_os("LINKER_FIXTURES_MANIFEST") {
        Some(path) => PathBuf::from(path),
        // test/host -> test/fixtures
        None => manifest_dir
            .parent()
            .unwrap_or(&manifest_dir)
            .join("fixtures/Cargo.toml"),
    };
    if !fixtures_manifest.is_file() {
        return Err(format!(
            "{} does not exist; the fixture workspace must depend on {PROCESS_LIB} = \"={PROCESS_LIB_VERSION}\" \
             (kinode.wit v1.0.0 is taken from that crate's source)",
            fixtures_manifest.display()
        ));
    }
    // The dependency set of the fixture workspace decides which kinode_process_lib is resolved.
    println!("cargo:rerun-if-changed={}", fixtures_manifest.display());
    let lockfile = fixtures_manifest.with_file_name("Cargo.lock");
    if lockfile.is_file() {
        println!("cargo:rerun-if-changed={}", lockfile.display());
    }

    let crate_dir = locate_process_lib(&fixtures_manifest)?;
    let wit_path = crate_dir.join(WIT_IN_CRATE);
    println!("cargo:rerun-if-changed={}", wit_path.display());
    let wit = fs::read_to_string(&wit_path)
        .map_err(|e| format!("reading {}: {e}", wit_path.display()))?;
    if !wit.lines().any(|line| line.trim() == WIT_PACKAGE) {
        return Err(format!(
            "{} does not declare `{WIT_PACKAGE}`",
            wit_path.display()
        ));
    }

    let bindings = out_dir.join("bindings.rs");
    fs::write(&bindings, bindgen_invocation(&wit, &wit_path))
        .map_err(|e| format!("writing {}: {e}", bindings.display()))?;
    Ok(())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("{name}: {e}"))
}

/// Runs `cargo metadata` on `manifest` and returns the directory of `kinode_process_lib` 1.0.1.
fn locate_process_lib(manifest: &Path) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata --manifest-path {} failed ({}):\n{}",
            manifest.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("parsing cargo metadata output: {e}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata output has no `packages`")?;
    let mut versions = Vec::new();
    for package in packages.iter().filter(|p| p["name"] == PROCESS_LIB) {
        let version = package["version"].as_str().unwrap_or_default();
        if version == PROCESS_LIB_VERSION {
            let manifest_path = package["manifest_path"]
                .as_str()
                .ok_or("package without `manifest_path`")?;
            let dir = Path::new(manifest_path)
                .parent()
                .ok_or("`manifest_path` without a parent directory")?;
            return Ok(dir.to_path_buf());
        }
        versions.push(version.to_owned());
    }
    Err(format!(
        "{} does not depend on {PROCESS_LIB} {PROCESS_LIB_VERSION} (found: {})",
        manifest.display(),
        if versions.is_empty() {
            "none".to_owned()
        } else {
            versions.join(", ")
        }
    ))
}

/// The runtime's `bindgen!` invocation (the kinode repo's `lib/src/lib.rs`), with the WIT inline.
fn bindgen_invocation(wit: &str, origin: &Path) -> String {
    // A raw string delimiter that cannot occur in the text.
    let mut hashes = String::from("#");
    while wit.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    let mut out = String::new();
    let _ = writeln!(out, "// Generated by build.rs from {}.", origin.display());
    let _ = writeln!(out, "wasmtime::component::bindgen!({{");
    let _ = writeln!(out, "    inline: r{hashes}\"{wit}\"{hashes},");
    let _ = writeln!(out, "    world: \"process-v1\",");
    let _ = writeln!(out, "    async: true,");
    let _ = writeln!(out, "    trappable_imports: true,");
    let _ = writeln!(out, "}});");
    out
}
