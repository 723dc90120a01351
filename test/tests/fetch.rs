//! Libraries the node lacks come from the network (issue 20): the linker on `fake.os` reads the
//! library's listing from `chain:app-store:sys` and has `downloads:app-store:sys` download its
//! current version from the publisher's node (`test.os`, the fixtures' publisher) or a listed
//! mirror, checks the hash, keeps the API, links, installs, and mirrors the library package. Every
//! node runs the test host's app store services on one simulated network.

use std::time::Duration;

use linker_fixtures::expect;
use linker_test_host::{caps, AppStore, Mailbox, Network, Node, Terminal};
use linker_tests::node::*;
use serde_json::{json, Value};

/// The `fetched` entries of a link report.
fn fetched(report: &Value) -> Vec<(String, String, String)> {
    report["fetched"]
        .as_array()
        .expect("fetched")
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap_or_default().to_owned(),
                f["node"].as_str().unwrap_or_default().to_owned(),
                f["version_hash"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The nodes a failed fetch tried, with why.
fn tried(error: &Value) -> Vec<(String, Value)> {
    error["FetchFailed"]["problem"]["Nodes"]["tried"]
        .as_array()
        .unwrap_or_else(|| panic!("a fetch that tried nodes: {error:#}"))
        .iter()
        .map(|t| {
            (
                t["node"].as_str().unwrap_or_default().to_owned(),
                t["reason"].clone(),
            )
        })
        .collect()
}

fn nothing_installed(s: &Session, package: &str) {
    assert!(s.node.list_dir(&format!("/{package}/pkg")).is_empty());
    let process = package.split(':').next().unwrap_or_default();
    assert!(s.node.process(&format!("{process}:{package}")).is_none());
}

/// Installs the `app` fixture with its metadata's properties changed by `change`; the answer.
fn install_app_with(s: &Session, change: impl FnOnce(&mut Value)) -> Value {
    let mut metadata: Value =
        serde_json::from_slice(&read(fixtures().metadata("app"))).expect("metadata JSON");
    change(&mut metadata["properties"]);
    let request = json!({"Install": {
        "source": "Blob",
        "metadata": metadata.to_string(),
        "apis": [],
    }});
    let (body, _) = s.ask(
        &s.tester,
        request,
        Some(read(fixtures().package("app"))),
        vec![caps::messaging(LINKER)],
    );
    body["Install"].clone()
}

fn network_request(s: &Session, from: &Mailbox, change: Value, attach: bool) -> Value {
    let caps = if attach {
        vec![caps::messaging(LINKER)]
    } else {
        vec![]
    };
    s.ask(from, json!({ "Network": change }), None, caps).0["Network"].clone()
}

#[test]
fn a_missing_library_is_fetched_from_its_publisher_linked_mirrored_and_served_onward() {
    let network = Network::new();
    let (_publisher, _) = serving(&network, PUBLISHER, &["mathlib"]);
    let hash = list_on_chain(&network, "mathlib", &[]);
    let (s, downloads, _) = Session::on(&network);

    let report = s.install("app", &[]);
    let report = ok(&report);
    assert_eq!(
        fetched(&report["link"]),
        [(
            "mathlib:test.os".to_owned(),
            PUBLISHER.to_owned(),
            hash.clone()
        )]
    );
    let entry = &report["link"]["fetched"][0];
    assert_eq!(entry["version"], "0.1.0");
    assert_eq!(
        entry["bytes"],
        read(fixtures().package("mathlib")).len() as u64
    );
    assert_eq!(entry["mirrored"], true);
    assert_eq!(report["link"]["apis"][0]["name"], "mathlib:test.os");
    s.wait_for("app:app:test.os", &expect::app());
    // The library is linked in, not installed; its API is in the linker's mirror.
    assert!(s.node.list_dir("/mathlib:test.os/pkg").is_empty());
    assert!(s
        .node
        .wait_for_print(
            |pid, line| pid == "linker:linker:sys"
                && line.starts_with("linker: fetched mathlib:test.os 0.1.0 from test.os: ")
                && line.ends_with(", mirrored here now"),
            WAIT
        )
        .is_some());
    // `Linked` says so too, and `ListApis` says where the API came from.
    let info = ok(&linked(&s, "app:test.os")).clone();
    assert_eq!(fetched(&info["status"]["Linked"]), fetched(&report["link"]));
    assert_eq!(info["missing_apis"], json!([]));
    let (apis, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    let location = ok(&apis["ListApis"])
        .as_array()
        .and_then(|apis| apis.iter().find(|api| api["package"] == "mathlib:test.os"))
        .map(|api| api["location"].clone());
    assert_eq!(location, Some(json!("fetched")), "{apis:#}");
    // This node now mirrors it, and serves it to a third node while the publisher is offline.
    assert_eq!(downloads.mirroring(), ["mathlib:test.os"]);
    _publisher.go_offline();
    let third = Node::on("third.os", &network).expect("the third node starts");
    let _third_downloads = third.start_downloads().expect("downloads starts");
    let asker = third.mailbox("third.os@asker:asker:test.os", false);
    third.grant(
        "asker:asker:test.os",
        vec![caps::messaging("third.os@downloads:app-store:sys")],
    );
    asker.send(
        "third.os@downloads:app-store:sys",
        json!({"LocalDownload": {
            "package_id": {"package_name": "mathlib", "publisher_node": "test.os"},
            "download_from": NODE,
            "desired_version_hash": hash,
        }})
        .to_string(),
        None,
        vec![],
    );
    let path = format!("/app-store:sys/downloads/mathlib:test.os/{hash}");
    let arrived = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        third.read_file(&format!("{path}.json")).is_some()
    });
    assert!(arrived, "third.os did not get mathlib from {NODE}");
    assert_eq!(
        third
            .read_file(&format!("{path}.zip"))
            .map(|zip| sha256(&zip)),
        Some(hash)
    );
}

#[test]
fn a_nested_library_chain_is_fetched_each_once() {
    let network = Network::new();
    let (_publisher, _) = serving(&network, PUBLISHER, &["mathlib", "textlib"]);
    let mathlib = list_on_chain(&network, "mathlib", &[]);
    let textlib = list_on_chain(&network, "textlib", &[]);
    let (s, downloads, _) = Session::on(&network);

    let report = s.install("chain", &[]);
    let report = ok(&report);
    let mut got = fetched(&report["link"]);
    got.sort();
    assert_eq!(
        got,
        [
            ("mathlib:test.os".to_owned(), PUBLISHER.to_owned(), mathlib),
            ("textlib:test.os".to_owned(), PUBLISHER.to_owned(), textlib),
        ]
    );
    s.wait_for(
        "chain:chain:test.os",
        &expect::chain("fake.os@chain:chain:test.os"),
    );
    assert_eq!(
        downloads.mirroring(),
        ["mathlib:test.os", "textlib:test.os"]
    );
    // Installed again, nothing is fetched: the mirror has both.
    let again = s.install("chain", &[]);
    assert_eq!(fetched(&ok(&again)["link"]), []);
}

#[test]
fn the_publisher_offline_a_mirror_serves_and_every_node_offline_is_named() {
    let network = Network::new();
    let (publisher, _) = serving(&network, PUBLISHER, &["mathlib"]);
    let (mirror, _) = serving(&network, MIRROR, &["mathlib"]);
    let hash = list_on_chain(
        &network,
        "mathlib",
        &[MIRROR, "https://example.com/mathlib.zip"],
    );
    let (s, _, _) = Session::on(&network);

    // Every node offline: both are named, nothing is installed.
    publisher.go_offline();
    mirror.go_offline();
    let failed = s.install("app", &[]);
    let error = err(&failed);
    assert_eq!(error["FetchFailed"]["package"], "app:test.os");
    assert_eq!(error["FetchFailed"]["library"], "mathlib:test.os");
    assert_eq!(
        error["FetchFailed"]["problem"]["Nodes"]["version_hash"],
        hash
    );
    assert_eq!(
        tried(error),
        [
            (PUBLISHER.to_owned(), json!("Offline")),
            (MIRROR.to_owned(), json!("Offline")),
        ]
    );
    nothing_installed(&s, "app:test.os");

    // The mirror back: it serves.
    mirror.go_online();
    let report = s.install("app", &[]);
    assert_eq!(
        fetched(&ok(&report)["link"]),
        [("mathlib:test.os".to_owned(), MIRROR.to_owned(), hash)]
    );
    s.wait_for("app:app:test.os", &expect::app());
}

#[test]
fn bytes_of_another_hash_are_never_used_and_a_node_not_mirroring_is_named() {
    let network = Network::new();
    let (publisher, _) = serving(&network, PUBLISHER, &["mathlib"]);
    let (_mirror, _) = serving(&network, MIRROR, &[]);
    let hash = list_on_chain(&network, "mathlib", &[MIRROR]);
    // The publisher serves other bytes under the listed hash.
    let other = read(fixtures().package("mathlib.v2"));
    publisher
        .write_file(
            &format!("/app-store:sys/downloads/mathlib:test.os/{hash}.zip"),
            &other,
        )
        .expect("written");
    let (s, _, _) = Session::on(&network);

    let failed = s.install("app", &[]);
    let error = err(&failed);
    assert_eq!(
        tried(error),
        [
            (
                PUBLISHER.to_owned(),
                json!({"HashMismatch": sha256(&other)})
            ),
            (MIRROR.to_owned(), json!("NotMirroring")),
        ]
    );
    nothing_installed(&s, "app:test.os");
    // The bad bytes were thrown away, and no API was kept.
    assert!(s
        .file(&format!(
            "/app-store:sys/downloads/mathlib:test.os/{hash}.zip"
        ))
        .is_none());
    let (apis, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    assert_eq!(ok(&apis["ListApis"]), &json!([]));
}

#[test]
fn a_library_updated_on_chain_while_it_downloads_is_not_mixed() {
    let network = Network::new();
    let (_publisher, publisher_downloads) =
        serving(&network, PUBLISHER, &["mathlib", "mathlib.v2"]);
    let first = list_on_chain(&network, "mathlib", &[]);
    let (s, _, _) = Session::on(&network);
    publisher_downloads.set_chunk_delay(Duration::from_millis(1500));

    let network_ = network.clone();
    let update = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        list_on_chain(&network_, "mathlib.v2", &[])
    });
    let report = s.install("app", &[]);
    let second = update.join().expect("the listing is updated");
    assert_ne!(first, second);
    let report = ok(&report);
    // One version is used, and named: the one listed when the fetch began.
    assert_eq!(
        fetched(&report["link"]),
        [("mathlib:test.os".to_owned(), PUBLISHER.to_owned(), first)]
    );
    assert_eq!(report["link"]["fetched"][0]["version"], "0.1.0");
    let api = sha256(&read(fixtures().api("mathlib")));
    assert_eq!(report["link"]["apis"][0]["sha256"], api);
    s.wait_for("app:app:test.os", &expect::app());
}

#[test]
fn fetching_and_mirroring_switch_off_remembered_and_only_for_the_owner() {
    let network = Network::new();
    let (_publisher, _) = serving(&network, PUBLISHER, &["mathlib"]);
    list_on_chain(&network, "mathlib", &[]);
    let (s, downloads, _) = Session::on(&network);

    // Asking needs nothing; switching needs the linker's capability, and a remote node may not.
    let settings = network_request(&s, &s.tester, json!({"fetch": null, "mirror": null}), false);
    assert_eq!(ok(&settings), &json!({"fetch": true, "mirror": true}));
    let refused = network_request(
        &s,
        &s.tester,
        json!({"fetch": false, "mirror": null}),
        false,
    );
    assert!(err(&refused)["NotAuthorised"].is_string(), "{refused:#}");
    let remote = s.node.mailbox("other.os@tester:tester:test.os", false);
    let refused = network_request(&s, &remote, json!({"fetch": false, "mirror": null}), true);
    assert_eq!(
        err(&refused)["RemoteSender"],
        "other.os@tester:tester:test.os"
    );

    let off = network_request(&s, &s.tester, json!({"fetch": false, "mirror": null}), true);
    assert_eq!(ok(&off), &json!({"fetch": false, "mirror": true}));
    s.node.reboot().expect("the node reboots");
    let settings = network_request(&s, &s.tester, json!({"fetch": null, "mirror": null}), false);
    assert_eq!(ok(&settings), &json!({"fetch": false, "mirror": true}));
    let failed = s.install("app", &[]);
    let missing = &err(&failed)["MissingDependency"];
    assert!(
        missing["hint"]
            .as_str()
            .is_some_and(|hint| hint.contains("fetching libraries is off")),
        "{missing:#}"
    );
    nothing_installed(&s, "app:test.os");

    // Fetching on, mirroring off: fetched, not mirrored.
    let changed = network_request(&s, &s.tester, json!({"fetch": true, "mirror": false}), true);
    assert_eq!(ok(&changed), &json!({"fetch": true, "mirror": false}));
    let report = s.install("app", &[]);
    assert_eq!(ok(&report)["link"]["fetched"][0]["mirrored"], false);
    assert!(downloads.mirroring().is_empty());
}

#[test]
fn only_nodes_listed_on_chain_are_asked() {
    let network = Network::new();
    // mathlib:evil.os is published and mirrored by evil.os, but not listed on chain.
    let evil = Node::on("evil.os", &network).expect("the node starts");
    let evil_downloads = evil.start_downloads().expect("downloads starts");
    evil_downloads
        .publish(
            "mathlib:evil.os",
            &read(fixtures().package("mathlib")),
            true,
        )
        .expect("published");
    let (s, _, _) = Session::on(&network);

    let installed = install_app_with(&s, |properties| {
        properties["dependencies"] = json!(["mathlib:evil.os"]);
        properties["mirrors"] = json!(["evil.os"]);
    });
    let missing = &err(&installed)["MissingDependency"];
    assert_eq!(missing["dependency"], "mathlib:evil.os");
    assert!(
        missing["hint"]
            .as_str()
            .is_some_and(|hint| hint.contains("lists no mathlib:evil.os")),
        "{missing:#}"
    );
    nothing_installed(&s, "app:test.os");
    assert!(s
        .node
        .list_dir("/app-store:sys/downloads/mathlib:evil.os")
        .is_empty());
}

#[test]
fn without_declared_dependencies_a_listed_package_named_like_the_import_is_fetched() {
    let network = Network::new();
    let (_publisher, _) = serving(&network, PUBLISHER, &["mathlib", "textlib"]);
    let hash = list_on_chain(&network, "mathlib", &[]);
    // Listed, but named after no import of app's: not fetched.
    list_on_chain(&network, "textlib", &[]);
    let (s, _, _) = Session::on(&network);

    let installed = install_app_with(&s, |properties| {
        properties["dependencies"] = json!([]);
    });
    let report = ok(&installed);
    assert_eq!(
        fetched(&report["link"]),
        [("mathlib:test.os".to_owned(), PUBLISHER.to_owned(), hash)]
    );
    assert_eq!(report["link"]["apis"][0]["provenance"], "Found");
    s.wait_for("app:app:test.os", &expect::app());
}

/// Runs `script` with `args` from `terminal` and returns what it prints.
fn run(s: &Session, terminal: &Terminal, script: &str, args: &str) -> String {
    let pid = terminal
        .run(script, args)
        .unwrap_or_else(|e| panic!("the terminal runs {script}: {e:#}"));
    s.node
        .wait_for_print(|id, _| id == pid, WAIT)
        .unwrap_or_else(|| panic!("{script} {args} printed nothing: {:#?}", s.node.prints()))
        .1
        .message
}

#[test]
fn what_the_app_store_installs_is_auto_linked_with_its_library_fetched() {
    let network = Network::new();
    let (_publisher, _) = serving(&network, PUBLISHER, &["mathlib"]);
    let mathlib = list_on_chain(&network, "mathlib", &[]);
    let (s, downloads, _) = Session::on(&network);
    let store = AppStore::new(&s.node);

    let app = app_store_install(&store, "app");
    let info = handled(&s, "app:test.os", &app);
    assert_eq!(info["trigger"], "Auto");
    let report = &info["status"]["Linked"];
    assert_eq!(
        fetched(report),
        [("mathlib:test.os".to_owned(), PUBLISHER.to_owned(), mathlib)]
    );
    // The library was never installed here; it is not missing.
    assert_eq!(info["missing_apis"], json!([]));
    s.wait_for("app:app:test.os", &expect::app());
    assert_eq!(downloads.mirroring(), ["mathlib:test.os"]);
    // The library is not installed: linking needs only its API.
    assert!(s.node.list_dir("/mathlib:test.os/pkg").is_empty());
}

#[test]
fn the_link_script_installs_a_download_fetching_its_library_and_linked_shows_it() {
    let network = Network::new();
    let (_publisher, _) = serving(&network, PUBLISHER, &["mathlib"]);
    let mathlib = list_on_chain(&network, "mathlib", &[]);
    // The app is listed too: the script's download takes its dependencies from the chain.
    list_on_chain(&network, "app", &[]);
    let (s, _, terminal) = Session::on(&network);
    let zip = read(fixtures().package("app"));
    let app = sha256(&zip);
    s.node
        .write_file(
            &format!("/app-store:sys/downloads/app:test.os/{app}.zip"),
            &zip,
        )
        .expect("placing the download");

    let line = format!(
        "fetched mathlib:test.os 0.1.0 (version {}) from {PUBLISHER}: ",
        &mathlib[..12]
    );
    let output = run(
        &s,
        &terminal,
        "link:linker:sys",
        &format!("app:test.os --download {app} --install"),
    );
    assert!(
        output.starts_with(&format!("installed app:test.os (version {})", &app[..12])),
        "{output}"
    );
    assert!(
        output
            .lines()
            .any(|l| l.starts_with(&line) && l.ends_with(", mirrored here")),
        "{output}"
    );
    s.wait_for("app:app:test.os", &expect::app());
    let shown = run(&s, &terminal, "linked:linker:sys", "app:test.os");
    assert_eq!(
        shown.lines().filter(|l| l.starts_with(&line)).count(),
        1,
        "{shown}"
    );

    // The switches, from the terminal.
    let cases = [
        (
            "--fetch status",
            "fetching is on: a library this node lacks is fetched through the app store from its \
             publisher and mirrors, as listed on chain",
        ),
        (
            "--fetch off",
            "fetching is off: a package whose library this node lacks is left unlinked until the \
             library is installed",
        ),
        (
            "--mirror off",
            "mirroring is off: libraries fetched are kept for linking here only",
        ),
        (
            "--mirror status",
            "mirroring is off: libraries fetched are kept for linking here only",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(
            run(&s, &terminal, "link:linker:sys", args),
            expected,
            "{args}"
        );
    }
    let settings = network_request(&s, &s.tester, json!({"fetch": null, "mirror": null}), false);
    assert_eq!(ok(&settings), &json!({"fetch": false, "mirror": false}));
}

/// A node with `app` installed and running, linked against mathlib 0.1.0 fetched from the
/// publisher, which serves the fixtures `versions`: the session, mathlib 0.1.0's version hash,
/// and the publisher (to keep it on the network).
fn app_with_fetched_mathlib(network: &Network, versions: &[&str]) -> (Session, String, Node) {
    let (publisher, _) = serving(network, PUBLISHER, versions);
    let v1 = list_on_chain(network, "mathlib", &[]);
    let (s, _, _) = Session::on(network);
    ok(&s.install("app", &[]));
    s.wait_for("app:app:test.os", &expect::app());
    (s, v1, publisher)
}

#[test]
fn a_fetched_library_listed_at_a_new_version_is_fetched_again_and_its_dependents_relinked() {
    let network = Network::new();
    let (s, v1, _publisher) = app_with_fetched_mathlib(&network, &["mathlib", "mathlib.v2"]);
    let marker = "/linker:sys/apis/mathlib:test.os/fetched";
    assert_eq!(s.file(marker), Some(v1.into_bytes()));

    // The publisher lists 0.2.0: nothing is installed here, yet the linker notices, fetches it,
    // and re-links the app, which runs with the new library.
    let v2 = list_on_chain(&network, "mathlib.v2", &[]);
    s.wait_for("app:app:test.os", &expect::app_with_mathlib_v2());
    assert!(s
        .node
        .wait_for_print(
            |pid, line| pid == "linker:linker:sys"
                && line.starts_with("linker: fetched mathlib:test.os 0.2.0 from test.os: "),
            WAIT
        )
        .is_some());
    assert_eq!(s.file(marker), Some(v2.into_bytes()));
    let info = ok(&linked(&s, "app:test.os")).clone();
    assert_eq!(
        info["status"]["Linked"]["apis"][0]["sha256"],
        sha256(&read(fixtures().api("mathlib.v2"))),
        "{info:#}"
    );
    assert!(s.node.list_dir("/mathlib:test.os/pkg").is_empty());
}

#[test]
fn a_new_version_no_node_serves_is_said_once_and_the_dependents_keep_theirs() {
    let network = Network::new();
    // The publisher serves 0.1.0 only.
    let (s, v1, _publisher) = app_with_fetched_mathlib(&network, &["mathlib"]);

    let v2 = list_on_chain(&network, "mathlib.v2", &[]);
    let said = |line: &str| {
        line == format!(
            "linker: mathlib:test.os is listed on chain at a new version ({v2}) that no node \
             serves yet; the packages linked against it keep the version they have"
        )
    };
    assert!(
        s.node
            .wait_for_print(|pid, line| pid == "linker:linker:sys" && said(line), WAIT)
            .is_some(),
        "prints: {:#?}",
        s.node.prints()
    );
    // Two more rounds of looking (every 5 ticks of 2 s): tried again, not said again.
    std::thread::sleep(Duration::from_secs(21));
    let times = s
        .node
        .print_messages("linker:linker:sys")
        .iter()
        .filter(|line| said(line))
        .count();
    assert_eq!(times, 1);
    assert_eq!(
        s.printed("app:app:test.os", &expect::app_with_mathlib_v2()),
        0
    );
    assert_eq!(
        s.file("/linker:sys/apis/mathlib:test.os/fetched"),
        Some(v1.into_bytes())
    );
}
