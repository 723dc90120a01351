//! The linker's own drives: the link cache, the mirror of every API zip it consumed, install
//! records, and the backup of the version an install replaces.
//!
//! - `/linker:sys/cache/{key}.zip` and `{key}.json`: a linked package and its report, keyed by
//!   the SHA-256 of the linker version and every input (see [`cache_key`]).
//! - `/linker:sys/apis/{pkg}/{sha256}.zip`, and `/linker:sys/apis/{pkg}/current` holding the hash
//!   of the one consumed last.
//! - `/linker:sys/packages/{pkg}.json`: what the linker installed for a package ([`Record`]).
//! - `/linker:sys/backup/{pkg}.zip`: the files of the version being replaced, during an install.

use kinode_process_lib::vfs::VfsAction;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::api::StepFailure;
use crate::inputs::Named;
use crate::node;

const CACHE: &str = "/linker:sys/cache";
const APIS: &str = "/linker:sys/apis";
const PACKAGES: &str = "/linker:sys/packages";
const BACKUP: &str = "/linker:sys/backup";
/// For every package the linker installed, the APIs it was linked against.
const INDEX: &str = "/linker:sys/packages/index.json";

/// Creates the linker's drives (the linker may do anything in its own package's drives).
pub fn prepare() -> Result<(), StepFailure> {
    for drive in [CACHE, APIS, PACKAGES, BACKUP] {
        node::expect_ok(drive, VfsAction::CreateDrive, None)?;
    }
    Ok(())
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The cache key of a link: the linker version, the package and every API, by name and hash, in
/// order (names appear in the report, so they are part of the result).
pub fn cache_key(package: (&str, &str), apis: &[(&str, &str)]) -> String {
    let mut text = format!("kinode-link {}\n", linker_core::VERSION);
    for (name, sha256) in std::iter::once(package).chain(apis.iter().copied()) {
        text.push_str(&format!("{name}\t{sha256}\n"));
    }
    sha256_hex(text.as_bytes())
}

/// A cached link, if there is one whose zip still has the recorded hash: the zip, that hash, and
/// the report.
pub fn cached(key: &str) -> Option<(Vec<u8>, String, linker_core::LinkReport)> {
    let entry: CacheEntry =
        serde_json::from_slice(&node::read_if_exists(&format!("{CACHE}/{key}.json")).ok()??)
            .ok()?;
    let zip = node::read_if_exists(&format!("{CACHE}/{key}.zip")).ok()??;
    (sha256_hex(&zip) == entry.sha256).then_some((zip, entry.sha256, entry.report))
}

/// Caches a link. A failure only costs a later re-link, so it is not an error of the request.
pub fn cache(key: &str, zip: &[u8], sha256: &str, report: &linker_core::LinkReport) {
    let entry = CacheEntry {
        sha256: sha256.to_owned(),
        report: report.clone(),
    };
    if let Ok(json) = serde_json::to_vec(&entry) {
        let _ = node::write(&format!("{CACHE}/{key}.zip"), zip.to_vec())
            .and_then(|()| node::write(&format!("{CACHE}/{key}.json"), json));
    }
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    sha256: String,
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
    node::write(&format!("{dir}/current"), api.sha256.clone().into_bytes())
}

/// The mirrored API zip consumed last for `name`, if any.
pub fn mirrored(name: &str) -> Result<Option<Vec<u8>>, StepFailure> {
    if !is_package_id(name) {
        return Ok(None);
    }
    let Some(current) = node::read_if_exists(&format!("{APIS}/{name}/current"))? else {
        return Ok(None);
    };
    let sha256 = String::from_utf8_lossy(&current).trim().to_owned();
    node::read_if_exists(&format!("{APIS}/{name}/{sha256}.zip"))
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
    /// SHA-256 of the linked zip installed.
    pub linked_hash: String,
    /// The package's metadata.json text, if it came with one.
    pub metadata: Option<String>,
    /// The `wit_version` its processes were started with.
    pub wit_version: Option<u32>,
    /// The API zips it was linked against, by name and hash.
    pub apis: Vec<(String, String)>,
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
    let path = format!("{PACKAGES}/{}.json", record.package);
    let json = serde_json::to_vec_pretty(record).map_err(|e| StepFailure {
        step: format!("Write {path}"),
        reason: e.to_string(),
    })?;
    node::write(&path, json)
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
    let json = serde_json::to_vec_pretty(&index).map_err(|e| StepFailure {
        step: format!("Write {INDEX}"),
        reason: e.to_string(),
    })?;
    node::write(INDEX, json)
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
