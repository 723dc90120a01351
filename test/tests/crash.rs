//! An install survives the linker's own crash: the linker is killed (as a trap kills it) right
//! after it sends each install step in turn; the kernel restarts it (`on_exit: Restart`), and it
//! rolls back the install its journal shows, so the previous version runs with its files intact,
//! or, for a first install, nothing is left. Once the new version runs, the journal says so and
//! holds what to record of it: a crash from then on completes the install instead, so the
//! linker's records never describe a version other than the one running. The same holds when the node shuts down mid-install
//! and boots again. When the install was a re-link of a library's dependents, the restarted
//! linker then re-links the dependents still pending, the interrupted one included, unless its
//! re-link killed the linker twice.

use linker_fixtures::expect;
use linker_test_host::{caps, Fault, ProcessStatus};
use linker_tests::node::*;
use serde_json::json;

const LINKER_ID: &str = "linker:linker:sys";
const APP: &str = "app:app:test.os";
const DRIVE: &str = "/app:test.os/pkg";

/// Kills the linker right after it sends its first `action` about `target` from now on.
fn crash(s: &Session, action: &str, target: &str) {
    fault(s, action, target, 1, false);
}

/// Kills the linker right after it sends its `nth` `action` about `target` from now on; with
/// `halt`, it is left stopped, as when the node goes down with it.
fn fault(s: &Session, action: &str, target: &str, nth: u32, halt: bool) {
    s.node.fault(Fault::Crash {
        process: LINKER_ID.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        nth,
        halt,
    });
}

/// Waits until a halting fault has stopped the linker.
fn linker_halted(s: &Session) {
    let stopped = s.node.wait_for_status(
        LINKER_ID,
        |status| matches!(status, ProcessStatus::Trapped { .. }),
        WAIT,
    );
    assert!(stopped.is_some(), "the linker stops");
}

/// Sends the `Install` of fixture `name` without awaiting an answer: the linker dies first.
fn send_install(s: &Session, name: &str, apis: &[&str]) {
    let f = fixtures();
    let metadata = String::from_utf8(read(f.metadata(name))).expect("metadata is text");
    let request = json!({"Install": {
        "source": "Blob",
        "metadata": metadata,
        "apis": s.upload_apis(apis),
    }});
    s.tester.send(
        LINKER,
        request.to_string(),
        Some(read(f.package(name))),
        vec![caps::messaging(LINKER)],
    );
}

/// Waits until the linker has died and been restarted (a request sent before would be lost with
/// its inbox).
fn linker_restarted(s: &Session) {
    let exited = format!("process {LINKER_ID} has OnExit behavior Restart");
    let died = s.node.wait_for_print(
        |pid, message| pid == "kernel:distro:sys" && message == exited,
        WAIT,
    );
    assert!(died.is_some(), "the linker did not die");
    let running =
        s.node
            .wait_for_status(LINKER_ID, |status| *status == ProcessStatus::Running, WAIT);
    assert_eq!(running, Some(ProcessStatus::Running), "the linker restarts");
}

/// Waits until the restarted linker serves requests again (it recovers before serving).
fn linker_serves(s: &Session) {
    let (body, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    ok(&body["ListApis"]);
}

/// Waits until `app` has printed `line` `times` times.
fn printed_times(s: &Session, line: &str, times: usize) -> bool {
    (0..600).any(|_| {
        if s.printed(APP, line) >= times {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    })
}

/// The files of the installed app, by path.
fn app_files(s: &Session) -> Vec<(String, Option<Vec<u8>>)> {
    [
        "app.wasm",
        "app:test.os.zip",
        "manifest.json",
        ".linker",
        "link.json",
    ]
    .iter()
    .map(|file| {
        let path = format!("{DRIVE}/{file}");
        let bytes = s.file(&path);
        (path, bytes)
    })
    .collect()
}

/// Installs mathlib and app v1, then installs app v2 with the linker killed right after it sends
/// `action` about `target`; checks that v1 is back, byte for byte, and runs again, and that the
/// linker then installs v2.
fn crash_during_update(action: &str, target: &str, journaled: bool) {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("app", &[]));
    s.wait_for(APP, &expect::app());
    let before = app_files(&s);
    let v1 = sha256(&read(fixtures().package("app")));
    let v2 = sha256(&read(fixtures().package("app.v2")));

    crash(&s, action, target);
    send_install(&s, "app.v2", &[]);
    linker_restarted(&s);
    if journaled {
        s.wait_for(
            LINKER_ID,
            &format!(
                "linker: the install of app:test.os (version {v2}) was interrupted; its previous version {v1} runs again"
            ),
        );
        assert!(
            printed_times(&s, &expect::app(), 2),
            "{action} {target}: the restored app runs again"
        );
    }
    linker_serves(&s);
    assert_eq!(app_files(&s), before, "{action} {target}");
    assert!(s.file(&format!("{DRIVE}/app-v2.wasm")).is_none());
    assert!(s.file("/linker:sys/backup/app:test.os.zip").is_none());
    assert!(s.file("/linker:sys/journal/app:test.os.json").is_none());

    // The linker is whole again: the update goes through.
    let report = s.install("app.v2", &[]);
    assert_eq!(ok(&report)["replaced"], v1);
    s.wait_for(APP, &expect::app_v2(false));
}

#[test]
fn a_crash_while_writing_the_backup_changes_nothing() {
    crash_during_update("Write", "/linker:sys/backup/app:test.os.zip", false);
}

#[test]
fn a_crash_after_the_journal_is_written_restores_the_previous_version() {
    crash_during_update("Write", "/linker:sys/journal/app:test.os.json", true);
}

#[test]
fn a_crash_after_killing_the_old_processes_restores_the_previous_version() {
    crash_during_update("KillProcess", APP, true);
}

#[test]
fn a_crash_after_removing_the_old_files_restores_the_previous_version() {
    crash_during_update("RemoveDirAll", DRIVE, true);
}

#[test]
fn a_crash_after_adding_the_new_files_restores_the_previous_version() {
    crash_during_update("AddZip", DRIVE, true);
}

#[test]
fn a_crash_after_writing_the_uploaded_zip_restores_the_previous_version() {
    crash_during_update("Write", &format!("{DRIVE}/app:test.os.zip"), true);
}

#[test]
fn a_crash_after_initialising_the_new_process_restores_the_previous_version() {
    crash_during_update("InitializeProcess", APP, true);
}

#[test]
fn a_crash_after_running_the_new_process_restores_the_previous_version() {
    crash_during_update("RunProcess", APP, true);
}

/// Installs mathlib and app v1, then installs app v2 with the linker killed right after it sends
/// its `nth` `action` about `target`, once v2 runs: the restarted linker completes the install
/// from its journal, so v2 keeps running and every record of the linker says v2.
fn crash_after_the_update_runs(action: &str, target: &str, nth: u32) {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("app", &[]));
    s.wait_for(APP, &expect::app());
    let v2 = sha256(&read(fixtures().package("app.v2")));

    fault(&s, action, target, nth, false);
    send_install(&s, "app.v2", &[]);
    linker_restarted(&s);
    s.wait_for(
        LINKER_ID,
        &format!(
            "linker: the install of app:test.os (version {v2}) was interrupted after its new version started; it is recorded now"
        ),
    );
    linker_serves(&s);
    s.wait_for(APP, &expect::app_v2(false));
    assert!(s.file(&format!("{DRIVE}/app-v2.wasm")).is_some());
    assert!(s.file("/linker:sys/backup/app:test.os.zip").is_none());
    assert!(s.file("/linker:sys/journal/app:test.os.json").is_none());

    let record: serde_json::Value = serde_json::from_slice(
        &s.file("/linker:sys/packages/app:test.os.json")
            .expect("the record"),
    )
    .expect("JSON");
    assert_eq!(record["version_hash"], v2, "{action} {target}");
    let link_json = s.file(&format!("{DRIVE}/link.json")).expect("link.json");
    assert_eq!(record["linked_hash"], sha256(&link_json));
    let index: serde_json::Value = serde_json::from_slice(
        &s.file("/linker:sys/packages/index.json")
            .expect("the index"),
    )
    .expect("JSON");
    assert_eq!(index["app:test.os"], json!(["mathlib:test.os"]));
    let request = json!({"Linked": {"package_name": "app", "publisher_node": "test.os"}});
    let (body, _) = s.ask(&s.tester, request, None, vec![]);
    let info = ok(&body["Linked"]);
    assert_eq!(info["version_hash"], v2, "{info:#}");
    assert!(info["status"]["Linked"].is_object(), "{info:#}");

    // The next install replaces v2.
    let report = s.install("app", &[]);
    assert_eq!(ok(&report)["replaced"], v2);
}

#[test]
fn a_crash_once_the_new_version_runs_completes_the_install() {
    crash_after_the_update_runs("Write", "/linker:sys/journal/app:test.os.json", 2);
}

#[test]
fn a_crash_after_writing_the_record_completes_the_install() {
    crash_after_the_update_runs("Write", "/linker:sys/packages/app:test.os.json", 1);
}

#[test]
fn a_crash_after_writing_the_index_completes_the_install() {
    crash_after_the_update_runs("Write", "/linker:sys/packages/index.json", 1);
}

#[test]
fn a_crash_during_a_first_install_leaves_nothing() {
    let s = Session::new();
    let v1 = sha256(&read(fixtures().package("app")));
    crash(&s, "InitializeProcess", APP);
    send_install(&s, "app", &["mathlib"]);
    s.wait_for(
        LINKER_ID,
        &format!(
            "linker: the install of app:test.os (version {v1}) was interrupted; no version was installed before, so it is removed"
        ),
    );
    linker_serves(&s);
    assert!(s.node.list_dir(DRIVE).is_empty());
    assert!(s.node.process(APP).is_none());
    assert!(s.file("/linker:sys/journal/app:test.os.json").is_none());
}

/// The API zip a dependent's `link.json` names for `library`, by SHA-256.
fn linked_api(s: &Session, package: &str, library: &str) -> Option<String> {
    let link_json: serde_json::Value =
        serde_json::from_slice(&s.file(&format!("/{package}/pkg/link.json"))?).ok()?;
    link_json["apis"]
        .as_array()?
        .iter()
        .find(|api| api["name"] == library)
        .and_then(|api| api["sha256"].as_str().map(str::to_owned))
}

/// Installs mathlib, textlib, app and duo (mathlib's dependents: app, duo, textlib).
fn mathlib_and_three_dependents(s: &Session) {
    ok(&s.install("mathlib", &[]));
    ok(&s.install("textlib", &[]));
    ok(&s.install("app", &[]));
    ok(&s.install("duo", &[]));
    s.wait_for(APP, &expect::app());
}

/// Waits until each of `dependents` links against the `mathlib.v2` API, and the linker has no
/// re-links left pending.
fn relinked_against_v2(s: &Session, dependents: &[&str]) {
    let v2 = sha256(&read(fixtures().api("mathlib.v2")));
    let done = || {
        dependents.iter().all(|package| {
            linked_api(s, package, "mathlib:test.os").as_deref() == Some(v2.as_str())
        }) && s.file("/linker:sys/relink/mathlib:test.os.json").is_none()
    };
    let relinked = (0..600).any(|_| {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        false
    });
    assert!(
        relinked,
        "{:?} are re-linked against mathlib 0.2.0",
        dependents
            .iter()
            .map(|package| (package, linked_api(s, package, "mathlib:test.os")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_crash_while_relinking_a_dependent_rolls_it_back_then_relinks_every_dependent() {
    let s = Session::new();
    mathlib_and_three_dependents(&s);
    let app = sha256(&read(fixtures().package("app")));

    // mathlib v2 installs; the re-link of app, the first of its dependents, dies after app's new
    // files are added.
    crash(&s, "AddZip", DRIVE);
    send_install(&s, "mathlib.v2", &[]);
    s.wait_for(
        LINKER_ID,
        &format!(
            "linker: the install of app:test.os (version {app}) was interrupted; its previous version {app} runs again"
        ),
    );
    // Then the restarted linker re-links them all, app included.
    s.wait_for(
        LINKER_ID,
        "linker: re-linking the packages linked against mathlib:test.os was interrupted; \
         re-linking app:test.os, duo:test.os, textlib:test.os now",
    );
    s.wait_for(APP, &expect::app_with_mathlib_v2());
    relinked_against_v2(&s, &["app:test.os", "duo:test.os", "textlib:test.os"]);
    linker_serves(&s);
    assert_eq!(
        s.file("/mathlib:test.os/pkg/mathlib:test.os.zip"),
        Some(read(fixtures().package("mathlib.v2"))),
        "the library's new version stays installed"
    );
    assert!(s.file("/linker:sys/journal/app:test.os.json").is_none());
    assert!(s.file("/linker:sys/backup/app:test.os.zip").is_none());
}

#[test]
fn a_dependent_whose_relink_kills_the_linker_twice_keeps_its_previous_version() {
    let s = Session::new();
    mathlib_and_three_dependents(&s);
    let before = app_files(&s);

    // Both the re-link of app and its retry die right after its journal is written.
    for _ in 0..2 {
        crash(&s, "Write", "/linker:sys/journal/app:test.os.json");
    }
    send_install(&s, "mathlib.v2", &[]);
    s.wait_for(
        LINKER_ID,
        "linker: app:test.os keeps its previous version: the linker stopped 2 times while \
         re-linking it against mathlib:test.os",
    );
    // The others are re-linked; app runs its previous version, files and all.
    relinked_against_v2(&s, &["duo:test.os", "textlib:test.os"]);
    linker_serves(&s);
    assert_eq!(app_files(&s), before);
    assert_eq!(s.printed(APP, &expect::app_with_mathlib_v2()), 0);
}

#[test]
fn a_library_install_cut_short_by_a_shutdown_relinks_its_dependents_at_the_next_boot() {
    let s = Session::new();
    mathlib_and_three_dependents(&s);

    // The node goes down while duo, the second dependent, is being re-linked.
    fault(&s, "AddZip", "/duo:test.os/pkg", 1, true);
    send_install(&s, "mathlib.v2", &[]);
    linker_halted(&s);
    s.node.reboot().expect("the node reboots");
    s.wait_for(
        LINKER_ID,
        "linker: re-linking the packages linked against mathlib:test.os was interrupted; \
         re-linking duo:test.os, textlib:test.os now",
    );
    relinked_against_v2(&s, &["app:test.os", "duo:test.os", "textlib:test.os"]);
}

#[test]
fn an_install_cut_short_by_a_shutdown_is_rolled_back_at_the_next_boot() {
    shutdown_during_update("AddZip", DRIVE, false);
}

#[test]
fn an_install_cut_short_by_a_node_crash_is_rolled_back_at_the_next_boot() {
    // The new app is initialised, not run, when the node dies; the boot starts it from its
    // wasm_bytes_handle as the process map had it, and the linker puts the old one back.
    shutdown_during_update("InitializeProcess", APP, true);
}

/// Installs mathlib and app v1, then installs app v2 and stops the node right after the linker
/// sends `action` about `target`; boots again (as after a crash if `crash`) and checks that v1 is
/// back, byte for byte, and runs.
fn shutdown_during_update(action: &str, target: &str, crash: bool) {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("app", &[]));
    s.wait_for(APP, &expect::app());
    let before = app_files(&s);
    let v1 = sha256(&read(fixtures().package("app")));
    let v2 = sha256(&read(fixtures().package("app.v2")));

    // The node goes down: the linker just stops.
    fault(&s, action, target, 1, true);
    send_install(&s, "app.v2", &[]);
    linker_halted(&s);
    // Half replaced, and journaled.
    assert!(s.file(&format!("{DRIVE}/app-v2.wasm")).is_some());
    assert!(s.file(&format!("{DRIVE}/app.wasm")).is_none());
    assert!(s.file("/linker:sys/journal/app:test.os.json").is_some());
    if crash {
        s.node.crash_reboot().expect("the node boots again");
    } else {
        s.node.reboot().expect("the node reboots");
    }
    s.wait_for(
        LINKER_ID,
        &format!(
            "linker: the install of app:test.os (version {v2}) was interrupted; its previous version {v1} runs again"
        ),
    );
    assert!(printed_times(&s, &expect::app(), 2), "the app runs again");
    linker_serves(&s);
    assert_eq!(app_files(&s), before);
    assert!(s.file(&format!("{DRIVE}/app-v2.wasm")).is_none());
}
