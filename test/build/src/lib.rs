//! Builds the linker's fixture packages (`test/fixtures`) the way `kit build` builds a Kinode
//! package, minus composition, so the processes in the output still import the library interfaces:
//! exactly what the linker consumes.
//!
//! The steps mirror kit (`src/build/mod.rs`; see `KINODE.md` sections 1.6, 2.2, 2.3 and 2.5):
//!
//! 1. For every crate of every fixture package, write `<crate>/target/wit/`: `kinode.wit` v1.0.0
//!    (taken from the kinode_process_lib 1.0.1 crate, never downloaded) plus the package's own
//!    `api/*.wit` plus the `api/*.wit` of its `dependencies`, transitively. Files are rewritten
//!    only when their content changes, so cargo's incremental build stays warm.
//! 2. One `cargo build --release --locked --target wasm32-wasip1` over the fixture workspace, in
//!    its own target directory `<root target>/fixtures/cargo`.
//! 3. Componentize every core module with wit-component's `ComponentEncoder` and the wasmtime
//!    27.0.0 WASI preview1 reactor adapter, validation on. The file name is the crate's library
//!    name in kebab case (`mathlib_api` -> `mathlib-api.wasm`).
//! 4. Classify by the decoded component type: a component with any export other than `init` is an
//!    exporter and goes into the package's `api.zip`, never into `pkg/`; every other component goes
//!    into `pkg/`.
//! 5. `api.zip` = `api/*` + exporters + `api_includes` (flat, by file name; a path under `pkg/` may
//!    name a component built in step 3); the package zip = the source `pkg/` (manifest.json,
//!    scripts.json) + the non-exporter components + `api.zip`. Zips are written kit-style: sorted
//!    entries, explicit directory entries, Deflated, unix mode 0o755, mtime 2023-06-19, so they are
//!    reproducible.
//!
//! Outputs, under `<root target>/fixtures/` (see [`out_dir`]):
//!
//! - `packages/<name>:test.os.zip`: the installable (unlinked) package;
//! - `packages/<name>:test.os.metadata.json`: a copy of its `metadata.json`;
//! - `apis/<name>:test.os-api.zip`: a copy of the `api.zip` inside the package zip;
//! - `components/<name>:test.os/<file>.wasm`: every component built for the package (exporters
//!   included).
//!
//! Nested cargo builds show cargo's own progress (its `Compiling` lines and progress bar) on stderr
//! when [`show_progress`] asked for it, when `LINKER_FIXTURES_VERBOSE` is set, or when stderr is a
//! terminal and the build takes more than two seconds; otherwise it is captured and quoted only if
//! the build fails. Set `LINKER_FIXTURES_VERBOSE=1` to also see every phase's duration.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Cursor, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use wit_component::{ComponentEncoder, DecodedWasm};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

pub mod expect;
mod node_package;

pub use node_package::{linker_package, LinkerPackage, LINKER_PACKAGE};

/// The publisher of every fixture package.
pub const PUBLISHER: &str = "test.os";

/// The Rust target the fixtures are built for.
pub const TARGET: &str = "wasm32-wasip1";

/// The crate whose `kinode-wit/kinode.wit` (v1.0.0) the fixtures are built against, and its exact
/// version.
const PROCESS_LIB: (&str, &str) = ("kinode_process_lib", "1.0.1");

/// The name under which core modules import WASI preview1, and so the adapter's name.
const ADAPTER_NAME: &str = "wasi_snapshot_preview1";

/// The built fixtures: where every output is. Returned by [`build`].
#[derive(Debug)]
pub struct Fixtures {
    dir: PathBuf,
    names: Vec<String>,
    components: BTreeMap<String, Vec<Component>>,
    kinode_wit: PathBuf,
}

/// One component built for a fixture package, as decoded from its component type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// File name, kebab case, e.g. `mathlib-api.wasm`.
    pub file: String,
    /// The cargo package that was compiled, e.g. `mathlib_api`.
    pub crate_name: String,
    /// True if the component exports anything other than `init`: it went into `api.zip`, not
    /// `pkg/`.
    pub exporter: bool,
    /// World import names, e.g. `kinode:process/mathlib@1.0.0`, `wasi:io/streams@0.2.2`, in world
    /// order.
    pub imports: Vec<String>,
    /// World export names, e.g. `init` or `kinode:process/mathlib@1.0.0`, in world order.
    pub exports: Vec<String>,
    /// Where the component is: `<out>/components/<name>:test.os/<file>`.
    pub path: PathBuf,
}

impl Fixtures {
    /// The output directory, `<root target>/fixtures` (see [`out_dir`]).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fixture package names (`mathlib`, `app`, ...), sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The package id of a fixture: `<name>:test.os`, and for a later version `<name>.v<N>`
    /// also `<name>:test.os`.
    pub fn id(&self, name: &str) -> String {
        format!("{}:{PUBLISHER}", package_name(name))
    }

    /// The unlinked package zip: `<out>/packages/<name>:test.os.zip` (the contents of `pkg/`).
    pub fn package(&self, name: &str) -> PathBuf {
        self.dir
            .join("packages")
            .join(format!("{}.zip", package_id(name)))
    }

    /// The package's API zip (a copy of its `pkg/api.zip`): `<out>/apis/<name>:test.os-api.zip`.
    pub fn api(&self, name: &str) -> PathBuf {
        self.dir
            .join("apis")
            .join(format!("{}-api.zip", package_id(name)))
    }

    /// A copy of the package's `metadata.json`: `<out>/packages/<name>:test.os.metadata.json`.
    pub fn metadata(&self, name: &str) -> PathBuf {
        self.dir
            .join("packages")
            .join(format!("{}.metadata.json", package_id(name)))
    }

    /// A component built for a package, exporters included:
    /// `<out>/components/<name>:test.os/<file>`, with `file` such as `app.wasm` or
    /// `mathlib-api.wasm`.
    pub fn component(&self, name: &str, file: &str) -> PathBuf {
        self.dir
            .join("components")
            .join(package_id(name))
            .join(file)
    }

    /// The components built for a package with their decoded imports and exports (empty for an
    /// unknown name).
    pub fn components(&self, name: &str) -> &[Component] {
        self.components.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every output file: package zips, API zips, metadata copies and components.
    pub fn outputs(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for name in &self.names {
            paths.extend([self.package(name), self.api(name), self.metadata(name)]);
            paths.extend(self.components(name).iter().map(|c| c.path.clone()));
        }
        paths
    }

    /// The `kinode.wit` (v1.0.0) the fixtures were built against (see [`kinode_wit`]).
    pub fn kinode_wit(&self) -> &Path {
        &self.kinode_wit
    }
}

/// `<name>:test.os`: the stem of a fixture's output files (`<name>` may be a later version's
/// `<package>.v<N>`).
fn package_id(name: &str) -> String {
    format!("{name}:{PUBLISHER}")
}

/// The package name of a fixture: its directory name, without the `.v<N>` of a later version.
fn package_name(name: &str) -> &str {
    name.split_once(".v").map_or(name, |(base, _)| base)
}

/// The repository root (found from this crate's manifest directory, `<repo>/test/build`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| manifest.join("../.."), Path::to_path_buf)
}

/// The fixture sources: `<repo>/test/fixtures`, a cargo workspace of its own.
pub fn source_dir() -> PathBuf {
    repo_root().join("test").join("fixtures")
}

/// The root workspace's target directory: `CARGO_TARGET_DIR` if set (a relative value is taken
/// relative to the repository root), else `<repo>/target`. `build.target-dir` in cargo config files
/// is not consulted.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join("target"),
    }
}

/// Where [`build`] writes its outputs: `<root target>/fixtures`. The fixture workspace's own cargo
/// target directory is `<root target>/fixtures/cargo`, never the root target directory itself (a
/// nested cargo on the directory an outer `cargo test` holds would deadlock).
pub fn out_dir() -> PathBuf {
    target_dir().join("fixtures")
}

/// The path of kinode_process_lib 1.0.1's `kinode-wit/kinode.wit` (package `kinode:process@1.0.0`),
/// found with `cargo metadata` over the fixture workspace (which downloads the crate from crates.io
/// if needed; nothing is fetched from GitHub). The answer is cached in `<out>/kinode-wit.path` and
/// reused while that file exists.
pub fn kinode_wit() -> Result<PathBuf> {
    find_kinode_wit()
}

/// Builds every fixture once per process and returns where the outputs are. Safe to call from many
/// threads and many processes at once: cargo serialises builds on its target directory, and every
/// output file is replaced atomically, and only when its content changes. A second run is cheap
/// (cargo has nothing to do).
pub fn build() -> Result<&'static Fixtures> {
    static BUILT: OnceLock<Fixtures> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    if let Some(fixtures) = BUILT.get() {
        return Ok(fixtures);
    }
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(fixtures) = BUILT.get() {
        return Ok(fixtures);
    }
    let fixtures = build_uncached().context("building the linker fixtures (test/fixtures)")?;
    Ok(BUILT.get_or_init(|| fixtures))
}

// -------------------------------------------------------------------------------------------------
// The fixture workspace, as `cargo metadata` sees it.

/// A fixture crate (process, script or API exporter).
#[derive(Clone, Debug)]
struct Crate {
    /// The cargo package name.
    name: String,
    /// The cdylib's library name (snake case): the core module is `<lib>.wasm`.
    lib: String,
    /// The crate directory `<fixtures>/<package>/<crate>`.
    dir: PathBuf,
    /// The fixture package it belongs to (the name of the crate directory's parent).
    package: String,
}

impl Crate {
    /// The component's file name: the library name in kebab case, as kit names `pkg/*.wasm`.
    fn file(&self) -> String {
        format!("{}.wasm", self.lib.replace('_', "-"))
    }
}

#[derive(Debug)]
struct Workspace {
    crates: Vec<Crate>,
}

#[derive(Deserialize)]
struct CargoMetadata {
    packages: Vec<CargoPackage>,
    workspace_members: Vec<String>,
}

#[derive(Deserialize)]
struct CargoPackage {
    id: String,
    name: String,
    version: String,
    manifest_path: PathBuf,
    targets: Vec<CargoTarget>,
}

#[derive(Deserialize)]
struct CargoTarget {
    name: String,
    kind: Vec<String>,
}

/// `cargo metadata` over the fixture workspace; `no_deps` skips dependency resolution (20 ms
/// instead of 400 ms).
fn cargo_metadata(no_deps: bool) -> Result<CargoMetadata> {
    let mut command = cargo_command();
    command
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(source_dir().join("Cargo.toml"));
    if no_deps {
        command.arg("--no-deps");
    }
    let stdout = run(command, "cargo metadata")?;
    serde_json::from_slice(&stdout).context("parsing `cargo metadata` output")
}

fn find_kinode_wit() -> Result<PathBuf> {
    static KINODE_WIT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = KINODE_WIT.get() {
        return Ok(path.clone());
    }
    let (lib_name, lib_version) = PROCESS_LIB;
    let suffix = Path::new(&format!("{lib_name}-{lib_version}"))
        .join("kinode-wit")
        .join("kinode.wit");
    // What an earlier run found, if it is still there: saves a full `cargo metadata`.
    let cache = out_dir().join("kinode-wit.path");
    let cached = fs::read_to_string(&cache).map(|text| PathBuf::from(text.trim()));
    let path = match cached {
        Ok(path) if path.ends_with(&suffix) && path.is_file() => path,
        _ => {
            let metadata = cargo_metadata(false)?;
            let process_lib = metadata
                .packages
                .iter()
                .find(|p| p.name == lib_name && p.version == lib_version)
                .ok_or_else(|| {
                    anyhow!("{lib_name} {lib_version} is not a dependency of the fixture workspace")
                })?;
            let path = process_lib
                .manifest_path
                .parent()
                .map(|dir| dir.join("kinode-wit").join("kinode.wit"))
                .ok_or_else(|| {
                    anyhow!("bad manifest path {}", process_lib.manifest_path.display())
                })?;
            if !path.is_file() {
                bail!("{} does not exist", path.display());
            }
            write_if_changed(&cache, path.to_string_lossy().as_bytes())?;
            path
        }
    };
    Ok(KINODE_WIT.get_or_init(|| path).clone())
}

fn workspace() -> Result<&'static Workspace> {
    static WORKSPACE: OnceLock<Workspace> = OnceLock::new();
    if let Some(workspace) = WORKSPACE.get() {
        return Ok(workspace);
    }
    let workspace = load_workspace()?;
    Ok(WORKSPACE.get_or_init(|| workspace))
}

fn load_workspace() -> Result<Workspace> {
    let metadata = cargo_metadata(true)?;
    let members: BTreeSet<&str> = metadata
        .workspace_members
        .iter()
        .map(String::as_str)
        .collect();
    let mut crates = Vec::new();
    for package in metadata
        .packages
        .iter()
        .filter(|p| members.contains(p.id.as_str()))
    {
        let lib = package
            .targets
            .iter()
            .find(|t| t.kind.iter().any(|k| k == "cdylib"))
            .ok_or_else(|| anyhow!("fixture crate {} has no cdylib target", package.name))?;
        let dir = package
            .manifest_path
            .parent()
            .ok_or_else(|| anyhow!("bad manifest path {}", package.manifest_path.display()))?
            .to_path_buf();
        let package_dir = dir
            .parent()
            .ok_or_else(|| anyhow!("bad crate dir {}", dir.display()))?;
        let fixture = package_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("bad package dir {}", package_dir.display()))?
            .to_string();
        if !package_dir.join("metadata.json").is_file() {
            bail!(
                "fixture crate {} must live in <package>/<crate>/ next to <package>/metadata.json",
                dir.display()
            );
        }
        crates.push(Crate {
            name: package.name.clone(),
            lib: lib.name.replace('-', "_"),
            dir,
            package: fixture,
        });
    }
    crates.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(Workspace { crates })
}

// -------------------------------------------------------------------------------------------------
// Fixture packages.

/// `Erc721Metadata`, as much of it as the build needs; the required fields of `Erc721Properties`
/// are required here too, so a fixture's metadata.json stays valid for the app store.
#[derive(Deserialize)]
struct Erc721Metadata {
    properties: Erc721Properties,
}

#[derive(Deserialize)]
struct Erc721Properties {
    package_name: String,
    publisher: String,
    current_version: String,
    #[allow(dead_code)] // required by the real type
    mirrors: Vec<String>,
    #[allow(dead_code)] // required by the real type
    code_hashes: BTreeMap<String, String>,
    wit_version: Option<u32>,
    dependencies: Option<Vec<String>>,
    api_includes: Option<Vec<PathBuf>>,
}

struct Package {
    name: String,
    dir: PathBuf,
    metadata: Vec<u8>,
    properties: Erc721Properties,
    crates: Vec<Crate>,
}

impl Package {
    /// Dependencies as kit reads them: only when the package has an `api/` directory (KINODE.md
    /// 1.2).
    fn dependencies(&self) -> Result<Vec<String>> {
        if !self.dir.join("api").is_dir() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for dependency in self.properties.dependencies.iter().flatten() {
            let (name, publisher) = dependency.split_once(':').ok_or_else(|| {
                anyhow!(
                    "{}: dependency {dependency:?} is not a package id",
                    self.name
                )
            })?;
            if publisher != PUBLISHER {
                bail!(
                    "{}: dependency {dependency:?} is not a fixture (publisher {PUBLISHER})",
                    self.name
                );
            }
            names.push(name.to_string());
        }
        Ok(names)
    }
}

fn load_packages(crates: &[Crate]) -> Result<BTreeMap<String, Package>> {
    let mut packages = BTreeMap::new();
    for entry in fs::read_dir(source_dir()).context("reading test/fixtures")? {
        let dir = entry?.path();
        let metadata_path = dir.join("metadata.json");
        if !metadata_path.is_file() {
            continue;
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("bad fixture dir {}", dir.display()))?
            .to_string();
        let metadata = fs::read(&metadata_path)
            .with_context(|| format!("reading {}", metadata_path.display()))?;
        let parsed: Erc721Metadata = serde_json::from_slice(&metadata)
            .with_context(|| format!("{} is not an Erc721Metadata", metadata_path.display()))?;
        let properties = parsed.properties;
        if properties.package_name != package_name(&name) || properties.publisher != PUBLISHER {
            bail!(
                "{}: package id must be {}:{PUBLISHER}",
                metadata_path.display(),
                package_name(&name)
            );
        }
        if properties.wit_version != Some(1) || properties.current_version.is_empty() {
            bail!(
                "{}: wit_version must be 1 and current_version set",
                metadata_path.display()
            );
        }
        if !dir.join("pkg").is_dir() {
            bail!(
                "{}: no pkg/ directory (kit refuses to build it)",
                dir.display()
            );
        }
        let own: Vec<Crate> = crates
            .iter()
            .filter(|c| c.package == name)
            .cloned()
            .collect();
        packages.insert(
            name.clone(),
            Package {
                name,
                dir,
                metadata,
                properties,
                crates: own,
            },
        );
    }
    for krate in crates {
        if !packages.contains_key(&krate.package) {
            bail!("crate {} is not in a fixture package", krate.name);
        }
    }
    Ok(packages)
}

/// The package and all its dependencies, transitively (itself included, once).
fn closure<'a>(
    packages: &'a BTreeMap<String, Package>,
    root: &'a Package,
) -> Result<Vec<&'a Package>> {
    let mut seen = BTreeSet::from([root.name.as_str()]);
    let mut order = vec![root];
    let mut next = 0;
    while let Some(package) = order.get(next).copied() {
        next += 1;
        for dependency in package.dependencies()? {
            let found = packages.get(&dependency).ok_or_else(|| {
                anyhow!(
                    "{}: unknown dependency {}",
                    package.name,
                    package_id(&dependency)
                )
            })?;
            if seen.insert(found.name.as_str()) {
                order.push(found);
            }
        }
    }
    Ok(order)
}

/// Every file of `dir` (recursively), keyed by its `/`-separated path relative to `dir`.
fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, files)?;
            } else {
                let relative = path.strip_prefix(root)?;
                let name: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                files.insert(name.join("/"), fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut files = BTreeMap::new();
    if dir.is_dir() {
        walk(dir, dir, &mut files)?;
    }
    Ok(files)
}

/// The WIT files of `<crate>/target/wit/`: kinode.wit plus the `api/*.wit` of the package and its
/// dependencies.
fn wit_files(kinode_wit: &[u8], packages: &[&Package]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::from([("kinode.wit".to_string(), kinode_wit.to_vec())]);
    for package in packages {
        for (name, bytes) in read_tree(&package.dir.join("api"))? {
            if name.contains('/') || !name.ends_with(".wit") {
                continue;
            }
            match files.get(&name) {
                Some(existing) if *existing != bytes => {
                    bail!(
                        "{}: two different API files are named {name}",
                        packages[0].name
                    )
                }
                _ => {
                    files.insert(name, bytes);
                }
            }
        }
    }
    Ok(files)
}

// -------------------------------------------------------------------------------------------------
// The build.

fn verbose() -> bool {
    std::env::var_os("LINKER_FIXTURES_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Prints a phase's duration when `LINKER_FIXTURES_VERBOSE` is set.
fn phase(what: &str, start: Instant) {
    if verbose() {
        eprintln!(
            "linker-fixtures: {what} in {:.0} ms",
            start.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Set by [`show_progress`].
static PROGRESS: AtomicBool = AtomicBool::new(false);

/// Makes nested cargo builds show cargo's progress on stderr even when stderr is not a terminal
/// (the demo asks for it, so that a first build that takes minutes is seen to move).
pub fn show_progress(show: bool) {
    PROGRESS.store(show, Ordering::Relaxed);
}

fn build_uncached() -> Result<Fixtures> {
    let start = Instant::now();
    let workspace = workspace()?;
    let kinode_wit_path = find_kinode_wit()?;
    phase("cargo metadata", start);
    let packages = load_packages(&workspace.crates)?;
    let kinode_wit = fs::read(&kinode_wit_path)
        .with_context(|| format!("reading {}", kinode_wit_path.display()))?;

    // 1. target/wit for every crate.
    for package in packages.values() {
        let wits = wit_files(&kinode_wit, &closure(&packages, package)?)?;
        for krate in &package.crates {
            sync_dir(&krate.dir.join("target").join("wit"), &wits, ".wit")?;
        }
    }

    // 2. One cargo build.
    let out = out_dir();
    let cargo_target = out.join("cargo");
    let start = Instant::now();
    cargo_build(&cargo_target)?;
    phase("cargo build", start);
    let release = cargo_target.join(TARGET).join("release");

    let mut fixtures = Fixtures {
        dir: out.clone(),
        names: packages.keys().cloned().collect(),
        components: BTreeMap::new(),
        kinode_wit: kinode_wit_path,
    };

    // Nothing changed since the last run (same builder, same core modules, same package files,
    // outputs all there): reuse its outputs.
    let start = Instant::now();
    let stamp_path = out.join("stamp.json");
    let key = stamp_key(&packages, &release)?;
    if let Some(stamp) = fs::read(&stamp_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Stamp>(&b).ok())
    {
        if stamp.key == key {
            fixtures.components = stamp.components;
            if fixtures.outputs().iter().all(|path| path.is_file()) {
                phase("checked: outputs up to date", start);
                return Ok(fixtures);
            }
        }
    }

    // 3-5. Componentize, classify, pack.
    let mut components = BTreeMap::new();
    for package in packages.values() {
        let start = Instant::now();
        let built = build_package(package, &release, &out)?;
        phase(
            &format!("componentized and packed {}", package_id(&package.name)),
            start,
        );
        components.insert(package.name.clone(), built);
    }
    fixtures.components = components;
    let stamp = Stamp {
        key,
        components: fixtures.components.clone(),
    };
    write_if_changed(&stamp_path, &serde_json::to_vec_pretty(&stamp)?)?;
    Ok(fixtures)
}

/// What the last build produced, and from which inputs.
#[derive(Serialize, Deserialize)]
struct Stamp {
    key: String,
    components: BTreeMap<String, Vec<Component>>,
}

/// A hash of every input of steps 3-5: this builder's source, the adapter, each package's
/// metadata.json, pkg/ and api/ files and api_includes from outside pkg/, and the size and mtime of
/// each core module (cargo rewrites a module whenever it relinks it).
fn stamp_key(packages: &BTreeMap<String, Package>, release: &Path) -> Result<String> {
    let mut hasher = DefaultHasher::new();
    include_str!("lib.rs").hash(&mut hasher);
    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER
        .hash(&mut hasher);
    for package in packages.values() {
        package.name.hash(&mut hasher);
        package.metadata.hash(&mut hasher);
        read_tree(&package.dir.join("pkg"))?.hash(&mut hasher);
        read_tree(&package.dir.join("api"))?.hash(&mut hasher);
        for include in package.properties.api_includes.iter().flatten() {
            if !include.starts_with("pkg") {
                fs::read(package.dir.join(include)).ok().hash(&mut hasher);
            }
        }
        for krate in &package.crates {
            let module = release.join(format!("{}.wasm", krate.lib));
            let metadata =
                fs::metadata(&module).with_context(|| format!("reading {}", module.display()))?;
            module.hash(&mut hasher);
            metadata.len().hash(&mut hasher);
            metadata.modified()?.hash(&mut hasher);
        }
    }
    Ok(format!("{:016x}", hasher.finish()))
}

fn build_package(package: &Package, release: &Path, out: &Path) -> Result<Vec<Component>> {
    let id = package_id(&package.name);
    let components_dir = out.join("components").join(&id);

    // Componentize (in parallel: bigapp alone takes a while to validate).
    let encoded: Vec<Result<(Vec<u8>, Component)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = package
            .crates
            .iter()
            .map(|krate| scope.spawn(|| build_component(krate, release, &components_dir)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("componentizing thread panicked")))
            })
            .collect()
    });
    let mut built = Vec::new();
    let mut wasm = BTreeMap::new();
    for result in encoded {
        let (bytes, component) = result?;
        wasm.insert(component.file.clone(), bytes);
        built.push(component);
    }
    let files: BTreeMap<String, Vec<u8>> = built
        .iter()
        .filter_map(|c| wasm.get(&c.file).map(|b| (c.file.clone(), b.clone())))
        .collect();
    sync_dir(&components_dir, &files, ".wasm")?;

    // pkg/: the source pkg/ plus every non-exporter component.
    let mut pkg = read_tree(&package.dir.join("pkg"))?;
    for component in built.iter().filter(|c| !c.exporter) {
        insert_new(
            &mut pkg,
            &component.file,
            wasm[&component.file].clone(),
            &id,
        )?;
    }

    // api.zip: api/* + exporters + api_includes.
    let mut api: BTreeMap<String, Vec<u8>> = read_tree(&package.dir.join("api"))?
        .into_iter()
        .filter(|(name, _)| !name.contains('/'))
        .collect();
    for component in built.iter().filter(|c| c.exporter) {
        insert_new(
            &mut api,
            &component.file,
            wasm[&component.file].clone(),
            &id,
        )?;
    }
    for include in package.properties.api_includes.iter().flatten() {
        let file_name = include
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{id}: bad api_includes entry {}", include.display()))?;
        let in_pkg = include
            .strip_prefix("pkg")
            .ok()
            .and_then(|p| p.to_str())
            .and_then(|p| pkg.get(p));
        let bytes = match in_pkg {
            Some(bytes) => bytes.clone(),
            None => {
                let path = package.dir.join(include);
                fs::read(&path)
                    .with_context(|| format!("{id}: api_includes entry {}", path.display()))?
            }
        };
        insert_new(&mut api, file_name, bytes, &id)?;
    }
    let api_zip = zip_files(&api)?;
    insert_new(&mut pkg, "api.zip", api_zip.clone(), &id)?;
    let package_zip = zip_files(&pkg)?;

    write_if_changed(&out.join("apis").join(format!("{id}-api.zip")), &api_zip)?;
    write_if_changed(
        &out.join("packages").join(format!("{id}.metadata.json")),
        &package.metadata,
    )?;
    write_if_changed(
        &out.join("packages").join(format!("{id}.zip")),
        &package_zip,
    )?;
    Ok(built)
}

fn insert_new(
    files: &mut BTreeMap<String, Vec<u8>>,
    name: &str,
    bytes: Vec<u8>,
    id: &str,
) -> Result<()> {
    if files.insert(name.to_string(), bytes).is_some() {
        bail!("{id}: two files named {name}");
    }
    Ok(())
}

fn build_component(
    krate: &Crate,
    release: &Path,
    components_dir: &Path,
) -> Result<(Vec<u8>, Component)> {
    let module_path = release.join(format!("{}.wasm", krate.lib));
    let module =
        fs::read(&module_path).with_context(|| format!("reading {}", module_path.display()))?;
    let bytes = componentize(&module)
        .with_context(|| format!("componentizing {}", module_path.display()))?;
    let (imports, exports) =
        world_of(&bytes).with_context(|| format!("decoding component {}", krate.file()))?;
    let file = krate.file();
    let component = Component {
        exporter: exports.iter().any(|e| e != "init"),
        path: components_dir.join(&file),
        file,
        crate_name: krate.name.clone(),
        imports,
        exports,
    };
    Ok((bytes, component))
}

/// A core module to a component, as `wasm-tools component new --adapt
/// wasi_snapshot_preview1.reactor.wasm` does, with the reactor adapter of wasmtime 27.0.0.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    ComponentEncoder::default()
        .module(module)?
        .adapter(
            ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
}

/// The import and export names of a component's world (`kinode:process/mathlib@1.0.0`, `init`,
/// ...), decoded with wit-component.
pub fn world_of(component: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    match wit_component::decode(component)? {
        DecodedWasm::Component(resolve, world) => {
            let world = &resolve.worlds[world];
            let names =
                |items: &wit_parser::IndexMap<wit_parser::WorldKey, wit_parser::WorldItem>| {
                    items
                        .keys()
                        .map(|key| resolve.name_world_key(key))
                        .collect::<Vec<_>>()
                };
            Ok((names(&world.imports), names(&world.exports)))
        }
        DecodedWasm::WitPackage(..) => bail!("a WIT package, not a component"),
    }
}

// -------------------------------------------------------------------------------------------------
// cargo.

fn cargo_program() -> OsString {
    if let Some(cargo) = std::env::var_os("CARGO") {
        return cargo;
    }
    let built_with = Path::new(env!("CARGO"));
    if built_with.is_file() {
        return built_with.into();
    }
    "cargo".into()
}

/// A cargo command for the fixture workspace, without the outer build's target settings and host
/// flags.
///
/// Unless `RUSTC` is set, it is pinned to the `rustc` beside the chosen cargo: rustup's `rustc`
/// proxy picks its toolchain from the working directory, and cargo compiles each registry crate in
/// that crate's own directory, so a dependency that ships a `rust-toolchain.toml` (convert_case
/// 0.10 asks for 1.83.0) would otherwise switch toolchains in the middle of the build.
fn cargo_command() -> Command {
    let program = cargo_program();
    let mut command = Command::new(&program);
    command.current_dir(source_dir());
    if std::env::var_os("RUSTC").is_none() {
        let rustc = Path::new(&program)
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(format!("rustc{}", std::env::consts::EXE_SUFFIX)))
            .filter(|rustc| rustc.is_file());
        if let Some(rustc) = rustc {
            command.env("RUSTC", rustc);
        }
    }
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs a command, returning its stdout; its stderr is echoed if `LINKER_FIXTURES_VERBOSE` is set,
/// and quoted in the error if it fails.
fn run(command: Command, what: &str) -> Result<Vec<u8>> {
    let echo = if verbose() { Echo::Now } else { Echo::Never };
    run_echoing(command, what, echo)
}

/// How long a nested build runs before its progress is shown, unless [`show_progress`] asked for
/// it at once: a build with nothing to do stays quiet.
const QUIET_FOR: Duration = Duration::from_secs(2);

/// Runs a cargo build like [`run`]. When builds show their progress and the build outlasts
/// [`QUIET_FOR`] (at once, with [`show_progress`] or `LINKER_FIXTURES_VERBOSE`), a line names the
/// build and cargo's own progress follows as it comes: its `Compiling` lines and, with
/// `CARGO_TERM_PROGRESS_WHEN=always`, its progress bar.
fn run_build(mut command: Command, what: &str) -> Result<Vec<u8>> {
    let echo = if PROGRESS.load(Ordering::Relaxed) || verbose() {
        Echo::Now
    } else if std::io::stderr().is_terminal() {
        Echo::After(QUIET_FOR)
    } else {
        Echo::Never
    };
    if echo != Echo::Never {
        for (var, value) in [
            ("CARGO_TERM_PROGRESS_WHEN", "always"),
            ("CARGO_TERM_PROGRESS_WIDTH", "100"),
        ] {
            if std::env::var_os(var).is_none() {
                command.env(var, value);
            }
        }
    }
    run_echoing(command, what, echo)
}

/// When a command's stderr is copied to ours.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Echo {
    Never,
    Now,
    /// Once the command has run this long; what it wrote before comes first.
    After(Duration),
}

impl Echo {
    /// Whether copying should start, for a command started at `start`.
    fn due(self, start: Instant) -> bool {
        match self {
            Echo::Never => false,
            Echo::Now => true,
            Echo::After(quiet) => start.elapsed() >= quiet,
        }
    }
}

/// Runs a command, returning its stdout; its stderr is copied to ours as it comes (see [`Echo`]),
/// headed by a line naming `what` and followed by one with the time taken, and quoted in the error
/// if it fails.
fn run_echoing(mut command: Command, what: &str, echo: Echo) -> Result<Vec<u8>> {
    let start = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what} ({command:?})"))?;
    let mut stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe"))?;
    let header = format!("linker-fixtures: {what}\n");
    // Raw chunks rather than lines: cargo redraws its progress bar with `\r`.
    let copier = std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut echoing = false;
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&chunk[..n]);
            let mut out = std::io::stderr().lock();
            if echoing {
                let _ = out.write_all(&chunk[..n]);
            } else if echo.due(start) {
                echoing = true;
                let _ = out.write_all(header.as_bytes());
                let _ = out.write_all(&text);
            }
            let _ = out.flush();
        }
        (String::from_utf8_lossy(&text).into_owned(), echoing)
    });
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout)?;
    }
    let status = child.wait()?;
    let (stderr, echoed) = copier.join().unwrap_or_default();
    if echoed {
        // Straight to stderr like cargo's output, which a test harness does not capture either.
        let _ = writeln!(
            std::io::stderr(),
            "linker-fixtures: {what}: {} in {:.1} s",
            if status.success() { "done" } else { "failed" },
            start.elapsed().as_secs_f64()
        );
    }
    if !status.success() {
        if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
        {
            bail!(
                "the {TARGET} target is not installed: run `rustup target add {TARGET}`\n{stderr}"
            );
        }
        bail!("{what} failed ({status}):\n{stderr}");
    }
    Ok(stdout)
}

fn cargo_build(cargo_target: &Path) -> Result<()> {
    let mut command = cargo_command();
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(source_dir().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(cargo_target);
    run_build(
        command,
        "cargo build of the fixture packages (wasm32-wasip1, release)",
    )?;
    Ok(())
}

// -------------------------------------------------------------------------------------------------
// Files.

/// Writes `bytes` to `path` unless it already holds exactly them (so mtimes, and cargo's
/// fingerprints, stay put), atomically (a temporary file renamed into place), so concurrent
/// builders and readers never see a partial file.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("no parent: {}", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Makes `dir` hold `files`: writes what changed and removes other files ending in `extension`
/// (only those, so a concurrent builder's temporary files are left alone).
fn sync_dir(dir: &Path, files: &BTreeMap<String, Vec<u8>>, extension: &str) -> Result<()> {
    for (name, bytes) in files {
        write_if_changed(&dir.join(name), bytes)?;
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(extension) && !files.contains_key(&name) && entry.file_type()?.is_file() {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
    }
    Ok(())
}

/// A zip the way kit's `zip_directory` writes one: entries sorted (depth first, by name), a
/// directory entry before its contents, Deflated, unix mode 0o755, mtime 2023-06-19 00:00:00.
pub fn zip_files(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .unix_permissions(0o755)
        .last_modified_time(DateTime::from_date_and_time(2023, 6, 19, 0, 0, 0)?);
    let mut entries: BTreeMap<Vec<&str>, Option<&[u8]>> = BTreeMap::new();
    for (name, bytes) in files {
        let parts: Vec<&str> = name.split('/').collect();
        for depth in 1..parts.len() {
            entries.entry(parts[..depth].to_vec()).or_insert(None);
        }
        entries.insert(parts, Some(bytes));
    }
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (parts, bytes) in entries {
        let name = parts.join("/");
        match bytes {
            None => zip.add_directory(name, options)?,
            Some(bytes) => {
                zip.start_file(name, options)?;
                zip.write_all(bytes)?;
            }
        }
    }
    Ok(zip.finish()?.into_inner())
}
