//! Headless Chromium driven over WebDriver (fantoccini talking to Debian's chromedriver), for
//! tests of the web console.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tempfile::TempDir;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long any one wait for the page may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Whether Debian's chromium and chromium-driver are installed. When they are not, says so on
/// stderr: a browser test that passes without running must not go unnoticed.
pub fn available(test: &str) -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    // Written to the stderr handle itself: the test harness captures eprintln! of a passing
    // test, and this must show on every run.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: chromium/chromedriver not installed ({} missing; \
         apt-get install chromium chromium-driver) ***\n",
        missing.join(", ")
    );
    false
}

/// A chromedriver process with a headless Chromium session. Dropping it (also when a test
/// panics) kills chromedriver and every browser process it started.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
}

impl Browser {
    pub async fn start() -> Browser {
        let driver = Driver::spawn();
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities(&driver.profile_dir()))
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", driver.log()));
        // A fixed size makes screenshots and layout the same from run to run.
        client
            .set_window_size(1280, 800)
            .await
            .expect("set the window size");
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Ends the session (Chromium quits) and then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Waits until the element at `css` exists and its text is `expected`. Re-finds it on every
    /// try: the console may replace elements between refreshes.
    pub async fn wait_for_text(&self, css: &str, expected: &str) {
        self.wait_for_text_that(css, &format!("read {expected:?}"), |text| text == expected)
            .await;
    }

    /// Waits until the element at `css` exists and `check` accepts its text; `what` says what
    /// is awaited, for the failure message.
    pub async fn wait_for_text_that(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut seen = None;
        loop {
            match self.text(css).await {
                Ok(text) if check(&text) => return,
                Ok(text) => seen = Some(text),
                Err(_) => {} // not there yet, or replaced while we read it
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {WAIT:?} for {css:?} to {what}; last read {seen:?}{}",
                    self.diagnosis().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element at `css`.
    pub async fn text(&self, css: &str) -> Result<String, CmdError> {
        self.client.find(Locator::Css(css)).await?.text().await
    }

    /// Waits for the element at `css` and clicks it.
    pub async fn click(&self, css: &str) {
        let found = self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await;
        let element = match found {
            Ok(element) => element,
            Err(e) => panic!("no {css:?} to click: {e}{}", self.diagnosis().await),
        };
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click on {css:?}: {e}"));
    }

    /// Accepts the `window.confirm` dialog that the last action opened, once it is open; returns
    /// its question.
    pub async fn accept_confirm(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(question) = self.client.get_alert_text().await {
                self.client.accept_alert().await.expect("accept the dialog");
                return question;
            }
            if Instant::now() > deadline {
                panic!(
                    "no confirm dialog within {WAIT:?}{}",
                    self.diagnosis().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What a failing wait prints besides its own message: where the page is and what its
    /// error banner says.
    async fn diagnosis(&self) -> String {
        let url = self.client.current_url().await.map(|u| u.to_string());
        let banner = self.text("#error").await;
        format!("\n  page: {url:?}\n  error banner: {banner:?}")
    }
}

/// Chromium headless, as root (no sandbox), with a fresh profile, and nothing that talks to the
/// network by itself.
fn capabilities(profile: &Path) -> fantoccini::wd::Capabilities {
    let args = [
        "--headless=new".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-dev-shm-usage".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("capabilities are an object"),
    }
}

/// chromedriver on a free loopback port, in a process group of its own so that dropping it can
/// kill the Chromium it started too.
struct Driver {
    child: Child,
    port: u16,
    // Holds Chromium's profile and chromedriver's log; removed after the processes are gone.
    dir: TempDir,
}

impl Driver {
    fn spawn() -> Driver {
        use std::os::unix::process::CommandExt;

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("profile")).expect("profile dir");
        // The port is free now; in the instant before chromedriver binds it another process
        // could take it, which the wait below would report.
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = File::create(dir.path().join("chromedriver.log")).expect("log file");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let mut driver = Driver { child, port, dir };
        driver.wait_until_listening();
        driver
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromedriver exited with {status}\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "chromedriver not listening on port {} after {WAIT:?}\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn profile_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("profile")
    }

    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        format!("chromedriver log:\n{log}")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
