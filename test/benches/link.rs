//! Criterion benchmarks of the linker's core, `linker_core::link` and `linker_core::compose`.
//!
//! Scenarios:
//!
//! - `small`: the fixture package `app` (a process and a script, each importing `mathlib`) against `mathlib`'s API
//!   zip;
//! - `large`: the fixture `bigapp` (a process of several MB importing `mathlib`);
//! - `nested10`: synthetic components made from WIT (dummy implementations): a root importing four of ten
//!   libraries, in chains three deep, one library shared by the root and a chain.
//!
//! Each scenario is measured at the component level (`compose`: the process component with the library
//! components) and at the package level (`link`, which adds reading the zips, verifying and writing the linked zip,
//! deflated at level 1, the default, or, for `small` and `large`, stored, to show what compression costs).
//!
//! Before criterion runs, the binary re-runs itself once per scenario (a fresh process each) to report peak memory:
//! the growth of the resident set during one call, inputs already loaded (`VmHWM` after resetting it through
//! `/proc/self/clear_refs`; Linux only). The `memory` bench counts the heap with a global allocator instead.
//!
//! First, the bytes each scenario's call hashes against the bytes it reads.
//!
//! `cargo bench -p linker-tests --bench link`; `LINKER_BENCH_NO_PEAK=1` skips the memory report.

use std::fmt::Write as _;
use std::fs;
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use criterion::{BenchmarkId, Criterion, Throughput};
use linker_core::{Compression, Input, Options};
use linker_tests::{component, manifest, zip};

/// Set in the child process that measures one scenario's peak memory: the scenario's name.
const PEAK_ENV: &str = "LINKER_BENCH_PEAK_SCENARIO";
/// Set for the child: the fixture files, separated by newlines (see [`FixturePaths`]).
const PATHS_ENV: &str = "LINKER_BENCH_FIXTURE_PATHS";

/// The fixture files the scenarios read.
struct FixturePaths {
    app_package: PathBuf,
    bigapp_package: PathBuf,
    mathlib_api: PathBuf,
    app_wasm: PathBuf,
    bigapp_wasm: PathBuf,
    mathlib_api_wasm: PathBuf,
}

impl FixturePaths {
    fn build() -> Result<FixturePaths> {
        let fixtures = linker_fixtures::build()?;
        Ok(FixturePaths {
            app_package: fixtures.package("app"),
            bigapp_package: fixtures.package("bigapp"),
            mathlib_api: fixtures.api("mathlib"),
            app_wasm: fixtures.component("app", "app.wasm"),
            bigapp_wasm: fixtures.component("bigapp", "bigapp.wasm"),
            mathlib_api_wasm: fixtures.component("mathlib", "mathlib-api.wasm"),
        })
    }

    fn all(&self) -> [&PathBuf; 6] {
        [
            &self.app_package,
            &self.bigapp_package,
            &self.mathlib_api,
            &self.app_wasm,
            &self.bigapp_wasm,
            &self.mathlib_api_wasm,
        ]
    }

    fn encode(&self) -> String {
        let lines: Vec<String> = self.all().iter().map(|p| p.display().to_string()).collect();
        lines.join("\n")
    }

    fn decode(text: &str) -> Result<FixturePaths> {
        let paths: Vec<PathBuf> = text.lines().map(PathBuf::from).collect();
        let [app_package, bigapp_package, mathlib_api, app_wasm, bigapp_wasm, mathlib_api_wasm] =
            <[PathBuf; 6]>::try_from(paths).map_err(|_| anyhow::anyhow!("bad {PATHS_ENV}"))?;
        Ok(FixturePaths {
            app_package,
            bigapp_package,
            mathlib_api,
            app_wasm,
            bigapp_wasm,
            mathlib_api_wasm,
        })
    }
}

/// A named input, owned.
struct Owned {
    name: String,
    bytes: Vec<u8>,
}

impl Owned {
    fn read(name: &str, path: &PathBuf) -> Result<Owned> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Owned {
            name: name.to_owned(),
            bytes,
        })
    }

    fn input(&self) -> Input<'_> {
        Input::new(&self.name, &self.bytes)
    }
}

/// What one scenario calls.
enum Call {
    Link,
    Compose,
}

/// One measured call: `link(root, deps)` or `compose(root, deps)`.
struct Scenario {
    group: &'static str,
    name: &'static str,
    call: Call,
    root: Owned,
    deps: Vec<Owned>,
    options: Options,
}

impl Scenario {
    fn id(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }

    /// Runs the call once and returns the size of its output.
    fn run(&self) -> usize {
        let deps: Vec<Input<'_>> = self.deps.iter().map(Owned::input).collect();
        match self.call {
            Call::Link => linker_core::link(self.root.input(), &deps, &self.options)
                .expect("the scenario links")
                .bytes
                .len(),
            Call::Compose => linker_core::compose(self.root.input(), &deps, &self.options)
                .expect("the scenario composes")
                .bytes
                .len(),
        }
    }

    /// The bytes read: the root plus every dependency.
    fn input_len(&self) -> u64 {
        let total: usize =
            self.root.bytes.len() + self.deps.iter().map(|d| d.bytes.len()).sum::<usize>();
        u64::try_from(total).unwrap_or(u64::MAX)
    }
}

fn stored() -> Options {
    Options {
        compression: Compression::Stored,
        ..Options::default()
    }
}

fn scenarios(paths: &FixturePaths) -> Result<Vec<Scenario>> {
    let mathlib_api = || Owned::read("mathlib:test.os", &paths.mathlib_api);
    let mathlib_wasm = || Owned::read("mathlib-api.wasm", &paths.mathlib_api_wasm);
    let nested = Nested::build()?;
    Ok(vec![
        Scenario {
            group: "small",
            name: "compose",
            call: Call::Compose,
            root: Owned::read("app.wasm", &paths.app_wasm)?,
            deps: vec![mathlib_wasm()?],
            options: Options::default(),
        },
        Scenario {
            group: "small",
            name: "link-deflate1",
            call: Call::Link,
            root: Owned::read("app:test.os.zip", &paths.app_package)?,
            deps: vec![mathlib_api()?],
            options: Options::default(),
        },
        Scenario {
            group: "small",
            name: "link-stored",
            call: Call::Link,
            root: Owned::read("app:test.os.zip", &paths.app_package)?,
            deps: vec![mathlib_api()?],
            options: stored(),
        },
        Scenario {
            group: "large",
            name: "compose",
            call: Call::Compose,
            root: Owned::read("bigapp.wasm", &paths.bigapp_wasm)?,
            deps: vec![mathlib_wasm()?],
            options: Options::default(),
        },
        Scenario {
            group: "large",
            name: "link-deflate1",
            call: Call::Link,
            root: Owned::read("bigapp:test.os.zip", &paths.bigapp_package)?,
            deps: vec![mathlib_api()?],
            options: Options::default(),
        },
        Scenario {
            group: "large",
            name: "link-stored",
            call: Call::Link,
            root: Owned::read("bigapp:test.os.zip", &paths.bigapp_package)?,
            deps: vec![mathlib_api()?],
            options: stored(),
        },
        Scenario {
            group: "nested10",
            name: "compose",
            call: Call::Compose,
            root: Owned {
                name: "root.wasm".to_owned(),
                bytes: nested.root.clone(),
            },
            deps: nested
                .libraries
                .iter()
                .map(|(name, bytes)| Owned {
                    name: format!("{name}.wasm"),
                    bytes: bytes.clone(),
                })
                .collect(),
            options: Options::default(),
        },
        Scenario {
            group: "nested10",
            name: "link-deflate1",
            call: Call::Link,
            root: Owned {
                name: "nested:test.os.zip".to_owned(),
                bytes: nested.package()?,
            },
            deps: vec![Owned {
                name: "libs:test.os".to_owned(),
                bytes: nested.api()?,
            }],
            options: Options::default(),
        },
    ])
}

// ---------------------------------------------------------------------------------------------------------------
// The synthetic ten-library graph.

/// The libraries and what each imports: three chains three deep (`x0 -> x1 -> x2`, ...) and `w`, which the root
/// and `x1` both import. The root imports `x0`, `y0`, `z0` and `w`.
const LIBRARIES: [(&str, &[&str]); 10] = [
    ("x0", &["x1"]),
    ("x1", &["x2", "w"]),
    ("x2", &[]),
    ("y0", &["y1"]),
    ("y1", &["y2"]),
    ("y2", &[]),
    ("z0", &["z1"]),
    ("z1", &["z2"]),
    ("z2", &[]),
    ("w", &[]),
];
const ROOT_IMPORTS: [&str; 4] = ["x0", "y0", "z0", "w"];

/// The interface every library exports (as `bench:<name>/api@1.0.0`): a few functions over records, lists,
/// options and results, so the type checking has something to do.
fn interface_package(name: &str) -> String {
    format!(
        "package bench:{name}@1.0.0 {{
  interface api {{
    record item {{ id: u64, name: string, tags: list<string>, score: option<f64> }}
    variant event {{ created(item), deleted(u64), renamed(tuple<u64, string>) }}
    get: func(id: u64) -> option<item>;
    put: func(it: item) -> result<u64, string>;
    page: func(offset: u32, limit: u32) -> list<item>;
    apply: func(events: list<event>) -> result<_, string>;
    sum: func(xs: list<u32>) -> u64;
  }}
}}
"
    )
}

fn library_wit(name: &str, imports: &[&str]) -> String {
    let mut wit = format!("package test:{name}-impl;\n\n");
    wit.push_str(&interface_package(name));
    let mut world = String::from("world lib {\n");
    for import in imports {
        wit.push_str(&interface_package(import));
        let _ = writeln!(world, "  import bench:{import}/api@1.0.0;");
    }
    let _ = writeln!(world, "  export bench:{name}/api@1.0.0;\n}}");
    wit.push_str(&world);
    wit
}

fn root_wit() -> String {
    let mut wit = String::from("package test:root;\n\n");
    let mut world = String::from("world root {\n");
    for import in ROOT_IMPORTS {
        wit.push_str(&interface_package(import));
        let _ = writeln!(world, "  import bench:{import}/api@1.0.0;");
    }
    world.push_str("  export init: func(our: string);\n}\n");
    wit.push_str(&world);
    wit
}

/// The synthetic components.
struct Nested {
    root: Vec<u8>,
    libraries: Vec<(&'static str, Vec<u8>)>,
}

impl Nested {
    fn build() -> Result<Nested> {
        let libraries = LIBRARIES
            .iter()
            .map(|(name, imports)| {
                component(&library_wit(name, imports))
                    .with_context(|| format!("building library {name}"))
                    .map(|bytes| (*name, bytes))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Nested {
            root: component(&root_wit()).context("building the root")?,
            libraries,
        })
    }

    /// A package zip: `manifest.json` with one process, `root.wasm`.
    fn package(&self) -> Result<Vec<u8>> {
        let manifest = manifest(&[("root", "root.wasm")]);
        zip(&[("manifest.json", &manifest), ("root.wasm", &self.root)])
    }

    /// An API zip holding the ten libraries.
    fn api(&self) -> Result<Vec<u8>> {
        let names: Vec<String> = self
            .libraries
            .iter()
            .map(|(name, _)| format!("{name}.wasm"))
            .collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&self.libraries)
            .map(|(name, (_, bytes))| (name.as_str(), bytes.as_slice()))
            .collect();
        zip(&files)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Peak memory, measured in a child process per scenario.

/// A `kB` field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let number = rest.trim().trim_end_matches("kB").trim();
            return number
                .parse()
                .with_context(|| format!("parsing {field}: {rest}"));
        }
    }
    bail!("no {field} in /proc/self/status")
}

/// In the child: runs one scenario once and prints `<baseline KiB> <peak KiB> <output bytes>`.
fn peak_child(name: &str) -> Result<()> {
    let paths = FixturePaths::decode(&std::env::var(PATHS_ENV).context(PATHS_ENV)?)?;
    // Keep only this scenario's inputs, then reset the high-water mark to the current resident set.
    let scenario = scenarios(&paths)?
        .into_iter()
        .find(|s| s.id() == name)
        .with_context(|| format!("no scenario {name}"))?;
    fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM via /proc/self/clear_refs")?;
    let baseline = status_kib("VmRSS")?;
    let output = black_box(scenario.run());
    let peak = status_kib("VmHWM")?;
    println!("{baseline} {peak} {output}");
    Ok(())
}

/// In the parent: runs every scenario in a child and prints its peak memory and output size.
/// Prints, per scenario, the bytes one call hashes (`linker_core::bytes_hashed`) against the bytes
/// it reads: a link hashes each input archive, each component as it came in and as linked and
/// `link.json` once each; a composition hashes nothing.
fn report_hashing(scenarios: &[Scenario]) {
    println!("hashing: bytes SHA-256 hashed by one call, against its input bytes");
    println!(
        "{:<24} {:>12} {:>12} {:>8}",
        "scenario", "input B", "hashed B", "hashed/in"
    );
    for scenario in scenarios {
        let before = linker_core::bytes_hashed();
        black_box(scenario.run());
        let hashed = linker_core::bytes_hashed() - before;
        let input = scenario.input_len();
        println!(
            "{:<24} {input:>12} {hashed:>12} {:>8.2}",
            scenario.id(),
            hashed as f64 / input as f64
        );
    }
    println!();
}

fn report_peaks(paths: &FixturePaths, scenarios: &[Scenario]) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!(
        "peak memory: resident-set growth during one call, in a fresh process (inputs loaded)"
    );
    println!(
        "{:<24} {:>12} {:>12} {:>14} {:>14}",
        "scenario", "input B", "output B", "baseline KiB", "peak +KiB"
    );
    for scenario in scenarios {
        let id = scenario.id();
        let output = Command::new(&exe)
            .env(PEAK_ENV, &id)
            .env(PATHS_ENV, paths.encode())
            .output()
            .context("running the peak-memory child")?;
        if !output.status.success() {
            bail!(
                "peak-memory child for {id} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing the child's output: {text}"))?;
        let [baseline, peak, bytes] = fields[..] else {
            bail!("unexpected child output: {text}");
        };
        println!(
            "{id:<24} {:>12} {bytes:>12} {baseline:>14} {:>14}",
            scenario.input_len(),
            peak.saturating_sub(baseline)
        );
    }
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------

fn bench(criterion: &mut Criterion, scenarios: &[Scenario]) {
    for group_name in ["small", "large", "nested10"] {
        let mut group = criterion.benchmark_group(group_name);
        if group_name == "large" {
            group.sample_size(20);
            group.measurement_time(Duration::from_secs(15));
        }
        for scenario in scenarios.iter().filter(|s| s.group == group_name) {
            group.throughput(Throughput::Bytes(scenario.input_len()));
            group.bench_function(BenchmarkId::from_parameter(scenario.name), |b| {
                b.iter(|| black_box(scenario.run()));
            });
        }
        group.finish();
    }
}

fn main() -> Result<()> {
    if let Ok(name) = std::env::var(PEAK_ENV) {
        return peak_child(&name);
    }
    let paths = FixturePaths::build()?;
    let scenarios = scenarios(&paths)?;
    let mut criterion = Criterion::default().configure_from_args();
    // `cargo test --benches` runs each benchmark once: skip the memory report there.
    let testing = std::env::args().any(|a| a == "--test");
    if !testing {
        report_hashing(&scenarios);
    }
    if !testing && std::env::var_os("LINKER_BENCH_NO_PEAK").is_none() {
        report_peaks(&paths, &scenarios)?;
    }
    bench(&mut criterion, &scenarios);
    criterion.final_summary();
    Ok(())
}
