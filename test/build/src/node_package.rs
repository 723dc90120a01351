//! Builds the linker's own package, `linker:sys` (the repository root is its kit package
//! directory), as kit would build it:
//!
//! 1. `cargo build -p linker-process --target wasm32-wasip1 --profile node --locked` over the root
//!    workspace, in its own target directory `<root target>/node/cargo` (the process's build script
//!    writes `linker/process/target/wit/` as kit does);
//! 2. componentize the core module with the 27.0.0 reactor adapter into `pkg/linker.wasm`;
//! 3. zip `pkg/` (manifest.json, scripts.json, linker.wasm) kit-style into
//!    `<root target>/node/linker:sys.zip`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{Context, Result};

use crate::{cargo_command, componentize, repo_root, run, target_dir, write_if_changed, zip_files};

/// The linker package's id.
pub const LINKER_PACKAGE: &str = "linker:sys";

/// The built linker package.
#[derive(Debug)]
pub struct LinkerPackage {
    /// The package zip (the contents of `pkg/`).
    pub zip: Vec<u8>,
    /// Where the zip was written.
    pub zip_path: PathBuf,
    /// The linker process component, `pkg/linker.wasm`.
    pub wasm: PathBuf,
    /// The package's `metadata.json`.
    pub metadata: PathBuf,
}

/// Builds the linker package once per process (cargo makes later builds cheap).
pub fn linker_package() -> Result<&'static LinkerPackage> {
    static BUILT: OnceLock<LinkerPackage> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    if let Some(built) = BUILT.get() {
        return Ok(built);
    }
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(built) = BUILT.get() {
        return Ok(built);
    }
    let built = build().context("building the linker package (linker/process -> pkg/)")?;
    Ok(BUILT.get_or_init(|| built))
}

fn build() -> Result<LinkerPackage> {
    let root = repo_root();
    let out = target_dir().join("node");
    let cargo_target = out.join("cargo");
    let mut command = cargo_command();
    command
        .current_dir(&root)
        .args(["build", "--locked", "-p", "linker-process"])
        .args([
            "--target",
            crate::TARGET,
            "--profile",
            "node",
            "--target-dir",
        ])
        .arg(&cargo_target);
    run(command, "cargo build -p linker-process")?;
    let module_path = cargo_target
        .join(crate::TARGET)
        .join("node")
        .join("linker_process.wasm");
    let module =
        fs::read(&module_path).with_context(|| format!("reading {}", module_path.display()))?;
    let component = componentize(&module).context("componentizing linker_process.wasm")?;

    let pkg = root.join("pkg");
    let wasm = pkg.join("linker.wasm");
    write_if_changed(&wasm, &component)?;
    let mut files = BTreeMap::new();
    for name in ["manifest.json", "scripts.json"] {
        let path = pkg.join(name);
        files.insert(
            name.to_owned(),
            fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    files.insert("linker.wasm".to_owned(), component);
    let zip = zip_files(&files)?;
    let zip_path = out.join(format!("{LINKER_PACKAGE}.zip"));
    write_if_changed(&zip_path, &zip)?;
    Ok(LinkerPackage {
        zip,
        zip_path,
        wasm,
        metadata: root.join("metadata.json"),
    })
}
