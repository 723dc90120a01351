//! The linker process on a node: the real `pkg/linker.wasm`, booted on the test host as the
//! runtime boots a bundled `*:sys` package, asked by local and remote senders to link, explain and
//! install the fixture packages; what it installs runs on the same host.
//!
//! Requests and responses are the JSON of `api/linker:sys-v0.wit` (serde of wit-bindgen's types),
//! written here as `serde_json::Value`s so that the tests check the wire form itself.

use std::time::Duration;

use linker_fixtures::expect;
use linker_test_host::{caps, Fault, ProcessStatus};
use linker_tests::damage;
use linker_tests::node::*;
use serde_json::{json, Value};

#[test]
fn an_uploaded_app_is_linked_installed_and_runs() {
    let s = Session::new();
    let report = s.install("app", &["mathlib"]);
    let report = ok(&report);
    assert_eq!(report["package"], "app:test.os");
    assert_eq!(report["processes"], json!(["app:app:test.os"]));
    assert_eq!(report["replaced"], Value::Null);
    assert_eq!(report["link"]["cached"], false);
    assert_eq!(
        links(report, "app.wasm"),
        [pair(MATHLIB, "mathlib:test.os/mathlib-api.wasm")]
    );
    s.wait_for("app:app:test.os", &expect::app());

    // The app store's layout, with the linked bytes where the kernel reloads them from.
    let f = fixtures();
    let upload = read(f.package("app"));
    assert_eq!(report["version_hash"], sha256(&upload));
    assert_eq!(s.file("/app:test.os/pkg/app:test.os.zip"), Some(upload));
    let wasm = s
        .file("/app:test.os/pkg/app.wasm")
        .expect("app.wasm installed");
    let component = &report["link"]["components"][0];
    assert_eq!(component["linked_sha256"], sha256(&wasm));
    // `app` returns from init, so on-exit None takes it out of the process map.
    let exited = s.node.wait_for_status(
        "app:app:test.os",
        |status| *status == ProcessStatus::Exited,
        WAIT,
    );
    assert_eq!(exited, Some(ProcessStatus::Exited));
    let link_json = s
        .file("/app:test.os/pkg/link.json")
        .expect("link.json installed");
    let link_json: Value = serde_json::from_slice(&link_json).expect("link.json is JSON");
    assert_eq!(
        link_json["package"]["sha256"],
        sha256(&read(f.package("app")))
    );
    // The worker mathlib ships in its api.zip comes along, as kit copies it.
    assert!(s.file("/app:test.os/pkg/mathlib-worker.wasm").is_some());
    // The package's own api.zip is extracted, so the app store lists it as having an API.
    assert!(s.file("/app:test.os/pkg/api/app:test.os-v0.wit").is_some());
    // The API zip consumed is mirrored in the linker's drive under its hash.
    let api = read(f.api("mathlib"));
    let mirrored = format!("/linker:sys/apis/mathlib:test.os/{}.zip", sha256(&api));
    assert_eq!(s.file(&mirrored), Some(api));
}

#[test]
fn dependencies_are_linked_from_the_node() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    // No API given: the app's metadata names mathlib:test.os, which is installed.
    let report = s.install("app", &[]);
    let report = ok(&report);
    assert_eq!(report["link"]["apis"][0]["name"], "mathlib:test.os");
    assert_eq!(
        report["link"]["apis"][0]["sha256"],
        sha256(&read(fixtures().api("mathlib")))
    );
    s.wait_for("app:app:test.os", &expect::app());
}

#[test]
fn nested_dependencies_and_two_libraries() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("textlib", &[]));
    let chain = s.install("chain", &[]);
    assert_eq!(
        links(ok(&chain), "chain.wasm"),
        [
            pair(TEXTLIB, "textlib:test.os/textlib-api.wasm"),
            pair(MATHLIB, "mathlib:test.os/mathlib-api.wasm"),
        ]
    );
    let duo = s.install("duo", &[]);
    ok(&duo);
    s.wait_for(
        "chain:chain:test.os",
        &expect::chain("fake.os@chain:chain:test.os"),
    );
    s.wait_for("duo:duo:test.os", &expect::duo("fake.os@duo:duo:test.os"));
}

#[test]
fn new_versions_of_the_app_and_of_the_library() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("app", &[]));
    s.wait_for("app:app:test.os", &expect::app());
    let v1 = sha256(&read(fixtures().package("app")));

    let v2 = s.install("app.v2", &[]);
    let v2 = ok(&v2);
    assert_eq!(v2["replaced"], v1);
    s.wait_for("app:app:test.os", &expect::app_v2(false));
    let component = &v2["link"]["components"][0];
    assert_eq!(component["path"], "app-v2.wasm");
    let wasm = s
        .file("/app:test.os/pkg/app-v2.wasm")
        .expect("the new version's wasm");
    assert_eq!(component["linked_sha256"], sha256(&wasm));
    assert!(
        s.file("/app:test.os/pkg/app.wasm").is_none(),
        "the old version's files are gone"
    );

    // The library's new version is installed: the app, linked against it, is re-linked and
    // restarted with it. A reinstall of the app then links the same inputs: served from the cache.
    let library = s.install("mathlib.v2", &[]);
    assert_eq!(ok(&library)["relinked"][0]["package"], "app:test.os");
    s.wait_for("app:app:test.os", &expect::app_v2(true));
    let reinstalled = s.install("app.v2", &[]);
    let reinstalled = ok(&reinstalled);
    assert_eq!(
        reinstalled["link"]["apis"][0]["sha256"],
        sha256(&read(fixtures().api("mathlib.v2")))
    );
    assert_eq!(reinstalled["link"]["cached"], true);
}

#[test]
fn a_repeated_install_is_served_from_the_cache() {
    let s = Session::new();
    let first = s.install("app", &["mathlib"]);
    let second = s.install("app", &["mathlib"]);
    assert_eq!(ok(&first)["link"]["cached"], false);
    assert_eq!(ok(&second)["link"]["cached"], true);
    assert_eq!(ok(&first)["linked_hash"], ok(&second)["linked_hash"]);
    assert_eq!(ok(&second)["replaced"], ok(&first)["version_hash"]);
    s.wait_for("app:app:test.os", &expect::app());
}

#[test]
fn the_linked_hash_is_that_of_the_installed_link_json() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    let installed = s.install("app", &[]);
    let installed = ok(&installed);
    let record = s
        .file("/app:test.os/pkg/link.json")
        .expect("the linked package has its link.json");
    assert_eq!(installed["linked_hash"], sha256(&record));
    // link.json pins the component as installed.
    let component = &installed["link"]["components"][0];
    let wasm = s.file("/app:test.os/pkg/app.wasm").expect("app.wasm");
    assert_eq!(component["linked_sha256"], sha256(&wasm));
    let record: Value = serde_json::from_slice(&record).expect("link.json is JSON");
    assert_eq!(record["components"][0]["linked_sha256"], sha256(&wasm));
    assert_eq!(record["package"]["sha256"], installed["version_hash"]);
}

/// A cache key as the linker derives it (`store::cache_key`), after `header`: the package by
/// name and hash, then each API by name, hash and provenance.
fn cache_key(header: &str, package: (&str, &str), apis: &[(&str, &str, &str)]) -> String {
    let mut text = format!("{header}\n{}\t{}\n", package.0, package.1);
    for (name, sha256, provenance) in apis {
        text.push_str(&format!("{name}\t{sha256}\t{provenance}\n"));
    }
    sha256(text.as_bytes())
}

#[test]
fn a_link_cached_by_a_linker_without_validation_is_not_served() {
    let s = Session::new();
    let f = fixtures();
    let package = read(f.package("app"));
    let link = |zip: &[u8]| {
        let request = json!({"Link": {
            "source": "Blob",
            "metadata": null,
            "apis": s.upload_apis(&["mathlib"]),
        }});
        s.ask(&s.tester, request, Some(zip.to_vec()), vec![])
    };
    let (body, linked) = link(&package);
    let report = ok(&body["Link"]);
    assert_eq!(report["cached"], false);
    let name = report["package"]["name"].as_str().expect("a name");
    let api = &report["apis"][0];
    let api = (
        api["name"].as_str().expect("a name"),
        api["sha256"].as_str().expect("a hash"),
        api["provenance"].as_str().expect("a provenance"),
    );
    // The key derived here is the linker's: the link just made is cached under it.
    let current = cache_key(
        &format!("kinode-link {} cache 3", linker_core::VERSION),
        (name, &sha256(&package)),
        &[api],
    );
    assert!(s
        .file(&format!("/linker:sys/cache/{current}.json"))
        .is_some());

    // An older linker, which did not validate function bodies, linked a damaged app and cached
    // the result under its key (version 0.1.0, no generation).
    let app = damage::file_in_zip(&package, "app.wasm").expect("app.wasm");
    let damaged = damage::replace_in_zip(
        &package,
        "app.wasm",
        &damage::function_body(&app).expect("damage"),
    )
    .expect("rezip");
    let old = cache_key("kinode-link 0.1.0", (name, &sha256(&damaged)), &[api]);
    let planted = linked.expect("the linked zip");
    let link_json = damage::file_in_zip(&planted, "link.json").expect("link.json");
    let entry = json!({
        "sha256": sha256(&planted),
        "report": serde_json::from_slice::<Value>(&link_json).expect("JSON"),
    });
    s.node
        .write_file(&format!("/linker:sys/cache/{old}.zip"), &planted)
        .expect("planting the old link");
    s.node
        .write_file(
            &format!("/linker:sys/cache/{old}.json"),
            entry.to_string().as_bytes(),
        )
        .expect("planting the old report");

    let (body, blob) = link(&damaged);
    assert_eq!(
        err(&body["Link"])["Component"]["kind"],
        "invalid-component",
        "{body:#}"
    );
    assert!(blob.is_none());
}

#[test]
fn link_returns_the_same_bytes_as_the_native_core() {
    let s = Session::new();
    let f = fixtures();
    let metadata = String::from_utf8(read(f.metadata("app"))).expect("text");
    let request = json!({"Link": {
        "source": "Blob",
        "metadata": metadata,
        "apis": s.upload_apis(&["mathlib"]),
    }});
    let (body, blob) = s.ask(&s.tester, request, Some(read(f.package("app"))), vec![]);
    ok(&body["Link"]);
    let package = read(f.package("app"));
    let api = read(f.api("mathlib"));
    let native = linker_core::link(
        linker_core::Input::new("app:test.os", &package),
        &[linker_core::Input::new("mathlib:test.os", &api)],
        &linker_core::Options {
            compression: linker_core::Compression::Stored,
            ..Default::default()
        },
    )
    .expect("links natively");
    assert_eq!(blob.as_deref(), Some(native.bytes.as_slice()));
    // Linking installs nothing.
    assert!(s.file("/app:test.os/pkg/manifest.json").is_none());
    assert!(s.node.process("app:app:test.os").is_none());
}

#[test]
fn explain_says_what_each_import_would_get() {
    let s = Session::new();
    let f = fixtures();
    let request = json!({"Explain": {
        "source": "Blob",
        "metadata": Value::Null,
        "apis": s.upload_apis(&["badmath"]),
    }});
    let (body, _) = s.ask(&s.tester, request, Some(read(f.package("app"))), vec![]);
    let explanation = ok(&body["Explain"]);
    let app = &explanation["components"][0];
    assert_eq!(app["path"], "app.wasm");
    assert_eq!(app["imports"][0]["name"], MATHLIB);
    let rejected = &app["imports"][0]["outcome"]["Rejected"];
    assert_eq!(rejected["provider"]["archive"], "badmath:test.os");
    assert!(rejected["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[test]
fn list_apis_shows_installed_and_mirrored_apis() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    // textlib is consumed from an upload, never installed: only the mirror has it.
    ok(&s.install("chain", &["textlib"]));
    let (body, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    let apis = ok(&body["ListApis"]).as_array().expect("a list").clone();
    let find = |name: &str| {
        apis.iter()
            .find(|api| api["package"] == name)
            .unwrap_or_else(|| panic!("{name} not listed in {apis:#?}"))
            .clone()
    };
    let mathlib = find("mathlib:test.os");
    assert_eq!(mathlib["location"], "installed");
    assert_eq!(mathlib["interfaces"], json!([MATHLIB]));
    assert_eq!(mathlib["wit_files"], json!(["mathlib:test.os-v0.wit"]));
    let textlib = find("textlib:test.os");
    assert_eq!(textlib["location"], "mirror");
    assert_eq!(textlib["interfaces"], json!([TEXTLIB]));
}

#[test]
fn a_failed_link_leaves_the_previous_version_running() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("app", &[]));
    s.wait_for("app:app:test.os", &expect::app());
    let before = s.file("/app:test.os/pkg/app.wasm");

    // A provider of the wrong type.
    let mismatch = s.install("app.v2", &["badmath", "mathlib"]);
    let problems = err(&mismatch)["Unresolved"].as_array().expect("unresolved");
    assert!(
        problems
            .iter()
            .any(|p| p["reason"].get("TypeMismatch").is_some()
                || p["reason"].get("Ambiguous").is_some()),
        "{problems:#?}"
    );

    // No provider at all: the dependency is not on the node.
    let missing = s.install("chain", &[]);
    let missing = &err(&missing)["MissingDependency"];
    assert_eq!(
        (&missing["package"], &missing["dependency"]),
        (&json!("chain:test.os"), &json!("textlib:test.os"))
    );

    assert_eq!(s.file("/app:test.os/pkg/app.wasm"), before);
    assert!(s.file("/chain:test.os/pkg/manifest.json").is_none());
    assert!(matches!(
        s.node.status("app:app:test.os"),
        Some(ProcessStatus::Running | ProcessStatus::Exited)
    ));
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 1);
}

#[test]
fn a_type_mismatch_is_reported_with_both_sides() {
    let s = Session::new();
    let request = json!({"Link": {
        "source": "Blob",
        "metadata": Value::Null,
        "apis": s.upload_apis(&["badmath"]),
    }});
    let (body, blob) = s.ask(
        &s.tester,
        request,
        Some(read(fixtures().package("app"))),
        vec![],
    );
    assert_eq!(blob, None);
    let result = &body["Link"];
    let problems = err(result)["Unresolved"]
        .as_array()
        .unwrap_or_else(|| panic!("unresolved: {result:#}"))
        .clone();
    // app.wasm and the calc script both import mathlib: every problem is reported at once.
    assert_eq!(problems.len(), 2, "{problems:#?}");
    let problem = &problems[0];
    assert_eq!(problem["component"], "app.wasm");
    assert_eq!(problem["name"], MATHLIB);
    assert_eq!(
        problem["reason"]["TypeMismatch"]["provider"]["archive"],
        "badmath:test.os"
    );
    assert!(s.file("/app:test.os/pkg/manifest.json").is_none());
}

#[test]
fn a_failed_install_step_restores_the_previous_version() {
    for fault in [
        Fault::Vfs {
            action: "AddZip".to_owned(),
            path_prefix: "/app:test.os/pkg".to_owned(),
            times: 1,
        },
        Fault::Kernel {
            command: "RunProcess".to_owned(),
            target: Some("app:app:test.os".to_owned()),
            times: 1,
        },
    ] {
        let s = Session::new();
        ok(&s.install("mathlib", &[]));
        ok(&s.install("app", &[]));
        s.wait_for("app:app:test.os", &expect::app());
        let wasm = s.file("/app:test.os/pkg/app.wasm");
        let zip = s.file("/app:test.os/pkg/app:test.os.zip");
        let v1 = sha256(&read(fixtures().package("app")));

        s.node.fault(fault.clone());
        let result = s.install("app.v2", &[]);
        let failure = &err(&result)["InstallFailed"];
        assert_eq!(failure["previous"], json!({ "Restored": v1 }), "{fault:?}");
        // The previous version is back, byte for byte, and running again.
        assert_eq!(s.file("/app:test.os/pkg/app.wasm"), wasm, "{fault:?}");
        assert_eq!(s.file("/app:test.os/pkg/app:test.os.zip"), zip, "{fault:?}");
        assert!(
            s.file("/app:test.os/pkg/app-v2.wasm").is_none(),
            "{fault:?}"
        );
        let restarted = (0..600).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            s.printed("app:app:test.os", &expect::app()) == 2
        });
        assert!(restarted, "{fault:?}: the restored app runs again");
        assert_eq!(s.printed("app:app:test.os", &expect::app_v2(false)), 0);
        assert!(
            s.file("/linker:sys/backup/app:test.os.zip").is_none(),
            "the backup is dropped"
        );
    }
}

#[test]
fn a_failed_first_install_leaves_nothing_behind() {
    let s = Session::new();
    s.node.fault(Fault::Kernel {
        command: "InitializeProcess".to_owned(),
        target: Some("app:app:test.os".to_owned()),
        times: 1,
    });
    let result = s.install("app", &["mathlib"]);
    let failure = &err(&result)["InstallFailed"];
    assert_eq!(
        failure["failed"]["step"],
        "InitializeProcess app:app:test.os"
    );
    assert_eq!(failure["previous"], "None");
    assert!(s.file("/app:test.os/pkg/manifest.json").is_none());
    assert!(s.node.list_dir("/app:test.os/pkg").is_empty());
    assert!(s.node.process("app:app:test.os").is_none());
}

#[test]
fn remote_and_unauthorised_senders_are_refused() {
    let s = Session::new();
    let f = fixtures();
    let metadata = String::from_utf8(read(f.metadata("app"))).expect("text");
    let install = json!({"Install": {"source": "Blob", "metadata": metadata, "apis": []}});

    // The linker requests networking (it asks other nodes' app stores for libraries), so a
    // remote request reaches it: it is refused, and nothing happens.
    let remote = s.node.mailbox("other.os@tester:tester:test.os", false);
    let (body, _) = s.ask(
        &remote,
        install.clone(),
        Some(read(f.package("app"))),
        vec![],
    );
    assert_eq!(
        err(&body["Install"])["RemoteSender"],
        "other.os@tester:tester:test.os"
    );
    assert!(s.node.list_dir("/app:test.os/pkg").is_empty());

    // A local process without the linker's capability may ask, but not install.
    let stranger = Session::local_sender(&s.node, "fake.os@stranger:stranger:test.os");
    let (body, _) = s.ask(
        &stranger,
        install.clone(),
        Some(read(f.package("app"))),
        vec![caps::messaging(LINKER)],
    );
    assert!(
        err(&body["Install"])["NotAuthorised"]
            .as_str()
            .is_some_and(|m| m.contains("stranger:stranger:test.os")),
        "{body:#}"
    );

    // Nor may it have the linker read a drive it cannot read itself.
    s.node
        .write_file("/app-store:sys/secret/x.zip", b"not yours")
        .expect("write");
    let (body, _) = s.ask(
        &stranger,
        json!({"Link": {"source": {"VfsPath": "/app-store:sys/secret/x.zip"}, "metadata": null, "apis": []}}),
        None,
        vec![],
    );
    assert!(
        err(&body["Link"]).get("NotAuthorised").is_some(),
        "{body:#}"
    );

    assert!(s.node.list_dir("/app:test.os").is_empty());
    assert!(s.node.process("app:app:test.os").is_none());
    assert!(s.node.list_dir("/linker:sys/apis").is_empty());
}

#[test]
fn bad_input_gets_typed_errors_and_installs_nothing() {
    let s = Session::new();
    let f = fixtures();
    let metadata = String::from_utf8(read(f.metadata("app"))).expect("text");
    let install = |blob: Option<Vec<u8>>, metadata: Value| {
        let request = json!({"Install": {"source": "Blob", "metadata": metadata, "apis": []}});
        s.ask(&s.tester, request, blob, vec![caps::messaging(LINKER)])
            .0["Install"]
            .clone()
    };
    // The package's dependency is installed, so the package itself is what is wrong.
    ok(&s.install("mathlib", &[]));
    let not_a_zip = install(Some(b"not a zip".to_vec()), json!(metadata));
    assert_eq!(
        err(&not_a_zip)["Archive"]["kind"],
        "not-a-zip",
        "{not_a_zip:#}"
    );
    let no_blob = install(None, json!(metadata));
    assert_eq!(err(&no_blob), &json!("NoBlob"));
    let bad_metadata = install(Some(read(f.package("app"))), json!("{"));
    assert!(err(&bad_metadata).get("BadMetadata").is_some());
    let no_id = install(Some(read(f.package("app"))), Value::Null);
    assert_eq!(err(&no_id), &json!("NoPackageId"));
    let (body, _) = s.ask(&s.tester, json!({"Frobnicate": {}}), None, vec![]);
    assert!(body.get("BadRequest").is_some(), "{body:#}");
    assert!(s.node.list_dir("/app:test.os").is_empty());
}

#[test]
fn installed_processes_reload_from_their_wasm_bytes_handle_after_a_reboot() {
    let s = Session::new();
    let report = s.install("echo", &[]);
    assert_eq!(ok(&report)["processes"], json!(["echo:echo:test.os"]));
    s.wait_for("echo:echo:test.os", "echo: up");
    let info = s
        .node
        .process("echo:echo:test.os")
        .expect("echo keeps running");
    assert_eq!(info.wasm_bytes_handle, "/echo:test.os/pkg/echo.wasm");
    assert_eq!(
        s.file(&info.wasm_bytes_handle),
        Some(read(fixtures().component("echo", "echo.wasm")))
    );
    s.node.reboot().expect("the node reboots");
    let rerun = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        s.printed("echo:echo:test.os", "echo: up") == 2
    });
    assert!(rerun, "echo is reloaded from its wasm_bytes_handle");
}

#[test]
fn the_linker_and_its_drives_survive_a_reboot() {
    let s = Session::new();
    ok(&s.install("app", &["mathlib"]));
    s.wait_for("app:app:test.os", &expect::app());
    s.node.reboot().expect("the node reboots");
    // The linker (on-exit Restart) is reloaded from its wasm_bytes_handle; its cache survived, so
    // the same install composes nothing, and the app runs its linked code again.
    let again = s.install("app", &["mathlib"]);
    assert_eq!(ok(&again)["link"]["cached"], true);
    let rerun = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        s.printed("app:app:test.os", &expect::app()) == 2
    });
    assert!(rerun, "the reinstalled app runs its linked code");
}
