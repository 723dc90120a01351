//! Test support: components made from WIT text (dummy implementations, as wac's tests make
//! them), kit-shaped package zips around them, and a structural description of a component.

pub mod browser;
pub mod damage;
pub mod node;

use std::io::{Cursor, Write};

use anyhow::{Context, Result};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve};
use zip::write::SimpleFileOptions;

/// Builds a component for the single world of the WIT document's main package; its functions
/// trap if called, but it links and validates like a real one.
pub fn component(wit: &str) -> Result<Vec<u8>> {
    let mut resolve = Resolve::default();
    let package = resolve.push_str("component.wit", wit)?;
    let world = resolve.select_world(&[package], None)?;
    let mut module =
        wit_component::dummy_module(&resolve, world, ManglingAndAbi::Legacy(LiftLowerAbi::Sync));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        StringEncoding::UTF8,
        false,
    )?;
    ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .encode()
        .context("encoding the dummy component")
}

/// A zip of `files`, written the way kit writes package zips (sorted, deflated).
pub fn zip(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut sorted = files.to_vec();
    sorted.sort_by_key(|(name, _)| *name);
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in sorted {
        writer.start_file(name, options)?;
        writer.write_all(bytes)?;
    }
    Ok(writer.finish()?.into_inner())
}

/// A `manifest.json` with one process per `(process name, wasm path)`.
pub fn manifest(processes: &[(&str, &str)]) -> Vec<u8> {
    let entries: Vec<String> = processes
        .iter()
        .map(|(name, path)| {
            format!(
                r#"{{"process_name":"{name}","process_wasm_path":"/{path}","on_exit":"None","request_networking":false,"request_capabilities":[],"grant_capabilities":[],"public":false}}"#
            )
        })
        .collect();
    format!("[{}]", entries.join(",")).into_bytes()
}

/// The top-level imports and exports of a component, and how many components it instantiates
/// at its top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Import names, in order.
    pub imports: Vec<String>,
    /// Export names, in order.
    pub exports: Vec<String>,
    /// Component instantiations at the top level.
    pub instantiations: usize,
}

/// Reads a component's [`Shape`].
pub fn shape(bytes: &[u8]) -> Result<Shape> {
    use wasmparser::{Chunk, ComponentInstance, Parser, Payload};
    let mut shape = Shape {
        imports: Vec::new(),
        exports: Vec::new(),
        instantiations: 0,
    };
    let mut parser = Parser::new(0);
    let mut rest = bytes;
    loop {
        let Chunk::Parsed { payload, consumed } = parser.parse(rest, true)? else {
            anyhow::bail!("truncated component");
        };
        rest = &rest[consumed..];
        match payload {
            Payload::ComponentImportSection(section) => {
                for import in section {
                    shape.imports.push(import?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(section) => {
                for export in section {
                    shape.exports.push(export?.name.name.to_owned());
                }
            }
            Payload::ComponentInstanceSection(section) => {
                for instance in section {
                    if matches!(instance?, ComponentInstance::Instantiate { .. }) {
                        shape.instantiations += 1;
                    }
                }
            }
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => {
                let skip = usize::try_from(unchecked_range.end - unchecked_range.start)?;
                rest = rest.get(skip..).context("truncated nested section")?;
            }
            Payload::End(_) => return Ok(shape),
            _ => {}
        }
    }
}

/// The name of a [`linker_core::LinkError`] variant, with the first resolution problem's.
pub fn variant(error: &linker_core::LinkError) -> String {
    use linker_core::{LinkError, ResolveError};
    match error {
        LinkError::Unresolved { problems } => {
            let inner: Vec<&str> = problems
                .iter()
                .map(|problem| match problem {
                    ResolveError::NoProvider { .. } => "NoProvider",
                    ResolveError::TypeMismatch { .. } => "TypeMismatch",
                    ResolveError::Ambiguous { .. } => "Ambiguous",
                    ResolveError::Cycle { .. } => "Cycle",
                })
                .collect();
            format!("Unresolved[{}]", inner.join(", "))
        }
        LinkError::Archive(inner) => format!("Archive::{}", head(&format!("{inner:?}"))),
        LinkError::Package(inner) => format!("Package::{}", head(&format!("{inner:?}"))),
        LinkError::Inspect(inner) => format!("Inspect::{}", head(&format!("{inner:?}"))),
        LinkError::Bounds(inner) => format!("Bounds::{}", head(&format!("{inner:?}"))),
        LinkError::Guard(inner) => format!("Guard::{}", head(&format!("{inner:?}"))),
        LinkError::Compose(inner) => format!("Compose::{}", head(&format!("{inner:?}"))),
        LinkError::Verify(inner) => format!("Verify::{}", head(&format!("{inner:?}"))),
    }
}

fn head(debug: &str) -> &str {
    debug.split([' ', '{', '(']).next().unwrap_or_default()
}

/// Builds `kinode-link` for wasm32-wasip1 (release, in its own target directory so it never
/// waits on an outer cargo's lock) and returns the core module's path.
pub fn cli_wasm() -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the test crate sits in the repository")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("wasm-cli");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--release", "-p", "kinode-link"])
        .args(["--target", "wasm32-wasip1", "--target-dir"])
        .arg(&target)
        .status()
        .context("running cargo")?;
    anyhow::ensure!(
        status.success(),
        "building kinode-link for wasm32-wasip1 failed (is the target installed? `rustup target add wasm32-wasip1`)"
    );
    Ok(target.join("wasm32-wasip1/release/kinode-link.wasm"))
}
