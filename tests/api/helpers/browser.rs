//! A real browser for the tests: headless Chromium, driven through chromedriver's W3C WebDriver
//! HTTP API (no client crate: the calls are a few JSON requests).

use crate::helpers::wait_for_every;
use base64::Engine as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Flags for Chromium on a machine without a display, a sandbox or a network.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
];

pub fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/test, which installs chromium and chromium-driver"
    );
}

pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        wait_for_every(
            Duration::from_secs(20),
            Duration::from_millis(100),
            "chromedriver to start",
            || async {
                match driver.http.get(format!("{}/status", driver.base)).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        driver
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(res["value"].get("error").is_none(), "WebDriver {path}: {res}");
        res["value"].clone()
    }
}

/// One browser session (a fresh profile), closed when dropped by the test's end.
pub struct Session {
    driver: Driver,
    id: String,
    _profile: tempfile::TempDir,
}

impl Session {
    /// Starts chromedriver and a headless Chromium window `width` × `height`.
    pub async fn start(width: u32, height: u32) -> Self {
        require(CHROMIUM);
        require(CHROMEDRIVER);
        let driver = Driver::start().await;
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let session = driver
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}})),
            )
            .await;
        let id = session["sessionId"].as_str().unwrap().to_string();
        Session {
            driver,
            id,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The viewport's width and height, set.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// The ids of the elements `css` selects (none is not an error).
    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// The one element `css` selects first; panics when there is none.
    pub async fn find(&self, css: &str) -> String {
        self.find_all(css)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css:?}"))
    }

    /// The first element `css` selects, waited for (a click's navigation takes its time).
    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(found) = self.find_all(css).await.into_iter().next() {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no element matches {css:?} within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An element's rendered text.
    pub async fn text(&self, element: &str) -> String {
        self.call(reqwest::Method::GET, &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Clicks an element, as a person would.
    pub async fn click(&self, element: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The page's HTML now.
    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A PNG of the whole page (Chromium's full-size capture), or of one element.
    pub async fn screenshot(&self, element: Option<&str>) -> Vec<u8> {
        let value = match element {
            Some(e) => {
                self.call(reqwest::Method::GET, &format!("/element/{e}/screenshot"), None)
                    .await
            }
            None => {
                // Taller than the window when the page is: Chromium's DevTools full-page capture.
                self.call(
                    reqwest::Method::POST,
                    "/goog/cdp/execute",
                    Some(json!({"cmd": "Page.captureScreenshot", "params": {"captureBeyondViewport": true, "format": "png"}})),
                )
                .await["data"]
                    .clone()
            }
        };
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap()
    }

    /// Ends the session.
    pub async fn quit(self) {
        self.call(reqwest::Method::DELETE, "", None).await;
    }
}

/// Writes `png` to `path`, creating its folder; asserts it shows something.
pub fn save_png(path: &Path, png: &[u8]) {
    assert!(
        png.len() > 5_000,
        "a screenshot of {} shows something ({} bytes)",
        path.display(),
        png.len()
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, png).unwrap();
}

/// A path in the repository (screenshots for the README go to docs/).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
