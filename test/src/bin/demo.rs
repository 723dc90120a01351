//! The main job on the bundled example packages: build them from source the way kit does, link
//! each one against the API zips of its dependencies, and run every linked process in a host
//! built like the Kinode runtime (wasmtime 27), printing each step.

use anyhow::{Context, Result};
use linker_core::archive::Archive;
use linker_core::{Input, Limits, Options, Role};
use linker_test_host::Host;

/// The example packages and the API zips each is linked against.
const EXAMPLES: [(&str, &[&str]); 5] = [
    ("app", &["mathlib"]),
    ("chain", &["textlib", "mathlib"]),
    ("duo", &["mathlib", "textlib"]),
    ("selfish", &[]),
    ("bigapp", &["mathlib"]),
];

fn main() -> Result<()> {
    println!("building the example packages from test/fixtures (kinode_process_lib 1.0.1, wasm32-wasip1, adapter 27.0.0)");
    let fixtures = linker_fixtures::build()?;
    let host = Host::new()?;
    for (name, deps) in EXAMPLES {
        let id = fixtures.id(name);
        let package = std::fs::read(fixtures.package(name))?;
        let apis: Vec<(String, Vec<u8>)> = deps
            .iter()
            .map(|dep| Ok((fixtures.id(dep), std::fs::read(fixtures.api(dep))?)))
            .collect::<Result<_>>()?;
        println!("\n== {id}");
        println!(
            "uploaded: {id}.zip ({} bytes) with {}",
            package.len(),
            if apis.is_empty() {
                "its own api.zip".to_owned()
            } else {
                apis.iter()
                    .map(|(n, _)| format!("{n}-api.zip"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        let inputs: Vec<Input<'_>> = apis
            .iter()
            .map(|(name, bytes)| Input { name, bytes })
            .collect();
        let package_name = format!("{id}.zip");
        let started = std::time::Instant::now();
        let linked = linker_core::link(
            Input {
                name: &package_name,
                bytes: &package,
            },
            &inputs,
            &Options::default(),
        )?;
        println!("linked in {:.1} ms:", started.elapsed().as_secs_f64() * 1e3);
        for line in linked.report.to_string().lines() {
            println!("  {line}");
        }
        let files = Archive::read("linked", &linked.bytes, &Limits::default())?.files;
        for component in &linked.report.components {
            let Role::Process { name: process } = &component.role else {
                continue;
            };
            let wasm = files
                .get(&component.path)
                .context("the linked package holds the process")?;
            let our = format!("node.os@{process}:{id}");
            let run = host
                .run_init(wasm, &our)
                .with_context(|| format!("running {}", component.path))?;
            println!("ran {our}:");
            for message in run.print_messages() {
                println!("  {message}");
            }
        }
    }
    Ok(())
}
