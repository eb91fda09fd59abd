//! Headless Chromium (Debian's `chromium`, installed by scripts/test.sh) for the dashboard
//! tests: a page's DOM after rendering, the console messages it logged (a CSP violation is
//! one), and screenshots. Each run gets a fresh profile and no network but what the page asks.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A slow start on a loaded CI machine still fits; a hung browser does not hang the suite.
const TIMEOUT: Duration = Duration::from_secs(120);

/// What a page left after loading.
pub struct Page {
    pub dom: String,
    /// Console messages (errors, CSP violations, warnings) the page logged.
    pub console: Vec<String>,
}

/// Loads `url` and returns the rendered DOM and the page's console messages.
pub fn load(url: &str) -> Page {
    let dir = tempfile::tempdir().unwrap();
    let (dom, log) = run(dir.path(), &["--dump-dom", url]);
    Page {
        dom,
        console: console(&log),
    }
}

/// A PNG of `url` at `width` x `height` CSS pixels, written to `out`.
pub fn screenshot(url: &str, out: &Path, width: u32, height: u32) {
    let dir = tempfile::tempdir().unwrap();
    let shot = format!("--screenshot={}", out.display());
    let size = format!("--window-size={width},{height}");
    run(dir.path(), &[&shot, &size, "--hide-scrollbars", url]);
    assert!(
        out.exists(),
        "chromium wrote no screenshot to {}",
        out.display()
    );
}

/// The console lines of Chromium's log (`…:CONSOLE:…] "message", source: …`).
pub fn console(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect()
}

/// Runs chromium with `args` in the profile `dir`: its stdout, and its log (stderr).
fn run(dir: &Path, args: &[&str]) -> (String, String) {
    let profile = format!("--user-data-dir={}", dir.join("profile").display());
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            &profile,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .current_dir(dir)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install the Debian package `chromium`")
        });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {TIMEOUT:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}):\n{log}");
    (std::fs::read_to_string(&out).unwrap(), log)
}
