//! A headless Chromium driven through ChromeDriver's W3C WebDriver protocol (JSON over HTTP),
//! for the dashboard's browser test. The few commands it needs fit in this file, so the tests
//! need no WebDriver crate. `./dev test` installs Debian's `chromium` and `chromium-driver`.
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The key W3C WebDriver uses for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver on a free local port and opens a headless Chromium session.
    pub async fn start() -> Self {
        let chromedriver =
            find_binary("CAIRN_CHROMEDRIVER", &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = find_binary("CAIRN_CHROMIUM", &["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", chromedriver.display()));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1400"]
            }
        }}});
        let response: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {response}"))
            .to_owned();
        Self { driver, http, session: format!("{base}/session/{session}") }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = response["value"]["error"].as_str() {
            panic!("webdriver {path}: {error}: {}", response["value"]["message"]);
        }
        response["value"].clone()
    }

    pub async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .command(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})))
            .await;
        found.as_array().into_iter().flatten().map(|e| Element(e[ELEMENT].as_str().unwrap().to_owned())).collect()
    }

    pub async fn find(&self, css: &str) -> Element {
        self.find_all(css).await.into_iter().next().unwrap_or_else(|| panic!("no element matches `{css}`"))
    }

    pub async fn click(&self, element: &Element) {
        self.command(reqwest::Method::POST, &format!("/element/{}/click", element.0), Some(json!({}))).await;
    }

    /// Replaces the text of an input.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{}/clear", element.0), Some(json!({}))).await;
        self.command(reqwest::Method::POST, &format!("/element/{}/value", element.0), Some(json!({ "text": text })))
            .await;
    }

    /// The text of the first element matching `css` (empty when none does), read in one
    /// script call: an element the page's live script replaces between a lookup and a read
    /// can never be stale here.
    pub async fn text_of(&self, css: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';";
        let text =
            self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": [css]}))).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the text of `css` satisfies `done`, without reloading: what changes is what
    /// the page's own script changed. Returns the last text seen.
    pub async fn wait_for_text(&self, css: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text_of(css).await;
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "`{css}` still reads `{text}` after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the page's address satisfies `done` (a click that submits a form returns
    /// before the browser has loaded the next page). Returns the address.
    pub async fn wait_for_url(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.url().await;
            if done(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "still at {url} after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session, which closes Chromium.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }

    /// Saves a PNG of the visible page.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let data = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session would need an async call; ending ChromeDriver ends its browser.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find_binary(variable: &str, candidates: &[&str]) -> PathBuf {
    if let Ok(path) = std::env::var(variable) {
        return PathBuf::from(path);
    }
    candidates.iter().map(PathBuf::from).find(|path| path.exists()).unwrap_or_else(|| {
        panic!("none of {candidates:?} exists: run the tests through `./dev test`, which installs chromium and chromium-driver (or set {variable})")
    })
}
