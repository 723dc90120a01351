//! Builds the linker's own package, `linker:sys` (the repository root is its kit package
//! directory), as kit would build it:
//!
//! 1. `cargo build -p linker-process -p <each script crate> --target wasm32-wasip1 --profile node
//!    --locked` over the root workspace, in its own target directory `<root target>/node/cargo`,
//!    with Wasm SIMD on ([`RUSTFLAGS`]; the build script writes `linker/process/target/wit/` and
//!    `linker/script/target/wit/` as kit does);
//! 2. componentize each core module with the 27.0.0 reactor adapter into `pkg/linker.wasm` and
//!    the terminal scripts `pkg/link.wasm`, `pkg/apis.wasm`, `pkg/linked.wasm`;
//! 3. zip `pkg/` (manifest.json, scripts.json and those components) kit-style into
//!    `<root target>/node/linker:sys.zip`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{Context, Result};

use crate::{
    cargo_command, componentize, repo_root, run_build, target_dir, write_if_changed, zip_files,
};

/// The package's components: `pkg/` file, crate, and core module built by cargo.
/// The code generation flags of the linker's package: Wasm SIMD, which wasmtime 27 (the runtime's)
/// runs by default, and with which the linking core's SHA-256 is sha2's wasm32 SIMD backend, about
/// 1.5 to 1.8x as fast as the best without it (BENCHMARKS.md "SHA-256 in Wasm, and the runtime's `Hash`").
const RUSTFLAGS: &str = "-Ctarget-feature=+simd128";

const COMPONENTS: [(&str, &str, &str); 4] = [
    ("linker.wasm", "linker-process", "linker_process.wasm"),
    ("link.wasm", "linker-link-script", "link.wasm"),
    ("apis.wasm", "linker-apis-script", "apis.wasm"),
    ("linked.wasm", "linker-linked-script", "linked.wasm"),
];

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
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS)
        .args(["build", "--locked"])
        .args(COMPONENTS.iter().flat_map(|(_, krate, _)| ["-p", krate]))
        .args([
            "--target",
            crate::TARGET,
            "--profile",
            "node",
            "--target-dir",
        ])
        .arg(&cargo_target);
    run_build(
        command,
        "cargo build of pkg/linker.wasm and the terminal scripts (wasm32-wasip1, profile node)",
    )?;
    let pkg = root.join("pkg");
    let mut files = BTreeMap::new();
    for (file, _, module) in COMPONENTS {
        let module_path = cargo_target.join(crate::TARGET).join("node").join(module);
        let module =
            fs::read(&module_path).with_context(|| format!("reading {}", module_path.display()))?;
        let component = componentize(&module)
            .with_context(|| format!("componentizing {}", module_path.display()))?;
        write_if_changed(&pkg.join(file), &component)?;
        files.insert(file.to_owned(), component);
    }
    for name in ["manifest.json", "scripts.json"] {
        let path = pkg.join(name);
        files.insert(
            name.to_owned(),
            fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    // The linker's page (`pkg/ui`), served by the process from its drive.
    let ui = pkg.join("ui");
    for entry in fs::read_dir(&ui).with_context(|| format!("reading {}", ui.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("a file name in {} is not UTF-8", ui.display()))?;
        files.insert(
            format!("ui/{name}"),
            fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    let zip = zip_files(&files)?;
    let zip_path = out.join(format!("{LINKER_PACKAGE}.zip"));
    write_if_changed(&zip_path, &zip)?;
    Ok(LinkerPackage {
        zip,
        zip_path,
        wasm: pkg.join("linker.wasm"),
        metadata: root.join("metadata.json"),
    })
}
