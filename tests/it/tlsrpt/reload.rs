//! `[tlsrpt]` added by a reload (issue 23, what a new admin hit): every report got 503 "store
//! is not open" until a restart, without a log line. Now the store opens at the reload.

use reqwest::StatusCode;

use crate::harness::daemon::{Daemon, TestCa};
use crate::harness::MAIN;
use crate::tlsrpt::receiver::{fixture, setup, Poster, JSON};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlsrpt_added_by_reload_opens_the_store() {
    let ca = TestCa::new();
    let dir = setup(&ca, "");
    let full = std::fs::read_to_string(dir.config_path()).unwrap();
    let (without, _) = full.split_once("[tlsrpt]").unwrap();
    dir.write(MAIN, without);
    let state = dir.path().join("state");
    let d = Daemon::start_with(
        &dir.config_path(),
        &[("STATE_DIRECTORY", state.to_str().unwrap())],
    );
    d.wait_log("ready");
    assert!(
        !d.lines().iter().any(|l| l.contains("TLS-RPT store open")),
        "no store without [tlsrpt]"
    );

    let seen = d.lines().len();
    dir.write(MAIN, &full);
    d.wait_log_after(seen, "config reloaded");
    d.wait_log_after(seen, "TLS-RPT store open");
    let p = Poster::new(&ca, &d, false);
    let (s, text) = p.post(JSON, fixture("rfc8460.json")).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
}
