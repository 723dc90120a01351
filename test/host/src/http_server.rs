//! `http-server:distro:sys` as far as a process's page goes, and `homepage:homepage:sys`'s `Add`
//! (the kinode repo's `kinode/src/http/server.rs` and `utils.rs`, `kinode/packages/homepage`):
//! an [`HttpServer`] listens on `127.0.0.1` at a free port and is a mailbox at
//! `our@http-server:distro:sys` (and one at `our@homepage:homepage:sys`); every [`crate::Node`]
//! starts one.
//!
//! As the runtime does: `Bind {path, authenticated, local_only, cache}` binds
//! `/{process}{path}` (the path without a trailing `/`; the homepage's own paths unprefixed) and
//! is answered `{"Ok": null}`; a request's path is looked up without its trailing `/`, then by its
//! first segment (the process's base binding), else `404`; on an authenticated binding, a request
//! without the owner's cookie `kinode-auth_{node}` gets the login page with status `200` and is
//! not forwarded; a `GET` of a cached binding gets the bound blob with its MIME type
//! (`text/plain` without one); anything else is forwarded to the process as
//! `HttpServerRequest::Http(IncomingHttpRequest)` with the body as blob, expecting a response
//! within 15 s (`408` if none, `500` if it cannot be read), whose `HttpResponse {status, headers}`
//! and blob become the answer.
//!
//! `/rpc:distro:sys/message`, bound at start local-only and unauthenticated (kit's way in,
//! `handle_rpc_message`): a `POST` of `RpcMessage {node, process, body, metadata, expects_response,
//! data}` JSON is sent as a request from `http-server:distro:sys` to `node@process` (this node if
//! no `node`), `body` as the body and `data` base64-decoded as the blob; unreadable JSON or process
//! id gets `400`. Without `expects_response` it is answered `200` at once; with it, by
//! `RpcResponseBody {body, lazy_load_blob}` JSON (the blob's bytes base64-encoded), or `408`.
//!
//! Simplified: the cookie's value is a random secret this server made ([`HttpServer::cookie`]),
//! not a JWT signed with the node's key, and there is no `/login`; one request per connection
//! (`Connection: close`), no TLS, no WebSockets, no `SecureBind` subdomains, no route parameters.
//! The homepage keeps each process's `Add` (label, icon, path, widget) and renders them at `/` as
//! the real homepage's UI does: a link per app and each widget in an `<iframe srcdoc>`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

use crate::{IncomingKind, Mailbox, Node};

/// How long the server waits for a process to answer (`HTTP_SELF_IMPOSED_TIMEOUT`).
const TIMEOUT_SECS: u64 = 15;

/// The login page an unauthenticated request gets instead of what it asked for.
pub const LOGIN_PAGE: &str = "<!doctype html><title>Login</title><p>Log in to your node.</p>";

/// A bound path.
#[derive(Clone, Debug)]
struct Binding {
    process: String,
    authenticated: bool,
    local_only: bool,
    /// The cached file: MIME type and bytes.
    content: Option<(Option<String>, Vec<u8>)>,
}

/// What a homepage `Add` registered.
#[derive(Clone, Debug)]
struct App {
    process: String,
    label: String,
    path: Option<String>,
    widget: Option<String>,
}

#[derive(Default)]
struct Shared {
    bindings: HashMap<String, Binding>,
    apps: Vec<App>,
}

/// A process's answer: status, headers and body.
type Answered = (u16, Vec<(String, String)>, Vec<u8>);

/// A request a connection hands to the server's mailbox thread to forward.
struct Forward {
    /// `node@process:package:publisher`.
    target: String,
    body: Vec<u8>,
    metadata: Option<String>,
    blob: Option<Vec<u8>>,
    /// Seconds the server waits for the answer; `None` sends it fire-and-forget.
    expects_response: Option<u64>,
    /// Whether the answer is an RPC one (`RpcResponseBody`) rather than an `HttpResponse`.
    rpc: bool,
    answer: Sender<Answered>,
}

/// The process the runtime binds `/rpc:distro:sys/message` to.
const RPC: &str = "rpc:distro:sys";
/// The path of kit's messages, bound local-only and unauthenticated at start.
const RPC_PATH: &str = "/rpc:distro:sys/message";

/// The node's HTTP server and homepage, on loopback. Dropping it stops both.
pub struct HttpServer {
    address: SocketAddr,
    secret: String,
    our: String,
    stop: Arc<AtomicBool>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.address);
    }
}

impl HttpServer {
    /// Starts the server and the homepage for `node` (before the processes that bind paths).
    ///
    /// # Errors
    /// If no loopback port can be had.
    pub fn start(node: &Node) -> Result<HttpServer> {
        let our = node.our().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1")?;
        let address = listener.local_addr()?;
        let secret = format!("{:032x}", rand_u128());
        let mut bindings = HashMap::new();
        bindings.insert(
            RPC_PATH.to_owned(),
            Binding {
                process: RPC.to_owned(),
                authenticated: false,
                local_only: true,
                content: None,
            },
        );
        let shared = Arc::new(Mutex::new(Shared {
            bindings,
            apps: Vec::new(),
        }));
        let server = node.mailbox(&format!("{our}@http-server:distro:sys"), true);
        let homepage = node.mailbox(&format!("{our}@homepage:homepage:sys"), false);
        let (forward_tx, forward_rx) = mpsc::channel::<Forward>();
        let loop_shared = Arc::clone(&shared);
        let stop = Arc::new(AtomicBool::new(false));
        let loop_stop = Arc::clone(&stop);
        thread::spawn(move || {
            serve_messages(&server, &homepage, &loop_shared, &forward_rx, &loop_stop)
        });
        let listener_stop = Arc::clone(&stop);
        let cookie = format!("kinode-auth_{our}={secret}");
        let listener_our = our.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if listener_stop.load(Ordering::SeqCst) {
                    break;
                }
                let shared = Arc::clone(&shared);
                let forward = forward_tx.clone();
                let cookie = cookie.clone();
                let our = listener_our.clone();
                thread::spawn(move || {
                    let _ = connection(stream, &shared, &forward, &cookie, &our);
                });
            }
        });
        Ok(HttpServer {
            address,
            secret,
            our,
            stop,
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The owner's login cookie, `name=value`.
    pub fn cookie(&self) -> (String, String) {
        (format!("kinode-auth_{}", self.our), self.secret.clone())
    }
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut hasher = state.build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (u128::from(hasher.finish()) << 64) | u128::from(state.build_hasher().finish())
}

/// The mailboxes' thread: binds paths, keeps homepage entries, forwards requests.
fn serve_messages(
    server: &Mailbox,
    homepage: &Mailbox,
    shared: &Mutex<Shared>,
    forwards: &Receiver<Forward>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        while let Some(incoming) = server.recv(Duration::from_millis(5)) {
            if !matches!(incoming.kind, IncomingKind::Request { .. }) {
                continue;
            }
            let process = process_of(&incoming.source);
            let answer = match serde_json::from_slice::<Value>(&incoming.body) {
                Ok(action) => bind(
                    shared,
                    &process,
                    &action,
                    incoming.mime.clone(),
                    incoming.blob.clone(),
                ),
                Err(_) => json!({"Err": "MalformedRequest"}),
            };
            if let IncomingKind::Request {
                expects_response: Some(_),
            } = incoming.kind
            {
                server.respond(&incoming, answer.to_string(), None, vec![]);
            }
        }
        while let Some(incoming) = homepage.recv(Duration::from_millis(5)) {
            add_app(shared, &incoming.source, &incoming.body);
        }
        while let Ok(forward) = forwards.try_recv() {
            let mut request =
                crate::mailbox::request(forward.body, forward.expects_response, vec![]);
            request.metadata = forward.metadata;
            let id = server.send_request(&forward.target, request, forward.blob);
            let Some(timeout) = forward.expects_response else {
                continue;
            };
            let reply = server.await_response(id, Duration::from_secs(timeout.min(TIMEOUT_SECS)));
            let answer = match reply {
                Ok(reply) if forward.rpc => (200, html(), rpc_response(reply.body, reply.blob)),
                Ok(reply) => http_response(&reply.body, reply.blob),
                Err(_) => (408, Vec::new(), Vec::new()),
            };
            let _ = forward.answer.send(answer);
        }
    }
}

/// An `HttpResponse {status, headers}` body and its blob as the answer (`500` if unreadable).
fn http_response(body: &[u8], blob: Option<Vec<u8>>) -> Answered {
    let Ok(response) = serde_json::from_slice::<Value>(body) else {
        return (500, Vec::new(), Vec::new());
    };
    let status = response["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok());
    let headers = response["headers"]
        .as_object()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    (status.unwrap_or(500), headers, blob.unwrap_or_default())
}

/// `RpcResponseBody {body, lazy_load_blob}` as the runtime serialises it: the body's bytes, and
/// the blob's bytes base64-encoded, each as a JSON array of numbers.
fn rpc_response(body: Vec<u8>, blob: Option<Vec<u8>>) -> Vec<u8> {
    use base64::Engine as _;
    let blob = blob.map(|bytes| {
        json!({"mime": null, "bytes": base64::engine::general_purpose::STANDARD.encode(bytes).into_bytes()})
    });
    json!({"body": body, "lazy_load_blob": blob})
        .to_string()
        .into_bytes()
}

/// `handle_rpc_message`: the message an RPC request asks the server to send, or `400`.
fn rpc_forward(our: &str, body: &[u8], answer: Sender<Answered>) -> Result<Forward, u16> {
    use base64::Engine as _;
    let message: Value = serde_json::from_slice(body).map_err(|_| 400u16)?;
    let process = message["process"].as_str().ok_or(400u16)?;
    if crate::process::parse_address(&format!("{our}@{process}")).is_none() {
        return Err(400);
    }
    let node = message["node"].as_str().unwrap_or(our);
    let blob = message["data"]
        .as_str()
        .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok());
    Ok(Forward {
        target: format!("{node}@{process}"),
        body: message["body"]
            .as_str()
            .map(|body| body.as_bytes().to_vec())
            .unwrap_or_default(),
        metadata: message["metadata"].as_str().map(str::to_owned),
        blob,
        expects_response: message["expects_response"].as_u64(),
        rpc: true,
        answer,
    })
}

/// `process:package:publisher` of `node@process:package:publisher`.
fn process_of(address: &str) -> String {
    address
        .split_once('@')
        .map_or(address, |(_, p)| p)
        .to_owned()
}

/// `utils::normalize_path`.
fn normalize(path: &str) -> &str {
    path.strip_suffix('/').unwrap_or(path)
}

/// A `Bind` action (others are answered as the runtime answers what it cannot do here).
fn bind(
    shared: &Mutex<Shared>,
    process: &str,
    action: &Value,
    mime: Option<String>,
    blob: Option<Vec<u8>>,
) -> Value {
    let Some(bind) = action.get("Bind") else {
        return json!({"Err": "MalformedRequest"});
    };
    let Some(path) = bind["path"].as_str() else {
        return json!({"Err": "MalformedRequest"});
    };
    let cache = bind["cache"].as_bool().unwrap_or(false);
    if cache && blob.is_none() {
        return json!({"Err": "NoBlob"});
    }
    let full = if process == "homepage:homepage:sys" {
        normalize(path).to_owned()
    } else if path.starts_with('/') {
        format!("/{process}{}", normalize(path))
    } else {
        format!("/{process}/{}", normalize(path))
    };
    let binding = Binding {
        process: process.to_owned(),
        authenticated: bind["authenticated"].as_bool().unwrap_or(true),
        local_only: bind["local_only"].as_bool().unwrap_or(false),
        content: cache.then(|| (mime, blob.unwrap_or_default())),
    };
    if let Ok(mut shared) = shared.lock() {
        shared.bindings.insert(full, binding);
    }
    json!({"Ok": null})
}

fn add_app(shared: &Mutex<Shared>, source: &str, body: &[u8]) {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(add) = request.get("Add") else {
        return;
    };
    let process = process_of(source);
    let app = App {
        process: process.clone(),
        label: add["label"].as_str().unwrap_or_default().to_owned(),
        path: add["path"]
            .as_str()
            .map(|path| format!("/{process}{}", normalize(path))),
        widget: add["widget"].as_str().map(str::to_owned),
    };
    if let Ok(mut shared) = shared.lock() {
        shared.apps.retain(|known| known.process != process);
        shared.apps.push(app);
    }
}

/// A parsed HTTP/1.1 request.
struct HttpRequest {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_request(stream: &TcpStream) -> Result<HttpRequest> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().ok_or_else(|| anyhow!("no method"))?.to_owned();
    let target = parts.next().ok_or_else(|| anyhow!("no path"))?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Ok(HttpRequest {
        method,
        path: path.to_owned(),
        query,
        headers,
        body,
    })
}

fn write_response(
    mut stream: &TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// `utils::auth_token_valid`, with the simplified secret.
fn authenticated(request: &HttpRequest, cookie: &str) -> bool {
    request
        .headers
        .get("cookie")
        .is_some_and(|cookies| cookies.split("; ").any(|entry| entry == cookie))
}

/// One connection: one request, answered as `http_handler` answers it.
fn connection(
    stream: TcpStream,
    shared: &Mutex<Shared>,
    forward_tx: &Sender<Forward>,
    cookie: &str,
    our: &str,
) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = read_request(&stream)?;
    let path = normalize(&request.path).to_owned();
    let (binding, apps) = {
        let shared = shared.lock().map_err(|_| anyhow!("poisoned"))?;
        let base = path.split('/').nth(1).map(|base| format!("/{base}"));
        let binding = shared
            .bindings
            .get(&path)
            .or_else(|| base.and_then(|base| shared.bindings.get(&base)))
            .cloned();
        (binding, shared.apps.clone())
    };
    if path.is_empty() || path == "/" {
        if !authenticated(&request, cookie) {
            return write_response(&stream, 200, &html(), LOGIN_PAGE.as_bytes())
                .map_err(Into::into);
        }
        return write_response(&stream, 200, &html(), homepage(&apps).as_bytes())
            .map_err(Into::into);
    }
    let Some(binding) = binding else {
        return write_response(&stream, 404, &[], &[]).map_err(Into::into);
    };
    if binding.authenticated && !authenticated(&request, cookie) {
        return write_response(&stream, 200, &html(), LOGIN_PAGE.as_bytes()).map_err(Into::into);
    }
    let local = stream.peer_addr().is_ok_and(|addr| addr.ip().is_loopback());
    if binding.local_only && !local {
        return write_response(&stream, 403, &[], &[]).map_err(Into::into);
    }
    if binding.process == RPC {
        let (answer_tx, answer_rx) = mpsc::channel();
        let forward = match rpc_forward(our, &request.body, answer_tx) {
            Ok(forward) => forward,
            Err(status) => return write_response(&stream, status, &[], &[]).map_err(Into::into),
        };
        let waits = forward.expects_response.is_some();
        forward_tx
            .send(forward)
            .map_err(|_| anyhow!("the server stopped"))?;
        let (status, headers, body) = if waits {
            answer_rx
                .recv_timeout(Duration::from_secs(TIMEOUT_SECS + 5))
                .unwrap_or((408, Vec::new(), Vec::new()))
        } else {
            (200, Vec::new(), Vec::new())
        };
        return write_response(&stream, status, &headers, &body).map_err(Into::into);
    }
    if request.method == "GET" {
        if let Some((mime, bytes)) = &binding.content {
            let mime = mime.clone().unwrap_or_else(|| "text/plain".to_owned());
            return write_response(&stream, 200, &[("Content-Type".to_owned(), mime)], bytes)
                .map_err(Into::into);
        }
    }
    let host = request
        .headers
        .get("host")
        .map_or("localhost", |host| {
            host.split(':').next().unwrap_or("localhost")
        })
        .to_owned();
    let body = json!({"Http": {
        "source_socket_addr": stream.peer_addr().ok().map(|a| a.to_string()),
        "method": request.method,
        "url": format!("http://{host}{}", request.path),
        "bound_path": bound_path_of(shared, &path),
        "headers": request.headers,
        "url_params": {},
        "query_params": request.query,
    }});
    let (answer_tx, answer_rx) = mpsc::channel();
    forward_tx
        .send(Forward {
            target: format!("{our}@{}", binding.process),
            body: body.to_string().into_bytes(),
            metadata: None,
            blob: Some(request.body),
            expects_response: Some(TIMEOUT_SECS),
            rpc: false,
            answer: answer_tx,
        })
        .map_err(|_| anyhow!("the server stopped"))?;
    let (status, headers, body) = answer_rx
        .recv_timeout(Duration::from_secs(TIMEOUT_SECS + 5))
        .unwrap_or((408, Vec::new(), Vec::new()));
    write_response(&stream, status, &headers, &body).map_err(Into::into)
}

/// The binding a path was matched by: the path itself if bound, else its base.
fn bound_path_of(shared: &Mutex<Shared>, path: &str) -> String {
    let bound = shared
        .lock()
        .is_ok_and(|shared| shared.bindings.contains_key(path));
    if bound {
        path.to_owned()
    } else {
        path.split('/')
            .nth(1)
            .map_or_else(String::new, |base| format!("/{base}"))
    }
}

fn html() -> Vec<(String, String)> {
    vec![
        (
            "Content-Type".to_owned(),
            "text/html; charset=utf-8".to_owned(),
        ),
        ("Cache-Control".to_owned(), "no-store".to_owned()),
    ]
}

/// The homepage: every app's link and widget, each widget in an iframe's `srcdoc`.
fn homepage(apps: &[App]) -> String {
    let attribute = |text: &str| {
        text.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Kinode</title><style>\
         body{font:14px sans-serif;margin:16px}.widget{display:inline-block;border:1px solid #ccc;\
         margin:8px;vertical-align:top}.widget iframe{width:400px;height:260px;border:0}\
         .bottom-bar{background:#eee;padding:2px 8px}</style></head><body><h1>Home</h1><nav>",
    );
    for app in apps {
        if let Some(path) = &app.path {
            page.push_str(&format!(
                "<a class=\"app\" href=\"{}\">{}</a> ",
                attribute(path),
                attribute(&app.label)
            ));
        }
    }
    page.push_str("</nav>");
    for app in apps {
        if let Some(widget) = &app.widget {
            page.push_str(&format!(
                "<div class=\"widget\" data-process=\"{}\"><div class=\"bottom-bar\"><p>{}</p></div>\
                 <iframe srcdoc=\"{}\"></iframe></div>",
                attribute(&app.process),
                attribute(&app.label),
                attribute(widget)
            ));
        }
    }
    page.push_str("</body></html>");
    page
}
