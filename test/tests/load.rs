//! The linker under load: fifty requests at once (installs of two packages, links, explains,
//! `ListApis`) from five processes, each answered correctly, on a node whose disk is slow to add
//! the installed files (so the installs keep the linker busy for seconds however fast the
//! machine); requests whose senders wait only briefly, sent while the linker is busy, are answered
//! `Busy` in time (one at once, one once it waited as long as it could) and change nothing; a read
//! sent after all of them is answered before the installs ahead of it finish; installs never
//! interleave; afterwards, and after a reboot, the linker's index, cache and mirror agree with
//! what is installed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use linker_test_host::{caps, mailbox, Fault, Mailbox, Reply};
use linker_tests::node::*;
use serde_json::{json, Value};

/// How long the fifty requests' senders wait, in seconds: long enough never to be busy.
const PATIENT: u64 = 300;

/// How long the impatient sender waits, in seconds: the linker is busy for longer. It is answered
/// `Busy` once it has waited half of it (the linker starts a request at least 2 s before its
/// sender stops waiting).
const IMPATIENT: u64 = 4;

/// How long the hasty sender waits, in seconds: too little for a busy linker to start anything,
/// so it is answered `Busy` at once.
const HASTY: u64 = 2;

/// How late the VFS answers each `AddZip` of an installed package's files, in milliseconds.
const SLOW_DISK_MS: u64 = 250;

/// What one of the fifty asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    InstallApp,
    InstallChain,
    LinkDuo,
    ExplainApp,
    ListApis,
}

const KINDS: [Kind; 5] = [
    Kind::InstallApp,
    Kind::LinkDuo,
    Kind::ExplainApp,
    Kind::ListApis,
    Kind::InstallChain,
];

/// A fixture's metadata.json text.
fn metadata(name: &str) -> String {
    String::from_utf8(read(fixtures().metadata(name))).expect("metadata is text")
}

/// The request, blob and capabilities of `kind`.
fn request(kind: Kind) -> (Value, Option<Vec<u8>>, Vec<linker_test_host::Capability>) {
    let f = fixtures();
    let with_zip = |verb: &str, name: &str| {
        (
            json!({verb: {"source": "Blob", "metadata": metadata(name), "apis": []}}),
            Some(read(f.package(name))),
        )
    };
    let (body, blob) = match kind {
        Kind::InstallApp => with_zip("Install", "app"),
        Kind::InstallChain => with_zip("Install", "chain"),
        Kind::LinkDuo => with_zip("Link", "duo"),
        Kind::ExplainApp => with_zip("Explain", "app"),
        Kind::ListApis => (json!("ListApis"), None),
    };
    let attach = match kind {
        Kind::InstallApp | Kind::InstallChain => vec![caps::messaging(LINKER)],
        _ => Vec::new(),
    };
    (body, blob, attach)
}

/// A local process of package `tester:test.os` that may install.
fn requester(s: &Session, name: &str) -> Mailbox {
    let address = format!("{NODE}@{name}:tester:test.os");
    let mailbox = Session::local_sender(&s.node, &address);
    s.node
        .grant(&process(&address), vec![caps::messaging(LINKER)]);
    mailbox
}

/// Sends `kind` from `from`, its sender waiting `timeout` seconds; returns the request's id.
fn send(from: &Mailbox, kind: Kind, timeout: u64) -> u64 {
    let (body, blob, attach) = request(kind);
    from.send_request(
        LINKER,
        mailbox::request(body.to_string(), Some(timeout), attach),
        blob,
    )
}

/// Waits for the answers to `ids`, in any order; each with when it came.
fn answers(from: &Mailbox, ids: &[(u64, Kind)]) -> Vec<(Kind, Reply, Instant)> {
    ids.iter()
        .map(|(id, kind)| {
            let reply = from
                .await_response(*id, Duration::from_secs(PATIENT))
                .unwrap_or_else(|e| panic!("{kind:?} is answered: {e:?}"));
            (*kind, reply, Instant::now())
        })
        .collect()
}

fn body(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body).expect("the answer is JSON")
}

/// The answers the linker gives when idle, to compare the loaded ones with: a link of duo (its
/// report and zip), an explanation of app, and the APIs.
struct Reference {
    link: (Value, Vec<u8>),
    explain: Value,
}

fn reference(s: &Session) -> Reference {
    let ask = |kind: Kind| {
        let (request, blob, attach) = request(kind);
        s.ask(&s.tester, request, blob, attach)
    };
    let (link, zip) = ask(Kind::LinkDuo);
    let mut link = ok(&link["Link"]).clone();
    link["cached"] = json!(null);
    let (explain, _) = ask(Kind::ExplainApp);
    Reference {
        link: (link, zip.expect("the linked zip")),
        explain: ok(&explain["Explain"]).clone(),
    }
}

/// The `ListApis` entries by package, without their dependents (which change as packages are
/// installed).
fn apis_without_dependents(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|api| {
            let mut api = api.clone();
            api["dependents"] = json!(null);
            (api["package"].as_str().unwrap_or_default().to_owned(), api)
        })
        .collect()
}

/// Checks one of the fifty answers against what an idle linker says, or, for installs, against
/// the package.
fn check(kind: Kind, reply: &Reply, reference: &Reference, final_apis: &BTreeMap<String, Value>) {
    let answer = body(reply);
    match kind {
        Kind::InstallApp | Kind::InstallChain => {
            let (name, process, api) = match kind {
                Kind::InstallApp => ("app", "app:app:test.os", "mathlib:test.os"),
                _ => ("chain", "chain:chain:test.os", "textlib:test.os"),
            };
            let report = ok(&answer["Install"]);
            assert_eq!(report["package"], format!("{name}:test.os"));
            assert_eq!(
                report["version_hash"],
                sha256(&read(fixtures().package(name)))
            );
            assert_eq!(report["processes"], json!([process]));
            let apis: Vec<&Value> = report["link"]["apis"]
                .as_array()
                .expect("apis")
                .iter()
                .map(|api| &api["name"])
                .collect();
            assert!(apis.contains(&&json!(api)), "{report:#}");
        }
        Kind::LinkDuo => {
            let mut report = ok(&answer["Link"]).clone();
            report["cached"] = json!(null);
            assert_eq!(report, reference.link.0);
            assert_eq!(reply.blob.as_ref(), Some(&reference.link.1));
        }
        Kind::ExplainApp => assert_eq!(ok(&answer["Explain"]), &reference.explain),
        Kind::ListApis => {
            let listed = apis_without_dependents(ok(&answer["ListApis"]));
            for (package, api) in &listed {
                assert_eq!(Some(api), final_apis.get(package), "{package}");
            }
            for library in ["mathlib:test.os", "textlib:test.os"] {
                assert!(listed.contains_key(library), "{library}: {listed:#?}");
            }
        }
    }
}

/// The linker's install journal windows, in order: `(package, first call, last call)` indices
/// into the VFS log, from the journal's first `Write` to its `RemoveFile`.
fn journal_windows(calls: &[linker_test_host::VfsCall]) -> Vec<(String, usize, usize)> {
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut windows = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let Some(package) = call
            .path
            .strip_prefix("/linker:sys/journal/")
            .and_then(|file| file.strip_suffix(".json"))
        else {
            continue;
        };
        match call.action.as_str() {
            // The second write marks the new version as running: the same install.
            "Write" if open.contains_key(package) => {}
            "Write" => {
                assert!(
                    open.is_empty(),
                    "the install of {package} began while {open:?} was under way"
                );
                open.insert(package.to_owned(), index);
            }
            "RemoveFile" => {
                let start = open.remove(package).expect("a journal ends after it began");
                windows.push((package.to_owned(), start, index));
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "installs left under way: {open:?}");
    windows
}

/// What the linker's drives hold, file by file (path and SHA-256), the drives an install uses
/// only while it is under way excluded.
fn linker_files(s: &Session) -> BTreeMap<String, String> {
    fn walk(s: &Session, dir: &str, files: &mut BTreeMap<String, String>) {
        for entry in s.node.list_dir(dir) {
            let path = format!("{dir}/{entry}");
            match s.file(&path) {
                Some(bytes) => {
                    files.insert(path, sha256(&bytes));
                }
                None => walk(s, &path, files),
            }
        }
    }
    let mut files = BTreeMap::new();
    for drive in ["cache", "apis", "packages"] {
        walk(s, &format!("/linker:sys/{drive}"), &mut files);
    }
    files
}

/// Checks that the linker's records, cache and mirror agree with each other and with what is
/// installed, and that nothing is left under way.
fn consistent(s: &Session, installed: &[&str]) {
    for drive in ["journal", "backup", "relink"] {
        assert!(
            s.node.list_dir(&format!("/linker:sys/{drive}")).is_empty(),
            "{drive} is empty"
        );
    }
    // Every package the linker installed: its record, its index entry and its link.json agree
    // with the zip installed.
    let index: BTreeMap<String, Vec<String>> = serde_json::from_slice(
        &s.file("/linker:sys/packages/index.json")
            .expect("the index"),
    )
    .expect("the index is JSON");
    assert_eq!(
        index.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        installed.iter().copied().collect(),
    );
    let mut cache_shas = BTreeSet::new();
    for entry in s.node.list_dir("/linker:sys/cache") {
        let Some(key) = entry.strip_suffix(".json") else {
            continue;
        };
        let cached: Value = serde_json::from_slice(
            &s.file(&format!("/linker:sys/cache/{entry}"))
                .expect("the entry"),
        )
        .expect("JSON");
        let zip = s
            .file(&format!("/linker:sys/cache/{key}.zip"))
            .expect("every cached report has its zip");
        // An entry's hash is that of the link.json packed in its zip.
        let link_json = linker_tests::damage::file_in_zip(&zip, "link.json").expect("link.json");
        assert_eq!(cached["sha256"], sha256(&link_json), "{key}");
        cache_shas.insert(sha256(&link_json));
    }
    assert_eq!(
        s.node.list_dir("/linker:sys/cache").len(),
        2 * cache_shas.len(),
        "every cached zip has its report"
    );
    let (packages, _) = s.ask(&s.tester, json!("Packages"), None, vec![]);
    let packages = ok(&packages["Packages"])
        .as_array()
        .expect("a list")
        .clone();
    assert_eq!(packages.len(), installed.len(), "{packages:#?}");
    for package in installed {
        let zip = s
            .file(&format!("/{package}/pkg/{package}.zip"))
            .expect("installed");
        let record: Value = serde_json::from_slice(
            &s.file(&format!("/linker:sys/packages/{package}.json"))
                .expect("its record"),
        )
        .expect("JSON");
        assert_eq!(record["version_hash"], sha256(&zip), "{package}");
        assert!(
            cache_shas.contains(record["linked_hash"].as_str().unwrap_or_default()),
            "{package}'s linked zip is the cached link"
        );
        let link_json = s
            .file(&format!("/{package}/pkg/link.json"))
            .expect("link.json");
        assert_eq!(record["linked_hash"], sha256(&link_json), "{package}");
        let link_json: Value = serde_json::from_slice(&link_json).expect("JSON");
        let linked_against: Vec<String> = link_json["apis"]
            .as_array()
            .expect("apis")
            .iter()
            .map(|api| api["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(index[*package], linked_against, "{package}");
        let info = packages
            .iter()
            .find(|info| info["package"] == *package)
            .unwrap_or_else(|| panic!("{package} is listed"));
        assert_eq!(info["version_hash"], sha256(&zip));
        assert!(info["status"]["Linked"].is_object(), "{info:#}");
    }
    // The mirror holds exactly the APIs consumed, each as installed.
    assert_eq!(
        s.node.list_dir("/linker:sys/apis"),
        ["mathlib:test.os", "textlib:test.os"]
    );
    for api in ["mathlib", "textlib"] {
        let zip = read(fixtures().api(api));
        let dir = format!("/linker:sys/apis/{api}:test.os");
        assert_eq!(
            s.node.list_dir(&dir).into_iter().collect::<BTreeSet<_>>(),
            BTreeSet::from(["current".to_owned(), format!("{}.zip", sha256(&zip))])
        );
        assert_eq!(
            s.file(&format!("{dir}/current")),
            Some(sha256(&zip).into_bytes())
        );
    }
}

#[test]
fn fifty_requests_at_once_are_each_answered_in_time_and_leave_the_linker_consistent() {
    let s = Session::new();
    ok(&s.install("mathlib", &[]));
    ok(&s.install("textlib", &[]));
    let reference = reference(&s);
    let processes: Vec<Mailbox> = (1..=5)
        .map(|n| requester(&s, &format!("load-{n}")))
        .collect();
    let impatient = requester(&s, "impatient");
    let hasty = requester(&s, "hasty");
    let reader = requester(&s, "reader");
    for package in ["app:test.os", "chain:test.os"] {
        // Each install adds the package's files and its API's.
        s.node.fault(Fault::SlowVfs {
            action: "AddZip".to_owned(),
            path_prefix: format!("/{package}/pkg"),
            millis: SLOW_DISK_MS,
            times: 20,
        });
    }

    // Fifty at once, round robin over the processes; then an install whose sender waits only
    // briefly, and a read.
    let start = Instant::now();
    let mut sent: Vec<Vec<(u64, Kind)>> = vec![Vec::new(); processes.len()];
    for n in 0..50 {
        let kind = KINDS[n % KINDS.len()];
        let from = n % processes.len();
        sent[from].push((send(&processes[from], kind, PATIENT), kind));
    }
    let hurried = {
        let (body, blob, attach) = {
            let f = fixtures();
            (
                json!({"Install": {"source": "Blob", "metadata": metadata("selfish"), "apis": []}}),
                Some(read(f.package("selfish"))),
                vec![caps::messaging(LINKER)],
            )
        };
        impatient.send_request(
            LINKER,
            mailbox::request(body.to_string(), Some(IMPATIENT), attach),
            blob,
        )
    };
    let hurried_link = send(&hasty, Kind::LinkDuo, HASTY);
    let read = send(&reader, Kind::ListApis, PATIENT);

    let (answered, busy, busy_at_once, read_at) = std::thread::scope(|scope| {
        let loads: Vec<_> = processes
            .iter()
            .zip(&sent)
            .map(|(from, ids)| scope.spawn(move || answers(from, ids)))
            .collect();
        let busy = scope.spawn(|| {
            impatient
                .await_response(hurried, Duration::from_secs(IMPATIENT))
                .expect("the impatient sender is answered before it stops waiting")
        });
        let busy_at_once = scope.spawn(|| {
            hasty
                .await_response(hurried_link, Duration::from_secs(HASTY))
                .expect("the hasty sender is answered before it stops waiting")
        });
        let read_at = scope.spawn(|| {
            let reply = reader
                .await_response(read, Duration::from_secs(PATIENT))
                .expect("the read is answered");
            (reply, Instant::now())
        });
        let answered: Vec<(Kind, Reply, Instant)> = loads
            .into_iter()
            .flat_map(|load| load.join().expect("a requester"))
            .collect();
        (
            answered,
            busy.join().expect("the impatient sender"),
            busy_at_once.join().expect("the hasty sender"),
            read_at.join().expect("the reader"),
        )
    });
    let last = answered
        .iter()
        .map(|(_, _, at)| *at)
        .max()
        .expect("answers");
    println!(
        "50 requests from 5 processes answered in {:.1} s; a read sent after them in {:.1} s",
        (last - start).as_secs_f64(),
        (read_at.1 - start).as_secs_f64()
    );

    // Every one answered, correctly.
    assert_eq!(answered.len(), 50);
    let (final_apis, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    let final_apis = apis_without_dependents(ok(&final_apis["ListApis"]));
    assert_eq!(
        final_apis.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "app:test.os",
            "chain:test.os",
            "mathlib:test.os",
            "textlib:test.os"
        ]
    );
    for (kind, reply, _) in &answered {
        check(*kind, reply, &reference, &final_apis);
    }
    check(Kind::ListApis, &read_at.0, &reference, &final_apis);
    // Of each package's ten installs, exactly one replaced nothing: one at a time.
    for (kind, package) in [
        (Kind::InstallApp, "app:test.os"),
        (Kind::InstallChain, "chain:test.os"),
    ] {
        let first = answered
            .iter()
            .filter(|(k, reply, _)| {
                *k == kind && body(reply)["Install"]["Ok"]["replaced"].is_null()
            })
            .count();
        assert_eq!(first, 1, "{package}");
    }

    // The impatient sender got `Busy` before it stopped waiting, and nothing was installed.
    let busy = body(&busy);
    let details = &err(&busy["Install"])["Busy"];
    assert_eq!(details["timeout_ms"], IMPATIENT * 1000, "{busy:#}");
    let waited = details["waited_ms"].as_u64().expect("waited_ms");
    assert!(
        (IMPATIENT * 1000 - 2000..IMPATIENT * 1000).contains(&waited),
        "{busy:#}"
    );
    assert!(
        details["ahead"].as_u64().is_some_and(|n| n >= 1),
        "{busy:#}"
    );
    assert!(
        details["doing"]
            .as_str()
            .is_some_and(|doing| !doing.is_empty()),
        "{busy:#}"
    );
    assert!(s.node.list_dir("/selfish:test.os/pkg").is_empty());
    assert!(s.node.process("selfish:selfish:test.os").is_none());
    // The hasty one at once: the linker was busy and its sender would not wait 2 s.
    let busy = body(&busy_at_once);
    let details = &err(&busy["Link"])["Busy"];
    assert_eq!(details["timeout_ms"], HASTY * 1000, "{busy:#}");
    let waited = details["waited_ms"].as_u64().expect("waited_ms");
    assert!(waited < HASTY * 1000, "{busy:#}");
    assert!(
        details["ahead"].as_u64().is_some_and(|n| n >= 1),
        "{busy:#}"
    );

    // The read sent after everything did not wait for the installs ahead of it.
    let last_install = answered
        .iter()
        .filter(|(kind, _, _)| matches!(kind, Kind::InstallApp | Kind::InstallChain))
        .map(|(_, _, at)| *at)
        .max()
        .expect("installs");
    assert!(read_at.1 < last_install, "the read overtook the installs");

    // Installs never overlapped, each package's install steps happened inside its own.
    let calls: Vec<_> = s
        .node
        .vfs_calls()
        .into_iter()
        .filter(|call| call.source == "linker:linker:sys")
        .collect();
    let windows = journal_windows(&calls);
    for package in ["app:test.os", "chain:test.os"] {
        assert_eq!(
            windows.iter().filter(|(p, _, _)| p == package).count(),
            10,
            "{package}"
        );
        let drive = format!("/{package}/pkg");
        for (index, call) in calls.iter().enumerate() {
            if call.path == drive && matches!(call.action.as_str(), "RemoveDirAll" | "AddZip") {
                assert!(
                    windows
                        .iter()
                        .any(|(p, first, last)| p == package && (*first..*last).contains(&index)),
                    "{} {} outside an install of {package}",
                    call.action,
                    call.path
                );
            }
        }
    }

    // The index, cache and mirror agree with what is installed, and stay so after a reboot.
    let installed = [
        "app:test.os",
        "chain:test.os",
        "mathlib:test.os",
        "textlib:test.os",
    ];
    consistent(&s, &installed);
    let files = linker_files(&s);
    let (apis, _) = s.ask(&s.tester, json!("ListApis"), None, vec![]);
    let (packages, _) = s.ask(&s.tester, json!("Packages"), None, vec![]);
    s.node.reboot().expect("the node reboots");
    consistent(&s, &installed);
    assert_eq!(linker_files(&s), files);
    assert_eq!(s.ask(&s.tester, json!("ListApis"), None, vec![]).0, apis);
    assert_eq!(
        s.ask(&s.tester, json!("Packages"), None, vec![]).0,
        packages
    );
}
