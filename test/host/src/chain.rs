//! `chain:app-store:sys` (the kinode repo's `kinode/packages/app-store/chain/src/lib.rs`,
//! `handle_local_request`, `to_onchain_app`; types from `api/app-store:sys-v1.wit` interface
//! `chain`; metadata from process_lib's `kernel_types.rs` `Erc721Metadata`), over listings a test
//! publishes instead of kimap logs.
//!
//! A [`Chain`] is the on-chain listings of one [`crate::Network`], shared by every node on it: a
//! test adds or replaces a listing with [`Chain::publish`] (metadata in `metadata.json` form,
//! `properties.code_hashes` an object version -> hash) and removes one with [`Chain::remove`].
//! [`crate::Node::start_chain`] starts the per-node process, a service thread serving a mailbox at
//! `our@chain:app-store:sys` in the process map, `public: false`, with no capabilities (no
//! `"network"`: the kernel never delivers a remote message to it, and it drops non-local ones as
//! the real one does), so a caller needs the messaging capability (and, to get the answer, to be
//! public or messageable by chain, as with any process here). It is not started by default.
//!
//! As the real one: `{"GetApp": package_id}` -> `{"GetApp": OnchainApp | null}`, `"GetApps"` ->
//! `{"GetApps": [..]}`, `"GetOurApps"` -> the listings this node published, `StartAutoUpdate` /
//! `StopAutoUpdate` -> `"AutoUpdateStarted"` / `"AutoUpdateStopped"` or `{"Err":"NoPackage"}`,
//! `"Reset"` -> `"ResetOk"`; answers only go to requests expecting one; unparseable requests are
//! printed and dropped. `OnchainApp.metadata.properties.code_hashes` is a list of `[version,
//! hash]` pairs, `api_includes` dropped; metadata that does not parse as `Erc721Metadata` is
//! `null`.
//!
//! Simplified: no eth provider, kimap, sqlite or metadata fetch: a published listing is at once
//! indexed with its metadata. `tba` is `0x` and 40 hex digits derived from the package id (not
//! checksummed), `metadata_uri` is `https://example.com/{publisher}/{package}/metadata.json`, and
//! `metadata_hash` is `0x` and the SHA-256 (not Keccak-256) of the metadata's JSON. Pairs of
//! `code_hashes` come in version order (the real one's `HashMap` order is arbitrary). Auto-update
//! flags are kept per node in memory; no `AutoUpdate` is ever sent to downloads; `Reset` does
//! nothing else.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::kernel::Kernel;
use crate::{IncomingKind, Mailbox, Node};

/// The chain process's id.
pub const CHAIN: &str = "chain:app-store:sys";

/// The on-chain app listings of a network. Cheap to clone: clones share the listings.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// Metadata (`metadata.json` form) by package id.
    listings: Arc<Mutex<BTreeMap<PackageId, Value>>>,
}

/// `package-id` on the wire: `{"package_name", "publisher_node"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct PackageId {
    pub package_name: String,
    pub publisher_node: String,
}

impl PackageId {
    /// `name:publisher`, split at the first `:`.
    pub fn parse(package_id: &str) -> Result<PackageId> {
        let (name, publisher) = package_id
            .split_once(':')
            .filter(|(name, publisher)| !name.is_empty() && !publisher.is_empty())
            .ok_or_else(|| anyhow!("`{package_id}` is not package_name:publisher_node"))?;
        Ok(PackageId {
            package_name: name.to_owned(),
            publisher_node: publisher.to_owned(),
        })
    }
}

impl std::fmt::Display for PackageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.package_name, self.publisher_node)
    }
}

impl Chain {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<PackageId, Value>> {
        self.listings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or replaces the listing of `package_id` (`name:publisher`), with `metadata` in
    /// `metadata.json` form. An error if `package_id` is not `name:publisher`.
    pub fn publish(&self, package_id: &str, metadata: Value) -> Result<()> {
        let id = PackageId::parse(package_id)?;
        self.lock().insert(id, metadata);
        Ok(())
    }

    /// Removes the listing of `package_id`; false if there was none.
    pub fn remove(&self, package_id: &str) -> bool {
        PackageId::parse(package_id).is_ok_and(|id| self.lock().remove(&id).is_some())
    }

    /// The listed package ids, `name:publisher`, sorted.
    pub fn listings(&self) -> Vec<String> {
        self.lock().keys().map(ToString::to_string).collect()
    }

    /// The `OnchainApp` JSON chain answers `GetApp` with for `package_id` on a node that has no
    /// auto-update set for it, or `None` if it is not listed.
    pub fn onchain_app(&self, package_id: &str) -> Option<Value> {
        let id = PackageId::parse(package_id).ok()?;
        let metadata = self.lock().get(&id).cloned()?;
        serde_json::to_value(onchain_app(&id, &metadata, false)).ok()
    }
}

/// `onchain-app`.
#[derive(Serialize)]
struct OnchainApp {
    package_id: PackageId,
    tba: String,
    metadata_uri: String,
    metadata_hash: String,
    metadata: Option<OnchainMetadata>,
    auto_update: bool,
}

/// `onchain-metadata`.
#[derive(Serialize)]
struct OnchainMetadata {
    name: Option<String>,
    description: Option<String>,
    image: Option<String>,
    external_url: Option<String>,
    animation_url: Option<String>,
    properties: OnchainProperties,
}

/// `onchain-properties`.
#[derive(Serialize)]
struct OnchainProperties {
    package_name: String,
    publisher: String,
    current_version: String,
    mirrors: Vec<String>,
    code_hashes: Vec<(String, String)>,
    license: Option<String>,
    screenshots: Option<Vec<String>>,
    wit_version: Option<u32>,
    dependencies: Option<Vec<String>>,
}

/// process_lib's `Erc721Metadata`, as `metadata.json` holds it.
#[derive(Deserialize)]
struct Erc721Metadata {
    name: Option<String>,
    description: Option<String>,
    image: Option<String>,
    external_url: Option<String>,
    animation_url: Option<String>,
    properties: Erc721Properties,
}

/// process_lib's `Erc721Properties`.
#[derive(Deserialize)]
struct Erc721Properties {
    package_name: String,
    publisher: String,
    current_version: String,
    mirrors: Vec<String>,
    code_hashes: BTreeMap<String, String>,
    license: Option<String>,
    screenshots: Option<Vec<String>>,
    wit_version: Option<u32>,
    dependencies: Option<Vec<String>>,
    #[allow(dead_code)]
    api_includes: Option<Vec<String>>,
}

impl From<Erc721Metadata> for OnchainMetadata {
    fn from(m: Erc721Metadata) -> Self {
        let p = m.properties;
        OnchainMetadata {
            name: m.name,
            description: m.description,
            image: m.image,
            external_url: m.external_url,
            animation_url: m.animation_url,
            properties: OnchainProperties {
                package_name: p.package_name,
                publisher: p.publisher,
                current_version: p.current_version,
                mirrors: p.mirrors,
                code_hashes: p.code_hashes.into_iter().collect(),
                license: p.license,
                screenshots: p.screenshots,
                wit_version: p.wit_version,
                dependencies: p.dependencies,
            },
        }
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `to_onchain_app` of a listing.
fn onchain_app(id: &PackageId, metadata: &Value, auto_update: bool) -> OnchainApp {
    let tba = Sha256::digest(format!("tba:{id}").as_bytes());
    OnchainApp {
        package_id: id.clone(),
        tba: format!("0x{}", &hex(&tba)[..40]),
        metadata_uri: format!(
            "https://example.com/{}/{}/metadata.json",
            id.publisher_node, id.package_name
        ),
        metadata_hash: format!(
            "0x{}",
            hex(&Sha256::digest(metadata.to_string().as_bytes()))
        ),
        metadata: serde_json::from_value::<Erc721Metadata>(metadata.clone())
            .ok()
            .map(OnchainMetadata::from),
        auto_update,
    }
}

/// `chain-request`.
#[derive(Deserialize)]
enum ChainRequest {
    GetApp(PackageId),
    GetApps,
    GetOurApps,
    StartAutoUpdate(PackageId),
    StopAutoUpdate(PackageId),
    Reset,
}

/// `chain-response`.
#[derive(Serialize)]
enum ChainResponse {
    GetApp(Option<Box<OnchainApp>>),
    GetApps(Vec<OnchainApp>),
    GetOurApps(Vec<OnchainApp>),
    AutoUpdateStarted,
    AutoUpdateStopped,
    ResetOk,
    Err(ChainError),
}

/// `chain-error`.
#[derive(Serialize)]
enum ChainError {
    NoPackage,
}

/// Starts the chain process on `node` (see [`crate::Node::start_chain`]).
pub(crate) fn start(node: &Node) -> Result<()> {
    let our = node.our().to_owned();
    let mailbox = Mailbox::register(node.kernel(), &format!("{our}@{CHAIN}"), false)
        .map_err(|e| anyhow!(e))?;
    let stop = Arc::new(AtomicBool::new(false));
    node.add_service(Arc::clone(&stop));
    let service = Service {
        kernel: Arc::clone(node.kernel()),
        chain: node.network().chain().clone(),
        auto_update: HashSet::new(),
    };
    thread::Builder::new()
        .name(format!("{our} chain"))
        .spawn(move || service.serve(&mailbox, &stop))?;
    Ok(())
}

/// The chain process's state.
struct Service {
    kernel: Arc<Kernel>,
    chain: Chain,
    auto_update: HashSet<PackageId>,
}

impl Service {
    fn serve(mut self, mailbox: &Mailbox, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let Some(incoming) = mailbox.recv(Duration::from_millis(5)) else {
                continue;
            };
            let IncomingKind::Request { expects_response } = incoming.kind else {
                continue;
            };
            // `if !message.is_local() { return Ok(false) }`
            if crate::parse_address(&incoming.source).map(|a| a.node)
                != Some(self.kernel.our.clone())
            {
                continue;
            }
            let answer = match serde_json::from_slice::<ChainRequest>(&incoming.body) {
                Ok(request) => self.handle(request),
                Err(e) => {
                    self.kernel
                        .print(CHAIN, 1, format!("chain: error handling message: {e}"));
                    continue;
                }
            };
            if expects_response.is_some() {
                let body = serde_json::to_vec(&answer).unwrap_or_default();
                mailbox.respond(&incoming, body, None, Vec::new());
            }
        }
    }

    /// `handle_local_request`.
    fn handle(&mut self, request: ChainRequest) -> ChainResponse {
        let listings = self.chain.lock().clone();
        let auto = &mut self.auto_update;
        match request {
            ChainRequest::GetApp(id) => ChainResponse::GetApp(
                listings
                    .get(&id)
                    .map(|m| Box::new(onchain_app(&id, m, auto.contains(&id)))),
            ),
            ChainRequest::GetApps => ChainResponse::GetApps(
                listings
                    .iter()
                    .map(|(id, m)| onchain_app(id, m, auto.contains(id)))
                    .collect(),
            ),
            ChainRequest::GetOurApps => ChainResponse::GetOurApps(
                listings
                    .iter()
                    .filter(|(id, _)| id.publisher_node == self.kernel.our)
                    .map(|(id, m)| onchain_app(id, m, auto.contains(id)))
                    .collect(),
            ),
            ChainRequest::StartAutoUpdate(id) => {
                if listings.contains_key(&id) {
                    auto.insert(id);
                    ChainResponse::AutoUpdateStarted
                } else {
                    ChainResponse::Err(ChainError::NoPackage)
                }
            }
            ChainRequest::StopAutoUpdate(id) => {
                if listings.contains_key(&id) {
                    auto.remove(&id);
                    ChainResponse::AutoUpdateStopped
                } else {
                    ChainResponse::Err(ChainError::NoPackage)
                }
            }
            ChainRequest::Reset => ChainResponse::ResetOk,
        }
    }
}
