//! Support for tests of the linker process on the test node: a node with `linker:sys` booted, a
//! local tester that may install, and helpers to send the API's JSON requests and read answers.

use std::time::{Duration, Instant};

use linker_fixtures::{linker_package, Fixtures};
use linker_test_host::caps;
use linker_test_host::{AppStore, Downloads, Mailbox, Network, Node, Terminal};
use serde_json::{json, Value};

/// The test node's name.
pub const NODE: &str = "fake.os";
/// The linker process's address.
pub const LINKER: &str = "fake.os@linker:linker:sys";
/// The test's own process: package `tester:test.os`, whose drive it may ask the linker to read.
pub const TESTER: &str = "fake.os@tester:tester:test.os";
/// How long the linker may take to start (wasmtime compiles it first, once per test binary).
pub const BOOT_SECS: u64 = 600;
/// How long to wait for a process to print or change state: a bound for a hang, not a timing. A
/// test that takes 11 s alone took over 60 s of this once, with its binary's five others beside it
/// on a machine other work was loading.
pub const WAIT: Duration = Duration::from_secs(120);

/// The fixture packages, built once.
pub fn fixtures() -> &'static Fixtures {
    linker_fixtures::build().expect("fixtures build (needs `rustup target add wasm32-wasip1`)")
}

/// Reads a file the test needs.
pub fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Lowercase hex SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One HTTP/1.1 request to `node`'s HTTP server, without a cookie: the status and the body.
///
/// # Panics
/// If the server cannot be reached or answers something that is not HTTP.
pub fn http_request(node: &Node, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let address = node.http().url().trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).expect("connects");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .expect("sends");
    stream.write_all(body).expect("sends");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("reads");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("a status");
    (status, response[split + 4..].to_vec())
}

/// A node with the linker booted, and a local tester that holds the linker's messaging
/// capability.
pub struct Session {
    /// The node.
    pub node: Node,
    /// A local process that holds the linker's messaging capability.
    pub tester: Mailbox,
}

impl Session {
    /// Boots a node with the linker and a local tester that holds its messaging capability.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let linker = linker_package().expect("the linker package builds");
        Session::with_linker(&linker.zip)
    }

    /// [`Session::new`] with another build of the `linker:sys` package zip (a benchmark's
    /// baseline).
    pub fn with_linker(zip: &[u8]) -> Self {
        Session::boot(Node::new(NODE).expect("the test node starts"), zip)
    }

    /// [`Session::new`] on `network`, with the app store's `chain:app-store:sys` and
    /// `downloads:app-store:sys` running (the linker may fetch what the node lacks), and a
    /// terminal, started before the linker as on a real node.
    pub fn on(network: &Network) -> (Self, Downloads, Terminal) {
        let node = Node::on(NODE, network).expect("the test node starts");
        node.start_chain().expect("chain:app-store:sys starts");
        let downloads = node
            .start_downloads()
            .expect("downloads:app-store:sys starts");
        let terminal = Terminal::new(&node);
        let linker = linker_package().expect("the linker package builds");
        (Session::boot(node, &linker.zip), downloads, terminal)
    }

    fn boot(node: Node, zip: &[u8]) -> Self {
        node.boot_package("linker:sys", zip, Some(1))
            .expect("the linker boots");
        let tester = Session::local_sender(&node, TESTER);
        node.grant(&process(TESTER), vec![caps::messaging(LINKER)]);
        // The linker is up once it answers: the first node of a test binary waits for wasmtime to
        // compile linker.wasm, so waits in the tests start from a running linker.
        tester
            .request(
                LINKER,
                json!("ListApis").to_string(),
                None,
                vec![],
                BOOT_SECS,
            )
            .unwrap_or_else(|e| panic!("the linker did not start: {e:?}"));
        Session { node, tester }
    }

    /// A local process that can hear the linker's answers: as a terminal script's
    /// `grant_capabilities` would, it gives the linker a messaging capability to itself (the
    /// kernel checks responses like requests).
    pub fn local_sender(node: &Node, address: &str) -> Mailbox {
        let mailbox = node.mailbox(address, false);
        node.grant("linker:linker:sys", vec![caps::messaging(address)]);
        mailbox
    }

    /// Sends a request from `from`, attaching `caps`, and returns the response body and blob.
    pub fn ask(
        &self,
        from: &Mailbox,
        request: Value,
        blob: Option<Vec<u8>>,
        caps: Vec<linker_test_host::Capability>,
    ) -> (Value, Option<Vec<u8>>) {
        let reply = from
            .request(LINKER, request.to_string(), blob, caps, 120)
            .unwrap_or_else(|e| panic!("the linker answers: {e:?}"));
        let body: Value = serde_json::from_slice(&reply.body).expect("the response is JSON");
        (body, reply.blob)
    }

    /// Installs fixture `name` from the tester: the zip as the blob, its metadata, and `apis` as
    /// VFS paths in the tester's drive. Returns the `Install` result (`{"Ok": ..}` or `{"Err": ..}`).
    pub fn install(&self, name: &str, apis: &[&str]) -> Value {
        self.install_with(name, apis, vec![caps::messaging(LINKER)])
    }

    /// [`Session::install`], attaching `attach` instead of the linker's messaging capability.
    pub fn install_with(
        &self,
        name: &str,
        apis: &[&str],
        attach: Vec<linker_test_host::Capability>,
    ) -> Value {
        self.install_zip(name, read(fixtures().package(name)), apis, attach)
    }

    /// Installs `zip` as fixture `name` (its metadata, `apis` as VFS paths in the tester's drive),
    /// attaching `attach`: a fixture changed on the way, with a `library-bounds.json` say.
    pub fn install_zip(
        &self,
        name: &str,
        zip: Vec<u8>,
        apis: &[&str],
        attach: Vec<linker_test_host::Capability>,
    ) -> Value {
        let metadata =
            String::from_utf8(read(fixtures().metadata(name))).expect("metadata is text");
        let request = json!({"Install": {
            "source": "Blob",
            "metadata": metadata,
            "apis": self.upload_apis(apis),
        }});
        let (body, _) = self.ask(&self.tester, request, Some(zip), attach);
        body["Install"].clone()
    }

    /// Writes fixture APIs into the tester's drive and names them as VFS paths.
    pub fn upload_apis(&self, apis: &[&str]) -> Vec<Value> {
        apis.iter()
            .map(|api| {
                let f = fixtures();
                let path = format!("/tester:test.os/uploads/{}-api.zip", f.id(api));
                self.node
                    .write_file(&path, &read(f.api(api)))
                    .expect("writing into the tester's drive");
                json!({ "VfsPath": path })
            })
            .collect()
    }

    /// Waits until process `id` prints `line`.
    pub fn wait_for(&self, id: &str, line: &str) {
        let found = self
            .node
            .wait_for_print(|pid, message| pid == id && message == line, WAIT);
        assert!(
            found.is_some(),
            "{id} did not print {line:?}; prints: {:#?}",
            self.node.prints()
        );
    }

    /// How many times process `id` printed `line`.
    pub fn printed(&self, id: &str, line: &str) -> usize {
        self.node
            .prints()
            .iter()
            .filter(|(pid, print)| pid == id && print.message == line)
            .count()
    }

    /// A file in the node's VFS.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.node.read_file(path)
    }
}

/// The publisher of every fixture.
pub const PUBLISHER: &str = "test.os";
/// A node that mirrors libraries.
pub const MIRROR: &str = "mirror.os";

/// A node on `network` with the app store's downloads, holding `libraries` (fixture names) as
/// published, mirrored.
pub fn serving(network: &Network, name: &str, libraries: &[&str]) -> (Node, Downloads) {
    let node = Node::on(name, network).expect("the node starts");
    let downloads = node.start_downloads().expect("downloads starts");
    for library in libraries {
        let f = fixtures();
        downloads
            .publish(&f.id(library), &read(f.package(library)), true)
            .expect("published");
    }
    (node, downloads)
}

/// Lists fixture `name` on chain as its current version, with `mirrors`; its version hash.
pub fn list_on_chain(network: &Network, name: &str, mirrors: &[&str]) -> String {
    let f = fixtures();
    let hash = sha256(&read(f.package(name)));
    let mut metadata: Value =
        serde_json::from_slice(&read(f.metadata(name))).expect("metadata JSON");
    let version = metadata["properties"]["current_version"].clone();
    metadata["properties"]["code_hashes"] = json!({ version.as_str().unwrap_or("0.1.0"): hash });
    metadata["properties"]["mirrors"] = json!(mirrors);
    network
        .chain()
        .publish(&f.id(name), metadata)
        .expect("listed on chain");
    hash
}

/// `process:package:publisher` of an address.
pub fn process(address: &str) -> String {
    address
        .split_once('@')
        .map_or(address, |(_, p)| p)
        .to_owned()
}

/// A node with the linker and an app store.
pub fn with_app_store() -> (Session, AppStore) {
    let s = Session::new();
    let store = AppStore::new(&s.node);
    (s, store)
}

/// Installs fixture `name` the way the app store does (`NewPackage`, then `Install`); returns its
/// version hash.
pub fn app_store_install(store: &AppStore, name: &str) -> String {
    let f = fixtures();
    let hash = store
        .new_package(&f.id(name), &read(f.package(name)))
        .expect("the download is written");
    store
        .install(&f.id(name), &hash, Some(1))
        .expect("the app store installs");
    hash
}

/// Waits until the linker has handled `version_hash` of `package` and returns what `Linked`
/// says of it.
pub fn handled(s: &Session, package: &str, version_hash: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = linked(s, package);
        if answer["Ok"]["version_hash"] == version_hash {
            return answer["Ok"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the linker did not handle {package} {version_hash}: {answer:#}; prints: {:#?}",
            s.node.prints()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The linker's answer to `Linked` for `package` (`name:publisher`).
pub fn linked(s: &Session, package: &str) -> Value {
    let (package_name, publisher) = package.split_once(':').expect("an id");
    let request = json!({"Linked": {"package_name": package_name, "publisher_node": publisher}});
    s.ask(&s.tester, request, None, vec![]).0["Linked"].clone()
}

/// The `Ok` of a result, or a panic showing the error.
pub fn ok(result: &Value) -> &Value {
    result
        .get("Ok")
        .unwrap_or_else(|| panic!("expected Ok, got {result:#}"))
}

/// The `Err` of a result, or a panic showing the success.
pub fn err(result: &Value) -> &Value {
    result
        .get("Err")
        .unwrap_or_else(|| panic!("expected Err, got {result:#}"))
}

/// The install report's `import -> provider` pairs of one component.
pub fn links(report: &Value, path: &str) -> Vec<(String, String)> {
    let components = report["link"]["components"].as_array().expect("components");
    let component = components
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no component {path} in {report:#}"));
    component["imports"]
        .as_array()
        .expect("imports")
        .iter()
        .map(|import| {
            let provider = &import["outcome"]["Linked"]["provider"];
            (
                import["name"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}/{}",
                    provider["archive"].as_str().unwrap_or("?"),
                    provider["path"].as_str().unwrap_or("?")
                ),
            )
        })
        .collect()
}

/// An `(import, provider)` pair as [`links`] returns them.
pub fn pair(import: &str, provider: &str) -> (String, String) {
    (import.to_owned(), provider.to_owned())
}

/// mathlib's interface.
pub const MATHLIB: &str = "kinode:process/mathlib@1.0.0";
/// textlib's interface.
pub const TEXTLIB: &str = "kinode:process/textlib@1.0.0";
