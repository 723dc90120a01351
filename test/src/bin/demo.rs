//! The main job, end to end on the bundled example packages: build the linker process
//! (`pkg/linker.wasm`) and the example packages from source, boot a node built like the Kinode
//! runtime (wasmtime 27) with `linker:sys` as a bundled package, upload each package to the linker
//! as a local process would, and print each step: uploaded, linked (import -> provider),
//! installed, and what the installed app prints. Then the app store installs a new version of
//! `app` by itself, with its own steps (not through the linker), and the linker notices and links
//! it; then a new version of its library, and the linker re-links the app against it. Then a
//! package bounds what a library linked into it may do (`library-bounds.json`), and the guard the
//! linker composes refuses what the bound does not allow. Last, terminal scripts show
//! the node's APIs and what was linked.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use linker_fixtures::Fixtures;
use linker_test_host::{caps, AppStore, Mailbox, Node, Terminal};
use linker_tests::damage::add_to_zip;
use serde_json::{json, Value};

const NODE: &str = "demo.os";
const LINKER: &str = "demo.os@linker:linker:sys";
const UPLOADER: &str = "demo.os@uploader:uploader:demo.os";

/// The example packages in install order: libraries first, so that every app's `dependencies`
/// are linked from the node's copies of their API zips.
const EXAMPLES: [&str; 7] = [
    "mathlib", "textlib", "app", "chain", "duo", "selfish", "bigapp",
];

fn main() -> Result<()> {
    // A first build runs nested cargo builds for minutes: show cargo's progress as it goes.
    linker_fixtures::show_progress(true);
    println!("[1/2] building pkg/linker.wasm and the terminal scripts (wasm32-wasip1, profile node; a first build takes minutes)");
    let linker = linker_fixtures::linker_package()?;
    println!("[2/2] building the example packages (kinode_process_lib 1.0.1, wasm32-wasip1, adapter 27.0.0)");
    let fixtures = linker_fixtures::build()?;
    let node = Node::new(NODE)?;
    // The terminal's package boots before the linker's, which grants it a capability.
    let terminal = Terminal::new(&node);
    let store = AppStore::new(&node);
    node.boot_package("linker:sys", &linker.zip, Some(1))?;
    println!(
        "booted node {NODE} with linker:sys (pkg/linker.wasm, {} bytes)",
        std::fs::metadata(&linker.wasm)?.len()
    );
    // A local process that may install (it holds the linker's messaging capability) and that the
    // linker may answer (the kernel checks responses like requests).
    let uploader = node.mailbox(UPLOADER, false);
    node.grant("uploader:uploader:demo.os", vec![caps::messaging(LINKER)]);
    node.grant("linker:linker:sys", vec![caps::messaging(UPLOADER)]);
    let started = Instant::now();
    uploader
        .request(LINKER, json!("ListApis").to_string(), None, vec![], 120)
        .map_err(|e| anyhow::anyhow!("the linker did not start: {e:?}"))?;
    println!(
        "linker:linker:sys answers after {:.1} s (wasmtime compiles pkg/linker.wasm first)",
        started.elapsed().as_secs_f64()
    );

    for name in EXAMPLES {
        let id = fixtures.id(name);
        let package = std::fs::read(fixtures.package(name))?;
        let metadata = std::fs::read_to_string(fixtures.metadata(name))?;
        let dependencies: Value = serde_json::from_str(&metadata)?;
        let dependencies = &dependencies["properties"]["dependencies"];
        println!("\n== {id}");
        println!(
            "uploaded: {id}.zip ({} bytes) with its metadata.json (dependencies: {dependencies})",
            package.len()
        );
        for process in install(&uploader, &id, package, &metadata)? {
            println!("installed: {process}");
            let printed = node.wait_for_print(|pid, _| pid == process, Duration::from_secs(60));
            match printed {
                Some((_, print)) => println!("  {process} printed: {}", print.message),
                None => bail!("{process} printed nothing: {:?}", node.process(&process)),
            }
        }
    }

    for (package, fixture, what, line) in [
        (
            "app:test.os",
            "app.v2",
            "app:test.os 0.2.0",
            linker_fixtures::expect::app_v2(false),
        ),
        (
            "mathlib:test.os",
            "mathlib.v2",
            "its library mathlib:test.os 0.2.0",
            linker_fixtures::expect::app_v2(true),
        ),
    ] {
        app_store_update(
            &node,
            &store,
            package,
            &fixtures.package(fixture),
            what,
            &line,
        )?;
    }

    bounded_library(&node, &uploader, fixtures)?;

    for (script, args) in [
        ("apis:linker:sys", ""),
        ("linked:linker:sys", "duo:test.os"),
        ("linked:linker:sys", ""),
    ] {
        println!("\n$ {}", format!("{script} {args}").trim_end());
        let pid = terminal.run(script, args)?;
        match node.wait_for_print(|id, _| id == pid, Duration::from_secs(60)) {
            Some((_, print)) => println!("{}", print.message),
            None => bail!("{script} printed nothing"),
        }
    }
    Ok(())
}

/// The app store installs `zip` of `package` by itself (`NewPackage`, then `Install`); waits for
/// `app:app:test.os` to print `line`, running linked again.
fn app_store_update(
    node: &Node,
    store: &AppStore,
    package: &str,
    zip: &std::path::Path,
    what: &str,
    line: &str,
) -> Result<()> {
    println!("\n== {what}, installed by the app store itself (NewPackage, then Install)");
    let hash = store.new_package(package, &std::fs::read(zip)?)?;
    let started = Instant::now();
    store.install(package, &hash, Some(1))?;
    println!("the app store installed it unlinked; the linker's next look finds it");
    match node.wait_for_print(
        |pid, message| pid == "app:app:test.os" && message == line,
        Duration::from_secs(60),
    ) {
        Some(_) => println!(
            "  app:app:test.os printed, {:.1} s after the app store's install: {line}",
            started.elapsed().as_secs_f64()
        ),
        None => bail!(
            "the linker did not link what the app store installed: {:#?}",
            node.prints()
        ),
    }
    Ok(())
}

/// Uploads a package to the linker to install; prints what was linked; returns the processes.
fn install(uploader: &Mailbox, id: &str, package: Vec<u8>, metadata: &str) -> Result<Vec<String>> {
    let request = json!({"Install": {"source": "Blob", "metadata": metadata, "apis": []}});
    let started = Instant::now();
    let reply = uploader
        .request(
            LINKER,
            request.to_string(),
            Some(package),
            vec![caps::messaging(LINKER)],
            120,
        )
        .map_err(|e| anyhow::anyhow!("the linker did not answer: {e:?}"))?;
    let body: Value = serde_json::from_slice(&reply.body)?;
    let report = match body["Install"].get("Ok") {
        Some(report) => report,
        None => bail!("installing {id} failed: {:#}", body["Install"]),
    };
    println!(
        "linked and installed in {:.0} ms:",
        started.elapsed().as_secs_f64() * 1e3
    );
    for line in link_lines(report) {
        println!("  {line}");
    }
    let processes: Vec<String> = report["processes"]
        .as_array()
        .context("processes")?
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    if processes.is_empty() {
        println!("installed: no processes (a library: its API is at /{id}/pkg/api)");
    }
    Ok(processes)
}

/// Installs `courier` (a library that messages any process and spawns a worker) and `sender`,
/// which imports it, with a `library-bounds.json` letting the library message only courier's own
/// processes: the guard lets the first ask through and refuses the others, with one line each.
fn bounded_library(node: &Node, uploader: &Mailbox, fixtures: &Fixtures) -> Result<()> {
    let bounds = json!({"libraries": {"courier:test.os": {"may": ["send-requests", "spawn", "files", "clocks", "random", "environment", "streams"], "send-to": ["library-package"]}}});
    println!("\n== courier:test.os, then sender:test.os with pkg/library-bounds.json: {bounds}");
    for name in ["courier", "sender"] {
        let id = fixtures.id(name);
        let mut package = std::fs::read(fixtures.package(name))?;
        if name == "sender" {
            package = add_to_zip(
                &package,
                "library-bounds.json",
                bounds.to_string().as_bytes(),
            )?;
        }
        let metadata = std::fs::read_to_string(fixtures.metadata(name))?;
        for process in install(uploader, &id, package, &metadata)? {
            println!("installed: {process}");
        }
    }
    let sender = "sender:sender:test.os";
    if node
        .wait_for_print(
            |pid, message| pid == sender && message == "sender: done",
            Duration::from_secs(60),
        )
        .is_none()
    {
        bail!("sender did not finish: {:#?}", node.prints());
    }
    for (_, print) in node.prints().iter().filter(|(pid, _)| pid == sender) {
        println!("  {sender} printed: {}", print.message);
    }
    Ok(())
}

/// One line per component: each library import and the provider that satisfied it; then what
/// each library can do there, and its bound.
fn link_lines(report: &Value) -> Vec<String> {
    let components = report["link"]["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    components
        .iter()
        .map(|component| {
            let path = component["path"].as_str().unwrap_or("?");
            let imports = component["imports"].as_array().cloned().unwrap_or_default();
            if imports.is_empty() {
                return format!("{path}: nothing to link");
            }
            let links: Vec<String> = imports
                .iter()
                .map(|import| {
                    let provider = &import["outcome"]["Linked"]["provider"];
                    format!(
                        "{} -> {} ({})",
                        import["name"].as_str().unwrap_or("?"),
                        provider["path"].as_str().unwrap_or("?"),
                        provider["archive"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            let mut line = format!("{path}: {}", links.join(", "));
            for library in component["libraries"].as_array().into_iter().flatten() {
                line.push_str(&format!(
                    "\n    {} ({}) can: {}",
                    library["library"]["path"].as_str().unwrap_or("?"),
                    library["library"]["archive"].as_str().unwrap_or("?"),
                    library["can"].as_str().unwrap_or("?")
                ));
                if let Some(targets) = library["bound"]["send_to"].as_array() {
                    let targets: Vec<&str> = targets.iter().filter_map(Value::as_str).collect();
                    let guard = if library["guarded"] == true {
                        ", enforced by a guard"
                    } else {
                        ""
                    };
                    line.push_str(&format!(
                        "; requests only to: {}{guard}",
                        targets.join(", ")
                    ));
                }
            }
            line
        })
        .collect()
}
