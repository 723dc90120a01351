//! Auto-linking on update: when a library is installed through the linker, every installed
//! package the linker linked against it is re-linked and re-installed, one at a time; one that no
//! longer links keeps running its previous version, and the report says which and why. The reverse
//! index lives in the linker's drive and survives a restart.

use std::time::Duration;

use linker_fixtures::expect;
use linker_tests::node::*;
use serde_json::{json, Value};

/// Waits until process `id` has printed `line` `times` times.
fn printed_times(s: &Session, id: &str, line: &str, times: usize) -> bool {
    (0..600).any(|_| {
        if s.printed(id, line) >= times {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
        false
    })
}

/// The `relinked` list of an install report, as `(package, "Relinked" | "Kept", detail)`.
fn relinked(report: &Value) -> Vec<(String, String, Value)> {
    report["relinked"]
        .as_array()
        .expect("relinked")
        .iter()
        .map(|relink| {
            let outcome = relink["outcome"].as_object().expect("outcome");
            let (kind, detail) = outcome.iter().next().expect("one variant");
            (
                relink["package"].as_str().unwrap_or_default().to_owned(),
                kind.clone(),
                detail.clone(),
            )
        })
        .collect()
}

fn dependents(s: &Session, api: &str) -> Value {
    let (body, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    let apis = ok(&body["ListApis"]).as_array().expect("a list").clone();
    apis.iter()
        .find(|info| info["package"] == api)
        .map(|info| {
            json!(info["dependents"]
                .as_array()
                .expect("dependents")
                .iter()
                .map(|dependent| dependent["package"].clone())
                .collect::<Vec<_>>())
        })
        .unwrap_or_else(|| panic!("{api} not listed: {apis:#?}"))
}

#[test]
fn a_library_update_relinks_its_dependents_and_an_incompatible_one_keeps_the_old_version() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("app", &[]));
    ok(&s.install("bigapp", &[]));
    s.wait_for("app:app:test.os", &expect::app());
    s.wait_for("bigapp:bigapp:test.os", &expect::bigapp());
    assert_eq!(
        dependents(&s, "mathlib:test.os"),
        json!(["app:test.os", "bigapp:test.os"])
    );

    // A compatible update: both dependents are re-linked and restarted with the new library.
    let v2 = s.install("mathlib.v2", &[]);
    let v2 = ok(&v2);
    let outcomes = relinked(v2);
    assert_eq!(
        outcomes
            .iter()
            .map(|(p, kind, _)| (p.as_str(), kind.as_str()))
            .collect::<Vec<_>>(),
        [("app:test.os", "Relinked"), ("bigapp:test.os", "Relinked")],
        "{v2:#}"
    );
    assert!(printed_times(
        &s,
        "app:app:test.os",
        &expect::app_with_mathlib_v2(),
        1
    ));
    assert!(printed_times(
        &s,
        "bigapp:bigapp:test.os",
        &expect::bigapp(),
        2
    ));
    let link_json: Value =
        serde_json::from_slice(&s.file("/app:test.os/pkg/link.json").expect("link.json"))
            .expect("JSON");
    assert_eq!(
        link_json["apis"][0]["sha256"],
        sha256(&read(fixtures().api("mathlib.v2")))
    );

    // The linker restarts (a reboot reloads it); its index is in its drive.
    s.node.reboot().expect("the node reboots");
    assert_eq!(
        dependents(&s, "mathlib:test.os"),
        json!(["app:test.os", "bigapp:test.os"])
    );

    // An incompatible update: `fingerprint` is gone. bigapp (add only) is re-linked; app keeps
    // running its previous version, and the report says why.
    let app_wasm = s.file("/app:test.os/pkg/app.wasm");
    let v3 = s.install("mathlib.v3", &[]);
    let v3 = ok(&v3);
    let outcomes = relinked(v3);
    assert_eq!(outcomes.len(), 2, "{v3:#}");
    let (package, kind, detail) = &outcomes[0];
    assert_eq!((package.as_str(), kind.as_str()), ("app:test.os", "Kept"));
    let problems = detail["Unresolved"].as_array().expect("unresolved");
    assert!(
        problems.iter().all(|p| p["name"] == MATHLIB
            && p["reason"]["TypeMismatch"]["provider"]["archive"] == "mathlib:test.os"),
        "{problems:#?}"
    );
    assert_eq!(
        (outcomes[1].0.as_str(), outcomes[1].1.as_str()),
        ("bigapp:test.os", "Relinked")
    );
    assert_eq!(s.file("/app:test.os/pkg/app.wasm"), app_wasm);
    assert!(printed_times(
        &s,
        "bigapp:bigapp:test.os",
        &expect::bigapp(),
        3
    ));
}
