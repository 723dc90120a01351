//! The terminal scripts of `linker:sys` (`link`, `apis`, `linked`) on a node: the real package
//! booted on the test host after a terminal ([`Terminal`]), each script run as
//! `terminal:terminal:sys` runs it, its printed output checked. Fixtures are installed first with
//! `Install` requests from a tester that holds the linker's messaging capability.

use std::time::Duration;

use linker_fixtures::{expect, linker_package};
use linker_test_host::{caps, Mailbox, Node, Terminal};
use linker_tests::damage::add_to_zip;
use linker_tests::node::{fixtures, read, sha256, LINKER, MATHLIB, NODE, TESTER};
use serde_json::{json, Value};

const UPLOADS: &str = "/tester:test.os/uploads";
const WAIT: Duration = Duration::from_secs(120);
const LINK_USAGE: &str = "usage: link:linker:sys <package-id | vfs-path> \
                          [--download <version-hash>] [--api <package-id | vfs-path>]... [--install] \
                          [--explain] | link:linker:sys <--auto | --fetch | --mirror> <on | off | status>";

/// The first 12 hex digits, as the scripts show hashes.
fn short(hash: &str) -> &str {
    &hash[..12]
}

/// A node with a terminal and the linker booted (in that order, as the runtime bootstraps the
/// terminal's package before the linker grants it a capability), and a tester that may install.
struct Session {
    node: Node,
    terminal: Terminal,
    tester: Mailbox,
}

impl Session {
    fn new() -> Self {
        let linker = linker_package().expect("the linker package builds");
        let node = Node::new(NODE).expect("the test node starts");
        let terminal = Terminal::new(&node);
        node.boot_package("linker:sys", &linker.zip, Some(1))
            .expect("the linker boots");
        let tester = node.mailbox(TESTER, false);
        node.grant("linker:linker:sys", vec![caps::messaging(TESTER)]);
        node.grant("tester:tester:test.os", vec![caps::messaging(LINKER)]);
        Session {
            node,
            terminal,
            tester,
        }
    }

    /// Installs fixture `name` from the tester (zip as the blob, its metadata), linked against
    /// the node's APIs and the fixture APIs `apis`, uploaded; requires success.
    fn install(&self, name: &str, apis: &[&str]) {
        let f = fixtures();
        let metadata = String::from_utf8(read(f.metadata(name))).expect("metadata is text");
        let apis: Vec<Value> = apis
            .iter()
            .map(|api| json!({ "VfsPath": self.upload_api(api) }))
            .collect();
        let request = json!({"Install": {"source": "Blob", "metadata": metadata, "apis": apis}});
        let reply = self
            .tester
            .request(
                LINKER,
                request.to_string(),
                Some(read(f.package(name))),
                vec![caps::messaging(LINKER)],
                120,
            )
            .unwrap_or_else(|e| panic!("the linker answers: {e:?}"));
        let body = reply.json();
        assert!(
            body["Install"].get("Ok").is_some(),
            "installing {name}: {body:#}"
        );
    }

    /// Writes a fixture's API zip into the tester's drive; returns its VFS path.
    fn upload_api(&self, name: &str) -> String {
        let f = fixtures();
        let path = format!("{UPLOADS}/{}-api.zip", f.id(name));
        self.node
            .write_file(&path, &read(f.api(name)))
            .expect("writing into the tester's drive");
        path
    }

    /// Writes a fixture's package zip into the tester's drive; returns its VFS path.
    fn upload_package(&self, name: &str) -> String {
        let f = fixtures();
        let path = format!("{UPLOADS}/{}.zip", f.id(name));
        self.node
            .write_file(&path, &read(f.package(name)))
            .expect("writing into the tester's drive");
        path
    }

    /// Runs `script` with `args` from the terminal and returns what it prints.
    fn run(&self, script: &str, args: &str) -> String {
        let pid = self
            .terminal
            .run(script, args)
            .unwrap_or_else(|e| panic!("the terminal runs {script}: {e:#}"));
        let printed = self.node.wait_for_print(|id, _| id == pid, WAIT);
        printed
            .unwrap_or_else(|| {
                panic!(
                    "{script} {args} printed nothing; prints: {:#?}",
                    self.node.prints()
                )
            })
            .1
            .message
    }
}

/// The lines of a link report for the `app` fixture linked against mathlib, chosen as `how`
/// (`given`, `declared`).
fn app_linked_rows(how: &str) -> String {
    format!(
        "  app.wasm (process app)  {MATHLIB}  <- mathlib:test.os/mathlib-api.wasm ({how})\n  \
         calc.wasm (script)      {MATHLIB}  <- mathlib:test.os/mathlib-api.wasm ({how})\n  \
         what the libraries in app.wasm can do:\n    \
         mathlib-api.wasm (mathlib:test.os) can: {MATHLIB_CAN}\n  \
         what the libraries in calc.wasm can do:\n    \
         mathlib-api.wasm (mathlib:test.os) can: {MATHLIB_CAN}\n  \
         copied mathlib-worker.wasm from mathlib:test.os"
    )
}

/// What mathlib's library can do: kit builds it for wasm32-wasip1, whose adapter imports WASI.
const MATHLIB_CAN: &str =
    "use files, read clocks, read its environment and use standard I/O, use I/O streams";

#[test]
fn link_shows_what_each_library_can_do_and_how_the_package_bounds_it() {
    let s = Session::new();
    let api = s.upload_api("courier");
    let upload = |bounds: Value| {
        let zip = add_to_zip(
            &read(fixtures().package("sender")),
            "library-bounds.json",
            bounds.to_string().as_bytes(),
        )
        .expect("the zip takes a file");
        let path = format!("{UPLOADS}/sender:test.os.zip");
        s.node
            .write_file(&path, &zip)
            .expect("writing into the tester's drive");
        path
    };
    let package = upload(
        json!({"libraries": {"courier:test.os": {"may": ["send-requests", "spawn", "files", "clocks", "random", "environment", "streams"], "send-to": ["library-package"]}}}),
    );
    let output = s.run("link:linker:sys", &format!("{package} --api {api}"));
    let expected = [
        "  what the libraries in sender.wasm can do:",
        "    courier-api.wasm (courier:test.os) can: send requests, spawn processes, use files, read \
         clocks, get random numbers, read its environment and use standard I/O, use I/O streams",
        "      bounded by library-bounds.json: may only: send-requests, spawn, files, clocks, random, \
         environment, streams; requests only to: library-package, enforced by a guard; the \
         processes it spawns are not bounded",
    ]
    .join("\n");
    assert!(output.contains(&expected), "{output}");
    // `kinode-link` shows the library with the same lines (two spaces less indented).
    let zip = s.node.read_file(&package).expect("the upload");
    let api_zip = read(fixtures().api("courier"));
    let linked = linker_core::link(
        linker_core::Input::new("sender:test.os", &zip),
        &[linker_core::Input::new("courier:test.os", &api_zip)],
        &linker_core::Options::default(),
    )
    .expect("links natively");
    let component = linked
        .report
        .components
        .iter()
        .find(|component| component.path == "sender.wasm")
        .expect("sender.wasm");
    let mut native = Vec::new();
    component.library_lines(&mut native);
    let native: Vec<String> = native.iter().map(|line| format!("  {line}")).collect();
    assert!(output.contains(&native.join("\n")), "{output}\n{native:#?}");

    let package = upload(
        json!({"libraries": {"courier:test.os": {"may": ["send-requests", "files", "clocks", "random", "environment", "streams"]}}}),
    );
    let output = s.run("link:linker:sys", &format!("{package} --api {api}"));
    assert_eq!(
        output,
        "link: the package's library-bounds.json forbids what its libraries import: linking \
         `sender.wasm`: `courier-api.wasm` in `courier:test.os` imports `spawn`, which would let it \
         spawn processes; library-bounds.json lets `courier:test.os` only send requests, use files, \
         read clocks, get random numbers, read its environment and use standard I/O, use I/O streams"
    );
}

#[test]
fn link_an_installed_package_against_an_installed_api() {
    let s = Session::new();
    s.install("mathlib", &[]);
    s.install("app", &[]);
    let output = s.run("link:linker:sys", "app:test.os");
    // The install linked the same inputs, so the link comes from the linker's cache.
    assert_eq!(
        output,
        format!(
            "app:test.os linked against mathlib:test.os (cached)\n{}\n\
             nothing installed: add --install to install it",
            app_linked_rows("declared")
        )
    );
    // Named with --api, the same library is `given`, a different report.
    let output = s.run("link:linker:sys", "app:test.os --api mathlib:test.os");
    assert_eq!(
        output,
        format!(
            "app:test.os linked against mathlib:test.os\n{}\n\
             nothing installed: add --install to install it",
            app_linked_rows("given")
        )
    );
}

#[test]
fn link_zips_at_vfs_paths_with_the_scripts_vfs_capability() {
    let s = Session::new();
    let package = s.upload_package("app");
    let api = s.upload_api("mathlib");
    let output = s.run("link:linker:sys", &format!("{package} --api {api}"));
    assert_eq!(
        output,
        format!(
            "app:test.os.zip linked against mathlib:test.os\n{}\n\
             nothing installed: add --install to install it",
            app_linked_rows("given")
        )
    );
    // Linking installs nothing.
    assert!(s.node.process("app:app:test.os").is_none());
}

#[test]
fn link_install_reinstalls_and_relinks_dependents() {
    let s = Session::new();
    s.install("mathlib", &[]);
    s.install("app", &[]);
    s.node
        .wait_for_print(
            |id, line| id == "app:app:test.os" && line == expect::app(),
            WAIT,
        )
        .expect("the app runs");
    let app = sha256(&read(fixtures().package("app")));
    let output = s.run(
        "link:linker:sys",
        "app:test.os --api mathlib:test.os --install",
    );
    assert_eq!(
        output,
        format!(
            "installed app:test.os (version {v}, replaces {v})\n\
             linked against mathlib:test.os\n{}\n\
             started app:app:test.os",
            app_linked_rows("given"),
            v = short(&app),
        )
    );
    // Installing the library again re-links the app, its dependent.
    let mathlib = sha256(&read(fixtures().package("mathlib")));
    let output = s.run("link:linker:sys", "mathlib:test.os --install");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!(
                "installed mathlib:test.os (version {v}, replaces {v})",
                v = short(&mathlib)
            )
            .as_str(),
            "linked against no APIs (cached)",
            "  nothing to link in mathlib-worker.wasm",
        ],
        "{output}"
    );
    let relinked = lines.last().copied().unwrap_or_default();
    assert!(
        relinked.starts_with("relinked app:test.os (linked "),
        "{output}"
    );
    let runs = || {
        s.node
            .print_messages("app:app:test.os")
            .iter()
            .filter(|line| **line == expect::app())
            .count()
    };
    let reran = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        runs() == 3
    });
    assert!(reran, "the app ran after each install: {}", runs());
}

#[test]
fn link_install_takes_a_package_the_app_store_downloaded() {
    let s = Session::new();
    s.install("mathlib", &[]);
    let zip = read(fixtures().package("app"));
    let hash = sha256(&zip);
    s.node
        .write_file(
            &format!("/app-store:sys/downloads/app:test.os/{hash}.zip"),
            &zip,
        )
        .expect("placing the download");
    // No chain:app-store:sys on this node to give the metadata: the API is named.
    let output = s.run(
        "link:linker:sys",
        &format!("app:test.os --download {hash} --api mathlib:test.os --install"),
    );
    assert!(
        output.starts_with(&format!("installed app:test.os (version {})", short(&hash))),
        "{output}"
    );
    assert!(output.contains("started app:app:test.os"), "{output}");
    let ran = s.node.wait_for_print(
        |pid, message| pid == "app:app:test.os" && message == expect::app(),
        WAIT,
    );
    assert!(ran.is_some(), "the installed download runs");
    // The app store's listing rule finds it with the published hash.
    assert_eq!(
        s.node
            .read_file("/app:test.os/pkg/app:test.os.zip")
            .map(|z| sha256(&z)),
        Some(hash)
    );
}

#[test]
fn link_explain_says_why_a_provider_is_rejected() {
    let s = Session::new();
    let package = s.upload_package("app");
    let api = s.upload_api("badmath");
    let output = s.run(
        "link:linker:sys",
        &format!("{package} --api {api} --explain"),
    );
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines[0],
        "app:test.os.zip would be linked against badmath:test.os"
    );
    let rejected = format!("{MATHLIB}  rejected: badmath:test.os/badmath-api.wasm exports {MATHLIB} with another type: ");
    assert!(
        lines[1].starts_with(&format!("  app.wasm (process app)  {rejected}")),
        "{output}"
    );
    assert!(
        lines[2].starts_with(&format!("  calc.wasm (script)      {rejected}")),
        "{output}"
    );
    assert_eq!(lines.len(), 3, "{output}");
    // Explaining installs nothing, and the same link fails with one line saying what to do.
    let output = s.run("link:linker:sys", &format!("{package} --api {api}"));
    assert!(
        output.starts_with("link: cannot link: linking `app.wasm`: ")
            && output.ends_with(" (and 1 more import); run with --explain to see every import")
            && !output.contains('\n'),
        "{output}"
    );
}

#[test]
fn apis_lists_interfaces_and_dependents() {
    let s = Session::new();
    assert_eq!(
        s.run("apis:linker:sys", ""),
        "no APIs on this node: install a package that has an api.zip"
    );
    s.install("mathlib", &[]);
    s.install("app", &[]);
    s.install("chain", &["textlib"]);
    assert_eq!(
        s.run("apis:linker:sys", ""),
        [
            "package          location   interfaces                    dependents",
            "app:test.os      installed  -                             -",
            "chain:test.os    installed  -                             -",
            "mathlib:test.os  installed  kinode:process/mathlib@1.0.0  app:test.os",
            &format!("{:58}chain:test.os", ""),
            "textlib:test.os  mirror     kinode:process/textlib@1.0.0  chain:test.os",
        ]
        .join("\n")
    );
}

#[test]
fn linked_shows_what_was_linked_into_a_package() {
    let s = Session::new();
    s.install("mathlib", &[]);
    s.install("app", &[]);
    let app = short(&sha256(&read(fixtures().package("app")))).to_owned();
    let mathlib = short(&sha256(&read(fixtures().package("mathlib")))).to_owned();
    assert_eq!(
        s.run("linked:linker:sys", "app:test.os"),
        format!(
            "app:test.os (version {app}) was linked against mathlib:test.os\n{}",
            app_linked_rows("declared")
        )
    );
    assert_eq!(
        s.run("linked:linker:sys", ""),
        [
            "package          version       how      state",
            &format!("app:test.os      {app}  request  linked against mathlib:test.os"),
            &format!("mathlib:test.os  {mathlib}  request  linked against no APIs"),
        ]
        .join("\n")
    );
}

#[test]
fn link_auto_switches_auto_linking() {
    let s = Session::new();
    let on = "auto-linking is on: packages the app store installs or updates are linked within \
              seconds";
    let off = "auto-linking is off: packages the app store installs run as installed; \
               `link:linker:sys <package-id> --install` links one";
    assert_eq!(s.run("link:linker:sys", "--auto status"), on);
    assert_eq!(s.run("link:linker:sys", "--auto off"), off);
    assert_eq!(s.run("link:linker:sys", "--auto status"), off);
    assert_eq!(s.run("link:linker:sys", "--auto on"), on);
    assert_eq!(
        s.run("link:linker:sys", "--auto maybe"),
        format!("link: --auto takes on, off or status; {LINK_USAGE}")
    );
}

#[test]
fn errors_are_one_line_saying_what_to_do() {
    let s = Session::new();
    let cases = [
        (
            "link:linker:sys",
            "nothere:test.os",
            "link: nothere:test.os is not installed on this node: install it first, or give the \
             VFS path of its zip",
        ),
        (
            "linked:linker:sys",
            "nothere:test.os",
            "linked: nothere:test.os is not installed on this node: `linked:linker:sys` with no \
             argument lists the linked packages",
        ),
        (
            "link:linker:sys",
            "/tester:test.os/uploads/none.zip --install",
            "link: installing needs the package id: name an installed package (name:publisher) \
             instead of a VFS path",
        ),
    ];
    for (script, args, expected) in cases {
        assert_eq!(s.run(script, args), expected, "{script} {args}");
    }
}

#[test]
fn bad_arguments_get_a_usage_line() {
    let s = Session::new();
    let cases = [
        (
            "link:linker:sys",
            "",
            format!("link: name a package; {LINK_USAGE}"),
        ),
        (
            "link:linker:sys",
            "app:test.os --frob",
            format!("link: unknown option `--frob`; {LINK_USAGE}"),
        ),
        (
            "link:linker:sys",
            "app --explain",
            format!(
                "link: `app` is neither a package id (name:publisher) nor a VFS path (/...); \
                 {LINK_USAGE}"
            ),
        ),
        (
            "link:linker:sys",
            "app:test.os --install --explain",
            format!("link: give --install or --explain, not both; {LINK_USAGE}"),
        ),
        (
            "link:linker:sys",
            "app:test.os --api",
            format!("link: --api needs a package id or a VFS path; {LINK_USAGE}"),
        ),
        (
            "apis:linker:sys",
            "everything",
            "apis: takes no arguments, not `everything`; usage: apis:linker:sys".to_owned(),
        ),
        (
            "linked:linker:sys",
            "a:b c:d",
            "linked: one package at most; usage: linked:linker:sys [package-id]".to_owned(),
        ),
    ];
    for (script, args, expected) in cases {
        assert_eq!(s.run(script, args), expected, "{script} {args}");
    }
}
