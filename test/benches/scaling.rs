//! How linking scales with the number of libraries: a root importing the heads of chains of
//! synthetic libraries (made from WIT, as in the `link` bench), each chain at most five deep, for
//! 1 to 20 libraries. Prints the median and the fastest `linker_core::link` time per size and per
//! library. On a busy machine a call longer than a scheduler slice waits for other work, so its
//! median grows in steps that are not the linker's; the fastest call is the one least disturbed.
//!
//! `cargo bench -p linker-tests --bench scaling`

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use linker_core::{Input, Options};
use linker_tests::{component, manifest, zip};

/// The library counts measured.
const SIZES: [usize; 6] = [1, 2, 5, 10, 15, 20];
/// The deepest chain: library `c{k}_0` imports `c{k}_1`, ... down to `c{k}_4`.
const DEPTH: usize = 5;
/// Calls per size.
const RUNS: usize = 31;

/// An interface with a few functions over records, lists, options and results.
fn interface(name: &str) -> String {
    format!(
        "package bench:{name}@1.0.0 {{
  interface api {{
    record item {{ id: u64, name: string, tags: list<string>, score: option<f64> }}
    get: func(id: u64) -> option<item>;
    put: func(it: item) -> result<u64, string>;
    page: func(offset: u32, limit: u32) -> list<item>;
  }}
}}
"
    )
}

/// A component whose world imports `imports` and exports `export` (or `init`, for the root).
fn make(package: &str, export: Option<&str>, imports: &[String]) -> Result<Vec<u8>> {
    let mut wit = format!("package test:{package};\n\n");
    let mut world = String::from("world w {\n");
    for import in imports {
        wit.push_str(&interface(import));
        let _ = writeln!(world, "  import bench:{import}/api@1.0.0;");
    }
    match export {
        Some(name) => {
            wit.push_str(&interface(name));
            let _ = writeln!(world, "  export bench:{name}/api@1.0.0;");
        }
        None => world.push_str("  export init: func(our: string);\n"),
    }
    world.push_str("}\n");
    wit.push_str(&world);
    component(&wit).with_context(|| format!("building {package}"))
}

/// The package zip and the API zip for `count` libraries in chains of at most [`DEPTH`].
fn inputs(count: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let name = |i: usize| format!("c{}-{}", i / DEPTH, i % DEPTH);
    let mut libraries = Vec::new();
    let mut heads = Vec::new();
    for i in 0..count {
        let next = i + 1;
        let imports = if next < count && next % DEPTH != 0 {
            vec![name(next)]
        } else {
            Vec::new()
        };
        if i % DEPTH == 0 {
            heads.push(name(i));
        }
        libraries.push((
            format!("{}.wasm", name(i)),
            make(&format!("{}-impl", name(i)), Some(&name(i)), &imports)?,
        ));
    }
    let root = make("root", None, &heads)?;
    let manifest = manifest(&[("root", "root.wasm")]);
    let package = zip(&[("manifest.json", &manifest), ("root.wasm", &root)])?;
    let files: Vec<(&str, &[u8])> = libraries
        .iter()
        .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
        .collect();
    Ok((package, zip(&files)?))
}

fn main() -> Result<()> {
    println!(
        "| libraries | chains (≤ {DEPTH} deep) | input | link (median of {RUNS}) | per library | fastest | per library |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for count in SIZES {
        let (package, api) = inputs(count)?;
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now();
            let linked = linker_core::link(
                Input::new("root:test.os.zip", &package),
                &[Input::new("chains:test.os", &api)],
                &Options::default(),
            )
            .map_err(|e| anyhow::anyhow!("{count} libraries do not link: {e}"))?;
            times.push(start.elapsed());
            black_box(linked);
        }
        times.sort();
        let (median, fastest) = (times[RUNS / 2], times[0]);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {count} | {} | {:.0} KiB | {:.2} ms | {:.3} ms | {:.2} ms | {:.3} ms |",
            count.div_ceil(DEPTH),
            (package.len() + api.len()) as f64 / 1024.0,
            ms(median),
            ms(median) / count as f64,
            ms(fastest),
            ms(fastest) / count as f64
        );
    }
    Ok(())
}
