//! Auto-linking: packages the app store installs, updates or removes by itself, with its own
//! `utils::install` steps from `main:app-store:sys` (never through the linker), end up linked; a
//! package that cannot be linked is reported once and left alone; nothing loops; the switch is
//! remembered; a reboot keeps everything linked.

use std::time::{Duration, Instant};

use linker_fixtures::expect;
use linker_test_host::caps;
use linker_tests::node::*;
use serde_json::{json, Value};

/// The linker's process id, as prints name it.
const LINKER_PID: &str = "linker:linker:sys";

/// The linker's prints that mention `text`.
fn linker_lines(s: &Session, text: &str) -> Vec<String> {
    s.node
        .print_messages(LINKER_PID)
        .into_iter()
        .filter(|line| line.contains(text))
        .collect()
}

/// Lets `ticks` of the linker's timer pass.
fn let_ticks_pass(ticks: u32) {
    std::thread::sleep(Duration::from_millis(2_000 * u64::from(ticks) + 500));
}

/// What `ListApis` says of `package`'s API.
fn api_info(s: &Session, package: &str) -> Value {
    let (apis, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    ok(&apis["ListApis"])
        .as_array()
        .and_then(|apis| apis.iter().find(|api| api["package"] == package))
        .cloned()
        .unwrap_or_else(|| panic!("{package} is not listed: {apis:#}"))
}

fn auto_link(s: &Session, on: Option<bool>, attach: Vec<linker_test_host::Capability>) -> Value {
    s.ask(&s.tester, json!({ "AutoLink": on }), None, attach).0["AutoLink"].clone()
}

#[test]
fn a_dependent_the_app_store_installs_ends_up_running_linked_and_stays_linked_after_a_reboot() {
    let (s, store) = with_app_store();
    let mathlib = app_store_install(&store, "mathlib");
    let app = app_store_install(&store, "app");
    s.wait_for("app:app:test.os", &expect::app());

    let info = handled(&s, "app:test.os", &app);
    assert_eq!(info["trigger"], "Auto");
    let report = &info["status"]["Linked"];
    let import = &report["components"][0]["imports"][0];
    assert_eq!(import["name"], MATHLIB);
    assert_eq!(import["outcome"]["Linked"]["provenance"], "Found");
    assert_eq!(report["apis"][0]["name"], "mathlib:test.os");
    // The app store's zip and so its version hash and listing are unchanged; the linked files
    // and the linker's records are beside it.
    assert_eq!(
        s.file("/app:test.os/pkg/app:test.os.zip")
            .map(|zip| sha256(&zip)),
        Some(app.clone())
    );
    let link_json: Value =
        serde_json::from_slice(&s.file("/app:test.os/pkg/link.json").expect("link.json"))
            .expect("JSON");
    assert_eq!(
        link_json["components"][0]["imports"][0]["source"], "found",
        "{link_json:#}"
    );
    // mathlib has nothing to link: left as the app store installed it, with no link.json.
    let mathlib_info = handled(&s, "mathlib:test.os", &mathlib);
    assert_eq!(mathlib_info["status"], "NothingToLink");
    assert!(s.file("/mathlib:test.os/pkg/link.json").is_none());

    // `apis` marks the app as linked by auto-linking.
    assert_eq!(
        api_info(&s, "mathlib:test.os")["dependents"],
        json!([{"package": "app:test.os", "trigger": "Auto"}])
    );

    // After a reboot the app's wasm_bytes_handle still holds the linked bytes (app is on-exit
    // None, so the kernel does not start it again by itself), they run, and the linker, back up,
    // finds nothing to do.
    let handle = "/app:test.os/pkg/app.wasm";
    let linked_wasm = s.file(handle).expect("app.wasm");
    assert_eq!(
        sha256(&linked_wasm),
        report["components"][0]["linked_sha256"]
            .as_str()
            .unwrap_or_default()
    );
    s.node.reboot().expect("reboot");
    let_ticks_pass(3);
    assert_eq!(s.file(handle), Some(linked_wasm.clone()));
    assert_eq!(handled(&s, "app:test.os", &app)["trigger"], "Auto");
    let run = linker_test_host::Host::new()
        .expect("a host")
        .run_init(&linked_wasm, "fake.os@app:app:test.os")
        .expect("the linked app runs");
    assert_eq!(run.print_messages(), [expect::app()]);
}

#[test]
fn a_new_library_version_from_the_app_store_relinks_its_dependents() {
    let (s, store) = with_app_store();
    app_store_install(&store, "mathlib");
    app_store_install(&store, "app");
    s.wait_for("app:app:test.os", &expect::app());

    // At once: the linker handles app before mathlib (both have an API, so by name), so the
    // update may replace mathlib's drive while the same tick still handles mathlib 0.1.0; its
    // marker must not end up on the new version.
    let v2 = app_store_install(&store, "mathlib.v2");
    s.wait_for("app:app:test.os", &expect::app_with_mathlib_v2());
    assert_eq!(
        handled(&s, "mathlib:test.os", &v2)["status"],
        "NothingToLink"
    );
    let report = &linked(&s, "app:test.os")["Ok"]["status"]["Linked"];
    assert_eq!(
        report["apis"][0]["sha256"],
        sha256(&read(fixtures().api("mathlib.v2")))
    );
}

#[test]
fn an_unlinkable_package_is_reported_once_left_alone_and_linked_once_its_library_arrives() {
    let (s, store) = with_app_store();
    let app = app_store_install(&store, "app");
    let info = handled(&s, "app:test.os", &app);
    let unresolved = &info["status"]["Failed"]["Unresolved"][0];
    assert_eq!(unresolved["name"], MATHLIB);
    assert!(unresolved["reason"]["NoProvider"].is_array(), "{info:#}");
    assert!(
        unresolved["hint"].as_str().is_some_and(
            |hint| hint.contains("no package on this node exports `kinode:process/mathlib`")
        ),
        "{info:#}"
    );
    // Left as the app store installed it: no linked files.
    assert!(s.file("/app:test.os/pkg/link.json").is_none());
    assert_eq!(
        s.file("/app:test.os/pkg/app:test.os.zip")
            .map(|zip| sha256(&zip)),
        Some(app.clone())
    );
    // Said once on the terminal, naming the package and the import; not tried on every tick.
    let_ticks_pass(3);
    let lines = linker_lines(&s, "app:test.os was installed without the linker");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains(MATHLIB) && lines[0].contains("install"),
        "{}",
        lines[0]
    );

    // Once the library arrives, the app is tried again and linked.
    app_store_install(&store, "mathlib");
    s.wait_for("app:app:test.os", &expect::app());
    assert!(linked(&s, "app:test.os")["Ok"]["status"]["Linked"].is_object());
}

#[test]
fn a_removed_library_leaves_its_dependents_running_and_marked() {
    let (s, store) = with_app_store();
    let mathlib = app_store_install(&store, "mathlib");
    let app = app_store_install(&store, "app");
    s.wait_for("app:app:test.os", &expect::app());
    handled(&s, "app:test.os", &app);
    // Both handled (the linker marks each package's drive) before the library is uninstalled: an
    // uninstall racing the marker's write can fail as it would on a real node (RemoveDirAll meeting
    // a new file), which is not what this test is about.
    handled(&s, "mathlib:test.os", &mathlib);

    store
        .uninstall("mathlib:test.os")
        .expect("the app store uninstalls");
    let deadline = Instant::now() + WAIT;
    while linker_lines(&s, "mathlib:test.os was removed").is_empty() {
        assert!(Instant::now() < deadline, "{:#?}", s.node.prints());
        std::thread::sleep(Duration::from_millis(200));
    }
    let info = &linked(&s, "app:test.os")["Ok"];
    assert_eq!(info["missing_apis"], json!(["mathlib:test.os"]));
    let mathlib = api_info(&s, "mathlib:test.os");
    assert_eq!(mathlib["location"], "removed");
    assert_eq!(
        mathlib["dependents"],
        json!([{"package": "app:test.os", "trigger": "Auto"}])
    );
    // The app is left as it was: linked with the copy it has, not re-installed.
    assert!(s.file("/app:test.os/pkg/link.json").is_some());
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 1);
}

#[test]
fn switched_off_it_links_nothing_and_the_switch_survives_a_reboot() {
    let (s, store) = with_app_store();
    // Switching needs the linker's capability, as installing does.
    let refused = auto_link(&s, Some(false), vec![]);
    assert!(err(&refused)["NotAuthorised"].is_string(), "{refused:#}");
    assert_eq!(ok(&auto_link(&s, None, vec![])), &json!(true));

    let off = auto_link(&s, Some(false), vec![caps::messaging(LINKER)]);
    assert_eq!(ok(&off), &json!(false));
    app_store_install(&store, "mathlib");
    app_store_install(&store, "app");
    let_ticks_pass(3);
    assert!(s.file("/app:test.os/pkg/link.json").is_none());
    assert!(s.file("/app:test.os/pkg/.linker").is_none());
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 0);

    s.node.reboot().expect("reboot");
    assert_eq!(ok(&auto_link(&s, None, vec![])), &json!(false));
    let_ticks_pass(2);
    assert!(s.file("/app:test.os/pkg/link.json").is_none());

    let on = auto_link(&s, Some(true), vec![caps::messaging(LINKER)]);
    assert_eq!(ok(&on), &json!(true));
    s.wait_for("app:app:test.os", &expect::app());
}

#[test]
fn nothing_loops_and_quick_changes_are_handled_once_each_in_order() {
    let (s, store) = with_app_store();
    // Two installs in quick succession, the dependent first: handled in one tick, the library
    // first, so the app links at once and is installed once.
    let app = app_store_install(&store, "app");
    let mathlib = app_store_install(&store, "mathlib");
    s.wait_for("app:app:test.os", &expect::app());
    handled(&s, "app:test.os", &app);
    handled(&s, "mathlib:test.os", &mathlib);
    // A package the linker installs itself is not handled again.
    ok(&s.install("duo", &["textlib"]));
    let duo_pid = "duo:duo:test.os";
    let duo_line = expect::duo(&format!("{NODE}@{duo_pid}"));
    s.wait_for(duo_pid, &duo_line);
    let files = s.node.list_dir("/app:test.os/pkg");
    let link_json = s.file("/app:test.os/pkg/link.json");

    // Idle ticks only look: directory listings and the linker's state, no writes.
    let before = s.node.vfs_calls().len();
    let_ticks_pass(3);
    let idle: Vec<_> = s.node.vfs_calls()[before..]
        .iter()
        .filter(|call| call.source == LINKER_PID)
        .map(|call| call.action.clone())
        .collect();
    assert!(
        idle.iter().filter(|a| *a == "ReadDir").count() >= 3,
        "{idle:?}"
    );
    assert!(
        idle.iter()
            .all(|action| action == "ReadDir" || action == "Read" || action == "Metadata"),
        "{idle:?}"
    );
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 1);
    assert_eq!(s.printed(duo_pid, &duo_line), 1);
    assert_eq!(s.node.list_dir("/app:test.os/pkg"), files);
    assert_eq!(s.file("/app:test.os/pkg/link.json"), link_json);
    assert_eq!(linked(&s, "duo:test.os")["Ok"]["trigger"], "Request");
    assert!(
        linker_lines(&s, "cannot").is_empty(),
        "{:#?}",
        s.node.print_messages(LINKER_PID)
    );
}
