//! What the terminal scripts of `linker:sys` (`link`, `apis`, `linked`) share. A script does no
//! linking itself: it turns its arguments into one request to `linker:linker:sys`
//! (`api/linker:sys-v0.wit`), waits for the answer and returns it as text for the terminal.
//!
//! - [`api`]: the linker API bindings, and the export macro the script crates use;
//! - [`ask`]: sending a request with the capabilities it needs, and reading the response;
//! - [`show`]: reports as short aligned tables, and every error as one line saying what to do.
#![cfg(target_arch = "wasm32")]

pub mod api;
pub mod show;

use kinode_process_lib::{get_capability, Address, Capability, Request};

use crate::api::{PackageId, Response};

/// How long a script waits for the linker, in seconds: an install composes and starts processes.
const TIMEOUT_SECS: u64 = 600;

/// `linker:linker:sys` on this node.
pub fn linker(our: &Address) -> Address {
    Address::new(our.node(), ("linker", "linker", "sys"))
}

/// The script's messaging capability for the linker, which `install` must attach.
pub fn linker_capability(our: &Address) -> Option<Capability> {
    get_capability(&linker(our), "\"messaging\"")
}

/// The script's VFS root capability, if its scripts.json entry requested it (the linker reads a
/// VFS path for a script only if it attaches a capability covering it).
pub fn vfs_root_capability(our: &Address) -> Option<Capability> {
    get_capability(
        &Address::new(our.node(), ("vfs", "distro", "sys")),
        "{\"root\":true}",
    )
}

/// Sends `request` to the linker with `capabilities` attached and waits for its response. The
/// error is one line for the terminal.
pub fn ask(
    our: &Address,
    request: &api::Request,
    capabilities: Vec<Capability>,
) -> Result<Response, String> {
    let body = serde_json::to_vec(request).map_err(|e| format!("cannot encode a request: {e}"))?;
    let answer = Request::to(linker(our))
        .body(body)
        .capabilities(capabilities)
        .send_and_await_response(TIMEOUT_SECS)
        .map_err(|e| format!("cannot send to the linker: {e}"))?
        .map_err(|e| {
            format!(
                "the linker did not answer ({:?}): is linker:sys installed, and does this \
                 script's scripts.json entry grant the linker a capability to answer it?",
                e.kind
            )
        })?;
    let response: Response = serde_json::from_slice(answer.body()).map_err(|e| {
        format!("the linker's answer is not understood ({e}): reinstall linker:sys so that the scripts and the linker match")
    })?;
    match response {
        Response::BadRequest(reason) => Err(format!(
            "the linker refused the request ({reason}): reinstall linker:sys so that the scripts \
             and the linker match"
        )),
        response => Ok(response),
    }
}

/// A package id `name:publisher` (exactly one `:`, no `/`, both parts non-empty).
pub fn package_id(text: &str) -> Option<PackageId> {
    let (name, publisher) = text.split_once(':')?;
    let valid = |part: &str| !part.is_empty() && !part.contains([':', '/']);
    (valid(name) && valid(publisher)).then(|| PackageId {
        package_name: name.to_owned(),
        publisher_node: publisher.to_owned(),
    })
}

/// `name:publisher`.
pub fn package_id_string(id: &PackageId) -> String {
    format!("{}:{}", id.package_name, id.publisher_node)
}

/// The error when the linker answers with a response for another request.
pub const UNEXPECTED: &str = "the linker answered another request: reinstall linker:sys so that \
                              the scripts and the linker match";
