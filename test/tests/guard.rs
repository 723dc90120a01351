//! What a library may do as its importer: the audit shown before install, and the bounds a
//! package declares in `library-bounds.json`, refused at link time or enforced by the guard while
//! the process runs.
//!
//! The fixture library `courier-api.wasm` (package `courier`) asks any process on the node and
//! spawns a worker; `sender` imports it and, through it, asks courier's `depot` (the library's own
//! package), its own `bystander` (outside courier's package) and the worker it spawned.

use std::collections::BTreeSet;

use linker_core::{Ability, BoundsError, Input, LinkError, Options, Reason};
use linker_fixtures::{Fixtures, PUBLISHER};
use linker_test_host::caps;
use linker_tests::damage::{add_to_zip, file_in_zip};
use linker_tests::node::*;
use serde_json::{json, Value};
use wit_component::DecodedWasm;

const SENDER: &str = "sender:sender:test.os";

/// The sender package with `bounds` as its `library-bounds.json`.
fn bounded_sender(bounds: &Value) -> Vec<u8> {
    add_to_zip(
        &read(fixtures().package("sender")),
        "library-bounds.json",
        bounds.to_string().as_bytes(),
    )
    .expect("the sender zip takes a file")
}

/// Installs `zip` as the sender package from the tester, linked against courier's API.
fn install_sender(s: &Session, zip: Vec<u8>) -> Value {
    s.install_zip("sender", zip, &["courier"], vec![caps::messaging(LINKER)])
}

/// Installs the sender as built, waits for it to finish, and returns the wasm installed.
fn installed_unbounded(s: &Session) -> Vec<u8> {
    ok(&install_sender(s, read(fixtures().package("sender"))));
    sender_lines(s);
    s.file("/sender:test.os/pkg/sender.wasm")
        .expect("installed")
}

/// A node with courier installed and its depot running.
fn with_courier() -> Session {
    let s = Session::new();
    ok(&s.install("courier", &[]));
    s.wait_for("depot:courier:test.os", "depot: up");
    s
}

/// The sender's four lines, once it printed `sender: done`.
fn sender_lines(s: &Session) -> Vec<String> {
    s.wait_for(SENDER, "sender: done");
    s.node
        .prints()
        .iter()
        .filter(|(pid, print)| pid == SENDER && print.message.starts_with("sender: "))
        .map(|(_, print)| print.message.clone())
        .collect()
}

/// The guard's lines, printed as the sender (the library runs as it).
fn denials(s: &Session) -> Vec<String> {
    s.node
        .prints()
        .iter()
        .filter(|(pid, print)| pid == SENDER && print.message.starts_with("linker guard: "))
        .map(|(_, print)| print.message.clone())
        .collect()
}

fn denial(target: &str) -> String {
    format!(
        "linker guard: courier-api.wasm (courier:test.os), linked into {SENDER}, tried to send a \
         request to {NODE}@{target}, which the package's library-bounds.json does not allow; it \
         was not sent"
    )
}

/// The abilities courier-api.wasm's imports grant, read from the component itself with
/// wit-component (not the linker): each `standard` function it imports, and each WASI package.
fn courier_abilities() -> Vec<&'static str> {
    let bytes = read(fixtures().component("courier", "courier-api.wasm"));
    let DecodedWasm::Component(resolve, world) = wit_component::decode(&bytes).expect("decodes")
    else {
        panic!("courier-api.wasm is a component");
    };
    let mut granted = BTreeSet::new();
    for (key, item) in &resolve.worlds[world].imports {
        let name = resolve.name_world_key(key);
        if name == "kinode:process/standard@1.0.0" {
            let wit_parser::WorldItem::Interface { id, .. } = item else {
                panic!("standard is an interface");
            };
            for function in resolve.interfaces[*id].functions.keys() {
                granted.extend(match function.as_str() {
                    "send-request" | "send-requests" | "send-and-await-response" => {
                        Some((0, "send-requests"))
                    }
                    "spawn" => Some((3, "spawn")),
                    "our" => None,
                    other => panic!("courier-api imports `{other}`: extend this test"),
                });
            }
        } else {
            let package = name.split('/').next().expect("a package");
            granted.insert(match package {
                "wasi:filesystem" => (10, "files"),
                "wasi:clocks" => (11, "clocks"),
                "wasi:random" => (12, "random"),
                "wasi:cli" => (13, "environment"),
                "wasi:io" => (15, "streams"),
                other => panic!("courier-api imports {other}: extend this test"),
            });
        }
    }
    granted.into_iter().map(|(_, name)| name).collect()
}

/// The API's names of abilities (wit-bindgen's serde form) for link.json's.
fn api_name(ability: &str) -> String {
    ability
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

fn sender_component(report: &Value) -> &Value {
    report["link"]["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|component| component["path"] == "sender.wasm")
        .expect("sender.wasm is reported")
}

#[test]
fn unbounded_the_library_reaches_everyone_and_the_audit_lists_what_its_imports_allow() {
    let expected = courier_abilities();
    assert!(expected.contains(&"send-requests") && expected.contains(&"spawn"));
    let s = with_courier();
    let report = install_sender(&s, read(fixtures().package("sender")));
    let report = ok(&report);
    let library = &sender_component(report)["libraries"][0];
    assert_eq!(library["library"]["path"], "courier-api.wasm");
    assert_eq!(library["library"]["archive"], "courier:test.os");
    assert_eq!(library["imported_by"][0]["path"], "sender.wasm");
    let api: Vec<String> = expected.iter().map(|name| api_name(name)).collect();
    assert_eq!(library["abilities"], json!(api));
    assert!(
        library["can"]
            .as_str()
            .expect("can")
            .starts_with("send requests, spawn processes"),
        "{library:#}"
    );
    assert_eq!(library["bound"], Value::Null);
    assert_eq!(library["guarded"], false);

    // link.json on the node says the same, in its own names.
    let link_json = s.file("/sender:test.os/pkg/link.json").expect("link.json");
    let link_json: Value = serde_json::from_slice(&link_json).expect("JSON");
    let recorded = link_json["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|component| component["path"] == "sender.wasm")
        .expect("sender.wasm");
    assert_eq!(recorded["libraries"][0]["abilities"], json!(expected));

    assert_eq!(
        sender_lines(&s),
        [
            "sender: depot -> depot got one",
            "sender: bystander -> bystander got two",
            "sender: worker -> courier-worker got three",
            "sender: done",
        ]
    );
    assert!(denials(&s).is_empty());
}

/// A bound that lets courier do everything its imports allow (spawning included, which a
/// `send-to` bound needs said outright) and send requests only to `targets`.
fn send_to(targets: &[&str]) -> Value {
    json!({"libraries": {"courier:test.os": {"may": courier_abilities(), "send-to": targets}}})
}

#[test]
fn bounded_to_its_own_package_the_library_reaches_only_it_and_each_denial_is_printed() {
    let s = with_courier();
    let report = install_sender(&s, bounded_sender(&send_to(&["library-package"])));
    let report = ok(&report);
    let library = &sender_component(report)["libraries"][0];
    assert_eq!(library["guarded"], true);
    assert_eq!(library["bound"]["send_to"], json!(["library-package"]));
    assert_eq!(
        library["bound"]["may"].as_array().map(Vec::len),
        Some(courier_abilities().len())
    );
    assert_eq!(
        sender_lines(&s),
        [
            "sender: depot -> depot got one",
            "sender: bystander -> error timeout",
            "sender: worker -> error timeout",
            "sender: done",
        ]
    );
    assert_eq!(
        denials(&s),
        [
            denial("bystander:sender:test.os"),
            denial("courier-worker:sender:test.os"),
        ]
    );
    // Denied by the guard, not by the kernel: the sender holds the capabilities.
    assert!(!s
        .node
        .prints()
        .iter()
        .any(|(_, print)| print.message.contains("doesn't have capability")));
}

#[test]
fn spawned_workers_may_be_allowed_besides_the_library_package() {
    let s = with_courier();
    let bounds = send_to(&["library-package", "spawned"]);
    ok(&install_sender(&s, bounded_sender(&bounds)));
    assert_eq!(
        sender_lines(&s),
        [
            "sender: depot -> depot got one",
            "sender: bystander -> error timeout",
            "sender: worker -> courier-worker got three",
            "sender: done",
        ]
    );
    assert_eq!(denials(&s), [denial("bystander:sender:test.os")]);
}

#[test]
fn a_bound_forbidding_spawning_refuses_the_library_at_link_time_and_keeps_what_runs() {
    let s = with_courier();
    let installed = installed_unbounded(&s);

    let may: Vec<&str> = courier_abilities()
        .into_iter()
        .filter(|ability| *ability != "spawn")
        .collect();
    let bounds = json!({"libraries": {"courier:test.os": {"may": may}}});
    let result = install_sender(&s, bounded_sender(&bounds));
    let forbidden = &err(&result)["Forbidden"];
    assert_eq!(forbidden.as_array().map(Vec::len), Some(1), "{result:#}");
    assert_eq!(forbidden[0]["imports"], json!(["spawn"]));
    assert_eq!(forbidden[0]["ability"], "Spawn");
    assert_eq!(forbidden[0]["library"]["path"], "courier-api.wasm");
    assert!(forbidden[0]["message"]
        .as_str()
        .expect("message")
        .contains("imports `spawn`, which would let it spawn processes"));
    // Nothing changed: the previous version is what is installed.
    assert_eq!(s.file("/sender:test.os/pkg/sender.wasm"), Some(installed));
    assert_eq!(s.file("/sender:test.os/pkg/library-bounds.json"), None);

    // Explain shows the same, without failing.
    let (body, _) = s.ask(
        &s.tester,
        json!({"Explain": {"source": "Blob", "metadata": null, "apis": s.upload_apis(&["courier"])}}),
        Some(bounded_sender(&bounds)),
        vec![],
    );
    let explained = &body["Explain"]["Ok"];
    let component = explained["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|component| component["path"] == "sender.wasm")
        .expect("sender.wasm");
    assert_eq!(component["libraries"][0]["forbidden"], json!(["spawn"]));
}

#[test]
fn a_send_to_bound_refuses_a_library_that_spawns_unless_its_may_accepts_that() {
    let s = with_courier();
    let installed = installed_unbounded(&s);

    let bounds = json!({"libraries": {"courier:test.os": {"send-to": ["library-package"]}}});
    let result = install_sender(&s, bounded_sender(&bounds));
    let forbidden = &err(&result)["Forbidden"];
    assert_eq!(forbidden.as_array().map(Vec::len), Some(1), "{result:#}");
    assert_eq!(forbidden[0]["imports"], json!(["spawn"]));
    assert_eq!(forbidden[0]["ability"], "Spawn");
    assert_eq!(forbidden[0]["send_to"], json!(["library-package"]));
    assert_eq!(forbidden[0]["send_to_cannot_hold"], true);
    let message = forbidden[0]["message"].as_str().expect("message");
    assert!(
        message.contains("`courier-api.wasm` in `courier:test.os` imports `spawn`")
            && message.contains("(requests only to: library-package) would not hold")
            && message.contains("list `spawn` in its `may`"),
        "{message}"
    );
    assert_eq!(s.file("/sender:test.os/pkg/sender.wasm"), Some(installed));
    assert_eq!(s.file("/sender:test.os/pkg/library-bounds.json"), None);

    // Natively the same, as a typed error.
    let f = fixtures();
    match link_sender(f, Some(&bounds)) {
        Err(LinkError::Bounds(BoundsError::Forbidden { forbidden })) => {
            assert_eq!(forbidden.len(), 1);
            assert_eq!(forbidden[0].reason, Reason::SendToCannotHold);
            assert_eq!(forbidden[0].ability, Ability::Spawn);
            assert_eq!(forbidden[0].send_to, ["library-package"]);
        }
        other => panic!("expected the spawn forbidden by send-to, got {other:?}"),
    }
}

/// Links the sender natively with `bounds` (none: the package as built).
fn link_sender(f: &Fixtures, bounds: Option<&Value>) -> Result<linker_core::Linked, LinkError> {
    let package = match bounds {
        Some(bounds) => bounded_sender(bounds),
        None => read(f.package("sender")),
    };
    let api = read(f.api("courier"));
    let name = format!("courier:{PUBLISHER}");
    linker_core::link(
        Input::new("sender:test.os", &package),
        &[Input::new(&name, &api)],
        &Options::default(),
    )
}

#[test]
fn without_a_guard_the_linked_component_is_the_same_bytes() {
    let f = fixtures();
    let plain = link_sender(f, None).expect("links");
    let plain_wasm = file_in_zip(&plain.bytes, "sender.wasm").expect("sender.wasm");
    // A bound that only lists what the library may do needs no guard: same component.
    let may: Vec<&str> = courier_abilities();
    let only_may = link_sender(
        f,
        Some(&json!({"libraries": {"courier:test.os": {"may": may}}})),
    )
    .expect("links");
    assert_eq!(
        file_in_zip(&only_may.bytes, "sender.wasm").expect("sender.wasm"),
        plain_wasm
    );
    let marker = b"linker-guard-policy-v1";
    let contains = |haystack: &[u8]| haystack.windows(marker.len()).any(|w| w == marker);
    assert!(!contains(&plain_wasm));
    let guarded = link_sender(f, Some(&send_to(&["library-package"]))).expect("links");
    assert!(contains(
        &file_in_zip(&guarded.bytes, "sender.wasm").expect("sender.wasm")
    ));
}

#[test]
fn unusable_bounds_are_refused_with_their_own_errors() {
    let f = fixtures();
    let bounds = |value: Value| link_sender(f, Some(&value)).map(drop);
    assert!(matches!(
        bounds(json!({"libraries": {"courier:test.os": {"may": ["spawning"]}}})),
        Err(LinkError::Bounds(BoundsError::Invalid { reason, .. })) if reason.contains("unknown variant `spawning`")
    ));
    assert!(matches!(
        bounds(json!({"libraries": {"courier": {}}})),
        Err(LinkError::Bounds(BoundsError::Invalid { reason, .. })) if reason.contains("`courier` is not a package id")
    ));
    assert!(matches!(
        bounds(json!({"libraries": {}, "extra": 1})),
        Err(LinkError::Bounds(BoundsError::Invalid { .. }))
    ));
    assert!(matches!(
        bounds(json!({"libraries": {"courier:test.os": {"send-to": ["depot"]}}})),
        Err(LinkError::Bounds(BoundsError::BadTarget { library, error, .. }))
            if library == "courier:test.os" && error.target == "depot"
    ));
    assert!(matches!(
        bounds(json!({"libraries": {"courrier:test.os": {"may": []}}})),
        Err(LinkError::Bounds(BoundsError::Unused { library, linked, .. }))
            if library == "courrier:test.os" && linked == ["courier:test.os"]
    ));
    let Err(LinkError::Bounds(BoundsError::Forbidden { forbidden })) =
        bounds(json!({"libraries": {"courier:test.os": {"may": []}}}))
    else {
        panic!("an empty `may` forbids every import");
    };
    let abilities: Vec<Ability> = forbidden.iter().map(|f| f.ability).collect();
    let expected: Vec<String> = courier_abilities().iter().map(|a| a.to_string()).collect();
    let found: Vec<String> = abilities.iter().map(|a| a.name().to_owned()).collect();
    assert_eq!(found, expected);
}

#[test]
fn the_schema_names_every_ability_the_linker_knows() {
    let schema = std::fs::read(linker_fixtures::repo_root().join("api/library-bounds.schema.json"))
        .expect("the schema is in api/");
    let schema: Value = serde_json::from_slice(&schema).expect("the schema is JSON");
    let names: Vec<&str> = Ability::ALL.iter().map(|ability| ability.name()).collect();
    assert_eq!(schema["$defs"]["ability"]["enum"], json!(names));
}
