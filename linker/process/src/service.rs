//! Answering one request: parse it, authorise the sender, gather the inputs, link (from the cache
//! when the same inputs were linked before), then respond, install, or explain.

use kinode_process_lib::{println, Address, Message, Response};
use linker_core::{Compression, Options};

use crate::api::{self, LinkRequest, LinkerError};
use crate::convert;
use crate::inputs::{self, Caller, Inputs};
use crate::install;
use crate::store::{self, Status, Trigger};

/// Answers `message` if it is a request; responses and unknown messages are ignored.
pub fn handle(our: &Address, message: &Message) {
    if !message.is_request() {
        return;
    }
    let (response, blob) = match serde_json::from_slice::<api::Request>(message.body()) {
        Ok(request) => answer(our, message, request),
        Err(_) if is_sideload(our, message) => sideload(our, message),
        Err(error) => (api::Response::BadRequest(error.to_string()), None),
    };
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(error) => {
            println!("linker: cannot serialise a response: {error}");
            return;
        }
    };
    let mut reply = Response::new().body(body);
    if let Some(bytes) = blob {
        reply = reply.blob_bytes(bytes);
    }
    if let Err(error) = reply.send() {
        println!("linker: cannot respond to {}: {error}", message.source());
    }
}

/// Whether `message` is a kit-style upload: from this node's `http-server:distro:sys` (whose
/// `/rpc:distro:sys/message` is local-only), with a `metadata.json` as the body.
fn is_sideload(our: &Address, message: &Message) -> bool {
    let source = message.source();
    source.node() == our.node()
        && source.process == "http-server:distro:sys"
        && serde_json::from_slice::<kinode_process_lib::kernel_types::Erc721Metadata>(
            message.body(),
        )
        .is_ok()
}

/// Installs a kit-style upload: the package zip is the blob, its metadata the body. The linker
/// granted `http-server:distro:sys` its messaging capability for exactly this, so the upload
/// counts as authorised; the answer is the install's JSON.
fn sideload(our: &Address, message: &Message) -> (api::Response, Option<Vec<u8>>) {
    let request = LinkRequest {
        source: api::PackageSource::Blob,
        metadata: Some(String::from_utf8_lossy(message.body()).into_owned()),
        apis: Vec::new(),
    };
    let result = install_package(our, &mut Caller::of(message), &request);
    (api::Response::Install(result), None)
}

fn answer(
    our: &Address,
    message: &Message,
    request: api::Request,
) -> (api::Response, Option<Vec<u8>>) {
    let install = matches!(
        request,
        api::Request::Install(_) | api::Request::AutoLink(Some(_))
    );
    if let Err(error) = crate::auth::check(our, message, install) {
        return (refusal(&request, error), None);
    }
    match request {
        api::Request::Link(request) => match link(our, &mut Caller::of(message), &request) {
            Ok((_, linked)) => (api::Response::Link(Ok(linked.report)), Some(linked.bytes)),
            Err(error) => (api::Response::Link(Err(error)), None),
        },
        api::Request::Install(request) => (
            api::Response::Install(install_package(our, &mut Caller::of(message), &request)),
            None,
        ),
        api::Request::Explain(request) => (
            api::Response::Explain(explain(our, &mut Caller::of(message), &request)),
            None,
        ),
        api::Request::ListApis => (api::Response::ListApis(crate::apis::list()), None),
        api::Request::Linked(id) => (
            api::Response::Linked(package_info(&inputs::id_string(&id))),
            None,
        ),
        api::Request::Packages => (api::Response::Packages(packages()), None),
        api::Request::AutoLink(switch) => {
            (api::Response::AutoLink(crate::watch::switch(switch)), None)
        }
    }
}

/// The response to a refused request, in the request's own variant.
fn refusal(request: &api::Request, error: LinkerError) -> api::Response {
    match request {
        api::Request::Link(_) => api::Response::Link(Err(error)),
        api::Request::Install(_) => api::Response::Install(Err(error)),
        api::Request::Explain(_) => api::Response::Explain(Err(error)),
        api::Request::ListApis => api::Response::ListApis(Err(error)),
        api::Request::Linked(_) => api::Response::Linked(Err(error)),
        api::Request::Packages => api::Response::Packages(Err(error)),
        api::Request::AutoLink(_) => api::Response::AutoLink(Err(error)),
    }
}

/// A linked package: its zip, the zip's SHA-256, and the report for the response.
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

/// Gathers the inputs and links them, from the cache if these inputs were linked before. The API
/// zips consumed are mirrored.
pub fn link(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &LinkRequest,
) -> Result<(Inputs, Linked), LinkerError> {
    let mut inputs = inputs::gather(our, caller, request)?;
    let apis: Vec<(&str, &str, linker_core::Source)> = inputs
        .apis
        .iter()
        .map(|api| (api.name.as_str(), api.sha256.as_str(), api.source))
        .collect();
    let key = store::cache_key((&inputs.package.name, &inputs.package.sha256), &apis);
    let linked = match store::cached(&key) {
        Some((bytes, sha256, report)) => Linked {
            bytes,
            sha256,
            report: convert::link_report(&report, true),
        },
        None => {
            let linked =
                linker_core::link(inputs.package.input(), &inputs.api_inputs(), &options())
                    .map_err(|e| inputs.advise(LinkerError::from(&e)))?;
            let sha256 = store::sha256_hex(&linked.bytes);
            store::cache(&key, &linked.bytes, &sha256, &linked.report);
            Linked {
                report: convert::link_report(&linked.report, false),
                bytes: linked.bytes,
                sha256,
            }
        }
    };
    for api in &inputs.apis {
        if let Err(failure) = store::mirror(api) {
            println!("linker: cannot mirror {}: {}", api.name, failure.reason);
        }
    }
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
    let installed = install::install(
        our,
        install::Upload {
            package: &package,
            original: std::mem::take(&mut inputs.package.bytes),
            version_hash: &inputs.package.sha256,
            linked: linked.bytes,
            wit_version,
        },
    )?;
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
    };
    let libraries = record.apis.iter().map(|(name, _)| name.clone()).collect();
    if let Err(failure) =
        store::save_record(&record).and_then(|()| store::index_links(&package, libraries))
    {
        println!(
            "linker: installed {package} but cannot record it: {}",
            failure.reason
        );
    }
    store::track(
        &package,
        &version_hash,
        trigger,
        Status::Linked,
        installed.has_api,
    );
    let relinked = match relink_except {
        Some(skip) => relink(our, &package, skip),
        None => Vec::new(),
    };
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

/// Re-links and re-installs, one at a time, every installed package the linker linked against
/// `library` but those in `skip`; one that no longer links, or whose install fails, keeps its
/// previous version. Re-links do not cascade: a package's links already list nested libraries.
pub fn relink(our: &Address, library: &str, skip: &[String]) -> Vec<api::Relink> {
    let dependents = match store::dependents(library) {
        Ok(dependents) => dependents,
        Err(failure) => {
            println!(
                "linker: cannot read the dependents of {library}: {}",
                failure.reason
            );
            return Vec::new();
        }
    };
    dependents
        .into_iter()
        .filter(|dependent| dependent != library && !skip.contains(dependent))
        .map(|dependent| {
            let outcome = match relink_one(our, &dependent) {
                Ok(report) => api::RelinkOutcome::Relinked(report.linked_hash),
                Err(error) => {
                    println!("linker: {dependent} keeps its previous version: {error:?}");
                    api::RelinkOutcome::Kept(error)
                }
            };
            api::Relink {
                package: dependent,
                outcome,
            }
        })
        .collect()
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
        Status::Linked => api::PackageStatus::Linked(link_json(&drive, package)?),
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
        if !installed {
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
fn packages() -> Result<Vec<api::PackageInfo>, LinkerError> {
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

fn explain(
    our: &Address,
    caller: &mut Caller<'_>,
    request: &LinkRequest,
) -> Result<api::Explanation, LinkerError> {
    let inputs = inputs::gather(our, caller, request)?;
    let explanation =
        linker_core::explain(inputs.package.input(), &inputs.api_inputs(), &options())
            .map_err(|e| LinkerError::from(&e))?;
    Ok(convert::explanation(&explanation, inputs.api_digests()))
}
