//! `serve` as a process: SIGTERM, systemd notifications, a start that cannot load its config.

use std::time::Duration;

use super::two_domains;
use crate::harness::daemon::{Daemon, TestCa};
use crate::harness::ConfigDir;

#[test]
fn sigterm_exits_zero_within_the_bound() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "shutdown_timeout = \"2s\"");
    let mut d = Daemon::start(&dir.config_path());
    // An idle keep-alive connection must not hold the shutdown up.
    let _idle = std::net::TcpStream::connect(d.http.unwrap()).unwrap();
    d.signal("TERM");
    let status = d.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", d.lines().join("\n"));
    assert!(d
        .lines()
        .iter()
        .any(|l| l.contains("SIGTERM: shutting down")));
}

#[test]
fn systemd_notify_ready_reloading_stopping() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let sock_path = dir.file("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut d = Daemon::start_with(
        &dir.config_path(),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    assert!(recv().contains("READY=1"));
    d.signal("HUP");
    let reloading = recv();
    assert!(reloading.contains("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    assert!(recv().contains("READY=1"));
    d.signal("TERM");
    assert!(recv().contains("STOPPING=1"));
    assert_eq!(d.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn a_config_that_cannot_load_fails_the_start() {
    let dir = ConfigDir::with_config("[server]\nhttps = [\"127.0.0.1:0\"]\nbogus = 1\n");
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--config", dir.config_path().to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":3:1: error: unknown key `bogus`"),
        "{stderr}"
    );
}
