//! A real headless Chromium, driven over WebDriver (chromedriver) with fantoccini. Shared
//! by the page test and the page benchmark (`benches/e2e/page.rs` includes this file).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them this panics with that advice:
//! a browser test that cannot run must fail, not pass.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// Where the programs are: `CHROME_BIN` and `CHROMEDRIVER`, else found on `PATH`.
fn program(variable: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} is not installed, and the browser test needs it: install Chromium and its WebDriver \
         with `apt-get install chromium chromium-driver` (or point {variable} at the program)",
        names[0]
    );
}

/// A headless Chromium session, with its chromedriver and its own fresh profile.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session `width` × `height` pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = program(
            "CHROME_BIN",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let chromedriver = program("CHROMEDRIVER", &["chromedriver"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        // chromedriver says when it listens; waiting for that line, not for a time.
        let mut lines = tokio::io::BufReader::new(driver.stdout.take().expect("piped")).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's output") {
                if line.contains("started successfully") {
                    return;
                }
            }
            panic!("chromedriver exited before it listened");
        };
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .expect("chromedriver listens within 30 s");
        // Keep draining its output, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = std::env::temp_dir().join(format!(
            "price-history-chromium-{}",
            uuid::Uuid::now_v7().simple()
        ));
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--no-zygote".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": chromium, "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("Chromium starts within 60 s")
        .unwrap_or_else(|e| {
            panic!(
                "Chromium ({}) does not start a session: {e}",
                chromium.display()
            )
        });
        let browser = Browser {
            client,
            driver,
            profile,
        };
        browser.resize(width, height).await;
        browser
    }

    /// Sets the viewport (not the window) to `width` × `height` CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("the window can be resized");
        // A headless window's outer size may still differ from its viewport: correct once.
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .expect("a script runs");
        let (w, h) = (
            inner[0].as_u64().unwrap_or(u64::from(width)) as i64,
            inner[1].as_u64().unwrap_or(u64::from(height)) as i64,
        );
        let (dw, dh) = (i64::from(width) - w, i64::from(height) - h);
        if dw != 0 || dh != 0 {
            self.client
                .set_window_size(
                    (i64::from(width) + dw) as u32,
                    (i64::from(height) + dh) as u32,
                )
                .await
                .expect("the window can be resized");
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn run(&self, script: &str, args: Vec<serde_json::Value>) -> serde_json::Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("the script fails: {e}\n{script}"))
    }

    /// Waits (WebDriver's explicit wait) until an element matches `css`.
    pub async fn wait_for(&self, css: &str, what: &str) {
        self.client
            .wait()
            .at_most(Duration::from_secs(60))
            .every(Duration::from_millis(50))
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("timed out waiting for {what} ({css}): {e}"));
    }

    /// Clicks the element `css` names, as a person would.
    pub async fn click(&self, css: &str, what: &str) {
        self.client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {what} ({css}): {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("{what} cannot be clicked: {e}"));
    }

    /// Ends the session and chromedriver, and removes the profile.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.start_kill();
        let _ = self.driver.wait().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
