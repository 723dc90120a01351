//! Answering one request: parse it, authorise the sender, gather the inputs, link (from the cache
//! when the same inputs were linked before), then respond, install, or explain.

use kinode_process_lib::{println, Address, Message, Response};
use linker_core::{Compression, Input, Options};

use crate::api::{self, LinkRequest, LinkerError};
use crate::convert;
use crate::inputs::{self, Inputs};
use crate::install;
use crate::store;

/// Answers `message` if it is a request; responses and unknown messages are ignored.
pub fn handle(our: &Address, message: &Message) {
    if !message.is_request() {
        return;
    }
    let (response, blob) = match serde_json::from_slice::<api::Request>(message.body()) {
        Err(error) => (api::Response::BadRequest(error.to_string()), None),
        Ok(request) => answer(our, message, request),
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

fn answer(
    our: &Address,
    message: &Message,
    request: api::Request,
) -> (api::Response, Option<Vec<u8>>) {
    let install = matches!(request, api::Request::Install(_));
    if let Err(error) = crate::auth::check(our, message, install) {
        return (refusal(&request, error), None);
    }
    match request {
        api::Request::Link(request) => match link(our, message, &request) {
            Ok((_, linked)) => (api::Response::Link(Ok(linked.report)), Some(linked.bytes)),
            Err(error) => (api::Response::Link(Err(error)), None),
        },
        api::Request::Install(request) => (
            api::Response::Install(install_package(our, message, &request)),
            None,
        ),
        api::Request::Explain(request) => (
            api::Response::Explain(explain(our, message, &request)),
            None,
        ),
        api::Request::ListApis => (api::Response::ListApis(crate::apis::list()), None),
    }
}

/// The response to a refused request, in the request's own variant.
fn refusal(request: &api::Request, error: LinkerError) -> api::Response {
    match request {
        api::Request::Link(_) => api::Response::Link(Err(error)),
        api::Request::Install(_) => api::Response::Install(Err(error)),
        api::Request::Explain(_) => api::Response::Explain(Err(error)),
        api::Request::ListApis => api::Response::ListApis(Err(error)),
    }
}

/// A linked package: its zip and the report for the response.
struct Linked {
    bytes: Vec<u8>,
    report: api::LinkReport,
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
fn link(
    our: &Address,
    message: &Message,
    request: &LinkRequest,
) -> Result<(Inputs, Linked), LinkerError> {
    let inputs = inputs::gather(our, message, request)?;
    let package_sha = store::sha256_hex(&inputs.package.bytes);
    let digests = inputs.api_digests();
    let apis: Vec<(&str, &str)> = digests
        .iter()
        .map(|d| (d.name.as_str(), d.sha256.as_str()))
        .collect();
    let key = store::cache_key((&inputs.package.name, &package_sha), &apis);
    let linked = match store::cached(&key) {
        Some((bytes, report)) => Linked {
            bytes,
            report: convert::link_report(&report, true),
        },
        None => {
            let api_inputs: Vec<Input<'_>> = inputs
                .apis
                .iter()
                .map(|api| Input {
                    name: &api.name,
                    bytes: &api.bytes,
                })
                .collect();
            let package = Input {
                name: &inputs.package.name,
                bytes: &inputs.package.bytes,
            };
            let linked = linker_core::link(package, &api_inputs, &options())
                .map_err(|e| LinkerError::from(&e))?;
            store::cache(&key, &linked.bytes, &linked.report);
            Linked {
                report: convert::link_report(&linked.report, false),
                bytes: linked.bytes,
            }
        }
    };
    for api in &inputs.apis {
        if let Err(failure) = store::mirror(&api.name, &api.bytes) {
            println!("linker: cannot mirror {}: {}", api.name, failure.reason);
        }
    }
    Ok((inputs, linked))
}

fn install_package(
    our: &Address,
    message: &Message,
    request: &LinkRequest,
) -> Result<api::InstallReport, LinkerError> {
    // The id is needed before linking, so a package without one is refused without work.
    if request.metadata.is_none() && !matches!(request.source, api::PackageSource::Installed(_)) {
        return Err(LinkerError::NoPackageId);
    }
    let (inputs, linked) = link(our, message, request)?;
    let package = inputs.package_id.clone().ok_or(LinkerError::NoPackageId)?;
    let previous = store::record(&package).map_err(LinkerError::Unreadable)?;
    let wit_version = inputs
        .wit_version()
        .or_else(|| previous.as_ref().and_then(|record| record.wit_version));
    let installed = install::install(
        our,
        &install::Upload {
            package: &package,
            original: &inputs.package.bytes,
            linked: &linked.bytes,
            wit_version,
        },
    )?;
    let version_hash = store::sha256_hex(&inputs.package.bytes);
    let linked_hash = store::sha256_hex(&linked.bytes);
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
    };
    if let Err(failure) = store::save_record(&record) {
        println!(
            "linker: installed {package} but cannot record it: {}",
            failure.reason
        );
    }
    Ok(api::InstallReport {
        package,
        version_hash,
        linked_hash,
        link: linked.report,
        processes: installed.processes,
        replaced: installed.replaced,
    })
}

fn explain(
    our: &Address,
    message: &Message,
    request: &LinkRequest,
) -> Result<api::Explanation, LinkerError> {
    let inputs = inputs::gather(our, message, request)?;
    let apis: Vec<Input<'_>> = inputs
        .apis
        .iter()
        .map(|api| Input {
            name: &api.name,
            bytes: &api.bytes,
        })
        .collect();
    let package = Input {
        name: &inputs.package.name,
        bytes: &inputs.package.bytes,
    };
    let explanation =
        linker_core::explain(package, &apis, &options()).map_err(|e| LinkerError::from(&e))?;
    Ok(convert::explanation(&explanation, inputs.api_digests()))
}
