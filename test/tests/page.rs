//! The linker's page and homepage widget in a real headless Chromium (Debian's `chromium` and
//! `chromedriver`; without them these tests fail): on a test node whose HTTP server and homepage
//! listen on loopback (`linker_test_host::HttpServer`), with the app store installing packages by
//! itself. Screenshots are left in `target/screenshots/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use linker_fixtures::expect;
use linker_test_host::{AppStore, HttpServer};
use linker_tests::browser::{Answer, Browser};
use linker_tests::node::*;
use serde_json::{json, Value};

const PAGE: &str = "/linker:linker:sys/";

/// How long the page may take to show a change on the node (auto-linking ticks every 2 s).
const SHOWN: Duration = Duration::from_secs(60);

fn screenshot(browser: &Browser, name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/screenshots")
        .join(format!("{name}.png"));
    browser.screenshot(&path).expect("a screenshot");
}

/// A browser with the owner's login cookie.
fn logged_in(server: &HttpServer) -> Browser {
    let browser = Browser::start().expect("Chromium and chromedriver start");
    browser.open(&format!("{}/", server.url())).expect("opens");
    let (name, value) = server.cookie();
    browser.set_cookie(&name, &value).expect("a cookie");
    browser
}

/// One HTTP request without a cookie: status and body.
fn plain_request(s: &Session, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, body) = http_request(&s.node, method, path, body.as_bytes());
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn auto_link(s: &Session) -> Value {
    s.ask(&s.tester, json!({ "AutoLink": null }), None, vec![])
        .0["AutoLink"]["Ok"]
        .clone()
}

/// What the page's own `fetch` gets from its API (with the browser's cookie): status and JSON.
fn fetch(browser: &Browser, method: &str, path: &str, body: &str) -> (u64, Value) {
    let script = "const [method, path, body] = arguments; \
        const xhr = new XMLHttpRequest(); xhr.open(method, path, false); \
        xhr.setRequestHeader('Content-Type', 'application/json'); xhr.send(body || null); \
        let json = null; try { json = JSON.parse(xhr.responseText); } catch (e) {} \
        return [xhr.status, json];";
    let answer = browser
        .run(script, json!([method, path, body]))
        .expect("the request runs");
    (answer[0].as_u64().unwrap_or_default(), answer[1].clone())
}

/// The state text of `package`'s row in the page's table, with its hints.
fn row_text(package: &str) -> String {
    format!(
        "const row = document.querySelector('#packages tr[data-package=\"{package}\"]'); \
         return row ? row.cells[3].textContent : null;"
    )
}

/// A script giving the linker's homepage widget's text, or null while it is not shown.
const WIDGET_TEXT: &str =
    "const frame = document.querySelector('.widget[data-process=\"linker:linker:sys\"] iframe'); \
    return frame && frame.contentDocument ? frame.contentDocument.body.textContent : null;";

/// The homepage widget's text, once it names `package`. The homepage shows the widget in an
/// iframe as it was when the homepage was opened, so the homepage is opened again until the
/// linker has sent a widget naming it.
fn widget_naming(browser: &Browser, server: &HttpServer, package: &str) -> String {
    let deadline = Instant::now() + SHOWN;
    loop {
        browser.open(&format!("{}/", server.url())).expect("opens");
        let text = browser
            .wait_for(WIDGET_TEXT, SHOWN)
            .expect("the widget shows");
        if let Some(text) = text.as_str().filter(|t| t.contains(package)) {
            return text.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the widget never named {package}: {text}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_failed_auto_link_shows_on_the_page_with_its_hint_until_the_library_is_installed() {
    let s = Session::new();
    let server = s.node.http();
    let store = AppStore::new(&s.node);
    app_store_install(&store, "app");
    let browser = logged_in(server);

    // The homepage's widget names the package, the missing library and what to do.
    let widget_text = widget_naming(&browser, server, "app:test.os");
    let widget_text = widget_text.as_str();
    assert!(widget_text.starts_with("Not linked:"), "{widget_text}");
    assert!(widget_text.contains(MATHLIB), "{widget_text}");
    assert!(widget_text.contains("install"), "{widget_text}");
    let link = browser
        .run(
            "return document.querySelector('.widget iframe').contentDocument.querySelector('a').getAttribute('href');",
            json!([]),
        )
        .expect("the widget links");
    assert_eq!(link, PAGE);
    screenshot(&browser, "widget");

    // The page: the package failed, with the missing library and the hint, and the graph marks it.
    browser
        .open(&format!("{}{PAGE}", server.url()))
        .expect("opens");
    let state = browser
        .wait_for(&row_text("app:test.os"), SHOWN)
        .expect("the package is listed");
    let state = state.as_str().unwrap_or_default();
    assert!(state.starts_with("failed"), "{state}");
    assert!(state.contains(MATHLIB), "{state}");
    assert!(state.contains("install"), "{state}");
    let marked = browser
        .run(
            "return [...document.querySelectorAll('#graph g.problem text')].map(t => t.textContent);",
            json!([]),
        )
        .expect("the graph");
    assert!(
        marked
            .as_array()
            .is_some_and(|nodes| nodes.contains(&json!("app:test.os"))
                && nodes
                    .iter()
                    .any(|n| n.as_str().is_some_and(|n| n.contains(MATHLIB)))),
        "{marked}"
    );
    screenshot(&browser, "page-failed");

    // The app store installs mathlib: the page, not reloaded, shows app linked against it.
    let mathlib = app_store_install(&store, "mathlib");
    let linked = browser
        .wait_for(
            &format!(
                "const text = (function() {{ {} }})(); return text && text.startsWith('linked') ? text : null;",
                row_text("app:test.os")
            ),
            SHOWN,
        )
        .expect("the page shows app linked");
    assert_eq!(linked, "linked");
    let edges = browser
        .run(
            "return [document.querySelectorAll('#graph line').length, document.querySelectorAll('#graph line.problem').length, \
             [...document.querySelectorAll('#graph g.library text')].map(t => t.textContent)];",
            json!([]),
        )
        .expect("the graph");
    assert_eq!(edges[0], 1, "one edge: app to mathlib: {edges}");
    assert_eq!(edges[1], 0, "no problem left: {edges}");
    assert!(
        edges[2]
            .as_array()
            .is_some_and(|l| l.contains(&json!("mathlib:test.os"))),
        "{edges}"
    );
    // The table shows what the node holds: the records `Packages` answers.
    let (packages, _) = s.ask(&s.tester, json!("Packages"), None, vec![]);
    let listed: Vec<Value> = ok(&packages["Packages"])
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["package"].clone())
        .collect();
    let rows = browser
        .run(
            "return [...document.querySelectorAll('#packages tbody tr')].map(r => r.dataset.package);",
            json!([]),
        )
        .expect("rows");
    assert_eq!(rows, Value::Array(listed));
    let version = browser
        .run(
            "return [...document.querySelectorAll('#packages tbody tr')].find(r => r.dataset.package === 'mathlib:test.os').cells[1].textContent;",
            json!([]),
        )
        .expect("mathlib's row");
    assert_eq!(version.as_str(), Some(&mathlib[..12]));
    let libraries = browser
        .run(
            "return document.querySelector('#libraries tbody').textContent;",
            json!([]),
        )
        .expect("the libraries");
    assert!(
        libraries
            .as_str()
            .is_some_and(|t| t.contains("mathlib-api.wasm") && t.contains("app.wasm")),
        "{libraries}"
    );
    let summary = browser
        .run(
            "return document.getElementById('summary').textContent;",
            json!([]),
        )
        .expect("the summary");
    assert!(
        summary
            .as_str()
            .is_some_and(|t| t.starts_with("Everything is linked")),
        "{summary}"
    );
    screenshot(&browser, "page-linked");

    // The homepage again: the widget, sent anew, says everything is linked.
    browser.open(&format!("{}/", server.url())).expect("opens");
    let widget_text = browser
        .wait_for(
            &format!(
                "const text = (function() {{ {WIDGET_TEXT} }})(); \
                 return text && text.startsWith('Everything is linked') ? text : null;"
            ),
            SHOWN,
        )
        .expect("the widget says everything is linked");
    assert_eq!(
        widget_text,
        "Everything is linked (2 packages).Open the linker"
    );
    screenshot(&browser, "widget-linked");
}

#[test]
fn the_switch_asks_and_needs_the_owner_and_bad_input_changes_nothing() {
    let s = Session::new();
    let server = s.node.http();
    assert_eq!(auto_link(&s), true);

    // Without the owner's cookie: the login page (status 200, as the runtime answers), nothing
    // forwarded, nothing changed.
    let (status, body) = plain_request(
        &s,
        "POST",
        "/linker:linker:sys/api/auto",
        r#"{"enabled": false}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(body, linker_test_host::http_server::LOGIN_PAGE);
    let (status, body) = plain_request(&s, "GET", "/linker:linker:sys/api/state", "");
    assert_eq!(
        (status, body.as_str()),
        (200, linker_test_host::http_server::LOGIN_PAGE)
    );
    assert_eq!(auto_link(&s), true);

    let browser = logged_in(server);
    browser
        .open(&format!("{}{PAGE}", server.url()))
        .expect("opens");
    browser
        .wait_for("return document.getElementById('auto').checked;", SHOWN)
        .expect("the switch shows on");

    // Bad input: a clear 4xx, nothing changed.
    let (status, answer) = fetch(&browser, "POST", "api/auto", r#"{"enabled": "no"}"#);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("enabled")),
        "{answer}"
    );
    let (status, answer) = fetch(&browser, "POST", "api/relink", r#"{"package": "no id"}"#);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("`no id` is not a package id")),
        "{answer}"
    );
    let (status, answer) = fetch(
        &browser,
        "POST",
        "api/relink",
        r#"{"package": "absent:test.os"}"#,
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], json!({"NotInstalled": "absent:test.os"}));
    let (status, _) = fetch(&browser, "GET", "api/auto", "");
    assert_eq!(status, 405);
    let (status, _) = fetch(&browser, "POST", "api/nothing", "{}");
    assert_eq!(status, 404);
    assert_eq!(auto_link(&s), true);

    // The switch: a confirmation, then off, on the node as the request API sees it.
    browser
        .run("document.getElementById('auto').click();", json!([]))
        .expect("clicks");
    let question = browser
        .answer_confirmation(Duration::from_secs(10), Answer::Accept)
        .expect("a confirmation");
    assert_eq!(question, "Turn auto-linking off?");
    let deadline = Instant::now() + SHOWN;
    while auto_link(&s) != json!(false) {
        assert!(
            Instant::now() < deadline,
            "the switch did not turn auto-linking off"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    browser
        .wait_for("return !document.getElementById('auto').checked;", SHOWN)
        .expect("the switch shows off");
    screenshot(&browser, "page-switched-off");
}

#[test]
fn explain_changes_nothing_re_link_asks_first_and_a_removed_library_is_marked() {
    let s = Session::new();
    let server = s.node.http();
    let store = AppStore::new(&s.node);
    app_store_install(&store, "mathlib");
    let app = app_store_install(&store, "app");
    s.wait_for("app:app:test.os", &expect::app());
    let browser = logged_in(server);
    browser
        .open(&format!("{}{PAGE}", server.url()))
        .expect("opens");
    browser
        .wait_for(
            &format!(
                "const text = (function() {{ {} }})(); return text === 'linked' ? text : null;",
                row_text("app:test.os")
            ),
            SHOWN,
        )
        .expect("the page shows app linked");
    let before = linked(&s, "app:test.os");
    let record = s.file("/app:test.os/pkg/link.json");
    let click = |button: &str| {
        browser
            .run(
                &format!(
                    "[...document.querySelector('#packages tr[data-package=\"app:test.os\"]').cells[4].querySelectorAll('button')] \
                     .find(b => b.textContent === '{button}').click();"
                ),
                json!([]),
            )
            .expect("clicks");
    };

    // Explain: what a link would choose, import by import, in words; nothing installed.
    click("Explain");
    let explained = browser
        .wait_for(
            "const text = document.getElementById('explain').textContent; \
             return text.includes('linked to') ? text : null;",
            SHOWN,
        )
        .expect("the explanation shows");
    let explained = explained.as_str().unwrap_or_default();
    assert!(
        explained.contains(&format!(
            "{MATHLIB}: linked to {MATHLIB} from mathlib-api.wasm in mathlib:test.os"
        )),
        "{explained}"
    );
    assert!(!explained.contains('{'), "no JSON left: {explained}");
    screenshot(&browser, "page-explain");
    assert_eq!(linked(&s, "app:test.os"), before);
    assert_eq!(s.file("/app:test.os/pkg/link.json"), record);
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 1);

    // Re-link asks first: cancelled, nothing happens.
    click("Re-link");
    let question = browser
        .answer_confirmation(Duration::from_secs(10), Answer::Dismiss)
        .expect("a confirmation");
    assert_eq!(question, "Re-link and re-install app:test.os?");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(linked(&s, "app:test.os"), before);
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 1);

    // Confirmed: linked and installed again, by request; the page shows it without a reload.
    click("Re-link");
    browser
        .answer_confirmation(Duration::from_secs(10), Answer::Accept)
        .expect("a confirmation");
    browser
        .wait_for(
            "return document.getElementById('message').textContent === 'Done.';",
            SHOWN,
        )
        .expect("the re-link is done");
    s.wait_for("app:app:test.os", &expect::app());
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 2);
    let after = linked(&s, "app:test.os");
    assert_eq!(after["Ok"]["trigger"], "Request");
    assert_eq!(after["Ok"]["version_hash"], json!(app));
    browser
        .wait_for(
            "const row = document.querySelector('#packages tr[data-package=\"app:test.os\"]'); \
             return row && row.cells[2].textContent === 'request';",
            SHOWN,
        )
        .expect("the page shows the re-link's trigger");

    // The library is removed: the app keeps running with its copy, and the page says so.
    store
        .uninstall("mathlib:test.os")
        .expect("the app store uninstalls");
    let state = browser
        .wait_for(
            &format!(
                "const text = (function() {{ {} }})(); return text && text.includes('removed') ? text : null;",
                row_text("app:test.os")
            ),
            SHOWN,
        )
        .expect("the page marks the removed library");
    assert_eq!(
        state,
        "linkedruns with its copy of mathlib:test.os, which was removed"
    );
    let marked = browser
        .run(
            "return [[...document.querySelectorAll('#graph g.problem text')].map(t => t.textContent), \
             document.querySelectorAll('#graph line.problem').length, \
             document.getElementById('summary').textContent];",
            json!([]),
        )
        .expect("the graph");
    assert_eq!(
        marked[0],
        json!(["app:test.os", "mathlib:test.os (removed)"]),
        "{marked}"
    );
    assert_eq!(marked[1], 1, "{marked}");
    assert!(
        marked[2]
            .as_str()
            .is_some_and(|t| t.starts_with("1 of 1 packages not linked: app:test.os")),
        "{marked}"
    );
    screenshot(&browser, "page-removed");
    assert_eq!(s.printed("app:app:test.os", &expect::app()), 2);
}

#[test]
fn a_library_no_node_serves_is_named_on_the_widget_and_page_with_every_node_tried() {
    let network = linker_test_host::Network::new();
    let (publisher, _) = serving(&network, PUBLISHER, &["mathlib"]);
    list_on_chain(&network, "mathlib", &[]);
    publisher.go_offline();
    let (s, _, _) = Session::on(&network);
    let server = s.node.http();
    let store = AppStore::new(&s.node);
    app_store_install(&store, "app");
    let browser = logged_in(server);

    // The widget names the library once, the node tried and why, and what to do.
    let widget_text = widget_naming(&browser, server, "app:test.os");
    let expected = "app:test.os lacks mathlib:test.os: version 0.1.0 could not be fetched (tried \
                    test.os offline): install it from the app store once a node that serves it \
                    is online";
    assert!(widget_text.contains(expected), "{widget_text}");
    assert_eq!(
        widget_text.matches("app:test.os lacks").count(),
        1,
        "{widget_text}"
    );
    screenshot(&browser, "widget-fetch-failed");

    // The page's row says the same.
    browser
        .open(&format!("{}{PAGE}", server.url()))
        .expect("opens");
    let row = browser
        .wait_for(&row_text("app:test.os"), SHOWN)
        .expect("the row shows");
    let row = row.as_str().unwrap_or_default();
    assert!(row.contains("mathlib:test.os"), "{row}");
    assert!(
        row.contains("version 0.1.0 could not be fetched (tried test.os offline)"),
        "{row}"
    );
    screenshot(&browser, "page-fetch-failed");
}
