//! The app store's updates of linked packages (issue 18): on a real node the VFS answers `Hash`
//! and other cached actions from an open-file cache that the app store's `RemoveDirAll`, `AddZip`
//! and `Write` do not invalidate (the test host's VFS keeps the same cache). Every update the app
//! store installs by itself must end up linked like a first install: a new version of the app, of
//! its library (the app re-linked), both back to back in either order, the same version
//! reinstalled, updates seconds apart and at once, and a reboot in between.

use std::time::{Duration, Instant};

use linker_fixtures::expect;
use linker_tests::node::*;
use serde_json::Value;

const APP: &str = "app:app:test.os";

/// Waits until `APP` has printed `line` `times` times in all.
fn wait_printed(s: &Session, line: &str, times: usize) {
    let deadline = Instant::now() + WAIT;
    while s.printed(APP, line) < times {
        assert!(
            Instant::now() < deadline,
            "{APP} printed {line:?} {} times, not {times}; prints: {:#?}",
            s.printed(APP, line),
            s.node.prints()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `Linked` says `package` is linked at `version_hash` against `mathlib` (a fixture
/// name) and returns the answer.
fn linked_at(s: &Session, package: &str, version_hash: &str, mathlib: &str) -> Value {
    let api = sha256(&read(fixtures().api(mathlib)));
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = linked(s, package);
        let info = &answer["Ok"];
        if info["version_hash"] == version_hash
            && info["status"]["Linked"]["apis"][0]["sha256"] == api.as_str()
        {
            return info.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{package} is not linked at {version_hash} against {mathlib}: {answer:#}; prints: {:#?}",
            s.node.prints()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `APP` runs linked as `info` says: the last instantiation failure (each app store
/// install of an app starts it unlinked) is followed by `line`, and the wasm the kernel would
/// load at a reboot is the linked one.
fn runs_linked(s: &Session, line: &str, info: &Value) {
    let failed = format!("{APP} failed to instantiate");
    let component = &info["status"]["Linked"]["components"][0];
    let linked_sha256 = component["linked_sha256"].as_str();
    let path = component["path"].as_str().unwrap_or_default();
    let handle = format!("/app:test.os/pkg/{}", path.trim_start_matches('/'));
    let deadline = Instant::now() + WAIT;
    loop {
        let prints = s.node.prints();
        let last_failure = prints
            .iter()
            .rposition(|(_, print)| print.message.contains(&failed));
        let last_run = prints
            .iter()
            .rposition(|(pid, print)| pid == APP && print.message == line);
        let wasm = s.file(&handle).map(|wasm| sha256(&wasm));
        if last_run > last_failure && wasm.as_deref() == linked_sha256 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{APP} does not run linked ({line:?} last at {last_run:?}, a failure at \
             {last_failure:?}; {handle} {wasm:?}, linked {linked_sha256:?}): {prints:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn updates_seconds_apart_the_app_twice_its_library_and_the_same_version_again_all_end_up_linked() {
    let (s, store) = with_app_store();
    app_store_install(&store, "mathlib");
    let app = app_store_install(&store, "app");
    wait_printed(&s, &expect::app(), 1);
    let info = linked_at(&s, "app:test.os", &app, "mathlib");
    runs_linked(&s, &expect::app(), &info);

    // The app updated by the app store: its unlinked start fails, the linker links it.
    let v2 = app_store_install(&store, "app.v2");
    wait_printed(&s, &expect::app_v2(false), 1);
    let info = linked_at(&s, "app:test.os", &v2, "mathlib");
    runs_linked(&s, &expect::app_v2(false), &info);

    // The same version installed again: the drive is replaced with the unlinked files again.
    std::thread::sleep(Duration::from_secs(3));
    app_store_install(&store, "app.v2");
    wait_printed(&s, &expect::app_v2(false), 2);
    let info = linked_at(&s, "app:test.os", &v2, "mathlib");
    runs_linked(&s, &expect::app_v2(false), &info);

    // Its library updated: the app is re-linked against it, and the library's record moves.
    std::thread::sleep(Duration::from_secs(3));
    let mathlib_v2 = app_store_install(&store, "mathlib.v2");
    wait_printed(&s, &expect::app_v2(true), 1);
    let info = linked_at(&s, "app:test.os", &v2, "mathlib.v2");
    runs_linked(&s, &expect::app_v2(true), &info);
    let library = linked(&s, "mathlib:test.os");
    assert_eq!(library["Ok"]["version_hash"], mathlib_v2, "{library:#}");
    assert_eq!(
        s.file("/mathlib:test.os/pkg/.linker"),
        Some(mathlib_v2.clone().into_bytes())
    );

    // After a reboot (a new runtime, an empty cache) the app is reinstalled once more, and the
    // linker still links it against the library as now installed.
    s.node.reboot().expect("reboot");
    std::thread::sleep(Duration::from_secs(3));
    app_store_install(&store, "app.v2");
    wait_printed(&s, &expect::app_v2(true), 2);
    let info = linked_at(&s, "app:test.os", &v2, "mathlib.v2");
    runs_linked(&s, &expect::app_v2(true), &info);
}

#[test]
fn updates_back_to_back_in_either_order_and_an_app_updated_twice_at_once_end_up_linked() {
    let (s, store) = with_app_store();
    app_store_install(&store, "mathlib");
    app_store_install(&store, "app");
    wait_printed(&s, &expect::app(), 1);

    // The library, then at once the app.
    app_store_install(&store, "mathlib.v2");
    let v2 = app_store_install(&store, "app.v2");
    wait_printed(&s, &expect::app_v2(true), 1);
    let info = linked_at(&s, "app:test.os", &v2, "mathlib.v2");
    runs_linked(&s, &expect::app_v2(true), &info);

    // The app back to its first version and at once to the second (an update arriving while the
    // linker may be linking the one before), then the library back to 0.1.0 at once.
    let app = app_store_install(&store, "app");
    app_store_install(&store, "app.v2");
    app_store_install(&store, "mathlib");
    let info = linked_at(&s, "app:test.os", &v2, "mathlib");
    wait_printed(&s, &expect::app_v2(false), 1);
    runs_linked(&s, &expect::app_v2(false), &info);
    assert_ne!(app, v2);
}
