//! The linker's own drives: the link cache, the mirror of every API zip it consumed, install
//! records, and the backup of the version an install replaces.
//!
//! - `/linker:sys/cache/{key}.zip` and `{key}.json`: a linked package and its report, keyed by
//!   the SHA-256 of the linker version and every input (see [`cache_key`]).
//! - `/linker:sys/apis/{pkg}/{sha256}.zip`, and `/linker:sys/apis/{pkg}/current` holding the hash
//!   of the one consumed last.
//! - `/linker:sys/packages/{pkg}.json`: what the linker installed for a package ([`Record`]).
//! - `/linker:sys/packages/auto.json`: auto-linking's switch and what it knows of every package
//!   it looked at ([`Auto`]).
//! - `/linker:sys/backup/{pkg}.zip`: the files of the version being replaced, during an install.
//! - `/linker:sys/journal/{pkg}.json`: the install of a package under way ([`Journal`]), written
//!   after its backup and before anything changes, removed when the install ends either way.
//! - `/linker:sys/relink/{pkg}.json`: the dependents of a library still to be re-linked against
//!   it ([`Relinks`]), written before the library's install begins, removed once they all were.
//!
//! Outside its drives the linker leaves one file, [`MARKER`], in every `/{pkg}/pkg` it has
//! handled: an install by anyone else replaces `/{pkg}/pkg` whole, so a missing marker is how
//! auto-linking notices it.

use kinode_process_lib::vfs::VfsAction;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::StepFailure;
use crate::inputs::Named;
use crate::node;

const CACHE: &str = "/linker:sys/cache";
const APIS: &str = "/linker:sys/apis";
const PACKAGES: &str = "/linker:sys/packages";
const BACKUP: &str = "/linker:sys/backup";
const JOURNAL: &str = "/linker:sys/journal";
const RELINK: &str = "/linker:sys/relink";
/// For every package the linker installed, the APIs it was linked against.
const INDEX: &str = "/linker:sys/packages/index.json";
/// Auto-linking's state.
const AUTO: &str = "/linker:sys/packages/auto.json";
/// The network settings: whether to fetch missing libraries and mirror them.
const NETWORK: &str = "/linker:sys/packages/network.json";
/// The file in a mirrored API's directory saying it was fetched from the network.
const FETCHED: &str = "fetched";
/// The file the linker leaves in `/{pkg}/pkg` once it has handled that install of the package.
pub const MARKER: &str = ".linker";

thread_local! {
    /// This start of the linker (milliseconds since the epoch) and how many times it changed a
    /// record since: see [`version`].
    static VERSION: std::cell::Cell<(u128, u64)> = std::cell::Cell::new((
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis()),
        0,
    ));
}

/// Names the state of the linker's records: it changes whenever the linker writes or removes
/// one (its page polls it to know when to read them again).
pub fn version() -> String {
    let (start, changes) = VERSION.with(std::cell::Cell::get);
    format!("{start}.{changes}")
}

fn changed() {
    VERSION.with(|version| {
        let (start, changes) = version.get();
        version.set((start, changes + 1));
    });
}

/// Creates the linker's drives (the linker may do anything in its own package's drives).
pub fn prepare() -> Result<(), StepFailure> {
    for drive in [CACHE, APIS, PACKAGES, BACKUP, JOURNAL, RELINK] {
        node::expect_ok(drive, VfsAction::CreateDrive, None)?;
    }
    Ok(())
}

/// Lowercase hex SHA-256: the core's, so that [`linker_core::bytes_hashed`] counts the
/// process's hashing too.
pub use linker_core::sha256_hex;

/// The generation of the rules links are made by. It moves whenever the linking core accepts,
/// refuses or produces something else for the same inputs while the linker's version stays, so
/// that links an older linker cached are not served. 2: every `.wasm` is validated whole, so a
/// package an older linker linked may now be refused. 3: an entry's hash is its `link.json`'s, not
/// the whole zip's.
const CACHE_GENERATION: u32 = 3;

/// The cache key of a link: the linker version and [`CACHE_GENERATION`], the package by name and
/// hash, and every API by name, hash and why it was chosen, in order (names and sources appear
/// in the report, so they are part of the result).
pub fn cache_key(package: (&str, &str), apis: &[(&str, &str, linker_core::Source)]) -> String {
    let (name, sha256) = package;
    let mut text = format!(
        "kinode-link {} cache {CACHE_GENERATION}\n{name}\t{sha256}\n",
        linker_core::VERSION
    );
    for (name, sha256, source) in apis {
        text.push_str(&format!("{name}\t{sha256}\t{source:?}\n"));
    }
    sha256_hex(text.as_bytes())
}

/// A cached link, if there is one whose zip is whole: the zip, its recorded hash, and the report.
///
/// The zip is written before its entry, and a write replaces a file whole, so a zip that an
/// interrupted write left behind either has no entry yet or, being shorter, not the recorded
/// length. The hash is not computed again: in Wasm that would cost as much as hashing the
/// inputs. A damaged zip of the right length is still never installed: an install reads the zip
/// back and checks every file's CRC-32.
pub fn cached(key: &str) -> Option<(Vec<u8>, String, linker_core::LinkReport)> {
    let entry: CacheEntry =
        serde_json::from_slice(&node::read_if_exists(&format!("{CACHE}/{key}.json")).ok()??)
            .ok()?;
    let zip = node::read_if_exists(&format!("{CACHE}/{key}.zip")).ok()??;
    (zip.len() as u64 == entry.len).then_some((zip, entry.sha256, entry.report))
}

/// Caches a link. A failure only costs a later re-link, so it is not an error of the request.
pub fn cache(key: &str, zip: &[u8], sha256: &str, report: &linker_core::LinkReport) {
    let entry = CacheEntry {
        sha256: sha256.to_owned(),
        len: zip.len() as u64,
        report: report.clone(),
    };
    if let Ok(json) = serde_json::to_vec(&entry) {
        let _ = node::write(&format!("{CACHE}/{key}.zip"), zip.to_vec())
            .and_then(|()| node::write(&format!("{CACHE}/{key}.json"), json));
    }
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    /// SHA-256 of the link's `link.json`.
    sha256: String,
    /// The zip's length in bytes.
    len: u64,
    report: linker_core::LinkReport,
}

/// Whether `name` is a package id of Kimap-safe characters (so it is also a safe directory name).
pub fn is_package_id(name: &str) -> bool {
    let Some((package, publisher)) = name.split_once(':') else {
        return false;
    };
    let safe = |part: &str, extra: &[char]| {
        !part.is_empty()
            && !part.starts_with('.')
            && part.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || extra.contains(&c)
            })
    };
    safe(package, &[]) && safe(publisher, &['.'])
}

/// Mirrors an API zip the linker consumed, under its package id and hash.
pub fn mirror(api: &Named) -> Result<(), StepFailure> {
    if !is_package_id(&api.name) {
        return Ok(());
    }
    let dir = format!("{APIS}/{}", api.name);
    let file = format!("{dir}/{}.zip", api.sha256);
    if !node::is_file(&file)? {
        node::expect_ok(&dir, VfsAction::CreateDirAll, None)?;
        node::write(&file, api.bytes.clone())?;
    }
    changed();
    node::write(&format!("{dir}/current"), api.sha256.clone().into_bytes())
}

/// Marks the mirrored API of `name` as fetched from the network, at the version whose package
/// zip hashes to `version_hash`: it was never installed here, so its dependents do not miss it,
/// and a later listing of another version on chain is fetched in turn.
pub fn mark_fetched(name: &str, version_hash: &str) -> Result<(), StepFailure> {
    if !is_package_id(name) {
        return Ok(());
    }
    node::write(
        &format!("{APIS}/{name}/{FETCHED}"),
        version_hash.as_bytes().to_vec(),
    )
}

/// The version hash of `name` last fetched, if its API was fetched from the network (empty for
/// a fetch recorded before the linker kept it).
pub fn fetched_version(name: &str) -> Option<String> {
    if !is_package_id(name) {
        return None;
    }
    let marker = node::read_if_exists(&format!("{APIS}/{name}/{FETCHED}")).ok()??;
    Some(String::from_utf8_lossy(&marker).trim().to_owned())
}

/// Every library whose API was fetched from the network, with the version hash last fetched.
pub fn fetched_libraries() -> Vec<(String, String)> {
    let Ok(entries) = node::read_dir(APIS) else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|(name, _)| {
            let version = fetched_version(&name)?;
            Some((name, version))
        })
        .collect()
}

/// Whether the API of `name` was fetched from the network (and so is not missing when no package
/// on the node provides it).
pub fn was_fetched(name: &str) -> bool {
    is_package_id(name) && matches!(node::is_file(&format!("{APIS}/{name}/{FETCHED}")), Ok(true))
}

/// The mirrored API zip consumed last for `name`, if any.
pub fn mirrored(name: &str) -> Result<Option<Vec<u8>>, StepFailure> {
    let Some(sha256) = mirrored_sha256(name)? else {
        return Ok(None);
    };
    node::read_if_exists(&format!("{APIS}/{name}/{sha256}.zip"))
}

/// The SHA-256 of the mirrored API zip consumed last for `name`, if any.
pub fn mirrored_sha256(name: &str) -> Result<Option<String>, StepFailure> {
    if !is_package_id(name) {
        return Ok(None);
    }
    let current = node::read_if_exists(&format!("{APIS}/{name}/current"))?;
    Ok(current.map(|current| String::from_utf8_lossy(&current).trim().to_owned()))
}

/// The package ids the mirror has.
pub fn mirrored_names() -> Result<Vec<String>, StepFailure> {
    Ok(node::read_dir(APIS)?
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| is_package_id(name))
        .collect())
}

/// What the linker installed for a package: enough to re-link it later.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// `name:publisher`.
    pub package: String,
    /// SHA-256 of the package zip as uploaded.
    pub version_hash: String,
    /// SHA-256 of the installed `link.json`, which identifies the linked package.
    pub linked_hash: String,
    /// The package's metadata.json text, if it came with one.
    pub metadata: Option<String>,
    /// The `wit_version` its processes were started with.
    pub wit_version: Option<u32>,
    /// The API zips it was linked against, by name and hash.
    pub apis: Vec<(String, String)>,
    /// What made the linker install it.
    #[serde(default)]
    pub trigger: Trigger,
    /// The APIs the request named (the others were declared or found); `None` in records
    /// written before the linker chose APIs itself, where all of `apis` count as named.
    #[serde(default)]
    pub given: Option<Vec<String>>,
    /// The libraries fetched from the network for this link.
    #[serde(default)]
    pub fetched: Vec<crate::api::FetchedLibrary>,
}

/// What made the linker link a package (the API's `link-trigger`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    /// A request.
    #[default]
    Request,
    /// Auto-linking.
    Auto,
}

impl From<Trigger> for crate::api::LinkTrigger {
    fn from(trigger: Trigger) -> Self {
        match trigger {
            Trigger::Request => crate::api::LinkTrigger::Request,
            Trigger::Auto => crate::api::LinkTrigger::Auto,
        }
    }
}

/// Auto-linking's state: whether it is on, and where every package it has looked at stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Auto {
    /// Whether the linker looks for packages installed without it.
    pub enabled: bool,
    /// Counts changes to the node's APIs; a package that failed is tried again once it moved.
    pub epoch: u64,
    /// Every package handled, by `name:publisher`.
    pub packages: std::collections::BTreeMap<String, Tracked>,
    /// Libraries that were removed while packages were linked against them.
    #[serde(default)]
    pub removed: std::collections::BTreeSet<String>,
}

impl Default for Auto {
    fn default() -> Self {
        Auto {
            enabled: true,
            epoch: 0,
            packages: Default::default(),
            removed: Default::default(),
        }
    }
}

/// Where one package stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tracked {
    /// SHA-256 of the zip handled: the app store's version hash.
    pub version_hash: String,
    pub trigger: Trigger,
    pub status: Status,
    /// The API epoch it was handled at.
    pub epoch: u64,
}

/// How handling a package ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Status {
    /// Linked and installed.
    Linked,
    /// Nothing in it imports a library.
    NothingToLink,
    /// It could not be linked; it runs as it was installed.
    Failed(crate::api::LinkerError),
}

/// Auto-linking's state (the default, on with nothing known, when it was never saved).
pub fn auto() -> Result<Auto, StepFailure> {
    Ok(node::read_if_exists(AUTO)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default())
}

/// Saves auto-linking's state.
pub fn save_auto(auto: &Auto) -> Result<(), StepFailure> {
    write_json(AUTO, auto)
}

/// The network settings (both on when never saved).
pub fn network() -> crate::api::NetworkSettings {
    node::read_if_exists(NETWORK)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(crate::api::NetworkSettings {
            fetch: true,
            mirror: true,
        })
}

/// Saves the network settings.
pub fn save_network(settings: &crate::api::NetworkSettings) -> Result<(), StepFailure> {
    write_json(NETWORK, settings)
}

/// Records where `package` stands after the linker handled it; a package with an API moves the
/// API epoch. A failure to record only costs a later retry, so it is printed, not returned.
pub fn track(package: &str, version_hash: &str, trigger: Trigger, status: Status, has_api: bool) {
    let result = auto().and_then(|mut auto| {
        if has_api {
            auto.epoch += 1;
        }
        let epoch = auto.epoch;
        auto.removed.remove(package);
        auto.packages.insert(
            package.to_owned(),
            Tracked {
                version_hash: version_hash.to_owned(),
                trigger,
                status,
                epoch,
            },
        );
        save_auto(&auto)
    });
    if let Err(failure) = result {
        kinode_process_lib::println!(
            "linker: cannot record what it did with {package}: {}",
            failure.reason
        );
    }
}

/// Forgets a package that is no longer installed: its record, its links and its state.
pub fn forget(package: &str) -> Result<(), StepFailure> {
    let mut index = index()?;
    if index.remove(package).is_some() {
        write_index(&index)?;
    }
    remove_if_present(&format!("{PACKAGES}/{package}.json"))
}

/// The install record of a package, if the linker installed it.
pub fn record(package: &str) -> Result<Option<Record>, StepFailure> {
    let Some(bytes) = node::read_if_exists(&format!("{PACKAGES}/{package}.json"))? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Saves the install record of a package.
pub fn save_record(record: &Record) -> Result<(), StepFailure> {
    write_json(&format!("{PACKAGES}/{}.json", record.package), record)
}

/// The index: package -> the APIs it was linked against (its reverse is library -> dependents).
fn index() -> Result<std::collections::BTreeMap<String, Vec<String>>, StepFailure> {
    Ok(node::read_if_exists(INDEX)?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default())
}

/// Records which APIs `package` is now linked against.
pub fn index_links(package: &str, apis: Vec<String>) -> Result<(), StepFailure> {
    let mut index = index()?;
    index.insert(package.to_owned(), apis);
    write_index(&index)
}

fn write_index(index: &std::collections::BTreeMap<String, Vec<String>>) -> Result<(), StepFailure> {
    write_json(INDEX, index)
}

/// Every package the linker linked, by name.
pub fn linked_packages() -> Result<Vec<String>, StepFailure> {
    Ok(index()?.into_keys().collect())
}

/// The APIs `package` was linked against, if the linker linked it.
pub fn links(package: &str) -> Result<Option<Vec<String>>, StepFailure> {
    Ok(index()?.remove(package))
}

/// The installed packages linked against `library`, sorted.
pub fn dependents(library: &str) -> Result<Vec<String>, StepFailure> {
    Ok(index()?
        .into_iter()
        .filter(|(_, apis)| apis.iter().any(|api| api == library))
        .map(|(package, _)| package)
        .collect())
}

/// Keeps the files of the version an install is replacing until the install is done.
pub fn save_backup(package: &str, zip: &[u8]) -> Result<(), StepFailure> {
    node::write(&format!("{BACKUP}/{package}.zip"), zip.to_vec())
}

/// Drops the backup once the install finished, either way.
pub fn drop_backup(package: &str) {
    let _ = node::expect_ok(
        &format!("{BACKUP}/{package}.zip"),
        VfsAction::RemoveFile,
        None,
    );
}

/// The backup of a package's previous version, if there is one.
pub fn backup(package: &str) -> Result<Option<Vec<u8>>, StepFailure> {
    node::read_if_exists(&format!("{BACKUP}/{package}.zip"))
}

/// The packages that have a backup.
pub fn backups() -> Result<Vec<String>, StepFailure> {
    Ok(node::read_dir(BACKUP)?
        .into_iter()
        .filter_map(|(name, _)| name.strip_suffix(".zip").map(str::to_owned))
        .collect())
}

/// An install under way: what the linker needs to undo it if it dies before the install ends.
#[derive(Debug, Serialize, Deserialize)]
pub struct Journal {
    /// `name:publisher`.
    pub package: String,
    /// The version hash being installed.
    pub version_hash: String,
    /// The version replaced, backed up at `/linker:sys/backup/{pkg}.zip`; `None` for a first
    /// install.
    pub previous: Option<Previous>,
    /// Every process of either version, to kill before the previous version is put back.
    pub processes: Vec<String>,
    /// Written once the new version is installed and running: what to record of it. A linker
    /// that dies after this completes the install (see [`commit`]) instead of rolling it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Done>,
}

/// What the linker records of a version it installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub record: Record,
    /// Whether the package has an API (its install moves the API epoch).
    pub has_api: bool,
}

/// Records an installed version: its record, the index entry of the APIs it links against, and
/// where auto-linking stands with it. Writing them twice changes nothing, so a linker that died
/// part-way through does it again from the journal. A failure is printed: the version is
/// installed either way.
pub fn commit(done: &Done) {
    let record = &done.record;
    let libraries = record.apis.iter().map(|(name, _)| name.clone()).collect();
    if let Err(failure) = save_record(record).and_then(|()| index_links(&record.package, libraries))
    {
        kinode_process_lib::println!(
            "linker: installed {} but cannot record it: {}",
            record.package,
            failure.reason
        );
    }
    track(
        &record.package,
        &record.version_hash,
        record.trigger,
        Status::Linked,
        done.has_api,
    );
}

/// The version an install replaces.
#[derive(Debug, Serialize, Deserialize)]
pub struct Previous {
    /// Its version hash.
    pub hash: String,
    /// The `wit_version` its processes run with.
    pub wit_version: Option<u32>,
}

/// Records an install as under way.
pub fn save_journal(journal: &Journal) -> Result<(), StepFailure> {
    write_json(&format!("{JOURNAL}/{}.json", journal.package), journal)
}

/// The installs under way, by package: the journal, or `None` if its file cannot be read as one
/// (the linker died while writing it, before the install changed anything).
pub fn journals() -> Result<Vec<(String, Option<Journal>)>, StepFailure> {
    read_json_dir(JOURNAL)
}

/// Ends an install's journal: before the backup is dropped, so a journal always has its backup.
pub fn drop_journal(package: &str) -> Result<(), StepFailure> {
    remove_if_present(&format!("{JOURNAL}/{package}.json"))
}

/// The dependents of a library still to be re-linked against one version of it. If the linker
/// dies on the way, its next start re-links them (see `install::recover`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Relinks {
    /// The library, `name:publisher`.
    pub library: String,
    /// The version hash of the library they are re-linked against.
    pub version_hash: String,
    /// The dependents not re-linked yet, in order.
    pub pending: Vec<String>,
    /// How many times the re-link of the first pending dependent was started.
    pub attempts: u32,
}

/// Records the dependents still to be re-linked, or drops the record once there are none.
pub fn save_relinks(relinks: &Relinks) -> Result<(), StepFailure> {
    if relinks.pending.is_empty() {
        return drop_relinks(&relinks.library);
    }
    write_json(&format!("{RELINK}/{}.json", relinks.library), relinks)
}

/// Drops the record of a library's pending re-links.
pub fn drop_relinks(library: &str) -> Result<(), StepFailure> {
    remove_if_present(&format!("{RELINK}/{library}.json"))
}

/// Every library with re-links pending, by name: the record, or `None` if its file cannot be read
/// as one (the linker died while writing it).
pub fn pending_relinks() -> Result<Vec<(String, Option<Relinks>)>, StepFailure> {
    read_json_dir(RELINK)
}

/// Writes `value` as pretty JSON to `path`, replacing the file whole.
fn write_json(path: &str, value: &impl Serialize) -> Result<(), StepFailure> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| StepFailure {
        step: format!("Write {path}"),
        reason: e.to_string(),
    })?;
    changed();
    node::write(path, json)
}

/// Every `{name}.json` in `dir`, by name: its value, or `None` if the file cannot be read as one
/// (the linker died while writing it).
fn read_json_dir<T: DeserializeOwned>(dir: &str) -> Result<Vec<(String, Option<T>)>, StepFailure> {
    node::read_dir(dir)?
        .into_iter()
        .filter_map(|(name, _)| name.strip_suffix(".json").map(str::to_owned))
        .map(|name| {
            let bytes = node::read(&format!("{dir}/{name}.json"))?;
            Ok((name, serde_json::from_slice(&bytes).ok()))
        })
        .collect()
}

/// Removes the file at `path` if there is one.
fn remove_if_present(path: &str) -> Result<(), StepFailure> {
    if node::is_file(path)? {
        changed();
        node::expect_ok(path, VfsAction::RemoveFile, None)?;
    }
    Ok(())
}
