//! A small W3C WebDriver client for the browser tests: chromedriver with headless Chromium.
//!
//! The tests need a handful of commands (open a page, run a script, find, click and type into
//! an element, take a screenshot), which are JSON over HTTP; this speaks them with the blocking
//! `ureq` client the other cluster tests use, instead of an async WebDriver crate and its
//! runtime.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a test waits for a condition on the page.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(90);

fn program(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// A chromedriver process and one headless Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session through it.
    ///
    /// `$EDDY_CHROMEDRIVER` and `$EDDY_CHROMIUM` override `/usr/bin/chromedriver` and
    /// `/usr/bin/chromium`.
    pub fn start(log: &Path) -> Browser {
        let driver_path = program("EDDY_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = program("EDDY_CHROMIUM", "/usr/bin/chromium");
        for (what, path) in [("chromedriver", &driver_path), ("chromium", &chromium)] {
            assert!(
                path.exists(),
                "the browser tests need {what} at {} (Debian: apt-get install -y chromium chromium-driver; \
                 or set $EDDY_CHROMEDRIVER and $EDDY_CHROMIUM)",
                path.display()
            );
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log_file = std::fs::File::create(log).unwrap();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_path.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser { driver, base, session: String::new(), agent, _profile: profile };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = browser
                .agent
                .get(format!("{}/status", browser.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready; its log is {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1440,1000".into(),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver started no session: {created}"))
            .to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status == 200, "WebDriver {method} {path} answered {status}: {answer}");
        answer["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; returns its value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Waits until `script` returns something other than null, false or undefined, and returns
    /// it; panics after [`PAGE_DEADLINE`] with `what` and the page's text.
    pub fn wait_for(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + PAGE_DEADLINE;
        loop {
            let value = self.js(script, args.clone());
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self.js("return document.body.innerText", json!([]));
                panic!("timed out waiting for {what}; the page shows:\n{}", text.as_str().unwrap_or(""));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element matching a CSS selector (a WebDriver reference).
    pub fn find(&self, css: &str) -> String {
        let found =
            self.session_call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_string()
    }

    /// Clicks an element as a user would (WebDriver moves the pointer and clicks).
    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.session_call("POST", &format!("/element/{element}/click"), None);
    }

    /// Types `text` into an element; for a file input, `text` is the path of the file to choose.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.session_call("POST", &format!("/element/{element}/value"), Some(json!({ "text": text })));
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.agent.delete(format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
