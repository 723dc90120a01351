//! A headless Chromium driven over WebDriver: Debian's `chromedriver` started on a free loopback
//! port, spoken to as the W3C WebDriver protocol defines it (JSON over HTTP), which is all the
//! tests need (open a URL, set a cookie, run a script, accept a confirmation, take a
//! screenshot). Without `chromium` and `chromedriver` it fails: the browser tests never skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// Where Debian's packages put them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    ///
    /// # Errors
    /// If Chromium or chromedriver is missing (install them: `.ci/run` does) or does not start.
    pub fn start() -> Result<Browser> {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            if !std::path::Path::new(binary).exists() {
                bail!("{binary} is missing: `apt-get install -y chromium chromium-driver` (.ci/run does)");
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile = tempfile::tempdir()?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while browser.call("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,1000",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .chain([format!(
            "--user-data-dir={}",
            browser._profile.path().display()
        )])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = browser.call("POST", "/session", Some(&capabilities))?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session: {created}"))?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        // chromedriver keeps the connection open: the body is read by its length.
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().context("a Content-Length")?;
                }
            }
        }
        let mut bytes = vec![0; length];
        reader.read_exact(&mut bytes)?;
        let body = String::from_utf8_lossy(&bytes);
        let value: Value = serde_json::from_str(&body).context("a WebDriver answer")?;
        if let Some(error) = value["value"].get("error") {
            bail!("{method} {path}: {error}: {}", value["value"]["message"]);
        }
        Ok(value["value"].clone())
    }

    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// Sets a cookie for the page open now.
    pub fn set_cookie(&self, name: &str, value: &str) -> Result<()> {
        let cookie = json!({"cookie": {"name": name, "value": value, "path": "/"}});
        self.session_call("POST", "/cookie", Some(&cookie))
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; what it returns.
    pub fn run(&self, script: &str, args: Value) -> Result<Value> {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Waits up to `timeout` until `script` returns something truthy; that value.
    pub fn wait_for(&self, script: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.run(script, json!([]));
            match &value {
                Ok(value) if !value.is_null() && value != &json!(false) && value != &json!("") => {
                    return Ok(value.clone())
                }
                _ if Instant::now() > deadline => {
                    bail!("waited {timeout:?} for `{script}`: last {value:?}")
                }
                _ => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// The text of the confirmation open now, answered as `answer` says.
    pub fn answer_confirmation(&self, timeout: Duration, answer: Answer) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let verb = match answer {
            Answer::Accept => "/alert/accept",
            Answer::Dismiss => "/alert/dismiss",
        };
        loop {
            match self.session_call("GET", "/alert/text", None) {
                Ok(text) => {
                    self.session_call("POST", verb, Some(&json!({})))?;
                    return Ok(text.as_str().unwrap_or_default().to_owned());
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A PNG of the page, written to `path`.
    pub fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        let encoded = self.session_call("GET", "/screenshot", None)?;
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            encoded.as_str().unwrap_or_default(),
        )?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

/// How to answer a confirmation (`window.confirm`): OK or Cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Press OK.
    Accept,
    /// Press Cancel.
    Dismiss,
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
