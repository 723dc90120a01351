//! Nodes on one network, with mailboxes only: messaging between nodes and its capability checks,
//! offline peers, `chain:app-store:sys` listings and `downloads:app-store:sys` transfers.

#![allow(clippy::unwrap_used)] // integration tests: a panic is the failure report

use std::io::{Cursor, Write as _};
use std::time::{Duration, Instant};

use linker_test_host::caps::{messaging, network};
use linker_test_host::{Incoming, IncomingKind, Mailbox, Network, Node, SendErrorKind};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const WAIT: Duration = Duration::from_secs(20);
const PKG: &str = "myapp:b.os";

fn pid() -> Value {
    json!({"package_name": "myapp", "publisher_node": "b.os"})
}

fn two_nodes() -> (Network, Node, Node) {
    let net = Network::new();
    let a = Node::on("a.os", &net).unwrap();
    let b = Node::on("b.os", &net).unwrap();
    (net, a, b)
}

/// A local mailbox holding the network capability.
fn networked(node: &Node, process: &str) -> Mailbox {
    let mailbox = node.mailbox(&format!("{}@{process}", node.our()), false);
    node.grant(process, vec![network(node.our())]);
    mailbox
}

/// Asks `target` from `from`, waiting 5 s; the answer's JSON body.
fn ask(from: &Mailbox, target: &str, body: impl Into<Vec<u8>>) -> Value {
    from.request(target, body, None, vec![], 5)
        .unwrap_or_else(|e| panic!("{target} answers: {e:?}"))
        .json()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored (uncompressed) package zip: `manifest.json` and a `filler` of `size` bytes, so that
/// the zip is bigger than `size`.
fn package_zip(manifest: &str, size: usize, seed: u8) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    writer.start_file("manifest.json", options).unwrap();
    writer.write_all(manifest.as_bytes()).unwrap();
    writer.start_file("filler.bin", options).unwrap();
    let filler: Vec<u8> = (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    writer.write_all(&filler).unwrap();
    writer.finish().unwrap().into_inner()
}

const MANIFEST: &str = r#"[{"process_name":"myapp","process_wasm_path":"/myapp.wasm","on_exit":"Restart","request_networking":false,"request_capabilities":[],"grant_capabilities":[],"public":false}]"#;

/// Waits for the next request a mailbox gets, skipping nothing.
fn next(mailbox: &Mailbox) -> Incoming {
    mailbox.recv(WAIT).expect("a message in time")
}

fn body(incoming: &Incoming) -> Value {
    serde_json::from_slice(&incoming.body).unwrap()
}

/// The next message main gets that is not a progress update; also returns the progress updates.
fn next_completion(main: &Mailbox) -> (Value, Vec<Value>) {
    let mut progress = Vec::new();
    loop {
        let got = body(&next(main));
        if got.get("downloaded").is_some() {
            progress.push(got);
        } else {
            return (got, progress);
        }
    }
}

/// Node A with downloads, its main mailbox and a client mailbox that may message downloads.
fn downloader(a: &Node) -> (linker_test_host::Downloads, Mailbox, Mailbox) {
    let downloads = a.start_downloads().unwrap();
    let main = a.mailbox("a.os@main:app-store:sys", false);
    let client = a.mailbox("a.os@client:tester:test.os", true);
    a.grant(
        "client:tester:test.os",
        vec![messaging("a.os@downloads:app-store:sys")],
    );
    (downloads, main, client)
}

fn local_download(client: &Mailbox, from: &str, hash: &str) {
    let request = json!({"LocalDownload": {
        "package_id": pid(),
        "download_from": from,
        "desired_version_hash": hash,
    }});
    client.send(
        "a.os@downloads:app-store:sys",
        request.to_string(),
        None,
        vec![],
    );
}

#[test]
fn two_nodes_exchange_a_request_and_its_response() {
    let (_net, a, b) = two_nodes();
    let pa = networked(&a, "p:tester:test.os");
    let qb = networked(&b, "q:tester:test.os");
    let id = pa.send_request(
        "b.os@q:tester:test.os",
        linker_test_host::mailbox::request("ping", Some(5), vec![]),
        Some(b"blob".to_vec()),
    );
    let got = next(&qb);
    assert_eq!(got.source, "a.os@p:tester:test.os");
    assert_eq!(got.text(), "ping");
    assert_eq!(got.blob.as_deref(), Some(&b"blob"[..]));
    assert_eq!(
        got.kind,
        IncomingKind::Request {
            expects_response: Some(5)
        }
    );
    qb.respond(&got, "pong", None, vec![]);
    let reply = pa.await_response(id, WAIT).unwrap();
    assert_eq!(reply.source, "b.os@q:tester:test.os");
    assert_eq!(reply.text(), "pong");
}

#[test]
fn networked_messages_need_the_network_cap_at_both_ends() {
    let (_net, a, b) = two_nodes();
    // The sender lacks it: the kernel refuses at once (throw_timeout).
    let plain = a.mailbox("a.os@plain:tester:test.os", false);
    let qb = networked(&b, "q:tester:test.os");
    assert_eq!(
        plain
            .request("b.os@q:tester:test.os", "hi", None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Timeout
    );
    assert!(qb.recv(Duration::from_millis(200)).is_none());
    // The target lacks it: B's kernel drops the message; the sender waits in vain.
    let pa = networked(&a, "p:tester:test.os");
    let _rb = b.mailbox("b.os@r:tester:test.os", false);
    assert_eq!(
        pa.request("b.os@r:tester:test.os", "hi", None, vec![], 1)
            .unwrap_err(),
        SendErrorKind::Timeout
    );
    assert!(b
        .wait_for_print(
            |_, m| m.contains("doesn't have capability to receive networked messages"),
            WAIT
        )
        .is_some());
}

#[test]
fn unreachable_nodes_are_offline() {
    let (net, a, b) = two_nodes();
    let pa = networked(&a, "p:tester:test.os");
    let qb = networked(&b, "q:tester:test.os");
    b.go_offline();
    assert!(!net.is_online("b.os"));
    assert_eq!(
        pa.request("b.os@q:tester:test.os", "hi", None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Offline
    );
    assert!(qb.recv(Duration::from_millis(100)).is_none());
    b.go_online();
    pa.send("b.os@q:tester:test.os", "again", None, vec![]);
    assert_eq!(next(&qb).text(), "again");
    assert_eq!(
        pa.request("nobody.os@q:tester:test.os", "hi", None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Offline
    );
    drop(qb);
    drop(b);
    assert!(!net.is_online("b.os"));
    assert_eq!(net.nodes(), ["a.os"]);
    assert_eq!(
        pa.request("b.os@q:tester:test.os", "hi", None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Offline
    );
    // The name is free again.
    let _b = Node::on("b.os", &net).unwrap();
    assert!(Node::on("a.os", &net).is_err());
}

#[test]
fn chain_answers_the_published_listing() {
    let (net, a, _b) = two_nodes();
    let metadata = json!({
        "name": "My App", "description": "An app", "image": "https://example.com/icon.png",
        "external_url": "https://example.com", "animation_url": "",
        "properties": {"package_name": "myapp", "publisher": "b.os", "current_version": "1.0.1",
            "mirrors": ["b.os"], "code_hashes": {"1.0.0": "aa", "1.0.1": "bb"},
            "wit_version": 1, "dependencies": [], "api_includes": ["api/x.wit"]}
    });
    net.chain().publish(PKG, metadata).unwrap();
    a.start_chain().unwrap();
    assert!(a.start_chain().is_err());
    let client = a.mailbox("a.os@client:tester:test.os", true);
    let get_app = json!({"GetApp": pid()}).to_string();
    // Without the messaging cap: refused.
    assert_eq!(
        client
            .request("a.os@chain:app-store:sys", get_app.clone(), None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Timeout
    );
    a.grant(
        "client:tester:test.os",
        vec![messaging("a.os@chain:app-store:sys")],
    );
    let reply = ask(&client, "a.os@chain:app-store:sys", get_app);
    let app = &reply["GetApp"];
    let tba = app["tba"].as_str().unwrap();
    assert!(tba.starts_with("0x") && tba.len() == 42, "{tba}");
    let hash = app["metadata_hash"].as_str().unwrap();
    assert!(hash.starts_with("0x") && hash.len() == 66, "{hash}");
    assert_eq!(
        reply,
        json!({"GetApp": {
            "package_id": pid(),
            "tba": tba,
            "metadata_uri": "https://example.com/b.os/myapp/metadata.json",
            "metadata_hash": hash,
            "metadata": {"name": "My App", "description": "An app",
                "image": "https://example.com/icon.png", "external_url": "https://example.com",
                "animation_url": "",
                "properties": {"package_name": "myapp", "publisher": "b.os",
                    "current_version": "1.0.1", "mirrors": ["b.os"],
                    "code_hashes": [["1.0.0", "aa"], ["1.0.1", "bb"]],
                    "license": null, "screenshots": null, "wit_version": 1, "dependencies": []}},
            "auto_update": false,
        }})
    );
    assert_eq!(net.chain().onchain_app(PKG).unwrap(), reply["GetApp"]);
    let unknown = json!({"GetApp": {"package_name": "nope", "publisher_node": "b.os"}});
    let reply = ask(&client, "a.os@chain:app-store:sys", unknown.to_string());
    assert_eq!(reply, json!({"GetApp": null}));

    let start = json!({"StartAutoUpdate": pid()}).to_string();
    let reply = ask(&client, "a.os@chain:app-store:sys", start);
    assert_eq!(reply, json!("AutoUpdateStarted"));
    let reply = ask(&client, "a.os@chain:app-store:sys", "\"GetApps\"");
    assert_eq!(reply["GetApps"].as_array().unwrap().len(), 1);
    assert_eq!(reply["GetApps"][0]["auto_update"], json!(true));
    let stop = json!({"StopAutoUpdate": {"package_name": "nope", "publisher_node": "b.os"}});
    let reply = ask(&client, "a.os@chain:app-store:sys", stop.to_string());
    assert_eq!(reply, json!({"Err": "NoPackage"}));

    // A listing removed or replaced is seen at once.
    assert!(net.chain().remove(PKG));
    let reply = ask(
        &client,
        "a.os@chain:app-store:sys",
        json!({"GetApp": pid()}).to_string(),
    );
    assert_eq!(reply, json!({"GetApp": null}));
}

#[test]
fn a_download_from_a_mirror_writes_the_zip_and_manifest_and_tells_main() {
    let (_net, a, b) = two_nodes();
    let zip = package_zip(MANIFEST, 600_000, 1);
    let hash = b
        .start_downloads()
        .unwrap()
        .publish(PKG, &zip, true)
        .unwrap();
    assert_eq!(hash, hex(&Sha256::digest(&zip)));
    let (_downloads, main, client) = downloader(&a);
    local_download(&client, "b.os", &hash);
    let (done, progress) = next_completion(&main);
    assert_eq!(
        done,
        json!({"package_id": pid(), "version_hash": hash, "err": null})
    );
    let total = zip.len() as u64;
    let chunks = total.div_ceil(262_144);
    assert_eq!(progress.len() as u64, chunks);
    assert_eq!(
        progress.last().unwrap(),
        &json!({"package_id": pid(), "version_hash": hash, "downloaded": total, "total": total})
    );
    let dir = "/app-store:sys/downloads/myapp:b.os";
    assert_eq!(a.read_file(&format!("{dir}/{hash}.zip")).unwrap(), zip);
    assert_eq!(
        a.read_file(&format!("{dir}/{hash}.json")).unwrap(),
        MANIFEST.as_bytes()
    );
    // The client got nothing; the workers left the process maps.
    assert!(client.recv(Duration::from_millis(100)).is_none());
    let workers_gone = |node: &Node| {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if !node.processes().iter().any(|p| {
                p.ends_with(":app-store:sys") && p.starts_with(|c: char| c.is_ascii_digit())
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    };
    assert!(workers_gone(&a));
    assert!(workers_gone(&b));

    // GetFiles lists what is there.
    let reply = ask(
        &client,
        "a.os@downloads:app-store:sys",
        json!({"GetFiles": pid()}).to_string(),
    );
    assert_eq!(
        reply,
        json!({"GetFiles": [{"File": {"name": format!("{hash}.zip"), "size": total, "manifest": MANIFEST}}]})
    );
    let reply = ask(
        &client,
        "a.os@downloads:app-store:sys",
        "{\"GetFiles\":null}",
    );
    assert_eq!(
        reply,
        json!({"GetFiles": [{"Dir": {"name": "myapp:b.os", "mirroring": false}}]})
    );
}

#[test]
fn a_mirror_that_does_not_mirror_or_lacks_the_zip_is_reported_to_main() {
    let (_net, a, b) = two_nodes();
    let zip = package_zip(MANIFEST, 1000, 2);
    let b_downloads = b.start_downloads().unwrap();
    let hash = b_downloads.publish(PKG, &zip, false).unwrap();
    let (downloads, main, client) = downloader(&a);
    downloads.set_killswitch(Duration::from_millis(500));
    local_download(&client, "b.os", &hash);
    let (done, _) = next_completion(&main);
    assert_eq!(
        done,
        json!({"package_id": pid(), "version_hash": hash, "err": "NotMirroring"})
    );
    // v1.0.0: the receiver worker lives on until its killswitch.
    let (done, _) = next_completion(&main);
    assert_eq!(
        done,
        json!({"package_id": pid(), "version_hash": hash, "err": "WorkerSpawnFailed"})
    );
    assert!(a
        .read_file(&format!("/app-store:sys/downloads/myapp:b.os/{hash}.zip"))
        .is_none());

    // Mirroring starts with StartMirroring from anywhere, even another node.
    let pa = networked(&a, "p:tester:test.os");
    let reply = ask(
        &pa,
        "b.os@downloads:app-store:sys",
        json!({"StartMirroring": pid()}).to_string(),
    );
    assert_eq!(reply, json!("Success"));
    assert_eq!(b_downloads.mirroring(), [PKG]);
    local_download(&client, "b.os", &hash);
    let (done, _) = next_completion(&main);
    assert_eq!(
        done,
        json!({"package_id": pid(), "version_hash": hash, "err": null})
    );
}

#[test]
fn a_mirrored_package_without_the_zip_is_file_not_found() {
    let (_net, a, b) = two_nodes();
    b.start_downloads().unwrap();
    let admin = b.mailbox("b.os@admin:tester:test.os", true);
    b.grant(
        "admin:tester:test.os",
        vec![messaging("b.os@downloads:app-store:sys")],
    );
    let reply = ask(
        &admin,
        "b.os@downloads:app-store:sys",
        json!({"StartMirroring": pid()}).to_string(),
    );
    assert_eq!(reply, json!("Success"));
    let (_downloads, main, client) = downloader(&a);
    let hash = "1".repeat(64);
    local_download(&client, "b.os", &hash);
    let (done, _) = next_completion(&main);
    assert_eq!(
        done,
        json!({"package_id": pid(), "version_hash": hash, "err": "FileNotFound"})
    );
}

#[test]
fn a_mirror_serving_other_bytes_gives_a_hash_mismatch_then_the_success_quirk() {
    let (_net, a, b) = two_nodes();
    let good = package_zip(MANIFEST, 300_000, 3);
    let bad_manifest = MANIFEST.replace("Restart", "None");
    let bad = package_zip(&bad_manifest, 300_000, 4);
    let b_downloads = b.start_downloads().unwrap();
    let hash = b_downloads.publish(PKG, &good, true).unwrap();
    let dir = "/app-store:sys/downloads/myapp:b.os";
    b.write_file(&format!("{dir}/{hash}.zip"), &bad).unwrap();
    let (_downloads, main, client) = downloader(&a);
    local_download(&client, "b.os", &hash);
    let (mismatch, _) = next_completion(&main);
    assert_eq!(
        mismatch,
        json!({"package_id": pid(), "version_hash": hash, "err": {"HashMismatch": {
            "desired": hash, "actual": hex(&Sha256::digest(&bad))}}})
    );
    let (done, _) = next_completion(&main);
    assert_eq!(
        done,
        json!({"package_id": pid(), "version_hash": hash, "err": null})
    );
    assert_eq!(a.read_file(&format!("{dir}/{hash}.zip")).unwrap(), bad);
    assert_eq!(
        a.read_file(&format!("{dir}/{hash}.json")).unwrap(),
        bad_manifest.as_bytes()
    );
}

#[test]
fn a_listing_can_change_while_a_slowed_download_is_under_way() {
    let (net, a, b) = two_nodes();
    let zip = package_zip(MANIFEST, 600_000, 5);
    let b_downloads = b.start_downloads().unwrap();
    let hash = b_downloads.publish(PKG, &zip, true).unwrap();
    b_downloads.set_chunk_delay(Duration::from_millis(100));
    net.chain()
        .publish(PKG, json!({"properties": {"code_hashes": {"1.0.0": hash}}}))
        .unwrap();
    let (_downloads, main, client) = downloader(&a);
    local_download(&client, "b.os", &hash);
    let first = body(&next(&main));
    assert_eq!(first["downloaded"], json!(262_144));
    assert!(net.chain().remove(PKG));
    let (done, _) = next_completion(&main);
    assert_eq!(done["err"], json!(null));
}

#[test]
fn mirror_check_answers_remote_callers_and_mirroring_survives_a_reboot() {
    let (_net, a, b) = two_nodes();
    let zip = package_zip(MANIFEST, 100, 6);
    let b_downloads = b.start_downloads().unwrap();
    b_downloads.publish(PKG, &zip, true).unwrap();
    assert_eq!(b_downloads.mirroring(), [PKG]);
    let check = json!({"MirrorCheck": pid()}).to_string();
    // A mailbox standing in for a process on another node.
    let stand_in = b.mailbox("c.os@x:tester:test.os", false);
    let reply = ask(&stand_in, "b.os@downloads:app-store:sys", check.clone());
    assert_eq!(reply, json!("Success"));
    // A process on node A, over the network.
    let pa = networked(&a, "p:tester:test.os");
    let reply = ask(&pa, "b.os@downloads:app-store:sys", check.clone());
    assert_eq!(reply, json!("Success"));
    let unknown = json!({"MirrorCheck": {"package_name": "x", "publisher_node": "b.os"}});
    let reply = ask(&pa, "b.os@downloads:app-store:sys", unknown.to_string());
    assert_eq!(reply, json!({"Err": "NotMirroring"}));
    // Remote callers cannot list files: no answer.
    assert_eq!(
        pa.request(
            "b.os@downloads:app-store:sys",
            "{\"GetFiles\":null}",
            None,
            vec![],
            1
        )
        .unwrap_err(),
        SendErrorKind::Timeout
    );
    b.reboot().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&b.state("downloads:app-store:sys").unwrap()).unwrap(),
        json!({"mirroring": [pid()]})
    );
    let reply = ask(&pa, "b.os@downloads:app-store:sys", check);
    assert_eq!(reply, json!("Success"));
}
