//! The linker's page on the node's HTTP server, at `/linker:linker:sys/`, and its homepage widget.
//!
//! At start the linker binds, through `http-server:distro:sys` (the `Bind` action of
//! kinode_process_lib's `http::server`, authenticated, so only the node's owner reaches it):
//! every file of its `pkg/ui` as a cached static file (`index.html` also at `/`), and its JSON
//! API, answered here as `HttpResponse` bodies with the JSON as blob:
//!
//! - `GET /api/state`: `{version, auto, packages, apis}`, where `packages` is what `Packages`
//!   answers and `apis` what `ListApis` answers (the same functions, so the page never has a
//!   second source of truth); `version` moves whenever the linker writes one of its records.
//! - `GET /api/version`: `{version}`, which the page polls to know when to fetch the state again.
//! - `POST /api/explain` `{"package": "app:test.os"}`: what `Explain` of the installed package says.
//! - `POST /api/auto` `{"enabled": true|false}`: the auto-linking switch.
//! - `POST /api/relink` `{"package": "app:test.os"}`: links and installs the installed package.
//!
//! Changing requests arrive only from this node's `http-server:distro:sys`, on an authenticated
//! binding, which the linker granted its messaging capability (as for kit uploads): they count as
//! authorised like a request attaching that capability; from anyone else they are refused. Bad
//! input is answered `400` (`404`, `405`) and changes nothing.
//!
//! The widget (`homepage:homepage:sys` `Add`) is HTML the homepage shows in an iframe; it is sent
//! again whenever the version moved.

use std::collections::HashMap;

use kinode_process_lib::http::server::{HttpResponse, HttpServerAction, IncomingHttpRequest};
use kinode_process_lib::{println, Address, LazyLoadBlob, Request};
use serde::Deserialize;

use crate::api::{self, LinkRequest, LinkerError};
use crate::inputs::{self, Caller};
use crate::mailbox::Answer;
use crate::node;
use crate::service;
use crate::store::Trigger;

/// Where the page's files are, in the linker's package drive.
const UI: &str = "/linker:sys/pkg/ui";

/// The page, as the homepage links to it.
const PAGE: &str = "/linker:linker:sys/";

/// The API paths bound, each answered by [`answer`].
const API: [&str; 5] = [
    "/api/state",
    "/api/version",
    "/api/explain",
    "/api/auto",
    "/api/relink",
];

/// Seconds to wait for the HTTP server to bind a path.
const BIND_TIMEOUT: u64 = 5;

/// The icon on the homepage: a small graph, as a base64 SVG.
const ICON: &str = "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAyNCAyNCI+PGNpcmNsZSBjeD0iNiIgY3k9IjYiIHI9IjMiIGZpbGw9IiM0NDgiLz48Y2lyY2xlIGN4PSIxOCIgY3k9IjE4IiByPSIzIiBmaWxsPSIjNDg0Ii8+PHBhdGggZD0iTTYgOSBMMTggMTUiIHN0cm9rZT0iIzQ0NCIgc3Ryb2tlLXdpZHRoPSIyIi8+PC9zdmc+";

thread_local! {
    /// Whether the page is served (the HTTP server bound it).
    static SERVING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The version the widget was last sent for.
    static WIDGET: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Binds the page and its API, and adds the linker to the homepage. A failure is printed: the
/// linker works without its page.
pub fn serve(our: &Address) {
    if let Err(failure) = bind_all() {
        println!(
            "linker: cannot serve its page: {}: {}",
            failure.step, failure.reason
        );
        return;
    }
    SERVING.with(|serving| serving.set(true));
    refresh_widget(our);
}

fn bind_all() -> Result<(), api::StepFailure> {
    for (name, _) in node::read_dir(UI)? {
        let file = LazyLoadBlob::new(Some(mime(&name)), node::read(&format!("{UI}/{name}"))?);
        if name == "index.html" {
            bind("/", Some(file.clone()))?;
        }
        bind(&format!("/{name}"), Some(file))?;
    }
    for path in API {
        bind(path, None)?;
    }
    Ok(())
}

/// The type the HTTP server serves a file of the page as (it serves the blob's).
fn mime(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// Binds one authenticated path: a static file if `blob` is given, else forwarded to the linker.
fn bind(path: &str, blob: Option<LazyLoadBlob>) -> Result<(), api::StepFailure> {
    let step = format!("Bind {path}");
    let action = HttpServerAction::Bind {
        path: path.to_owned(),
        authenticated: true,
        local_only: false,
        cache: blob.is_some(),
    };
    let failure = |reason: String| api::StepFailure {
        step: step.clone(),
        reason,
    };
    let body = serde_json::to_vec(&action).map_err(|e| failure(e.to_string()))?;
    let mut request = Request::to(("our", "http-server", "distro", "sys")).body(body);
    if let Some(file) = blob {
        request = request.blob(file);
    }
    let answer = crate::mailbox::await_response(request, BIND_TIMEOUT).map_err(failure)?;
    match serde_json::from_slice::<Result<(), serde_json::Value>>(answer.body()) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(failure(error.to_string())),
        Err(error) => Err(failure(format!("unreadable answer: {error}"))),
    }
}

/// Sends the widget again (on each tick) if the page is served and the linker's records changed
/// since it was last sent.
pub fn refresh_widget(our: &Address) {
    if !SERVING.with(std::cell::Cell::get) {
        return;
    }
    let version = crate::store::version();
    if WIDGET.with(|sent| sent.borrow().as_deref() == Some(version.as_str())) {
        return;
    }
    WIDGET.with(|sent| *sent.borrow_mut() = Some(version));
    let packages = service::packages().unwrap_or_default();
    let body = serde_json::json!({
        "Add": {
            "label": "Linker",
            "icon": ICON,
            "path": "/",
            "widget": widget(&packages),
        }
    });
    let sent = Request::to((our.node(), "homepage", "homepage", "sys"))
        .body(body.to_string())
        .send();
    if let Err(error) = sent {
        println!("linker: cannot update its homepage widget: {error}");
    }
}

/// The widget's HTML: whether everything is linked, and every package that is not, with the
/// missing library and what to do.
fn widget(packages: &[api::PackageInfo]) -> String {
    let mut problems = String::new();
    for info in packages {
        if let api::PackageStatus::Failed(error) = &info.status {
            for (library, hint) in missing(error) {
                problems.push_str(&format!(
                    "<li><b>{}</b> lacks <code>{}</code>: {}</li>",
                    escape(&info.package),
                    escape(&library),
                    escape(&hint)
                ));
            }
        }
        for api in &info.missing_apis {
            problems.push_str(&format!(
                "<li><b>{}</b> runs with its copy of <code>{}</code>, which was removed: \
                 install it again to update it</li>",
                escape(&info.package),
                escape(api)
            ));
        }
    }
    let summary = if problems.is_empty() {
        format!(
            "<p class=\"ok\" id=\"summary\">Everything is linked ({} packages).</p>",
            packages.len()
        )
    } else {
        format!("<p class=\"bad\" id=\"summary\">Not linked:</p><ul>{problems}</ul>")
    };
    format!(
        "<html><head><style>body{{font:14px system-ui,sans-serif;margin:8px;color:#222}}\
         .ok{{color:#176b2c}}.bad{{color:#a3151b;font-weight:600}}ul{{padding-left:18px;margin:4px 0}}\
         li{{margin:4px 0}}code{{background:#f2f2f2;padding:0 3px}}a{{color:#2450a8}}</style></head>\
         <body>{summary}<a href=\"{PAGE}\" target=\"_top\">Open the linker</a></body></html>"
    )
}

/// The libraries a failed link lacks, each with its hint; a failure that is not about a library
/// is one line with its kind.
fn missing(error: &LinkerError) -> Vec<(String, String)> {
    let mut missing: Vec<(String, String)> = match error {
        LinkerError::Unresolved(imports) => imports
            .iter()
            .map(|import| (import.name.clone(), import.hint.clone()))
            .collect(),
        LinkerError::MissingDependency(missing) => {
            vec![(missing.dependency.clone(), missing.hint.clone())]
        }
        LinkerError::FetchFailed(failure) => {
            vec![(failure.library.clone(), fetch_hint(&failure.problem))]
        }
        other => vec![(
            "(no library)".to_owned(),
            serde_json::to_string(other).unwrap_or_default(),
        )],
    };
    // Components importing the same library report it each: the widget names it once.
    let mut seen = Vec::new();
    missing.retain(|pair| {
        let new = !seen.contains(pair);
        seen.push(pair.clone());
        new
    });
    missing
}

/// Why a listed library could not be fetched, and what to do, in words.
fn fetch_hint(problem: &api::FetchProblem) -> String {
    let why = match problem {
        api::FetchProblem::NoVersionHash(version) => {
            format!("its listing on chain names no hash for its current version {version}")
        }
        api::FetchProblem::NoApi(version) => {
            format!("version {version} of its package has no api.zip")
        }
        api::FetchProblem::Nodes(nodes) => {
            let tried: Vec<String> = nodes
                .tried
                .iter()
                .map(|failure| {
                    let reason = match &failure.reason {
                        api::NodeFailureReason::Offline => "offline".to_owned(),
                        api::NodeFailureReason::TimedOut(seconds) => {
                            format!("no answer within {seconds} s")
                        }
                        api::NodeFailureReason::NotMirroring => "not mirroring it".to_owned(),
                        api::NodeFailureReason::SentNothing(seconds) => {
                            format!("sent nothing within {seconds} s")
                        }
                        api::NodeFailureReason::HashMismatch(_) => {
                            "sent bytes of another hash".to_owned()
                        }
                        api::NodeFailureReason::Failed(reason) => reason.clone(),
                    };
                    format!("{} {reason}", failure.node)
                })
                .collect();
            format!(
                "version {} could not be fetched (tried {})",
                nodes.version,
                if tried.is_empty() {
                    "no node".to_owned()
                } else {
                    tried.join("; ")
                }
            )
        }
    };
    format!("{why}: install it from the app store once a node that serves it is online")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Whether an HTTP request only reads.
pub fn is_read(request: &IncomingHttpRequest) -> bool {
    request.method().is_ok_and(|method| method == "GET")
}

/// A `POST` body naming a package.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackageBody {
    package: String,
}

/// A `POST /api/auto` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoBody {
    enabled: bool,
}

/// Answers one HTTP request forwarded by the HTTP server.
pub fn answer(
    our: &Address,
    source: &Address,
    request: &IncomingHttpRequest,
    body: Option<&[u8]>,
) -> Answer {
    let path = request.bound_path(Some(&our.process.to_string()));
    let method = request.method().map(|m| m.to_string()).unwrap_or_default();
    let write = method == "POST";
    if write && (source.node() != our.node() || source.process != "http-server:distro:sys") {
        return json(
            403,
            &serde_json::json!({ "error": format!("{source} may not change the linker's state") }),
        );
    }
    let body = body.unwrap_or_default();
    match (method.as_str(), path) {
        ("GET", "/api/state") => match state() {
            Ok(state) => json(200, &state),
            Err(error) => json(500, &error_json(&error)),
        },
        ("GET", "/api/version") => json(
            200,
            &serde_json::json!({ "version": crate::store::version() }),
        ),
        ("POST", "/api/auto") => match serde_json::from_slice::<AutoBody>(body) {
            Ok(AutoBody { enabled }) => match crate::watch::switch(Some(enabled)) {
                Ok(enabled) => json(200, &serde_json::json!({ "enabled": enabled })),
                Err(error) => json(500, &error_json(&error)),
            },
            Err(error) => bad(&format!(
                "the body must be {{\"enabled\": true|false}}: {error}"
            )),
        },
        ("POST", "/api/explain" | "/api/relink") => {
            let package = match serde_json::from_slice::<PackageBody>(body) {
                Ok(PackageBody { package }) => package,
                Err(error) => {
                    return bad(&format!(
                        "the body must be {{\"package\": \"name:publisher\"}}: {error}"
                    ))
                }
            };
            let Some(id) = inputs::package_id(&package) else {
                return bad(&format!("`{package}` is not a package id (name:publisher)"));
            };
            if path == "/api/explain" {
                explain(our, source, id)
            } else {
                relink(our, source, id)
            }
        }
        (_, path) if API.contains(&path) => json(
            405,
            &serde_json::json!({ "error": format!("{method} is not allowed on {path}") }),
        ),
        (_, path) => json(
            404,
            &serde_json::json!({ "error": format!("no such API: {path}") }),
        ),
    }
}

fn explain(our: &Address, source: &Address, id: api::PackageId) -> Answer {
    let request = LinkRequest {
        source: api::PackageSource::Installed(id),
        metadata: None,
        apis: Vec::new(),
    };
    let mut caller = Caller {
        source,
        capabilities: &[],
        blob: None,
        installed: None,
    };
    match service::explain(our, &mut caller, &request) {
        Ok(explanation) => json(200, &explanation),
        Err(error) => json(status_of(&error), &error_json(&error)),
    }
}

fn relink(our: &Address, source: &Address, id: api::PackageId) -> Answer {
    let request = LinkRequest {
        source: api::PackageSource::Installed(id),
        metadata: None,
        apis: Vec::new(),
    };
    let mut caller = Caller {
        source,
        capabilities: &[],
        blob: None,
        installed: None,
    };
    match service::install_package_with(our, &mut caller, &request, Trigger::Request, Some(&[])) {
        Ok(report) => json(200, &report),
        Err(error) => json(status_of(&error), &error_json(&error)),
    }
}

/// `400` for what the request got wrong (a package not installed), `409` for a package that does
/// not link, `503` when busy, else `500`.
fn status_of(error: &LinkerError) -> u16 {
    match error {
        LinkerError::NotInstalled(_) | LinkerError::NoPackageId | LinkerError::NotLinked(_) => 400,
        LinkerError::Busy(_) => 503,
        LinkerError::Unresolved(_)
        | LinkerError::MissingDependency(_)
        | LinkerError::Forbidden(_)
        | LinkerError::Bounds(_) => 409,
        _ => 500,
    }
}

/// What the page shows: the version, the switch, and the answers of `Packages` and `ListApis`.
fn state() -> Result<serde_json::Value, LinkerError> {
    Ok(serde_json::json!({
        "version": crate::store::version(),
        "auto": crate::watch::switch(None)?,
        "packages": service::packages()?,
        "apis": crate::apis::list()?,
    }))
}

fn error_json(error: &LinkerError) -> serde_json::Value {
    serde_json::json!({ "error": error })
}

fn bad(message: &str) -> Answer {
    json(400, &serde_json::json!({ "error": message }))
}

/// An `HttpResponse` with `value` as its JSON blob.
fn json(status: u16, value: &impl serde::Serialize) -> Answer {
    let blob = serde_json::to_vec(value).unwrap_or_default();
    let response = HttpResponse {
        status,
        headers: HashMap::from([("Content-Type".to_owned(), "application/json".to_owned())]),
    };
    Answer {
        body: serde_json::to_vec(&response).unwrap_or_default(),
        blob: Some(blob),
    }
}
