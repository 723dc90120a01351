//! The node in miniature against real Rust processes (the `echo` and `probe` fixtures, and the
//! unlinked `app`): routing, blobs, inherit, timeouts, capability checks, kernel commands, spawn,
//! bootstrap, faults and reboot.

#![allow(clippy::unwrap_used)] // integration tests: a panic is the failure report

use std::time::{Duration, Instant};

use linker_test_host::caps::{self, capability, messaging, network, vfs_read, vfs_root, vfs_write};
use linker_test_host::{Fault, IncomingKind, Node, OnExit, ProcessStatus, SendErrorKind};
use serde_json::{json, Value};

const OUR: &str = "fake.os";
const ECHO: &str = "echo:echo:test.os";
const PROBE: &str = "probe:probe:test.os";
const KERNEL: &str = "fake.os@kernel:distro:sys";
const VFS: &str = "fake.os@vfs:distro:sys";
const WAIT: Duration = Duration::from_secs(30);

fn fixture_zip(name: &str) -> Vec<u8> {
    let fixtures = linker_fixtures::build().unwrap();
    std::fs::read(fixtures.package(name)).unwrap()
}

fn component(name: &str, file: &str) -> Vec<u8> {
    let fixtures = linker_fixtures::build().unwrap();
    std::fs::read(fixtures.component(name, file)).unwrap()
}

/// A node with `echo` and `probe` booted and both up.
fn node() -> Node {
    let node = Node::new(OUR).unwrap();
    assert_eq!(
        node.boot_package("echo:test.os", &fixture_zip("echo"), Some(1))
            .unwrap(),
        [ECHO]
    );
    assert_eq!(
        node.boot_package("probe:test.os", &fixture_zip("probe"), Some(1))
            .unwrap(),
        [PROBE]
    );
    wait_print(&node, ECHO, "echo: up");
    wait_print(&node, PROBE, "probe: up");
    node
}

fn wait_print(node: &Node, pid: &str, message: &str) {
    node.wait_for_print(|p, m| p == pid && m == message, WAIT)
        .unwrap_or_else(|| {
            panic!(
                "no print {message:?} from {pid}; prints: {:#?}",
                node.prints()
            )
        });
}

fn kernel_prints(node: &Node) -> Vec<String> {
    node.print_messages("kernel:distro:sys")
}

#[test]
fn boot_package_bootstraps_the_drive_and_manifest_caps() {
    let node = node();
    assert_eq!(
        node.list_dir("/probe:test.os/pkg"),
        [
            "api.zip",
            "manifest.json",
            "probe.wasm",
            "probe:test.os.zip"
        ]
    );
    assert_eq!(
        node.read_file("/probe:test.os/pkg/probe:test.os.zip")
            .unwrap(),
        fixture_zip("probe")
    );
    let probe = node.process(PROBE).unwrap();
    assert_eq!(probe.wasm_bytes_handle, "/probe:test.os/pkg/probe.wasm");
    assert_eq!(probe.wit_version, Some(1));
    assert!(probe.public);
    assert!(matches!(probe.on_exit, OnExit::None));
    assert_eq!(probe.status, Some(ProcessStatus::Running));
    for cap in [
        messaging("fake.os@echo:echo:test.os"),
        messaging(VFS),
        vfs_root(OUR),
        messaging("fake.os@probe:probe:test.os"),
        network(OUR),
        vfs_read(OUR, "/probe:test.os/pkg"),
        vfs_write(OUR, "/probe:test.os/pkg"),
    ] {
        assert!(node.has_capability(PROBE, &cap), "{}", caps::display(&cap));
    }
    assert_eq!(probe.capabilities.len(), 7, "{:?}", probe.capabilities);
    let echo = node.process(ECHO).unwrap();
    assert!(matches!(echo.on_exit, OnExit::Restart));
    assert!(!echo.public);
    assert!(!node.has_capability(ECHO, &network(OUR)));
}

#[test]
fn requests_responses_blobs_and_inherit_are_routed() {
    let node = node();
    let tester = node.mailbox("fake.os@tester:tester:test.os", true);
    tester_grant(&node, &tester);

    let reply = tester
        .request(
            "fake.os@echo:echo:test.os",
            "hello",
            Some(b"B".to_vec()),
            vec![],
            5,
        )
        .unwrap();
    assert_eq!(reply.source, "fake.os@echo:echo:test.os");
    assert_eq!(reply.text(), "olleh");
    assert_eq!(reply.blob.as_deref(), Some(&b"B"[..]));

    // A response with `inherit` takes the blob of the request being handled.
    let reply = tester
        .request(
            "fake.os@echo:echo:test.os",
            "inherit",
            Some(b"kept".to_vec()),
            vec![],
            5,
        )
        .unwrap();
    assert_eq!(reply.text(), "tirehni");
    assert_eq!(reply.blob.as_deref(), Some(&b"kept"[..]));

    // A request with `inherit` keeps the id, blob and rsvp: the sink answers the tester directly.
    let sink = node.mailbox("fake.os@sink:tester:test.os", true);
    let id = tester.send_request(
        "fake.os@echo:echo:test.os",
        linker_test_host::mailbox::request("fwd fake.os@sink:tester:test.os", Some(5), vec![]),
        Some(b"X".to_vec()),
    );
    let forwarded = sink.recv(WAIT).unwrap();
    assert_eq!(forwarded.text(), "forwarded");
    assert_eq!(forwarded.id, id);
    assert!(forwarded.inherit);
    assert_eq!(forwarded.source, "fake.os@echo:echo:test.os");
    assert_eq!(
        forwarded.rsvp.as_deref(),
        Some("fake.os@tester:tester:test.os")
    );
    assert_eq!(forwarded.blob.as_deref(), Some(&b"X"[..]));
    assert_eq!(
        forwarded.kind,
        IncomingKind::Request {
            expects_response: None
        }
    );
    sink.respond(&forwarded, "sunk", None, vec![]);
    let reply = tester.await_response(id, WAIT).unwrap();
    assert_eq!(
        (reply.source.as_str(), reply.text().as_str()),
        ("fake.os@sink:tester:test.os", "sunk")
    );

    // A request with no response expected is just delivered.
    tester.send("fake.os@echo:echo:test.os", "note", None, vec![]);
    wait_print(&node, ECHO, "echo: got note");

    // The probe forwards with inherit: echo gets the probe's blob and answers our mailbox.
    let reply = tester
        .request(
            "fake.os@probe:probe:test.os",
            "inherit fake.os@echo:echo:test.os",
            Some(b"payload".to_vec()),
            vec![],
            5,
        )
        .unwrap();
    assert_eq!(reply.source, "fake.os@echo:echo:test.os");
    assert_eq!(reply.text(), "detirehni");
    assert_eq!(reply.blob.as_deref(), Some(&b"payload"[..]));
}

fn tester_grant(node: &Node, tester: &linker_test_host::Mailbox) {
    node.grant(
        &tester.process_id(),
        vec![messaging("fake.os@echo:echo:test.os")],
    );
}

#[test]
fn timeouts_missing_targets_caps_and_other_nodes_as_the_probe_sees_them() {
    let node = node();
    let tester = node.mailbox("fake.os@tester:tester:test.os", true);
    let _quiet = node.mailbox("fake.os@quiet:tester:test.os", true);
    let _secret = node.mailbox("fake.os@secret:tester:test.os", false);
    let ask = |what: &str| {
        let reply = tester
            .request(
                "fake.os@probe:probe:test.os",
                format!("ask {what}"),
                None,
                vec![],
                10,
            )
            .unwrap();
        assert_eq!(reply.text(), "done");
    };

    ask("fake.os@echo:echo:test.os abc");
    wait_print(
        &node,
        PROBE,
        "probe: ok fake.os@echo:echo:test.os cba blob=none",
    );

    // Nobody answers: the probe's own timer fires after 1 s, with its context.
    let start = Instant::now();
    ask("fake.os@quiet:tester:test.os ping");
    wait_print(
        &node,
        PROBE,
        "probe: error Timeout target=fake.os@quiet:tester:test.os context=ctx",
    );
    assert!(start.elapsed() >= Duration::from_secs(1));

    // No such process: the kernel throws a timeout at once (the runtime never says Offline here).
    let start = Instant::now();
    ask("fake.os@nobody:tester:test.os ping");
    wait_print(
        &node,
        PROBE,
        "probe: error Timeout target=fake.os@nobody:tester:test.os context=ctx",
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(kernel_prints(&node).contains(
        &"event loop: process probe:probe:test.os sent message to non-existing nobody:tester:test.os; dropping message".to_string()
    ));

    // A non-public process the probe holds no messaging cap for.
    ask("fake.os@secret:tester:test.os ping");
    wait_print(
        &node,
        PROBE,
        "probe: error Timeout target=fake.os@secret:tester:test.os context=ctx",
    );
    assert!(kernel_prints(&node).contains(
        &"event loop: process probe:probe:test.os doesn't have capability to message process secret:tester:test.os".to_string()
    ));

    // Another node: the probe holds "network", but there is nobody there.
    ask("other.os@x:y:z ping");
    wait_print(
        &node,
        PROBE,
        "probe: error Offline target=other.os@x:y:z context=ctx",
    );
}

#[test]
fn messaging_needs_a_cap_unless_the_target_is_public() {
    let node = node();
    let tester = node.mailbox("fake.os@tester:tester:test.os", true);
    let start = Instant::now();
    assert_eq!(
        tester
            .request("fake.os@echo:echo:test.os", "hi", None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Timeout
    );
    assert!(start.elapsed() < Duration::from_secs(1), "thrown at once");
    assert!(kernel_prints(&node).contains(
        &"event loop: process tester:tester:test.os doesn't have capability to message process echo:echo:test.os".to_string()
    ));
    // The probe is public.
    let reply = tester
        .request("fake.os@probe:probe:test.os", "what", None, vec![], 5)
        .unwrap();
    assert_eq!(reply.text(), "unknown: what");
    // Responses are checked like requests: the probe may not answer a non-public mailbox it
    // holds no messaging cap for, so the asker times out.
    let shy = node.mailbox("fake.os@shy:tester:test.os", false);
    let start = Instant::now();
    assert_eq!(
        shy.request("fake.os@probe:probe:test.os", "what", None, vec![], 1)
            .unwrap_err(),
        SendErrorKind::Timeout
    );
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(kernel_prints(&node).contains(
        &"event loop: process probe:probe:test.os doesn't have capability to message process shy:tester:test.os".to_string()
    ));
    // Off-node without "network".
    assert_eq!(
        tester
            .request("other.os@x:y:z", "hi", None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Timeout
    );
    node.grant(&tester.process_id(), vec![network(OUR)]);
    assert_eq!(
        tester
            .request("other.os@x:y:z", "hi", None, vec![], 5)
            .unwrap_err(),
        SendErrorKind::Offline
    );
}

#[test]
fn attached_caps_are_filtered_to_those_the_sender_holds_or_issued() {
    let node = Node::new(OUR).unwrap();
    let a = node.mailbox("fake.os@a:tester:test.os", false);
    let b = node.mailbox("fake.os@b:tester:test.os", true);
    node.grant("a:tester:test.os", vec![vfs_root(OUR)]);
    let own = capability("fake.os@a:tester:test.os", "\"anything\"");
    a.send(
        "fake.os@b:tester:test.os",
        "caps",
        None,
        vec![vfs_root(OUR), network(OUR), own.clone()],
    );
    let got = b.recv(WAIT).unwrap();
    assert_eq!(got.capabilities.len(), 2, "{:?}", got.capabilities);
    assert!(caps::holds(&got.capabilities, &vfs_root(OUR)));
    assert!(caps::holds(&got.capabilities, &own));
}

fn kernel_request(admin: &linker_test_host::Mailbox, body: Value, blob: Option<Vec<u8>>) -> Value {
    admin
        .request(KERNEL, body.to_string(), blob, vec![], 5)
        .unwrap()
        .json()
}

fn initialize(id: &str, handle: &str, on_exit: &str, caps: Vec<Value>) -> Value {
    json!({"InitializeProcess": {"id": id, "wasm_bytes_handle": handle, "wit_version": 1,
        "on_exit": on_exit, "initial_capabilities": caps, "public": false}})
}

#[test]
fn kernel_initializes_runs_grants_and_kills() {
    let node = node();
    let admin = node.mailbox("fake.os@admin:tester:test.os", false);
    node.grant(
        "admin:tester:test.os",
        vec![messaging(KERNEL), network(OUR)],
    );
    let echo = component("echo", "echo.wasm");
    let worker = "worker:echo:test.os";

    let body = initialize(
        worker,
        "/echo:test.os/pkg/echo.wasm",
        "Restart",
        vec![
            caps::cap_to_json(&network(OUR)),
            caps::cap_to_json(&vfs_root(OUR)),
        ],
    );
    assert_eq!(
        kernel_request(&admin, body.clone(), Some(echo.clone())),
        json!("InitializedProcess")
    );
    let info = node.process(worker).unwrap();
    assert_eq!(info.status, Some(ProcessStatus::Initialized));
    assert_eq!(info.capabilities.len(), 2, "{:?}", info.capabilities);
    assert!(node.has_capability(worker, &network(OUR)));
    assert!(node.has_capability(worker, &messaging("fake.os@worker:echo:test.os")));
    assert!(node.has_capability(
        "admin:tester:test.os",
        &messaging("fake.os@worker:echo:test.os")
    ));
    assert!(kernel_prints(&node).contains(&format!(
        "kernel: InitializeProcess caller admin:tester:test.os doesn't have capability {}",
        caps::display(&vfs_root(OUR))
    )));

    // Errors: the id exists, no bytes, an id that is not Kimap-safe.
    assert_eq!(
        kernel_request(&admin, body, Some(echo.clone())),
        json!("InitializeProcessError")
    );
    let other = initialize("other:echo:test.os", "/x.wasm", "None", vec![]);
    assert_eq!(
        kernel_request(&admin, other, None),
        json!("InitializeProcessError")
    );
    let bad = initialize("Bad:echo:test.os", "/x.wasm", "None", vec![]);
    assert_eq!(
        kernel_request(&admin, bad, Some(echo)),
        json!("InitializeProcessError")
    );

    // StartedProcess comes before the process runs.
    assert_eq!(
        kernel_request(&admin, json!({"RunProcess": worker}), None),
        json!("StartedProcess")
    );
    wait_print(&node, worker, "echo: up");
    assert_eq!(
        kernel_request(&admin, json!({"RunProcess": "ghost:echo:test.os"}), None),
        json!("RunProcessError")
    );

    // GrantCapabilities has no response and no authorisation check.
    let minted = capability("fake.os@worker:echo:test.os", "\"minted\"");
    admin.send(
        KERNEL,
        json!({"GrantCapabilities": {"target": PROBE,
        "capabilities": [caps::cap_to_json(&minted)]}})
        .to_string(),
        None,
        vec![],
    );
    assert!(node.has_capability(PROBE, &minted));
    admin.send(
        KERNEL,
        json!({"DropCapabilities": {"target": PROBE,
        "capabilities": [caps::cap_to_json(&minted)]}})
        .to_string(),
        None,
        vec![],
    );
    assert!(!node.has_capability(PROBE, &minted));
    admin.send(
        KERNEL,
        json!({"GrantCapabilities": {"target": PROBE,
        "capabilities": [caps::cap_to_json(&minted)]}})
        .to_string(),
        None,
        vec![],
    );

    // KillProcess answers only when asked to, and revokes every cap the process issued.
    assert_eq!(
        kernel_request(&admin, json!({"KillProcess": worker}), None),
        json!({"KilledProcess": worker})
    );
    assert!(node.process(worker).is_none());
    assert_eq!(node.status(worker), Some(ProcessStatus::Killed));
    assert!(!node.has_capability(PROBE, &minted));
    assert!(!node.has_capability(
        "admin:tester:test.os",
        &messaging("fake.os@worker:echo:test.os")
    ));
    // A kill of nothing gets no answer at all.
    let id = admin.send_request(
        KERNEL,
        linker_test_host::mailbox::request(
            json!({"KillProcess": worker}).to_string(),
            Some(1),
            vec![],
        ),
        None,
    );
    assert_eq!(
        admin
            .await_response(id, Duration::from_secs(1))
            .unwrap_err(),
        SendErrorKind::Timeout
    );
}

#[test]
fn a_missing_import_fails_to_instantiate_after_started_process() {
    let node = Node::new(OUR).unwrap();
    let admin = node.mailbox("fake.os@admin:tester:test.os", false);
    node.grant("admin:tester:test.os", vec![messaging(KERNEL)]);
    let body = initialize(
        "app:app:test.os",
        "/app:test.os/pkg/app.wasm",
        "Restart",
        vec![],
    );
    assert_eq!(
        kernel_request(&admin, body, Some(component("app", "app.wasm"))),
        json!("InitializedProcess")
    );
    assert_eq!(
        kernel_request(&admin, json!({"RunProcess": "app:app:test.os"}), None),
        json!("StartedProcess")
    );
    let status = node
        .wait_for_status("app:app:test.os", ProcessStatus::is_final, WAIT)
        .unwrap();
    let ProcessStatus::FailedToInstantiate { import, .. } = status else {
        panic!("{status:?}");
    };
    assert_eq!(import.as_deref(), Some("kinode:process/mathlib@1.0.0"));
    assert!(kernel_prints(&node).iter().any(|m| m.starts_with(
        "kernel: process app:app:test.os failed to instantiate: component imports instance `kinode:process/mathlib@1.0.0`"
    )), "{:#?}", kernel_prints(&node));
    // No on-exit: it stays in the process map, not restarted.
    assert!(node.process("app:app:test.os").is_some());
}

#[test]
fn injected_faults_answer_like_the_real_services() {
    let node = Node::new(OUR).unwrap();
    let admin = node.mailbox("fake.os@admin:tester:test.os", false);
    node.grant(
        "admin:tester:test.os",
        vec![messaging(KERNEL), messaging(VFS), vfs_root(OUR)],
    );
    node.fault(Fault::Vfs {
        action: "AddZip".into(),
        path_prefix: "/app:test.os/pkg".into(),
        times: 1,
    });
    node.fault(Fault::Kernel {
        command: "InitializeProcess".into(),
        target: None,
        times: 1,
    });
    node.fault(Fault::Kernel {
        command: "RunProcess".into(),
        target: Some("echo:echo:test.os".into()),
        times: 1,
    });

    let vfs = |path: &str, action: Value, blob: Option<Vec<u8>>| {
        admin
            .request(
                VFS,
                json!({"path": path, "action": action}).to_string(),
                blob,
                vec![],
                5,
            )
            .unwrap()
            .json()
    };
    assert_eq!(
        vfs("/app:test.os/pkg", json!("CreateDrive"), None),
        json!("Ok")
    );
    let zip = fixture_zip("app");
    assert_eq!(
        vfs("/app:test.os/pkg", json!("AddZip"), Some(zip.clone())),
        json!({"Err": {"IOError": "injected fault"}})
    );
    assert_eq!(
        vfs("/app:test.os/pkg", json!("AddZip"), Some(zip)),
        json!("Ok")
    );
    assert!(node.read_file("/app:test.os/pkg/manifest.json").is_some());

    let echo = component("echo", "echo.wasm");
    let body = initialize(ECHO, "/echo:test.os/pkg/echo.wasm", "None", vec![]);
    assert_eq!(
        kernel_request(&admin, body.clone(), Some(echo.clone())),
        json!("InitializeProcessError")
    );
    assert!(node.process(ECHO).is_none());
    assert_eq!(
        kernel_request(&admin, body, Some(echo)),
        json!("InitializedProcess")
    );
    assert_eq!(
        kernel_request(&admin, json!({"RunProcess": ECHO}), None),
        json!("RunProcessError")
    );
    assert_eq!(
        kernel_request(&admin, json!({"RunProcess": ECHO}), None),
        json!("StartedProcess")
    );
    wait_print(&node, ECHO, "echo: up");
}

#[test]
fn a_slow_vfs_answers_late_while_other_messages_get_through() {
    let node = Node::new(OUR).unwrap();
    let admin = node.mailbox("fake.os@admin:tester:test.os", false);
    node.grant("admin:tester:test.os", vec![messaging(VFS), vfs_root(OUR)]);
    let vfs = |path: &str, action: &str| {
        admin.send_request(
            VFS,
            linker_test_host::mailbox::request(
                json!({"path": path, "action": action}).to_string(),
                Some(5),
                vec![],
            ),
            None,
        )
    };
    let answer = |id: u64| admin.await_response(id, WAIT).unwrap().json();
    assert_eq!(answer(vfs("/slow:test.os/pkg", "CreateDrive")), json!("Ok"));
    node.fault(Fault::SlowVfs {
        action: "ReadDir".into(),
        path_prefix: "/slow:test.os".into(),
        millis: 500,
        times: 1,
    });
    let slow = vfs("/slow:test.os/pkg", "ReadDir");
    let quick = vfs("/slow:test.os/pkg", "Metadata");
    // The request sent second is answered first; the slow one comes after, served as usual.
    let first = admin.recv(WAIT).unwrap();
    assert_eq!((first.id, first.kind), (quick, IncomingKind::Response));
    assert_eq!(answer(slow), json!({"ReadDir": []}));
    // Once spent, the fault slows nothing more.
    let again = vfs("/slow:test.os/pkg", "ReadDir");
    assert_eq!(answer(again), json!({"ReadDir": []}));
}

#[test]
fn spawn_names_the_child_and_gives_mutual_messaging() {
    let node = node();
    let tester = node.mailbox("fake.os@tester:tester:test.os", true);
    let reply = tester
        .request("fake.os@probe:probe:test.os", "spawn", None, vec![], 10)
        .unwrap();
    assert_eq!(reply.text(), "done");
    wait_print(
        &node,
        PROBE,
        "probe: spawned child:probe:test.os, child answered unknown: ping",
    );
    let child = "child:probe:test.os";
    assert!(node.has_capability(child, &messaging("fake.os@probe:probe:test.os")));
    assert!(node.has_capability(PROBE, &messaging("fake.os@child:probe:test.os")));
    let info = node.process(child).unwrap();
    assert_eq!(info.wasm_bytes_handle, "/probe:test.os/pkg/probe.wasm");
    assert!(!info.public);
}

#[test]
fn messages_from_other_nodes_need_the_network_cap() {
    let node = node();
    let local = node.mailbox("fake.os@local:tester:test.os", true);
    let remote = node.mailbox("other.os@r:r:test.os", false);
    remote.send("fake.os@local:tester:test.os", "hi", None, vec![]);
    assert!(local.recv(Duration::from_millis(200)).is_none());
    node.grant("local:tester:test.os", vec![network(OUR)]);
    remote.send("fake.os@local:tester:test.os", "hi", None, vec![]);
    let got = local.recv(WAIT).unwrap();
    assert_eq!(got.source, "other.os@r:r:test.os");
    // An answer goes back over the "network" to the remote mailbox.
    node.grant(ECHO, vec![network(OUR)]);
    let reply = remote
        .request("fake.os@echo:echo:test.os", "abc", None, vec![], 5)
        .unwrap();
    assert_eq!(reply.text(), "cba");
}

#[test]
fn reboot_reloads_persisted_processes_from_their_wasm_bytes_handle() {
    let node = node();
    let admin = node.mailbox("fake.os@admin:tester:test.os", true);
    node.grant("admin:tester:test.os", vec![messaging(KERNEL)]);
    let reply = admin
        .request("fake.os@probe:probe:test.os", "state kept", None, vec![], 5)
        .unwrap();
    assert_eq!(reply.text(), "done");
    assert_eq!(node.state(PROBE).as_deref(), Some(&b"kept"[..]));

    let reloaded = "reloaded:echo:test.os";
    let body = initialize(reloaded, "/echo:test.os/files/code.wasm", "Restart", vec![]);
    assert_eq!(
        kernel_request(&admin, body, Some(component("echo", "echo.wasm"))),
        json!("InitializedProcess")
    );
    let transient = initialize(
        "transient:echo:test.os",
        "/echo:test.os/pkg/echo.wasm",
        "None",
        vec![],
    );
    assert_eq!(
        kernel_request(&admin, transient, Some(component("echo", "echo.wasm"))),
        json!("InitializedProcess")
    );
    let ghost = initialize(
        "ghost:echo:test.os",
        "/echo:test.os/files/none.wasm",
        "Restart",
        vec![],
    );
    assert_eq!(
        kernel_request(&admin, ghost, Some(component("echo", "echo.wasm"))),
        json!("InitializedProcess")
    );
    assert_eq!(
        kernel_request(&admin, json!({"RunProcess": reloaded}), None),
        json!("StartedProcess")
    );
    wait_print(&node, reloaded, "echo: up");
    // Whatever sits at the handle at boot is what runs.
    node.write_file(
        "/echo:test.os/files/code.wasm",
        &component("probe", "probe.wasm"),
    )
    .unwrap();

    node.reboot().unwrap();
    wait_print(&node, reloaded, "probe: up");
    assert!(
        node.process("transient:echo:test.os").is_none(),
        "OnExit::None is not persisted"
    );
    // Bundled packages are bootstrapped at every boot, whatever their on-exit.
    let probe_ups = || {
        node.print_messages(PROBE)
            .iter()
            .filter(|m| *m == "probe: up")
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while probe_ups() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(probe_ups(), 2);
    assert!(node.process("ghost:echo:test.os").is_none());
    assert!(
        kernel_prints(&node)
            .iter()
            .any(|m| m
                .starts_with("kernel: couldn't read wasm bytes for process: ghost:echo:test.os"))
    );
    let ups = || {
        node.print_messages(ECHO)
            .iter()
            .filter(|m| *m == "echo: up")
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while ups() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ups(), 2, "echo (bundled, Restart) runs again");
    assert!(node.has_capability(
        "admin:tester:test.os",
        &messaging("fake.os@reloaded:echo:test.os")
    ));
    assert_eq!(node.state(PROBE).as_deref(), Some(&b"kept"[..]));
}
