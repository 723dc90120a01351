//! Answering one request: parse it, authorise the sender, gather the inputs, link (from the cache
//! when the same inputs were linked before), then respond, install, or explain. When and in what
//! order requests are answered is [`crate::mailbox`]'s business.

use kinode_process_lib::http::server::HttpServerRequest;
use kinode_process_lib::kernel_types::Erc721Metadata;
use kinode_process_lib::{println, Address};
use linker_core::{Compression, Options};

use crate::api::{self, LinkRequest, LinkerError};
use crate::convert;
use crate::inputs::{self, Caller, Find, Inputs};
use crate::install;
use crate::mailbox::{self, Answer, Incoming};
use crate::store::{self, Status, Trigger};

/// What a request's body is.
pub enum Parsed {
    /// A request of the linker's API.
    Request(api::Request),
    /// A kit-style upload: from this node's `http-server:distro:sys` (whose
    /// `/rpc:distro:sys/message` is local-only), with a `metadata.json` as the body.
    Upload(String),
    /// A request to the linker's page, forwarded by this node's `http-server:distro:sys`.
    Http(Box<kinode_process_lib::http::server::IncomingHttpRequest>),
    /// Neither; why the body is not a request.
    Bad(String),
}

/// Reads the body of a request from `source`.
pub fn parse(source: &Address, body: &[u8]) -> Parsed {
    match serde_json::from_slice::<api::Request>(body) {
        Ok(request) => Parsed::Request(request),
        Err(_) if is_http(source) => match serde_json::from_slice::<HttpServerRequest>(body) {
            Ok(HttpServerRequest::Http(request)) => Parsed::Http(Box::new(request)),
            _ if is_upload(source, body) => {
                Parsed::Upload(String::from_utf8_lossy(body).into_owned())
            }
            Ok(_) => Parsed::Bad("the linker's page has no WebSocket".to_owned()),
            Err(error) => Parsed::Bad(error.to_string()),
        },
        Err(_) if is_upload(source, body) => {
            Parsed::Upload(String::from_utf8_lossy(body).into_owned())
        }
        Err(error) => Parsed::Bad(error.to_string()),
    }
}

fn is_upload(source: &Address, body: &[u8]) -> bool {
    is_http(source) && serde_json::from_slice::<Erc721Metadata>(body).is_ok()
}

/// Whether the sender is this node's HTTP server.
fn is_http(source: &Address) -> bool {
    source.node() == kinode_process_lib::our().node() && source.process == "http-server:distro:sys"
}

impl Parsed {
    /// Whether answering it changes nothing and takes little, so it goes before other work.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Parsed::Request(
                api::Request::ListApis
                    | api::Request::Linked(_)
                    | api::Request::Packages
                    | api::Request::AutoLink(None)
                    | api::Request::Explain(_)
                    | api::Request::Network(api::NetworkChange {
                        fetch: None,
                        mirror: None
                    })
            )
        ) || matches!(self, Parsed::Http(request) if crate::web::is_read(request))
    }

    /// What answering it means, as a `Busy` answer says it: `installing app:test.os`.
    pub fn doing(&self) -> String {
        match self {
            Parsed::Request(api::Request::Link(request)) => format!("linking {}", subject(request)),
            Parsed::Request(api::Request::Install(request)) => {
                format!("installing {}", subject(request))
            }
            Parsed::Request(api::Request::Explain(request)) => {
                format!("explaining {}", subject(request))
            }
            Parsed::Request(api::Request::ListApis) => "listing the APIs".to_owned(),
            Parsed::Request(api::Request::Linked(id)) => {
                format!("describing {}", inputs::id_string(id))
            }
            Parsed::Request(api::Request::Packages) => "listing the packages".to_owned(),
            Parsed::Request(api::Request::AutoLink(_)) => "switching auto-linking".to_owned(),
            Parsed::Request(api::Request::Network(_)) => "switching fetching".to_owned(),
            Parsed::Upload(metadata) => format!("installing {}", metadata_id(metadata)),
            Parsed::Http(request) => format!(
                "answering its page ({})",
                request.bound_path(Some("linker:linker:sys"))
            ),
            Parsed::Bad(_) => "reading a request".to_owned(),
        }
    }
}

/// The package a link request is about, as people name it.
fn subject(request: &LinkRequest) -> String {
    match &request.source {
        api::PackageSource::Installed(id) => inputs::id_string(id),
        api::PackageSource::Download(download) => inputs::id_string(&download.package),
        api::PackageSource::VfsPath(path) => path.clone(),
        api::PackageSource::Blob => request
            .metadata
            .as_deref()
            .map_or_else(|| "an uploaded package".to_owned(), metadata_id),
    }
}

/// `name:publisher` from a `metadata.json` text.
fn metadata_id(metadata: &str) -> String {
    serde_json::from_str::<Erc721Metadata>(metadata).map_or_else(
        |_| "an uploaded package".to_owned(),
        |metadata| {
            format!(
                "{}:{}",
                metadata.properties.package_name, metadata.properties.publisher
            )
        },
    )
}

/// Answers a request.
pub fn answer(our: &Address, incoming: &mut Incoming) -> Answer {
    let Incoming {
        source,
        capabilities,
        blob,
        parsed,
    } = incoming;
    // The blob moves into the request's inputs: a large zip is not copied.
    let mut caller = Caller {
        source,
        capabilities,
        blob: blob.take(),
        installed: None,
    };
    let (response, blob) = match &*parsed {
        Parsed::Request(request) => answer_request(our, &mut caller, request),
        Parsed::Upload(metadata) => upload(our, &mut caller, metadata),
        Parsed::Http(request) => {
            return crate::web::answer(our, caller.source, request, caller.blob.as_deref())
        }
        Parsed::Bad(reason) => (api::Response::BadRequest(reason.clone()), None),
    };
    Answer {
        blob,
        ..mailbox::answer_of(&response)
    }
}

/// Installs a kit-style upload: the package zip is the blob, its metadata the body. The linker
/// granted `http-server:distro:sys` its messaging capability for exactly this, so the upload
/// counts as authorised; the answer is the install's JSON.
fn upload(
    our: &Address,
    caller: &mut Caller<'_>,
    metadata: &str,
) -> (api::Response, Option<Vec<u8>>) {
    let request = LinkRequest {
        source: api::PackageSource::Blob,
        metadata: Some(metadata.to_owned()),
        apis: Vec::new(),
    };
    let result = install_package(our, caller, &request);
    (api::Response::Install(result), None)
}

fn answer_request(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &api::Request,
) -> (api::Response, Option<Vec<u8>>) {
    let install = match request {
        api::Request::Install(_) | api::Request::AutoLink(Some(_)) => true,
        api::Request::Network(change) => change.fetch.is_some() || change.mirror.is_some(),
        _ => false,
    };
    if let Err(error) = crate::auth::check(our, caller.source, caller.capabilities, install) {
        return (refusal_of(request, error), None);
    }
    match request {
        api::Request::Link(request) => match link(our, caller, request) {
            Ok((_, linked)) => (api::Response::Link(Ok(linked.report)), Some(linked.bytes)),
            Err(error) => (api::Response::Link(Err(error)), None),
        },
        api::Request::Install(request) => (
            api::Response::Install(install_package(our, caller, request)),
            None,
        ),
        api::Request::Explain(request) => {
            (api::Response::Explain(explain(our, caller, request)), None)
        }
        api::Request::ListApis => (api::Response::ListApis(crate::apis::list()), None),
        api::Request::Linked(id) => (
            api::Response::Linked(package_info(&inputs::id_string(id))),
            None,
        ),
        api::Request::Packages => (api::Response::Packages(packages()), None),
        api::Request::AutoLink(switch) => {
            (api::Response::AutoLink(crate::watch::switch(*switch)), None)
        }
        api::Request::Network(change) => (api::Response::Network(network(change)), None),
    }
}

/// Changes the network settings as asked; the settings now.
fn network(change: &api::NetworkChange) -> Result<api::NetworkSettings, LinkerError> {
    let mut settings = store::network();
    let before = settings;
    settings.fetch = change.fetch.unwrap_or(settings.fetch);
    settings.mirror = change.mirror.unwrap_or(settings.mirror);
    if settings != before {
        store::save_network(&settings).map_err(LinkerError::Unreadable)?;
    }
    Ok(settings)
}

/// The response refusing a request with `error`, in the request's own variant.
pub fn refusal(parsed: &Parsed, error: LinkerError) -> api::Response {
    match parsed {
        Parsed::Request(request) => refusal_of(request, error),
        Parsed::Upload(_) => api::Response::Install(Err(error)),
        Parsed::Http(_) => api::Response::BadRequest(format!("{error:?}")),
        Parsed::Bad(reason) => api::Response::BadRequest(reason.clone()),
    }
}

fn refusal_of(request: &api::Request, error: LinkerError) -> api::Response {
    match request {
        api::Request::Link(_) => api::Response::Link(Err(error)),
        api::Request::Install(_) => api::Response::Install(Err(error)),
        api::Request::Explain(_) => api::Response::Explain(Err(error)),
        api::Request::ListApis => api::Response::ListApis(Err(error)),
        api::Request::Linked(_) => api::Response::Linked(Err(error)),
        api::Request::Packages => api::Response::Packages(Err(error)),
        api::Request::AutoLink(_) => api::Response::AutoLink(Err(error)),
        api::Request::Network(_) => api::Response::Network(Err(error)),
    }
}

/// A linked package: its zip, the SHA-256 of its `link.json` (which identifies it), and the
/// report for the response.
pub struct Linked {
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub report: api::LinkReport,
}

/// The node installs with `AddZip`, which inflates at once: the linked zip is stored, not
/// compressed.
fn options() -> Options {
    Options {
        compression: Compression::Stored,
        ..Options::default()
    }
}

/// Gathers the inputs and links them, from the cache if these inputs were linked before. A
/// package that declares no dependencies is linked with what it has first; the node is searched
/// for the libraries it lacks only if that fails, so one that needs none is decoded once. The
/// API zips consumed are mirrored.
pub fn link(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &LinkRequest,
) -> Result<(Inputs, Linked), LinkerError> {
    let mut inputs = inputs::gather(our, caller, request, Find::OnFailure)?;
    let linked = loop {
        let apis: Vec<(&str, &str, linker_core::Source)> = inputs
            .apis
            .iter()
            .map(|api| (api.name.as_str(), api.sha256.as_str(), api.source))
            .collect();
        let key = store::cache_key((&inputs.package.name, &inputs.package.sha256), &apis);
        if let Some((bytes, sha256, report)) = store::cached(&key) {
            break Linked {
                bytes,
                sha256,
                report: convert::link_report(&report, true),
            };
        }
        match linker_core::link(inputs.package.input(), &inputs.api_inputs(), &options()) {
            Ok(linked) => {
                store::cache(&key, &linked.bytes, &linked.record_sha256, &linked.report);
                break Linked {
                    report: convert::link_report(&linked.report, false),
                    bytes: linked.bytes,
                    sha256: linked.record_sha256,
                };
            }
            // A package without declared dependencies that lacks a library: the node's APIs
            // are searched once for it, and it is linked again.
            Err(error) => {
                if !inputs.search(&error)? {
                    return Err(inputs.advise(LinkerError::from(&error)));
                }
            }
        }
    };
    for api in &inputs.apis {
        if let Err(failure) = store::mirror(api) {
            println!("linker: cannot mirror {}: {}", api.name, failure.reason);
        }
    }
    let mut linked = linked;
    linked.report.fetched.clone_from(&inputs.fetched);
    Ok((inputs, linked))
}

fn install_package(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &LinkRequest,
) -> Result<api::InstallReport, LinkerError> {
    install_package_with(our, caller, request, Trigger::Request, Some(&[]))
}

/// Links and installs; with `relink_except`, then re-links what was linked against it, except
/// the packages listed.
pub fn install_package_with(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &LinkRequest,
    trigger: Trigger,
    relink_except: Option<&[String]>,
) -> Result<api::InstallReport, LinkerError> {
    // The id is needed before linking, so a package without one is refused without work.
    if request.metadata.is_none() && !inputs::known_id(request) {
        return Err(LinkerError::NoPackageId);
    }
    let (inputs, linked) = link(our, caller, request)?;
    install_linked(our, inputs, linked, trigger, relink_except)
}

/// Installs what [`link`] made; with `relink_except`, then re-links what was linked against it,
/// except the packages listed.
pub fn install_linked(
    our: &Address,
    mut inputs: Inputs,
    linked: Linked,
    trigger: Trigger,
    relink_except: Option<&[String]>,
) -> Result<api::InstallReport, LinkerError> {
    let package = inputs.package_id.clone().ok_or(LinkerError::NoPackageId)?;
    let previous = store::record(&package).map_err(LinkerError::Unreadable)?;
    let wit_version = inputs
        .wit_version()
        .or_else(|| previous.as_ref().and_then(|record| record.wit_version));
    let version_hash = inputs.package.sha256.clone();
    let linked_hash = linked.sha256.clone();
    let record = store::Record {
        package: package.clone(),
        version_hash: version_hash.clone(),
        linked_hash: linked_hash.clone(),
        metadata: inputs
            .metadata
            .as_ref()
            .map(|(text, _)| text.clone())
            .or_else(|| previous.and_then(|record| record.metadata)),
        wit_version,
        apis: inputs
            .api_digests()
            .into_iter()
            .map(|d| (d.name, d.sha256))
            .collect(),
        trigger,
        given: Some(
            inputs
                .apis
                .iter()
                .filter(|api| api.source == linker_core::Source::Given)
                .map(|api| api.name.clone())
                .collect(),
        ),
        fetched: inputs.fetched.clone(),
    };
    // The re-links are recorded before the install begins, so that a linker that dies after it
    // still re-links them when it starts again.
    let relinks = relink_except.map(|skip| plan_relinks(&package, &version_hash, skip));
    // The install records the new version before it ends, under its journal.
    let installed = install::install(
        our,
        install::Upload {
            package: &package,
            original: std::mem::take(&mut inputs.package.bytes),
            version_hash: &version_hash,
            linked: linked.bytes,
            wit_version,
            record,
        },
    )
    .inspect_err(|_| {
        if relinks.as_ref().is_some_and(|r| !r.pending.is_empty()) {
            report_store_failure(store::drop_relinks(&package), &package);
        }
    })?;
    let relinked = relinks.map_or_else(Vec::new, |relinks| relink(our, relinks));
    Ok(api::InstallReport {
        package,
        version_hash,
        linked_hash,
        link: linked.report,
        processes: installed.processes,
        replaced: installed.replaced,
        relinked,
    })
}

/// How many times the re-link of one dependent may be started: a dependent whose re-link killed
/// the linker twice keeps its previous version, so it cannot keep the linker restarting.
const RELINK_ATTEMPTS: u32 = 2;

/// The installed packages the linker linked against `library` but those in `skip`, to re-link
/// against its version `version_hash`; recorded if there are any (a failure to record is
/// printed: only a restart in the middle would then miss them).
pub fn plan_relinks(library: &str, version_hash: &str, skip: &[String]) -> store::Relinks {
    let dependents = store::dependents(library).unwrap_or_else(|failure| {
        println!(
            "linker: cannot read the dependents of {library}: {}",
            failure.reason
        );
        Vec::new()
    });
    let relinks = store::Relinks {
        library: library.to_owned(),
        version_hash: version_hash.to_owned(),
        pending: dependents
            .into_iter()
            .filter(|dependent| dependent != library && !skip.contains(dependent))
            .collect(),
        attempts: 0,
    };
    if !relinks.pending.is_empty() {
        report_store_failure(store::save_relinks(&relinks), library);
    }
    relinks
}

/// Says on the terminal that the record of a library's pending re-links could not be written.
fn report_store_failure(result: Result<(), api::StepFailure>, library: &str) {
    if let Err(failure) = result {
        println!(
            "linker: cannot record the re-links {library} calls for: {}: {}",
            failure.step, failure.reason
        );
    }
}

/// Re-links and re-installs, one at a time, the pending dependents of `relinks`, keeping the
/// record up to date; one that no longer links, or whose install fails, keeps its previous
/// version. Re-links do not cascade: a package's links already list nested libraries.
pub fn relink(our: &Address, mut relinks: store::Relinks) -> Vec<api::Relink> {
    let mut outcomes = Vec::new();
    while let Some(dependent) = relinks.pending.first().cloned() {
        relinks.attempts += 1;
        report_store_failure(store::save_relinks(&relinks), &relinks.library);
        let outcome = match relink_one(our, &dependent) {
            Ok(report) => api::RelinkOutcome::Relinked(report.linked_hash),
            Err(error) => {
                println!("linker: {dependent} keeps its previous version: {error:?}");
                api::RelinkOutcome::Kept(error)
            }
        };
        outcomes.push(api::Relink {
            package: dependent,
            outcome,
        });
        relinks.pending.remove(0);
        relinks.attempts = 0;
        report_store_failure(store::save_relinks(&relinks), &relinks.library);
        mailbox::serve_reads(our);
    }
    outcomes
}

/// Re-links what a linker that died while re-linking the dependents of a library left pending,
/// once [`install::recover`] rolled back the install it died in. A record for a version of the
/// library that is no longer installed or fetched (its own install was rolled back) is dropped;
/// a dependent whose re-link was started [`RELINK_ATTEMPTS`] times keeps its previous version.
pub fn resume_relinks(our: &Address) {
    let records = match store::pending_relinks() {
        Ok(records) => records,
        Err(failure) => {
            println!(
                "linker: cannot read the re-links it left pending: {}: {}",
                failure.step, failure.reason
            );
            return;
        }
    };
    for (library, relinks) in records {
        // The library as installed here, or as last fetched from the network.
        let current = crate::node::installed_zip(&library)
            .ok()
            .map(|zip| store::sha256_hex(&zip))
            .or_else(|| store::fetched_version(&library));
        let Some(mut relinks) =
            relinks.filter(|relinks| current.as_deref() == Some(relinks.version_hash.as_str()))
        else {
            report_store_failure(store::drop_relinks(&library), &library);
            continue;
        };
        if relinks.attempts >= RELINK_ATTEMPTS && !relinks.pending.is_empty() {
            let dependent = relinks.pending.remove(0);
            relinks.attempts = 0;
            println!(
                "linker: {dependent} keeps its previous version: the linker stopped \
                 {RELINK_ATTEMPTS} times while re-linking it against {library}"
            );
            report_store_failure(store::save_relinks(&relinks), &library);
        }
        if relinks.pending.is_empty() {
            continue;
        }
        println!(
            "linker: re-linking the packages linked against {library} was interrupted; \
             re-linking {} now",
            relinks.pending.join(", ")
        );
        relink(our, relinks);
    }
}

/// Re-links an installed package from the zip it was installed from, with the metadata and the
/// APIs named when it was installed, against the current versions of the node's APIs, and
/// installs it.
fn relink_one(our: &Address, package: &str) -> Result<api::InstallReport, LinkerError> {
    let record = store::record(package)
        .map_err(LinkerError::Unreadable)?
        .ok_or_else(|| LinkerError::NotLinked(package.to_owned()))?;
    let request = LinkRequest {
        source: api::PackageSource::Installed(
            inputs::package_id(package).ok_or(LinkerError::NoPackageId)?,
        ),
        metadata: record.metadata.clone(),
        apis: record
            .given
            .clone()
            .unwrap_or_else(|| record.apis.iter().map(|(name, _)| name.clone()).collect())
            .iter()
            .filter_map(|name| inputs::package_id(name))
            .map(api::ApiSource::Installed)
            .collect(),
    };
    let mut caller = Caller {
        source: our,
        capabilities: &[],
        blob: None,
        installed: None,
    };
    install_package_with(our, &mut caller, &request, record.trigger, None)
}

/// What the linker knows of an installed package: its state, and what was linked into it (from
/// its `pkg/link.json`).
pub fn package_info(package: &str) -> Result<api::PackageInfo, LinkerError> {
    let drive = format!("/{package}/pkg");
    if !crate::node::is_file(&format!("{drive}/manifest.json")).map_err(LinkerError::Unreadable)? {
        return Err(LinkerError::NotInstalled(package.to_owned()));
    }
    let tracked = store::auto()
        .map_err(LinkerError::Unreadable)?
        .packages
        .remove(package);
    let record = store::record(package).map_err(LinkerError::Unreadable)?;
    let (version_hash, trigger, status) = match (tracked, &record) {
        (Some(tracked), _) => (tracked.version_hash, tracked.trigger, tracked.status),
        (None, Some(record)) => (record.version_hash.clone(), record.trigger, Status::Linked),
        (None, None) => return Err(LinkerError::NotLinked(package.to_owned())),
    };
    let status = match status {
        Status::Linked => {
            let mut report = link_json(&drive, package)?;
            report.fetched = record
                .as_ref()
                .map(|record| record.fetched.clone())
                .unwrap_or_default();
            api::PackageStatus::Linked(report)
        }
        Status::NothingToLink => api::PackageStatus::NothingToLink,
        Status::Failed(error) => api::PackageStatus::Failed(error),
    };
    let mut missing_apis = Vec::new();
    for api in store::links(package)
        .map_err(LinkerError::Unreadable)?
        .unwrap_or_default()
    {
        let installed = crate::node::is_file(&format!("/{api}/pkg/api.zip"))
            .map_err(LinkerError::Unreadable)?;
        if !installed && !store::was_fetched(&api) {
            missing_apis.push(api);
        }
    }
    Ok(api::PackageInfo {
        package: package.to_owned(),
        version_hash,
        trigger: trigger.into(),
        status,
        missing_apis,
    })
}

/// A linked package's `pkg/link.json`.
fn link_json(drive: &str, package: &str) -> Result<api::LinkReport, LinkerError> {
    let bytes = crate::node::read_if_exists(&format!("{drive}/link.json"))
        .map_err(LinkerError::Unreadable)?
        .ok_or_else(|| LinkerError::NotLinked(package.to_owned()))?;
    let report: linker_core::LinkReport = serde_json::from_slice(&bytes)
        .map_err(|e| LinkerError::BadMetadata(format!("{drive}/link.json: {e}")))?;
    Ok(convert::link_report(&report, false))
}

/// Every installed package the linker linked or tried to, by name.
pub fn packages() -> Result<Vec<api::PackageInfo>, LinkerError> {
    let mut names: Vec<String> = store::auto()
        .map_err(LinkerError::Unreadable)?
        .packages
        .into_keys()
        .collect();
    names.extend(store::linked_packages().map_err(LinkerError::Unreadable)?);
    names.sort();
    names.dedup();
    Ok(names
        .iter()
        .filter_map(|name| package_info(name).ok())
        .collect())
}

/// What linking the request's package would do; changes nothing.
pub fn explain(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &LinkRequest,
) -> Result<api::Explanation, LinkerError> {
    let inputs = inputs::gather(our, caller, request, Find::Now)?;
    let explanation =
        linker_core::explain(inputs.package.input(), &inputs.api_inputs(), &options())
            .map_err(|e| LinkerError::from(&e))?;
    Ok(convert::explanation(&explanation, inputs.api_digests()))
}
