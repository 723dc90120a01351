//! Builds the guard component from source (`component/`, a workspace of its own) and leaves it in
//! `$OUT_DIR/linker-guard.wasm` for `include_bytes!`:
//!
//! 1. writes `component/target/wit/`: kinode.wit v1.0.0 (from the kinode_process_lib 1.0.1 crate,
//!    found with `cargo metadata`) next to `component/wit/linker-guard.wit`, as kit lays out WIT;
//! 2. `cargo build --release --locked --target wasm32-unknown-unknown` in `component/`, with the
//!    default toolchain whatever toolchain builds this crate (a nightly fuzz build included), into
//!    `component/target/cargo`, shared by every build of this crate, so the guard's bytes are the
//!    same natively and in the linker process;
//! 3. wraps the core module into a component with wit-component (it imports no WASI: no adapter).

#[path = "../process/kinode_wit.rs"]
mod kinode_wit;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kinode_wit::{copy_if_changed, locate_kinode_wit};

/// The target the guard is built for: it needs no WASI, so none is imported.
const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: linker-guard build script: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let repo = crate_dir
        .ancestors()
        .nth(2)
        .ok_or("linker/guard has no repository root")?;
    let component = crate_dir.join("component");
    for watched in ["src", "wit", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            component.join(watched).display()
        );
    }

    let wit_dir = component.join("target").join("wit");
    fs::create_dir_all(&wit_dir).map_err(|e| format!("creating {}: {e}", wit_dir.display()))?;
    let kinode_wit = locate_kinode_wit(&repo.join("Cargo.toml"))?;
    copy_if_changed(&kinode_wit, &wit_dir.join("kinode.wit"))?;
    copy_if_changed(
        &component.join("wit").join("linker-guard.wit"),
        &wit_dir.join("linker-guard.wit"),
    )?;

    let target_dir = component.join("target").join("cargo");
    build(&component, &target_dir)?;
    let module_path = target_dir
        .join(TARGET)
        .join("release")
        .join("linker_guard_component.wasm");
    let module =
        fs::read(&module_path).map_err(|e| format!("reading {}: {e}", module_path.display()))?;
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| format!("making the guard a component: {e:#}"))?;
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    fs::write(out.join("linker-guard.wasm"), bytes).map_err(|e| e.to_string())
}

/// Runs the nested cargo build. The outer build's toolchain and flags are not passed on.
fn build(component: &Path, target_dir: &Path) -> Result<(), String> {
    let mut command = Command::new("cargo");
    command
        .current_dir(component)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .map_err(|e| format!("running cargo for the guard component: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let hint = if stderr.contains(TARGET) && stderr.contains("target may not be installed") {
        format!("\nthe guard is built for {TARGET}: run `rustup target add {TARGET}`")
    } else {
        String::new()
    };
    Err(format!(
        "building the guard component (linker/guard/component) failed:\n{stderr}{hint}"
    ))
}
