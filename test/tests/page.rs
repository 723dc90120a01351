//! The linker's page and homepage widget in a real headless Chromium (Debian's `chromium` and
//! `chromedriver`; without them these tests fail): on a test node whose HTTP server and homepage
//! listen on loopback (`linker_test_host::HttpServer`), with the app store installing packages by
//! itself. Screenshots are left in `target/screenshots/`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use linker_test_host::HttpServer;
use linker_tests::browser::Browser;
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
fn plain_request(server: &HttpServer, method: &str, path: &str, body: &str) -> (u16, String) {
    let address = server.url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address).expect("connects");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("a status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
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

#[test]
fn the_switch_asks_and_needs_the_owner_and_bad_input_changes_nothing() {
    let (s, server) = Session::with_http_server();
    assert_eq!(auto_link(&s), true);

    // Without the owner's cookie: the login page (status 200, as the runtime answers), nothing
    // forwarded, nothing changed.
    let (status, body) = plain_request(
        &server,
        "POST",
        "/linker:linker:sys/api/auto",
        r#"{"enabled": false}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(body, linker_test_host::http_server::LOGIN_PAGE);
    let (status, body) = plain_request(&server, "GET", "/linker:linker:sys/api/state", "");
    assert_eq!(
        (status, body.as_str()),
        (200, linker_test_host::http_server::LOGIN_PAGE)
    );
    assert_eq!(auto_link(&s), true);

    let browser = logged_in(&server);
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
        .accept_confirmation(Duration::from_secs(10))
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
