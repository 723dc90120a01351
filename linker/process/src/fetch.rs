//! Fetching a library this node does not have, through the app store, as the network already
//! offers it: its listing from `chain:app-store:sys` (the current version, that version's hash,
//! the mirrors), then that version through `downloads:app-store:sys`, from the publisher's node
//! first and then each listed mirror in turn, until one serves the bytes the listing's hash names.
//! Its API is taken out of the downloaded zip and kept in the linker's mirror; the library package
//! is not installed. With mirroring on, the node then mirrors the package so that others can fetch
//! it from here.
//!
//! What crosses the boundary (the app store at v1.0.0; README "Fetching libraries"): a node is
//! asked `MirrorCheck` first, which tells offline, silent and not-mirroring nodes apart; then
//! `LocalDownload` starts the transfer, which the app store never answers (it tells only
//! `main:app-store:sys`), so the linker watches the downloads drive: the zip appears with the first
//! chunk and the manifest beside it (`{hash}.json`) once the transfer ended. The app store keeps a
//! zip whose hash does not match; the linker hashes it itself, and removes it.
//!
//! Only nodes the on-chain listing names are asked, so a package cannot point the linker at a
//! node of its own choosing. Web mirrors (`http...`) are left to the app store's own downloads.

use std::time::Instant;

use kinode_process_lib::{println, Address, Request};
use serde_json::{json, Value};

use crate::api::{self, FetchProblem, FetchedLibrary, NodeFailure, NodeFailureReason};
use crate::inputs::{self, Named};
use crate::mailbox;
use crate::node;
use crate::store;

/// How long the chain process and the local downloads process get to answer, in seconds.
const LOCAL_SECS: u64 = 5;

/// How long a node gets to answer `MirrorCheck`, in seconds (as the app store's own page waits).
const MIRROR_CHECK_SECS: u64 = 5;

/// How long a node that mirrors the package may take to send its first chunk, in seconds.
const FIRST_CHUNK_SECS: u64 = 20;

/// How long a whole download may take, in seconds (the app store's worker gives up at 120).
const DOWNLOAD_SECS: u64 = 120;

/// How often the downloads drive is looked at while a transfer is under way, in milliseconds.
const POLL_MS: u64 = 25;

/// A library fetched: its API, what it needs in turn, and what to report.
pub struct Fetched {
    /// The API zip, named by the library's package id.
    pub api: Named,
    /// The dependencies its listing declares.
    pub dependencies: Vec<String>,
    /// What the reports say.
    pub report: FetchedLibrary,
}

/// The listing of a library on chain, as far as fetching goes.
struct Listing {
    version: String,
    version_hash: String,
    /// The publisher's node, then the mirrors, each once, without this node.
    nodes: Vec<String>,
    dependencies: Vec<String>,
}

/// Why a library was not fetched.
pub enum Unfetched {
    /// There is nothing to fetch: why, in words (not listed on chain, or no chain to ask).
    NotListed(String),
    /// It is listed, but could not be fetched.
    Failed(api::LinkerError),
}

/// Fetches `library` (`name:publisher`) for `package`: its API, kept in the mirror.
pub fn library(our: &Address, package: &str, library: &str) -> Result<Fetched, Unfetched> {
    let failure = |problem| failed(package, library, problem);
    let started = Instant::now();
    let id = inputs::package_id(library)
        .ok_or_else(|| Unfetched::NotListed(format!("{library} is not a package id")))?;
    let listing = listing(our, package, &id)?;
    let downloaded = download(our, &id, &listing).map_err(failure)?;
    let (from, zip) = downloaded;
    let bytes = zip.len() as u64;
    let api = api_of(library, &zip)
        .ok_or_else(|| failure(FetchProblem::NoApi(listing.version.clone())))?;
    let kept =
        store::mirror(&api).and_then(|()| store::mark_fetched(library, &listing.version_hash));
    if let Err(step) = kept {
        println!("linker: cannot keep {library}'s API: {}", step.reason);
    }
    let mirrored = store::network().mirror && start_mirroring(&id);
    let report = FetchedLibrary {
        package: library.to_owned(),
        version: listing.version.clone(),
        version_hash: listing.version_hash.clone(),
        node: from,
        bytes,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        mirrored,
    };
    println!(
        "linker: fetched {library} {} from {}: {} bytes in {} ms{}",
        report.version,
        report.node,
        report.bytes,
        report.millis,
        if mirrored { ", mirrored here now" } else { "" }
    );
    Ok(Fetched {
        api,
        dependencies: listing.dependencies,
        report,
    })
}

/// The package ids `chain:app-store:sys` lists (`GetApps`); none if it does not answer.
pub fn listed() -> Vec<String> {
    let answer = mailbox::await_response(
        Request::to(("our", "chain", "app-store", "sys")).body(json!("GetApps").to_string()),
        LOCAL_SECS,
    );
    let Ok(answer) = answer else {
        return Vec::new();
    };
    let answer: Value = serde_json::from_slice(answer.body()).unwrap_or_default();
    answer["GetApps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|app| {
            let id = &app["package_id"];
            Some(format!(
                "{}:{}",
                id["package_name"].as_str()?,
                id["publisher_node"].as_str()?
            ))
        })
        .filter(|id| store::is_package_id(id))
        .collect()
}

/// The version hash `chain:app-store:sys` lists as `library`'s current version, if it lists one.
pub fn listed_version(our: &Address, library: &str) -> Option<String> {
    let id = inputs::package_id(library)?;
    listing(our, library, &id)
        .ok()
        .map(|listing| listing.version_hash)
}

/// `library` listed, but not fetched for `package`, because of `problem`.
fn failed(package: &str, library: &str, problem: FetchProblem) -> Unfetched {
    Unfetched::Failed(api::LinkerError::FetchFailed(api::FetchFailure {
        package: package.to_owned(),
        library: library.to_owned(),
        problem,
    }))
}

/// The library's listing: `GetApp` to `chain:app-store:sys`.
fn listing(our: &Address, package: &str, id: &api::PackageId) -> Result<Listing, Unfetched> {
    let library = inputs::id_string(id);
    let answer = mailbox::await_response(
        Request::to(("our", "chain", "app-store", "sys")).body(json!({ "GetApp": id }).to_string()),
        LOCAL_SECS,
    )
    .map_err(|error| {
        Unfetched::NotListed(format!("chain:app-store:sys did not answer ({error})"))
    })?;
    let answer: Value = serde_json::from_slice(answer.body()).unwrap_or_default();
    let properties = &answer["GetApp"]["metadata"]["properties"];
    let Some(version) = properties["current_version"].as_str() else {
        return Err(Unfetched::NotListed(format!(
            "chain:app-store:sys lists no {library}"
        )));
    };
    // On chain, code_hashes is a list of [version, hash].
    let version_hash = properties["code_hashes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|pair| pair[0].as_str() == Some(version))
        .and_then(|pair| pair[1].as_str())
        .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            failed(
                package,
                &library,
                FetchProblem::NoVersionHash(version.to_owned()),
            )
        })?;
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect()
    };
    let mut nodes: Vec<String> = Vec::new();
    for node in std::iter::once(id.publisher_node.clone()).chain(strings(&properties["mirrors"])) {
        if node.starts_with("http") || node == our.node() || nodes.contains(&node) {
            continue;
        }
        nodes.push(node);
    }
    Ok(Listing {
        version: version.to_owned(),
        version_hash: version_hash.to_ascii_lowercase(),
        nodes,
        dependencies: strings(&properties["dependencies"]),
    })
}

/// The listed version's zip: from the app store's downloads if it is there already, else from
/// the first node that serves it. Returns who served it and the bytes.
fn download(
    our: &Address,
    id: &api::PackageId,
    listing: &Listing,
) -> Result<(String, Vec<u8>), FetchProblem> {
    let paths = Paths::new(id, &listing.version_hash);
    if let Ok(Some(zip)) = node::read_if_exists(&paths.zip) {
        if store::sha256_hex(&zip) == listing.version_hash {
            return Ok(("this node".to_owned(), zip));
        }
    }
    let mut tried = Vec::new();
    for from in &listing.nodes {
        match from_node(our, id, listing, &paths, from) {
            Ok(zip) => return Ok((from.clone(), zip)),
            Err(reason) => tried.push(NodeFailure {
                node: from.clone(),
                reason,
            }),
        }
    }
    Err(FetchProblem::Nodes(api::FailedNodes {
        version: listing.version.clone(),
        version_hash: listing.version_hash.clone(),
        tried,
    }))
}

/// Where the app store keeps one version of a package.
struct Paths {
    zip: String,
    manifest: String,
}

impl Paths {
    fn new(id: &api::PackageId, version_hash: &str) -> Paths {
        let dir = format!("/app-store:sys/downloads/{}", inputs::id_string(id));
        Paths {
            zip: format!("{dir}/{version_hash}.zip"),
            manifest: format!("{dir}/{version_hash}.json"),
        }
    }
}

/// One node's try: `MirrorCheck`, then `LocalDownload` from it, watched until the transfer ends.
fn from_node(
    our: &Address,
    id: &api::PackageId,
    listing: &Listing,
    paths: &Paths,
    from: &str,
) -> Result<Vec<u8>, NodeFailureReason> {
    let check = mailbox::await_response(
        Request::to(Address::new(from, ("downloads", "app-store", "sys")))
            .body(json!({ "MirrorCheck": id }).to_string()),
        MIRROR_CHECK_SECS,
    );
    match check {
        Err(kind) if kind == "Offline" => return Err(NodeFailureReason::Offline),
        Err(_) => return Err(NodeFailureReason::TimedOut(MIRROR_CHECK_SECS)),
        Ok(answer) => match serde_json::from_slice::<Value>(answer.body()) {
            Ok(Value::String(success)) if success == "Success" => {}
            Ok(answer) if answer["Err"] == "NotMirroring" => {
                return Err(NodeFailureReason::NotMirroring)
            }
            _ => {
                return Err(NodeFailureReason::Failed(format!(
                    "it answered MirrorCheck with {}",
                    String::from_utf8_lossy(answer.body())
                )))
            }
        },
    }
    // A transfer that failed before left its files: the app store would append to them.
    if exists(&paths.zip) || exists(&paths.manifest) {
        remove_download(id, &listing.version_hash);
    }
    let sent = Request::to((our.node(), "downloads", "app-store", "sys"))
        .body(
            json!({ "LocalDownload": {
                "package_id": id,
                "download_from": from,
                "desired_version_hash": listing.version_hash,
            }})
            .to_string(),
        )
        .send();
    if let Err(error) = sent {
        return Err(NodeFailureReason::Failed(format!(
            "downloads:app-store:sys refused the download: {error}"
        )));
    }
    let started = Instant::now();
    loop {
        if exists(&paths.manifest) {
            break;
        }
        let waited = started.elapsed().as_secs();
        if waited >= DOWNLOAD_SECS {
            return Err(NodeFailureReason::TimedOut(DOWNLOAD_SECS));
        }
        if waited >= FIRST_CHUNK_SECS && !exists(&paths.zip) {
            return Err(NodeFailureReason::SentNothing(FIRST_CHUNK_SECS));
        }
        mailbox::sleep(POLL_MS);
    }
    let zip = node::read(&paths.zip).map_err(|step| NodeFailureReason::Failed(step.reason))?;
    let actual = store::sha256_hex(&zip);
    if actual != listing.version_hash {
        remove_download(id, &listing.version_hash);
        return Err(NodeFailureReason::HashMismatch(actual));
    }
    Ok(zip)
}

fn exists(path: &str) -> bool {
    matches!(node::is_file(path), Ok(true))
}

/// Has the app store remove one version's files (`RemoveFile`).
fn remove_download(id: &api::PackageId, version_hash: &str) {
    let removed = mailbox::await_response(
        Request::to(("our", "downloads", "app-store", "sys")).body(
            json!({ "RemoveFile": { "package_id": id, "version_hash": version_hash } }).to_string(),
        ),
        LOCAL_SECS,
    );
    if let Err(error) = removed {
        println!(
            "linker: cannot remove a failed download of {}: {error}",
            inputs::id_string(id)
        );
    }
}

/// Has the app store mirror the package (`StartMirroring`); whether it said it does.
fn start_mirroring(id: &api::PackageId) -> bool {
    let answer = mailbox::await_response(
        Request::to(("our", "downloads", "app-store", "sys"))
            .body(json!({ "StartMirroring": id }).to_string()),
        LOCAL_SECS,
    );
    match answer {
        Ok(answer) if answer.body() == b"\"Success\"" => true,
        Ok(answer) => {
            println!(
                "linker: the app store would not mirror {}: {}",
                inputs::id_string(id),
                String::from_utf8_lossy(answer.body())
            );
            false
        }
        Err(error) => {
            println!(
                "linker: the app store would not mirror {}: {error}",
                inputs::id_string(id)
            );
            false
        }
    }
}

/// The package's `api.zip`, named by the library's id.
fn api_of(library: &str, zip: &[u8]) -> Option<Named> {
    let archive =
        linker_core::archive::Archive::read(library, zip, &linker_core::Limits::default()).ok()?;
    let api = archive.files.get("api.zip")?.clone();
    Some(Named::new(library.to_owned(), api).chosen(linker_core::Source::Declared))
}
