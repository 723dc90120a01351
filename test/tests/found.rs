//! Packages without metadata are linked against the APIs on the node, found by the interfaces
//! they export, with the usual rules (exact, then semver-compatible, type-checked, unambiguous);
//! declared dependencies still come first and bound what is used. Reports, `link.json` and
//! `explain` say for each import whether its provider was declared or found; an import that
//! cannot be linked says what the node has and what to do.

use linker_fixtures::expect;
use linker_tests::node::*;
use serde_json::{json, Value};

/// A request of `kind` for fixture `name`'s zip (the blob), with `metadata`.
fn ask(s: &Session, kind: &str, name: &str, metadata: Value) -> Value {
    let request = json!({ kind: {"source": "Blob", "metadata": metadata, "apis": []} });
    let blob = Some(read(fixtures().package(name)));
    s.ask(
        &s.tester,
        request,
        blob,
        vec![linker_test_host::caps::messaging(LINKER)],
    )
    .0[kind]
        .clone()
}

/// Fixture `name`'s metadata.json, with `dependencies` replaced.
fn metadata(name: &str, dependencies: Value) -> Value {
    let mut metadata: Value =
        serde_json::from_slice(&read(fixtures().metadata(name))).expect("metadata JSON");
    metadata["properties"]["dependencies"] = dependencies;
    json!(metadata.to_string())
}

/// The first import report of component `path` in a report or explanation.
fn import<'a>(report: &'a Value, path: &str) -> &'a Value {
    report["components"]
        .as_array()
        .and_then(|components| components.iter().find(|c| c["path"] == path))
        .map(|component| &component["imports"][0])
        .unwrap_or_else(|| panic!("no import of {path} in {report:#}"))
}

#[test]
fn a_download_without_chain_metadata_links_from_the_installed_library() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    let zip = read(fixtures().package("app"));
    let hash = sha256(&zip);
    s.node
        .write_file(
            &format!("/app-store:sys/downloads/app:test.os/{hash}.zip"),
            &zip,
        )
        .expect("the download");
    // No metadata in the request, and no chain:app-store:sys to ask: the node's APIs decide.
    let request = json!({"Install": {
        "source": {"Download": {
            "package": {"package_name": "app", "publisher_node": "test.os"},
            "version_hash": hash,
        }},
        "metadata": null,
        "apis": [],
    }});
    let (body, _) = s.ask(
        &s.tester,
        request,
        None,
        vec![linker_test_host::caps::messaging(LINKER)],
    );
    let report = ok(&body["Install"]);
    let linked = &import(&report["link"], "app.wasm")["outcome"]["Linked"];
    assert_eq!(linked["provider"]["archive"], "mathlib:test.os");
    assert_eq!(linked["provenance"], "Found");
    assert_eq!(report["link"]["apis"][0]["provenance"], "Found");
    s.wait_for("app:app:test.os", &expect::app());
    // link.json records it, and `linked` shows the same.
    let link_json: Value =
        serde_json::from_slice(&s.file("/app:test.os/pkg/link.json").expect("link.json"))
            .expect("JSON");
    assert_eq!(import(&link_json, "app.wasm")["source"], "found");
    assert_eq!(link_json["apis"][0]["source"], "found");
}

#[test]
fn explain_shows_declared_and_found_providers() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    let declared = ask(
        &s,
        "Explain",
        "app",
        metadata("app", json!(["mathlib:test.os"])),
    );
    let outcome = &import(ok(&declared), "app.wasm")["outcome"]["Linked"];
    assert_eq!(outcome["provenance"], "Declared");
    assert_eq!(ok(&declared)["apis"][0]["provenance"], "Declared");

    let found = ask(&s, "Explain", "app", Value::Null);
    let outcome = &import(ok(&found), "app.wasm")["outcome"]["Linked"];
    assert_eq!(outcome["provenance"], "Found");
    assert_eq!(outcome["provider"]["archive"], "mathlib:test.os");
}

#[test]
fn two_installed_packages_exporting_the_interface_are_ambiguous_and_named() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("badmath", &[]));
    let result = ask(&s, "Link", "app", Value::Null);
    let unresolved = &err(&result)["Unresolved"][0];
    let candidates: Vec<&str> = unresolved["reason"]["Ambiguous"]
        .as_array()
        .unwrap_or_else(|| panic!("expected Ambiguous: {result:#}"))
        .iter()
        .filter_map(|origin| origin["archive"].as_str())
        .collect();
    assert_eq!(candidates, ["badmath:test.os", "mathlib:test.os"]);
    let hint = unresolved["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("badmath:test.os and mathlib:test.os all export it"),
        "{hint}"
    );
    assert!(s.node.process("app:app:test.os").is_none());
}

#[test]
fn a_refused_provider_on_the_node_is_named_with_the_reason() {
    let s = Session::new();
    ok(&s.install("badmath", &[]));
    let result = ask(&s, "Link", "app", Value::Null);
    let unresolved = &err(&result)["Unresolved"][0];
    let rejected = &unresolved["reason"]["TypeMismatch"];
    assert_eq!(rejected["provider"]["archive"], "badmath:test.os");
    assert!(rejected["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert!(
        unresolved["hint"]
            .as_str()
            .is_some_and(|hint| hint.starts_with("badmath:test.os exports")),
        "{unresolved:#}"
    );
}

#[test]
fn declared_dependencies_bound_what_is_used_and_the_error_names_what_the_node_has() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("selfish", &[]));
    // app declares only selfish: mathlib, although installed, is not used.
    let result = ask(
        &s,
        "Link",
        "app",
        metadata("app", json!(["selfish:test.os"])),
    );
    let unresolved = &err(&result)["Unresolved"][0];
    assert_eq!(unresolved["name"], MATHLIB);
    assert!(
        unresolved["reason"]["NoProvider"].is_array(),
        "{unresolved:#}"
    );
    let hint = unresolved["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("mathlib:test.os on this node exports `kinode:process/mathlib`")
            && hint.contains("does not list it in `dependencies`"),
        "{hint}"
    );
    assert!(!unresolved["message"]
        .as_str()
        .unwrap_or_default()
        .contains("no API provides it"));
}
