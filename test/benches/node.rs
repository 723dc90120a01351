//! The linker on the test node against the native core, side by side in one run.
//!
//! For each example package (installed in dependency order, as `./x demo` does), two figures:
//!
//! - **native**: `linker_core::link` of the package zip with the API zips it depends on,
//!   transitively (the inputs the linker finds on the node), stored as the process stores it; the
//!   median of many calls.
//! - **in-node**: an `Install` request to `linker:linker:sys` on a freshly booted test node whose
//!   linker has already installed the package's dependencies, from sending the request to receiving
//!   the answer: inputs read, linked inside Wasm, written to the VFS, processes initialised and
//!   started. The median of several nodes, each install cold (nothing cached).
//!
//! Wall time is what the targets are about, but other work on the machine inflates it; the CPU time
//! of every thread of this process (`/proc/self/task/*/schedstat`) over the same call is shown too,
//! and is steadier under load.
//!
//! `cargo bench -p linker-tests --bench node` prints a Markdown table; `LINKER_BENCH_RUNS` sets
//! the number of nodes per package (default 7), and `LINKER_BENCH_NODE_TSV=<file>` also writes
//! `package  input-bytes  native-ms  in-node-ms` lines (`bench/compare.sh` reads them).

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use linker_core::{Compression, Input, Options};
use linker_fixtures::Fixtures;
use linker_test_host::caps;
use linker_tests::node::{fixtures, read, Session, LINKER};
use serde_json::{json, Value};

/// The example packages in install order: every package's dependencies come before it.
const PACKAGES: [&str; 7] = [
    "mathlib", "textlib", "app", "chain", "duo", "selfish", "bigapp",
];

/// Native calls per package.
const NATIVE_RUNS: usize = 25;

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a filter argument, if any, selects packages by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs: usize = match std::env::var("LINKER_BENCH_RUNS") {
        Ok(n) => n.parse().context("LINKER_BENCH_RUNS is a number")?,
        Err(_) => 7,
    };
    let f = fixtures();
    // Boots one node first, so that compiling `linker.wasm` is not in any figure.
    drop(Session::new());

    println!("| package | input | native `link` | in-node install | ratio | CPU: native | CPU: in-node | CPU ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut tsv = String::new();
    for name in PACKAGES {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let dependencies = dependencies(f, name)?;
        let package = read(f.package(name));
        let apis: Vec<(String, Vec<u8>)> = dependencies
            .iter()
            .map(|dep| (f.id(dep), read(f.api(dep))))
            .collect();
        let input_bytes = package.len() + apis.iter().map(|(_, b)| b.len()).sum::<usize>();
        let (native, native_cpu) =
            medians((0..NATIVE_RUNS).map(|_| native_link(f, name, &package, &apis)))?;
        let (in_node, in_node_cpu) =
            medians((0..runs).map(|_| install_on_fresh_node(name, &dependencies)))?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {} | {:.0} KiB | {:.2} ms | {:.2} ms | {:.1}× | {:.2} ms | {:.2} ms | {:.1}× |",
            f.id(name),
            input_bytes as f64 / 1024.0,
            ms(native),
            ms(in_node),
            in_node.as_secs_f64() / native.as_secs_f64(),
            ms(native_cpu),
            ms(in_node_cpu),
            in_node_cpu.as_secs_f64() / native_cpu.as_secs_f64()
        );
        tsv.push_str(&format!(
            "{}\t{input_bytes}\t{:.3}\t{:.3}\n",
            f.id(name),
            ms(native),
            ms(in_node)
        ));
    }
    if let Some(path) = std::env::var_os("LINKER_BENCH_NODE_TSV") {
        std::fs::write(&path, tsv).context("writing LINKER_BENCH_NODE_TSV")?;
    }
    Ok(())
}

/// The fixture names a package depends on, transitively, in install order, itself excluded.
fn dependencies(f: &Fixtures, name: &str) -> Result<Vec<&'static str>> {
    let mut found = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(next) = todo.pop() {
        let metadata: Value = serde_json::from_slice(&read(f.metadata(&next)))?;
        for dep in metadata["properties"]["dependencies"]
            .as_array()
            .context("dependencies")?
        {
            let id = dep.as_str().context("a dependency is a package id")?;
            let dep = id.strip_suffix(":test.os").context("a fixture id")?;
            if dep != name && found.insert(dep.to_owned()) {
                todo.push(dep.to_owned());
            }
        }
    }
    let ordered: Vec<&'static str> = PACKAGES
        .into_iter()
        .filter(|p| found.contains(*p))
        .collect();
    if ordered.len() != found.len() {
        bail!("{name} depends on a package outside {PACKAGES:?}: {found:?}");
    }
    Ok(ordered)
}

/// Wall time and CPU time of one measured call.
type Sample = (Duration, Duration);

/// The CPU time used so far by every live thread of this process.
fn cpu_time() -> Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task")? {
        // A thread may end between listing and reading: it no longer counts.
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        let on_cpu = stat.split_whitespace().next().context("schedstat")?;
        total += on_cpu.parse::<u64>().context("schedstat's first field")?;
    }
    Ok(Duration::from_nanos(total))
}

/// Runs `f`, returning its result with the wall and CPU time it took.
fn measure<T>(f: impl FnOnce() -> T) -> Result<(T, Sample)> {
    let (cpu, start) = (cpu_time()?, Instant::now());
    let result = f();
    let wall = start.elapsed();
    Ok((result, (wall, cpu_time()?.saturating_sub(cpu))))
}

/// One `linker_core::link` of the package with its APIs, stored as the linker process stores it.
fn native_link(
    f: &Fixtures,
    name: &str,
    package: &[u8],
    apis: &[(String, Vec<u8>)],
) -> Result<Sample> {
    let file = format!("{}.zip", f.id(name));
    let apis: Vec<Input<'_>> = apis
        .iter()
        .map(|(name, bytes)| Input::new(name, bytes))
        .collect();
    let options = Options {
        compression: Compression::Stored,
        ..Options::default()
    };
    let (linked, sample) =
        measure(|| linker_core::link(Input::new(&file, package), &apis, &options))?;
    black_box(linked.map_err(|e| anyhow::anyhow!("{name} does not link natively: {e}"))?);
    Ok(sample)
}

/// Boots a node, installs `dependencies` through the linker, then times the install of `name`.
fn install_on_fresh_node(name: &str, dependencies: &[&str]) -> Result<Sample> {
    let session = Session::new();
    for dep in dependencies {
        install(&session, dep)?;
    }
    install(&session, name)
}

/// Installs fixture `name` from the blob with its metadata, as the demo does; returns the time from
/// request to answer.
fn install(session: &Session, name: &str) -> Result<Sample> {
    let f = fixtures();
    let metadata = String::from_utf8(read(f.metadata(name)))?;
    let package = read(f.package(name));
    let request = json!({"Install": {"source": "Blob", "metadata": metadata, "apis": []}});
    let ((body, _), sample) = measure(|| {
        session.ask(
            &session.tester,
            request,
            Some(package),
            vec![caps::messaging(LINKER)],
        )
    })?;
    match body["Install"].get("Ok") {
        Some(report) if report["link"]["cached"] == false => Ok(sample),
        Some(_) => bail!("installing {name} was served from the cache"),
        None => bail!("installing {name} failed: {:#}", body["Install"]),
    }
}

/// The median wall time and the median CPU time of the samples.
fn medians(samples: impl Iterator<Item = Result<Sample>>) -> Result<Sample> {
    let all = samples.collect::<Result<Vec<_>>>()?;
    let median = |mut times: Vec<Duration>| {
        times.sort();
        times
            .get(times.len() / 2)
            .copied()
            .context("no samples were taken")
    };
    Ok((
        median(all.iter().map(|s| s.0).collect())?,
        median(all.iter().map(|s| s.1).collect())?,
    ))
}
