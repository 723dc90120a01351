//! A bounded library's other ways out (README "Every way out"): the fixture library
//! `escape-api.wasm` (package `escape`), imported by `victim`, saves a forged capability, hands
//! the victim's capability to another process, spawns a process with an on-exit and capabilities
//! aimed past its bound, and sets the victim's on-exit to a request to `witness`, a public process
//! in a package of its own. Bounded to its own package, none of it reaches the witness or leaves a
//! capability behind; unbounded, all of it does (so the test can fail).

use linker_tests::damage::add_to_zip;
use linker_tests::node::*;
use serde_json::{json, Value};

const VICTIM: &str = "victim:victim:test.os";
const WITNESS: &str = "witness:witness:test.os";
const EXITER: &str = "exiter:victim:test.os";

/// A node with witness and escape installed and running, and the victim installed from `zip`,
/// linked against escape's API. Returns the session and the `Install` result.
fn with_victim(bounds: Option<Value>) -> (Session, Value) {
    let s = Session::new();
    ok(&s.install("witness", &[]));
    s.wait_for(WITNESS, "witness: up");
    // The tester asks the witness last; the kernel checks the witness's response like a request.
    s.node
        .grant(WITNESS, vec![linker_test_host::caps::messaging(TESTER)]);
    ok(&s.install("escape", &[]));
    s.wait_for("haven:escape:test.os", "haven: up");
    let mut zip = read(fixtures().package("victim"));
    if let Some(bounds) = bounds {
        zip = add_to_zip(&zip, "library-bounds.json", bounds.to_string().as_bytes())
            .expect("the victim zip takes a file");
    }
    let report = s.install_zip(
        "victim",
        zip,
        &["escape"],
        vec![linker_test_host::caps::messaging(LINKER)],
    );
    (s, report)
}

/// Waits for the victim to finish and exit, then sends the witness a last request from the tester
/// and waits for it: whatever the victim's exit sent reached the witness before it. Returns what
/// each process printed.
fn outcome(s: &Session) -> Outcome {
    s.wait_for(VICTIM, "victim: done");
    // The spawned worker runs once the kernel compiled it, maybe after the victim exited.
    let deadline = std::time::Instant::now() + WAIT;
    let exited = || {
        let running = s.node.processes();
        let worker_printed = s
            .node
            .prints()
            .iter()
            .any(|(pid, print)| pid == EXITER && print.message.starts_with("escape-worker: "));
        worker_printed && !running.iter().any(|pid| pid == VICTIM || pid == EXITER)
    };
    while !exited() {
        assert!(
            std::time::Instant::now() < deadline,
            "the victim and its worker never both ran and exited; prints: {:#?}",
            s.node.prints()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let reply = s
        .tester
        .request(&format!("{NODE}@{WITNESS}"), "last", None, vec![], 30)
        .expect("the witness answers");
    assert_eq!(reply.text(), "witness got last");
    let lines = |of: &str| -> Vec<String> {
        s.node
            .prints()
            .iter()
            .filter(|(pid, print)| pid == of && !print.message.ends_with(": up"))
            .map(|(_, print)| print.message.clone())
            .collect()
    };
    Outcome {
        witness: lines(WITNESS),
        victim: lines(VICTIM),
        exiter: lines(EXITER),
        haven: lines("haven:escape:test.os"),
    }
}

/// What each process printed (the guard's lines are the victim's: the library runs as it).
#[derive(Debug)]
struct Outcome {
    witness: Vec<String>,
    victim: Vec<String>,
    exiter: Vec<String>,
    haven: Vec<String>,
}

fn guard_line(tried: &str, outcome: &str) -> String {
    format!(
        "linker guard: escape-api.wasm (escape:test.os), linked into {VICTIM}, tried to {tried}, \
         which the package's library-bounds.json does not allow; {outcome}"
    )
}

#[test]
fn unbounded_the_library_reaches_the_witness_every_way_and_hands_on_capabilities() {
    let (s, report) = with_victim(None);
    ok(&report);
    let outcome = outcome(&s);
    // The two on-exits reach the witness in either order, both before the tester's request.
    let mut witness = outcome.witness.clone();
    let last = witness.pop();
    witness.sort();
    assert_eq!(
        (witness, last.as_deref()),
        (
            vec![
                "witness: from a spawned process's on-exit from exiter:victim:test.os".to_owned(),
                "witness: from the on-exit from victim:victim:test.os".to_owned(),
            ],
            Some("witness: last from tester:tester:test.os")
        ),
        "{outcome:#?}"
    );
    assert_eq!(
        outcome.victim,
        [
            "victim: forged capability held: yes",
            "victim: hand-over -> haven got one",
            "victim: exiter -> exiter:victim:test.os",
            "victim: done",
        ]
    );
    assert_eq!(
        outcome.haven,
        ["haven: one with capabilities from witness:witness:test.os"]
    );
    assert_eq!(
        outcome.exiter,
        ["escape-worker: holds a capability from the witness: yes"],
        "{outcome:#?}"
    );
}

#[test]
fn bounded_to_its_own_package_no_way_out_reaches_the_witness_and_each_is_printed() {
    let may = [
        "send-requests",
        "spawn",
        "read-capabilities",
        "change-capabilities",
        "on-exit",
        "files",
        "clocks",
        "random",
        "environment",
        "streams",
    ];
    let bounds =
        json!({"libraries": {"escape:test.os": {"may": may, "send-to": ["library-package"]}}});
    let (s, report) = with_victim(Some(bounds));
    let report = ok(&report);
    let component = report["link"]["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|component| component["path"] == "victim.wasm")
        .expect("victim.wasm");
    assert_eq!(component["libraries"][0]["guarded"], true);
    let outcome = outcome(&s);
    assert_eq!(
        outcome.witness,
        ["witness: last from tester:tester:test.os"],
        "{outcome:#?}"
    );
    let witness_cap = format!("{NODE}@{WITNESS} (\"messaging\")");
    assert_eq!(
        outcome.victim,
        [
            guard_line(
                &format!(
                    "save a capability issued by {NODE}@secret:witness:test.os (\"messaging\")"
                ),
                "it was left out"
            ),
            "victim: forged capability held: no".to_owned(),
            guard_line(
                &format!(
                    "attach a capability issued by {witness_cap} to a request to \
                     {NODE}@haven:escape:test.os"
                ),
                "it was left out"
            ),
            "victim: hand-over -> haven got one".to_owned(),
            guard_line(
                &format!(
                    "make the process `exiter` it spawns send a request to {NODE}@{WITNESS} on exit"
                ),
                "it was left out of the on-exit"
            ),
            guard_line(
                &format!(
                    "give the process `exiter` it spawns a capability issued by {witness_cap}"
                ),
                "it was left out"
            ),
            "victim: exiter -> exiter:victim:test.os".to_owned(),
            guard_line(
                &format!("make its process send a request to {NODE}@{WITNESS} on exit"),
                "it was left out of the on-exit"
            ),
            "victim: done".to_owned(),
        ]
    );
    assert_eq!(outcome.haven, ["haven: one with capabilities from none"]);
    assert_eq!(
        outcome.exiter,
        ["escape-worker: holds a capability from the witness: no"]
    );
}
