//! The steady cost of auto-linking on a node with 30 installed packages: boots the test node
//! with `linker:sys`, installs 30 packages with the app store's own steps (mathlib and 29 copies
//! of it under other names, so each has a drive, a zip, a manifest and an API), waits until the
//! linker has handled them all, then watches the linker's VFS traffic over idle ticks and prints,
//! per tick, the requests it sent by action, the bytes it wrote, and the wall time from its first
//! to its last request.
//!
//! `cargo bench -p linker-tests --bench watch` (release build of the test host and the linker).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use linker_test_host::{AppStore, Node, VfsCall};

const PACKAGES: usize = 30;
const IDLE: Duration = Duration::from_secs(20);
const LINKER: &str = "linker:linker:sys";

fn main() -> Result<()> {
    let linker = linker_fixtures::linker_package()?;
    let fixtures = linker_fixtures::build()?;
    let node = Node::new("bench.os")?;
    let store = AppStore::new(&node);
    node.boot_package("linker:sys", &linker.zip, Some(1))?;

    let mathlib = std::fs::read(fixtures.package("mathlib"))?;
    let mut names = vec!["mathlib:test.os".to_owned()];
    names.extend((1..PACKAGES).map(|i| format!("lib{i:02}:test.os")));
    for name in &names {
        let hash = store.new_package(name, &mathlib)?;
        store
            .install(name, &hash, Some(1))
            .context("app store install")?;
    }
    let installed = Instant::now();
    let deadline = installed + Duration::from_secs(300);
    while names
        .iter()
        .any(|name| node.read_file(&format!("/{name}/pkg/.linker")).is_none())
    {
        if Instant::now() > deadline {
            bail!("the linker did not handle every package");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let handled = installed.elapsed();
    std::thread::sleep(Duration::from_secs(3));

    let start = node.vfs_calls().len();
    std::thread::sleep(IDLE);
    let calls: Vec<VfsCall> = node.vfs_calls()[start..]
        .iter()
        .filter(|call| call.source == LINKER)
        .cloned()
        .collect();
    // A tick's requests come in one burst; bursts are seconds apart.
    let mut ticks: Vec<Vec<&VfsCall>> = Vec::new();
    for call in &calls {
        match ticks.last_mut() {
            Some(tick) if call.at - tick[tick.len() - 1].at < Duration::from_millis(500) => {
                tick.push(call)
            }
            _ => ticks.push(vec![call]),
        }
    }
    let mut actions: BTreeMap<&str, usize> = BTreeMap::new();
    for call in &calls {
        *actions.entry(call.action.as_str()).or_default() += 1;
    }
    let writes = calls
        .iter()
        .filter(|c| !matches!(c.action.as_str(), "ReadDir" | "Read" | "Metadata"))
        .count();
    let mut spans: Vec<Duration> = ticks
        .iter()
        .map(|tick| tick[tick.len() - 1].at - tick[0].at)
        .collect();
    spans.sort();
    println!(
        "auto-linking, {PACKAGES} packages installed by the app store; every one handled (and marked) {:.1} s after \
         the last install; then {} s idle:",
        handled.as_secs_f64(),
        IDLE.as_secs()
    );
    println!("  ticks observed: {}", ticks.len());
    println!(
        "  VFS requests per tick: {:.1} ({})",
        calls.len() as f64 / ticks.len().max(1) as f64,
        actions
            .iter()
            .map(|(a, n)| format!("{a} {:.1}", *n as f64 / ticks.len().max(1) as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  write-type requests: {writes}");
    if let (Some(min), Some(max)) = (spans.first(), spans.last()) {
        println!(
            "  time per tick, first to last request: median {:.2} ms, min {:.2} ms, max {:.2} ms",
            spans[spans.len() / 2].as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
