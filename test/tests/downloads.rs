//! Installs from the app store's downloads and from kit through the linker: a package the app
//! store downloaded to `/app-store:sys/downloads/{pkg}/{version_hash}.zip` is linked against the
//! APIs on the node and installed in the layout the app store expects (its listing rule finds it
//! with the published hash and its API); `kit start-package`-style uploads through
//! `http-server:distro:sys` install too.

use std::time::Duration;

use linker_fixtures::expect;
use linker_test_host::Mailbox;
use linker_tests::node::*;
use serde_json::{json, Value};

/// Puts fixture `name`'s zip where the app store's downloads process would, and returns its
/// version hash.
fn download(s: &Session, name: &str) -> String {
    let zip = read(fixtures().package(name));
    let hash = sha256(&zip);
    let id = fixtures().id(name);
    s.node
        .write_file(&format!("/app-store:sys/downloads/{id}/{hash}.zip"), &zip)
        .expect("writing the download");
    hash
}

fn install_download(s: &Session, name: &str, hash: &str, metadata: Value) -> Value {
    let (package_name, publisher) = fixtures()
        .id(name)
        .split_once(':')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .expect("a package id");
    let request = json!({"Install": {
        "source": {"Download": {
            "package": {"package_name": package_name, "publisher_node": publisher},
            "version_hash": hash,
        }},
        "metadata": metadata,
        "apis": [],
    }});
    let (body, _) = s.ask(
        &s.tester,
        request,
        None,
        vec![linker_test_host::caps::messaging(LINKER)],
    );
    body["Install"].clone()
}

/// The app store's listing rule (KINODE.md 2.7): a drive with `/{pkg}/pkg/{pkg}.zip` is an
/// installed package whose version hash is that zip's SHA-256; it has an API if `/{pkg}/pkg/api`
/// exists.
fn listed(s: &Session, id: &str) -> Option<(String, bool)> {
    let zip = s.file(&format!("/{id}/pkg/{id}.zip"))?;
    let has_api = !s.node.list_dir(&format!("/{id}/pkg/api")).is_empty();
    Some((sha256(&zip), has_api))
}

#[test]
fn a_downloaded_package_is_linked_and_installed_where_the_app_store_finds_it() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    let hash = download(&s, "app");
    let metadata = String::from_utf8(read(fixtures().metadata("app"))).expect("text");
    let report = install_download(&s, "app", &hash, json!(metadata));
    let report = ok(&report);
    assert_eq!(report["version_hash"], hash);
    assert_eq!(report["link"]["apis"][0]["name"], "mathlib:test.os");
    s.wait_for("app:app:test.os", &expect::app());
    assert_eq!(listed(&s, "app:test.os"), Some((hash, true)));
    assert!(s.file("/app:test.os/pkg/link.json").is_some());
    // The library installed through the linker is listed too, with its API.
    let mathlib = sha256(&read(fixtures().package("mathlib")));
    assert_eq!(listed(&s, "mathlib:test.os"), Some((mathlib, true)));
}

/// Stands in for `chain:app-store:sys`: answers `GetApp` with the on-chain form of fixture
/// `name`'s metadata (code_hashes as a list of pairs).
fn chain(s: &Session, name: &str) -> std::thread::JoinHandle<usize> {
    let chain: Mailbox = s.node.mailbox("fake.os@chain:app-store:sys", true);
    let mut metadata: Value =
        serde_json::from_slice(&read(fixtures().metadata(name))).expect("metadata JSON");
    metadata["properties"]["code_hashes"] = json!([["0.1.0", "0".repeat(64)]]);
    metadata["properties"]
        .as_object_mut()
        .map(|p| p.remove("api_includes"));
    std::thread::spawn(move || {
        let mut answered = 0;
        while let Some(request) = chain.recv(Duration::from_secs(30)) {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            assert!(body.get("GetApp").is_some(), "{body}");
            let app = json!({"GetApp": {
                "package_id": body["GetApp"],
                "tba": "0x0", "metadata_uri": "", "metadata_hash": "",
                "metadata": metadata, "auto_update": false,
            }});
            chain.respond(&request, app.to_string(), None, vec![]);
            answered += 1;
        }
        answered
    })
}

#[test]
fn without_metadata_the_dependencies_come_from_the_chain() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    let hash = download(&s, "app");
    let chain = chain(&s, "app");
    let report = install_download(&s, "app", &hash, Value::Null);
    let report = ok(&report);
    assert_eq!(report["link"]["apis"][0]["name"], "mathlib:test.os");
    s.wait_for("app:app:test.os", &expect::app());
    drop(s);
    assert_eq!(chain.join().expect("the chain stand-in"), 1);
}

#[test]
fn a_download_whose_dependency_is_missing_is_refused_and_nothing_is_written() {
    let s = Session::new();
    let hash = download(&s, "app");
    let metadata = String::from_utf8(read(fixtures().metadata("app"))).expect("text");
    let result = install_download(&s, "app", &hash, json!(metadata));
    let missing = &err(&result)["MissingDependency"];
    assert_eq!(missing["package"], "app:test.os");
    assert_eq!(missing["dependency"], "mathlib:test.os");
    assert!(
        missing["hint"]
            .as_str()
            .is_some_and(|hint| hint.contains("install mathlib:test.os")),
        "{missing:#}"
    );
    assert!(s.node.list_dir("/app:test.os").is_empty());
    assert!(s.node.process("app:app:test.os").is_none());
    assert_eq!(listed(&s, "app:test.os"), None);

    // A download that is not what its hash says is refused too.
    let wrong = "0".repeat(64);
    s.node
        .write_file(
            &format!("/app-store:sys/downloads/app:test.os/{wrong}.zip"),
            &read(fixtures().package("app")),
        )
        .expect("write");
    let result = install_download(&s, "app", &wrong, json!(metadata));
    let unreadable = &err(&result)["Unreadable"];
    assert!(
        unreadable["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not the version hash")),
        "{unreadable:#}"
    );
}

#[test]
fn a_kit_upload_through_the_http_server_installs_the_linked_package() {
    use base64::Engine as _;
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    // What `kit start-package` posts to /rpc:distro:sys/message: the linker as the process,
    // metadata.json as the body and the package zip as base64 data. The HTTP server sends it as
    // a request from http-server:distro:sys, with no capabilities.
    let message = json!({
        "node": null,
        "process": "linker:linker:sys",
        "inherit": false,
        "expects_response": 15,
        "body": String::from_utf8(read(fixtures().metadata("app"))).expect("UTF-8 metadata"),
        "metadata": null,
        "context": null,
        "mime": "application/zip",
        "data": base64::engine::general_purpose::STANDARD.encode(read(fixtures().package("app"))),
    });
    let (status, answer) = http_request(
        &s.node,
        "POST",
        "/rpc:distro:sys/message",
        message.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: Value = serde_json::from_slice(&answer).expect("RpcResponseBody JSON");
    let body: Vec<u8> = serde_json::from_value(answer["body"].clone()).expect("the body's bytes");
    let body: Value = serde_json::from_slice(&body).expect("the linker's answer is JSON");
    let report = ok(&body["Install"]);
    assert_eq!(report["package"], "app:test.os");
    s.wait_for("app:app:test.os", &expect::app());
    assert_eq!(
        listed(&s, "app:test.os"),
        Some((sha256(&read(fixtures().package("app"))), true))
    );
}
