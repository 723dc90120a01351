//! Peak heap memory of native linking: the most bytes `linker_core::link` and
//! `linker_core::compose` hold at once during one call, beyond what was allocated before it (its
//! inputs, already read), against the size of the inputs.
//!
//! Every allocation goes through a counting global allocator (`cap`, whose `realloc` is the system
//! allocator's and counts the new size), so the peak is in bytes requested: a buffer counts with
//! its capacity whether or not its pages were touched, and allocator overhead is left out. The
//! counter cannot be reset, so each scenario runs in a child process of its own, which reads only
//! that scenario's inputs. The `link` bench's table measures the resident set instead.
//!
//! `cargo bench -p linker-tests --bench memory`

use std::alloc::System;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use cap::Cap;
use linker_core::{Compression, Input, Options};

#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

/// Set in a child: the index of the scenario it measures.
const SCENARIO_ENV: &str = "LINKER_BENCH_MEMORY_SCENARIO";

/// One measured call: what it links or composes, and how.
struct Scenario {
    name: String,
    link: bool,
    root: (String, PathBuf),
    deps: Vec<(String, PathBuf)>,
    compression: Compression,
}

fn scenarios() -> Result<Vec<Scenario>> {
    let f = linker_fixtures::build()?;
    let mut scenarios = Vec::new();
    for (group, id, wasm) in [
        ("small", "app", "app.wasm"),
        ("large", "bigapp", "bigapp.wasm"),
    ] {
        scenarios.push(Scenario {
            name: format!("{group} / compose"),
            link: false,
            root: (wasm.to_owned(), f.component(id, wasm)),
            deps: vec![(
                "mathlib-api.wasm".to_owned(),
                f.component("mathlib", "mathlib-api.wasm"),
            )],
            compression: Compression::default(),
        });
        for (how, compression) in [
            ("deflate 1", Compression::default()),
            ("stored", Compression::Stored),
        ] {
            scenarios.push(Scenario {
                name: format!("{group} / link, {how}"),
                link: true,
                root: (format!("{id}:test.os.zip"), f.package(id)),
                deps: vec![("mathlib:test.os".to_owned(), f.api("mathlib"))],
                compression,
            });
        }
    }
    Ok(scenarios)
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// In the child: reads the scenario's inputs, makes one call, prints `<input> <output> <peak>`.
fn child(scenario: &Scenario) -> Result<()> {
    let root = read(&scenario.root.1)?;
    let deps: Vec<(String, Vec<u8>)> = scenario
        .deps
        .iter()
        .map(|(name, path)| Ok((name.clone(), read(path)?)))
        .collect::<Result<_>>()?;
    let inputs: Vec<Input<'_>> = deps
        .iter()
        .map(|(name, bytes)| Input::new(name, bytes))
        .collect();
    let options = Options {
        compression: scenario.compression,
        ..Options::default()
    };
    let (before, max_before) = (HEAP.allocated(), HEAP.max_allocated());
    let root_input = Input::new(&scenario.root.0, &root);
    let output = if scenario.link {
        linker_core::link(root_input, &inputs, &options)?
            .bytes
            .len()
    } else {
        linker_core::compose(root_input, &inputs, &options)?
            .bytes
            .len()
    };
    let max = HEAP.max_allocated();
    if max <= max_before {
        bail!("the call did not raise the peak set while reading its inputs");
    }
    let input = root.len() + deps.iter().map(|(_, b)| b.len()).sum::<usize>();
    println!("{input} {} {}", black_box(output), max - before);
    Ok(())
}

fn main() -> Result<()> {
    let scenarios = scenarios()?;
    if let Ok(index) = std::env::var(SCENARIO_ENV) {
        let index: usize = index.parse().context(SCENARIO_ENV)?;
        return child(scenarios.get(index).context("no such scenario")?);
    }
    let exe = std::env::current_exe()?;
    let mib = |bytes: f64| bytes / f64::from(1 << 20);
    println!("| scenario | input | output | peak heap during the call | peak ÷ input |");
    println!("|---|---:|---:|---:|---:|");
    for (index, scenario) in scenarios.iter().enumerate() {
        let output = Command::new(&exe)
            .env(SCENARIO_ENV, index.to_string())
            .output()
            .context("running a child")?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{}: {}",
                scenario.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let fields: Vec<f64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("the child's output: {text}"))?;
        let [input, output, peak] = fields[..] else {
            bail!("unexpected child output: {text}");
        };
        println!(
            "| {} | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.2}× |",
            scenario.name,
            mib(input),
            mib(output),
            mib(peak),
            peak / input
        );
    }
    Ok(())
}
