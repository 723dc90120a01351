//! The linker on the test node against the native core, side by side in one run.
//!
//! For each example package (installed in dependency order, as `./x demo` does), three figures:
//!
//! - **native**: `linker_core::link` of the package zip with the API zips it depends on,
//!   transitively (the inputs the linker finds on the node), stored as the process stores it; the
//!   median of many calls.
//! - **in-node**: an `Install` request to `linker:linker:sys` on a freshly booted test node whose
//!   linker has already installed the package's dependencies, from sending the request to receiving
//!   the answer: inputs read, linked inside Wasm, written to the VFS, processes initialised and
//!   started. The median of several nodes, each install cold (nothing cached).
//!
//! - **app store**: the app store's own install of the same package on such a node, unlinked
//!   (the linker switched off): the download landing (`NewPackage`) and `Install`. What a user
//!   waits for without the linker, against what the linker's install costs.
//!
//! Wall time is what the targets are about, but other work on the machine inflates it; the CPU time
//! of every thread of this process (`/proc/self/task/*/schedstat`) over the same call is shown too,
//! and is steadier under load.
//!
//! Of the in-node install, the guest time spent linking (between the cache lookup and the cache
//! write: `linker_core::link` running in Wasm) is shown too, against the native call: what
//! running the same core in Wasm costs, before anything is read or written.
//!
//! Then, per package, a `Link` request for it on the same node, with the same inputs, which the
//! linker's cache serves: request to answer, and how much of it went to receiving and hashing the
//! inputs (the cache key needs their hashes): the upload before the linker's first VFS call, and
//! each API zip after it is read.
//!
//! `cargo bench -p linker-tests --bench node` prints Markdown tables; `LINKER_BENCH_RUNS` sets
//! the number of nodes per package (default 7), and `LINKER_BENCH_NODE_TSV=<file>` also writes
//! `package  input-bytes  native-ms  in-node-ms` lines (`bench/compare.sh` reads them).
//!
//! `LINKER_BENCH_BASELINE=<linker:sys.zip>` adds a column: the same installs on nodes booted with
//! that build of the linker package (another commit's `target/node/linker:sys.zip`), measured in
//! the same run, so a change is compared side by side.
//!
//! `LINKER_BENCH_PROFILE=1` then prints, per package (and for the baseline), where the median
//! in-node install went: the linker's calls into the host (timed by the test host, [`HostCall`])
//! grouped by kind, and the rest, the linker's own code in Wasm (with the canonical ABI's copies
//! of blobs into and out of its memory). `LINKER_BENCH_PROFILE=timeline` also lists every call,
//! with the guest time before it, which places the guest's work between the steps it separates.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use linker_core::{Compression, Input, Options};
use linker_fixtures::{linker_package, Fixtures};
use linker_test_host::{caps, AppStore, HostCall};
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
    let linker = linker_package()?.zip.clone();
    let baseline = match std::env::var_os("LINKER_BENCH_BASELINE") {
        Some(path) => Some(std::fs::read(&path).context("reading LINKER_BENCH_BASELINE")?),
        None => None,
    };
    // Boots one node of each first, so that compiling `linker.wasm` is not in any figure.
    for zip in std::iter::once(&linker).chain(&baseline) {
        drop(Session::with_linker(zip));
    }

    let mut header = String::from(
        "| package | input | native `link` | in-node install | ratio | app store's own install, unlinked | linker ÷ app store | CPU: native | CPU: in-node | CPU ratio | of which: linking in Wasm | Wasm ÷ native |",
    );
    let mut rule = String::from("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if baseline.is_some() {
        header.push_str(" baseline: in-node | baseline: ratio | baseline: CPU ratio |");
        rule.push_str("---:|---:|---:|");
    }
    println!("{header}\n{rule}");
    let mut tsv = String::new();
    let mut profiles = Vec::new();
    let mut cache_rows = Vec::new();
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
        // The two builds take turns, so that both see the same load.
        let (mut installs, mut baseline_installs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            installs.push(install_on_fresh_node(&linker, name, &dependencies)?);
            if let Some(zip) = &baseline {
                baseline_installs.push(install_on_fresh_node(zip, name, &dependencies)?);
            }
        }
        let mut app_store = Vec::new();
        for _ in 0..runs {
            app_store.push(app_store_install_on_fresh_node(
                &linker,
                name,
                &dependencies,
            )?);
        }
        let (in_node, in_node_cpu) = medians(installs.iter().map(|i| Ok(i.sample)))?;
        let (by_app_store, _) = medians(app_store.iter().map(|sample| Ok(*sample)))?;
        if let Some(install) = installs.iter().find(|i| i.sample.0 == in_node) {
            profiles.push((f.id(name), install.profile.clone()));
            if let Some((_, cached)) = &install.cached {
                profiles.push((format!("{} (cached `Link`)", f.id(name)), cached.clone()));
            }
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        let mut linking: Vec<Duration> = installs
            .iter()
            .map(|i| i.profile.linking())
            .collect::<Result<_>>()?;
        linking.sort();
        let in_wasm = linking[linking.len() / 2];
        let mut row = format!(
            "| {} | {:.0} KiB | {:.2} ms | {:.2} ms | {:.1}× | {:.2} ms | {:.2}× | {:.2} ms | {:.2} ms | {:.1}× | {:.2} ms | {:.1}× |",
            f.id(name),
            input_bytes as f64 / 1024.0,
            ms(native),
            ms(in_node),
            ratio(in_node, native),
            ms(by_app_store),
            ratio(in_node, by_app_store),
            ms(native_cpu),
            ms(in_node_cpu),
            ratio(in_node_cpu, native_cpu),
            ms(in_wasm),
            ratio(in_wasm, native)
        );
        if baseline.is_some() {
            let (wall, cpu) = medians(baseline_installs.iter().map(|i| Ok(i.sample)))?;
            if let Some(install) = baseline_installs.iter().find(|i| i.sample.0 == wall) {
                profiles.push((
                    format!("{} (baseline)", f.id(name)),
                    install.profile.clone(),
                ));
            }
            row.push_str(&format!(
                " {:.2} ms | {:.1}× | {:.1}× |",
                ms(wall),
                ratio(wall, native),
                ratio(cpu, native_cpu)
            ));
        }
        println!("{row}");
        let cached: Vec<&(Sample, Profile)> =
            installs.iter().filter_map(|i| i.cached.as_ref()).collect();
        let (hit, _) = medians(cached.iter().map(|(sample, _)| Ok(*sample)))?;
        let mut hashing: Vec<Duration> = cached.iter().map(|(_, p)| p.hashing_inputs()).collect();
        hashing.sort();
        cache_rows.push(format!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            f.id(name),
            ms(hit),
            ms(hashing[hashing.len() / 2]),
            ms(hit.saturating_sub(hashing[hashing.len() / 2]))
        ));
        tsv.push_str(&format!(
            "{}\t{input_bytes}\t{:.3}\t{:.3}\n",
            f.id(name),
            ms(native),
            ms(in_node)
        ));
    }
    println!("\nA `Link` request for the package just installed, answered from the cache:\n");
    println!("| package | cache hit, request to answer | of which: receiving and hashing the inputs | the rest |");
    println!("|---|---:|---:|---:|");
    for row in &cache_rows {
        println!("{row}");
    }
    if let Some(path) = std::env::var_os("LINKER_BENCH_NODE_TSV") {
        std::fs::write(&path, tsv).context("writing LINKER_BENCH_NODE_TSV")?;
    }
    match std::env::var("LINKER_BENCH_PROFILE").as_deref() {
        Ok("1") => profiles.iter().for_each(|(id, p)| p.print(id, false)),
        Ok("timeline") => profiles.iter().for_each(|(id, p)| p.print(id, true)),
        _ => {}
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

/// One in-node request: its wall and CPU time, and where the linker's time went.
struct Install {
    sample: Sample,
    profile: Profile,
    /// The same package's `Link` request after it was installed: served from the cache.
    cached: Option<(Sample, Profile)>,
}

/// Boots a node with the linker package `linker`, installs `dependencies` through it, then times
/// the install of `name`, then a `Link` request for it, which the cache serves.
/// The app store's own install of fixture `name`, unlinked, on a fresh node whose linker is
/// switched off and has installed the dependencies: the download landing (`NewPackage`, the zip
/// hashed and written) and `Install`, as the app store takes them.
fn app_store_install_on_fresh_node(
    linker: &[u8],
    name: &str,
    dependencies: &[&str],
) -> Result<Sample> {
    let session = Session::with_linker(linker);
    for dep in dependencies {
        install(&session, dep)?;
    }
    let (off, _) = session.ask(
        &session.tester,
        json!({ "AutoLink": false }),
        None,
        vec![caps::messaging(LINKER)],
    );
    if off["AutoLink"]["Ok"] != json!(false) {
        bail!("auto-linking did not switch off: {off:#}");
    }
    let f = fixtures();
    let store = AppStore::new(&session.node);
    let zip = read(f.package(name));
    let id = f.id(name);
    let (installed, sample) = measure(|| {
        let hash = store.new_package(&id, &zip)?;
        store.install(&id, &hash, Some(1))
    })?;
    installed.with_context(|| format!("the app store installing {id}"))?;
    Ok(sample)
}

fn install_on_fresh_node(linker: &[u8], name: &str, dependencies: &[&str]) -> Result<Install> {
    let session = Session::with_linker(linker);
    for dep in dependencies {
        install(&session, dep)?;
    }
    let mut install = install(&session, name)?;
    install.cached = Some(cached_link(&session, name)?);
    Ok(install)
}

/// A `Link` request for fixture `name` with the inputs it was installed with: answered from the
/// cache, with the linked zip as the blob.
fn cached_link(session: &Session, name: &str) -> Result<(Sample, Profile)> {
    let ((body, blob), sample, profile) = timed_request(session, "Link", name)?;
    match (body["Link"].get("Ok"), blob) {
        (Some(report), Some(_)) if report["cached"] == true => Ok((sample, profile)),
        _ => bail!("linking {name} again was not served from the cache: {body:#}"),
    }
}

/// A response's body and blob.
type Answer = (Value, Option<Vec<u8>>);

/// Sends a `kind` request (`Link`, `Install`) for fixture `name` from the blob with its
/// metadata; returns the answer, the time from request to answer, and the linker's calls into
/// the host meanwhile.
fn timed_request(session: &Session, kind: &str, name: &str) -> Result<(Answer, Sample, Profile)> {
    let f = fixtures();
    let metadata = String::from_utf8(read(f.metadata(name)))?;
    let request = json!({kind: {"source": "Blob", "metadata": metadata, "apis": []}});
    let package = read(f.package(name));
    let start = Instant::now();
    let (answer, sample) = measure(|| {
        session.ask(
            &session.tester,
            request,
            Some(package),
            vec![caps::messaging(LINKER)],
        )
    })?;
    let profile = Profile::of(&session.node.host_calls(), start, Instant::now());
    Ok((answer, sample, profile))
}

/// Installs fixture `name` from the blob with its metadata, as the demo does; returns the time from
/// request to answer, and the linker's calls into the host meanwhile.
fn install(session: &Session, name: &str) -> Result<Install> {
    let ((body, _), sample, profile) = timed_request(session, "Install", name)?;
    match body["Install"].get("Ok") {
        Some(report) if report["link"]["cached"] == false => Ok(Install {
            sample,
            profile,
            cached: None,
        }),
        Some(_) => bail!("installing {name} was served from the cache"),
        None => bail!("installing {name} failed: {:#}", body["Install"]),
    }
}

/// Where the linker's time went during one install: its calls into the host, each clipped to
/// the install, and the time before each that it ran its own code.
#[derive(Clone)]
struct Profile {
    total: Duration,
    /// `(call, time in the host, guest time before it, bytes sent, bytes received)`, in order.
    calls: Vec<(String, Duration, Duration, usize, usize)>,
}

impl Profile {
    fn of(calls: &[HostCall], start: Instant, end: Instant) -> Profile {
        let mut at = start;
        let mut profile = Profile {
            total: end - start,
            calls: Vec::new(),
        };
        for call in calls.iter().filter(|c| c.process == "linker:linker:sys") {
            let (from, to) = (call.start.max(start), (call.start + call.elapsed).min(end));
            if to <= from {
                continue;
            }
            profile.calls.push((
                call.call.clone(),
                to - from,
                from.saturating_duration_since(at),
                call.sent,
                call.received,
            ));
            at = to;
        }
        profile
    }

    /// The linker's own time before its first VFS or kernel call: for a request with the package
    /// as its blob, hashing it (and parsing the request).
    fn before_first_call(&self) -> Duration {
        self.calls
            .iter()
            .take_while(|(call, ..)| !call.starts_with("VFS") && !call.starts_with("kernel"))
            .map(|(_, host, before, ..)| *host + *before)
            .sum::<Duration>()
            + self
                .calls
                .iter()
                .find(|(call, ..)| call.starts_with("VFS") || call.starts_with("kernel"))
                .map_or(Duration::ZERO, |(_, _, before, ..)| *before)
    }

    /// The linker's own time hashing its inputs, for a request with the package as its blob:
    /// before its first VFS or kernel call (parsing the request and hashing the package), and
    /// after reading each API zip, up to its next VFS or kernel call (hashing that zip; its
    /// description is kept from the install).
    fn hashing_inputs(&self) -> Duration {
        let is_step = |call: &str| call.starts_with("VFS") || call.starts_with("kernel");
        let mut total = self.before_first_call();
        let mut after_api = false;
        for (call, _, before, ..) in &self.calls {
            if after_api && is_step(call) {
                total += *before;
                after_api = false;
            }
            if call.starts_with("VFS Read ") && call.ends_with(".zip") && !call.contains("/cache/")
            {
                after_api = true;
            }
        }
        total
    }

    /// The linker's own time linking, for an install the cache did not serve: the guest time
    /// between looking the link up in the cache and writing it there, which is
    /// `linker_core::link` in Wasm and hashing the `link.json` it made.
    fn linking(&self) -> Result<Duration> {
        self.calls
            .iter()
            .find(|(call, ..)| {
                call.starts_with("VFS Write /linker:sys/cache/") && call.ends_with(".zip")
            })
            .map(|(_, _, before, ..)| *before)
            .context("the install wrote no link to the cache")
    }

    /// Prints the calls grouped by kind (`VFS Write`, `kernel RunProcess`, `get-blob`, ...), the
    /// guest's time, and with `timeline` every call.
    fn print(&self, id: &str, timeline: bool) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mb = |b: usize| b as f64 / 1e6;
        let mut groups: Vec<(String, usize, Duration, usize, usize)> = Vec::new();
        let mut guest = self.total;
        for (call, host, _, sent, received) in &self.calls {
            guest = guest.saturating_sub(*host);
            let kind = call.split(' ').take(2).collect::<Vec<_>>().join(" ");
            match groups.iter_mut().find(|g| g.0 == kind) {
                Some(group) => {
                    group.1 += 1;
                    group.2 += *host;
                    group.3 += sent;
                    group.4 += received;
                }
                None => groups.push((kind, 1, *host, *sent, *received)),
            }
        }
        groups.sort_by_key(|group| std::cmp::Reverse(group.2));
        println!(
            "\n#### {id}: the median request, {:.2} ms\n",
            ms(self.total)
        );
        println!("| where | calls | MB sent | MB received | ms | share |");
        println!("|---|---:|---:|---:|---:|---:|");
        let share = |d: Duration| 100.0 * d.as_secs_f64() / self.total.as_secs_f64();
        println!(
            "| guest: the linker's own code in Wasm | | | | {:.2} | {:.0} % |",
            ms(guest),
            share(guest)
        );
        for (kind, count, time, sent, received) in &groups {
            println!(
                "| host: {kind} | {count} | {:.2} | {:.2} | {:.2} | {:.0} % |",
                mb(*sent),
                mb(*received),
                ms(*time),
                share(*time)
            );
        }
        if timeline {
            println!("\n| guest before, ms | call | host, ms | MB sent | MB received |");
            println!("|---:|---|---:|---:|---:|");
            for (call, host, before, sent, received) in &self.calls {
                println!(
                    "| {:.2} | `{call}` | {:.2} | {:.2} | {:.2} |",
                    ms(*before),
                    ms(*host),
                    mb(*sent),
                    mb(*received)
                );
            }
        }
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
