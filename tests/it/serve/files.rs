//! SPEC "Config files": files that are no regular file or too large are refused by name, by
//! `check` and by a reload (the last good config stays, `/status` says why); a file read
//! mid-write never becomes the served config.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use crate::harness::daemon::{eventually, plain_client, Daemon, TestCa};
use crate::harness::process::wait_bounded;
use crate::harness::{command, ConfigDir, MAIN};
use crate::serve::{config_text, replace_config, two_domains, BODY_A, BODY_B, PATH};

/// `mta-stsd --config <config> check`, killed if it runs past a bound: (exit code, stderr).
fn check_bounded(config: &Path) -> (Option<i32>, String) {
    let mut child = command()
        .arg("--config")
        .arg(config)
        .arg("check")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let what = format!("`check` of {}", config.display());
    wait_bounded(&mut child, Duration::from_secs(20), &what);
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

const MINIMAL: &str = "[server]\nhttps = [\"127.0.0.1:0\"]\n[tls]\nself_signed = true\n\
                       [policy]\nmode = \"testing\"\nmx = [\"mx.example\"]\n";

#[test]
fn check_refuses_odd_files_by_name() {
    let dir = ConfigDir::new();
    dir.write("d/ok.toml", "[domains.\"ok.example\"]\n");
    mkfifo(&dir.file("d/fifo.toml"));
    std::os::unix::fs::symlink("/dev/zero", dir.file("d/zero.toml")).unwrap();
    std::os::unix::fs::symlink("loop.toml", dir.file("d/loop.toml")).unwrap();
    let big = std::fs::File::create(dir.file("d/big.toml")).unwrap();
    // Sparse: no disk used, and never read.
    big.set_len(257 << 20).unwrap();
    drop(big);

    for (include, want) in [
        ("d/fifo.toml", "not a regular file but a FIFO"),
        ("d/zero.toml", "not a regular file but a character device"),
        ("d/loop.toml", "Too many levels of symbolic links"),
        ("d/big.toml", "larger than 256 MiB"),
    ] {
        // Named directly, and matched by a pattern beside a good file.
        for pattern in [include, "d/*.toml"] {
            dir.write(MAIN, format!("include = [\"{pattern}\"]\n{MINIMAL}"));
            let (code, out) = check_bounded(&dir.config_path());
            assert_eq!(code, Some(1), "{pattern}: {out}");
            let line = format!(
                "{}: error: cannot read the included file: {want}",
                dir.file(include).display()
            );
            assert!(out.contains(&line), "{pattern}: want {line:?} in:\n{out}");
        }
        std::fs::remove_file(dir.file(include)).unwrap();
    }
    // All gone: the pattern matches the good file only.
    dir.write(MAIN, format!("include = [\"d/*.toml\"]\n{MINIMAL}"));
    assert_eq!(check_bounded(&dir.config_path()).0, Some(0));

    // The main file itself.
    let (code, out) = check_bounded(Path::new("/dev/zero"));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("/dev/zero: error: cannot read the config file: not a regular file but a character device"),
        "{out}"
    );
    let fifo = dir.file("main-fifo.toml");
    mkfifo(&fifo);
    let (code, out) = check_bounded(&fifo);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a regular file but a FIFO"), "{out}");
}

/// A reload meeting a FIFO (included, or as the main file) or `/dev/zero`: refused by name,
/// the last good config still served, `/status` saying why; later reloads still happen.
#[tokio::test]
async fn reload_refuses_odd_files_and_keeps_serving() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let get = |host: &'static str| async move {
        let r = plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    let good = config_text("", "86400");
    mkfifo(&dir.file("fifo.toml"));
    std::os::unix::fs::symlink("/dev/zero", dir.file("zero.toml")).unwrap();
    let mut failures = 0;
    for (include, want) in [
        ("fifo.toml", "not a regular file but a FIFO"),
        ("zero.toml", "not a regular file but a character device"),
    ] {
        replace_config(&dir, &format!("include = [\"{include}\"]\n{good}"));
        failures += 1;
        let file = dir.file(include).display().to_string();
        let s = eventually("the refused reload in /status", || async {
            let s = d.status().await;
            let problems = s["config"]["last_reload"]["problems"].to_string();
            (problems.contains(&file) && problems.contains(want)).then_some(s)
        })
        .await;
        assert_eq!(s["config"]["last_reload"]["ok"], false);
        let m = d.metrics().await;
        let failed = crate::serve::sample(&m, "mta_stsd_config_reloads_total{result=\"error\"}");
        assert_eq!(failed, f64::from(failures));
        assert_eq!(
            get("mta-sts.a.example").await,
            (StatusCode::OK, BODY_A.into())
        );
        assert_eq!(
            get("mta-sts.b.example").await,
            (StatusCode::OK, BODY_B.into())
        );
    }

    // The main file replaced by a FIFO: refused, not a reload stuck forever.
    let main_fifo = dir.file("new-main");
    mkfifo(&main_fifo);
    std::fs::rename(&main_fifo, dir.config_path()).unwrap();
    let want = format!(
        "{}: error: cannot read the config file: not a regular file but a FIFO",
        dir.config_path().display()
    );
    eventually("the FIFO main file refused", || async {
        let s = d.status().await;
        let p = s["config"]["last_reload"]["problems"].to_string();
        p.contains(&want).then_some(())
    })
    .await;
    assert_eq!(
        get("mta-sts.a.example").await,
        (StatusCode::OK, BODY_A.into())
    );
    // A good file again: loaded.
    replace_config(&dir, &config_text("", "90000"));
    eventually("the good config after the FIFO", || async {
        get("mta-sts.a.example")
            .await
            .1
            .ends_with("max_age: 90000\r\n")
            .then_some(())
    })
    .await;
    // /status follows the swap: wait for it.
    eventually("the good reload in /status", || async {
        (d.status().await["config"]["last_reload"]["ok"] == true).then_some(())
    })
    .await;
}

/// Domains first, `[policy]` last: cut before its `max_age`, the file is valid, has every
/// domain, and gives them all a third policy (the default `max_age`).
fn policy_last(max_age: u32) -> String {
    let text = config_text("", &max_age.to_string());
    let policy = text.find("[policy]").unwrap();
    let domains = text.find("[domains.").unwrap();
    format!(
        "{}{}\n{}",
        &text[..policy],
        &text[domains..],
        &text[policy..domains]
    )
}

/// The case: a file rewritten in place in two chunks 1.2 s apart, where the first
/// chunk alone is a valid config with other policies. A client polling all the while sees
/// only the old policies, then only the new ones; each rewrite is one reload.
#[tokio::test]
async fn a_file_written_in_place_in_two_chunks_is_never_served_half_written() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    dir.write(MAIN, policy_last(86400));
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let bodies = |max_age: &str| {
        (
            BODY_A.replace("86400", max_age),
            BODY_B.replace("86400", max_age),
        )
    };
    // Each variant: 86400 → 90000 with one handle held over the pause, then back with a close
    // and a reopen between the chunks.
    for (from, to, reopen) in [(86400, 90000, false), (90000, 86400, true)] {
        let text = policy_last(to);
        let cut = text.find("max_age = ").unwrap();
        let (first, second) = (text[..cut].to_owned(), text[cut..].to_owned());
        let (want_from, want_to) = (bodies(&from.to_string()), bodies(&to.to_string()));
        let stop = Arc::new(AtomicBool::new(false));
        let poller = {
            let stop = stop.clone();
            let (want_from, want_to) = (want_from.clone(), want_to.clone());
            tokio::spawn(async move {
                let client = plain_client();
                let mut seen_new = [false, false];
                let mut polls = 0;
                while !stop.load(Ordering::Relaxed) {
                    for (i, host) in ["mta-sts.a.example", "mta-sts.b.example"]
                        .iter()
                        .enumerate()
                    {
                        let r = client
                            .get(format!("http://{http}{PATH}"))
                            .header("host", *host)
                            .send()
                            .await
                            .unwrap();
                        let status = r.status();
                        let body = r.text().await.unwrap();
                        let (f, t) = if i == 0 {
                            (&want_from.0, &want_to.0)
                        } else {
                            (&want_from.1, &want_to.1)
                        };
                        assert_eq!(status, StatusCode::OK, "{host} after {polls} polls: {body}");
                        if &body == t {
                            seen_new[i] = true;
                        } else {
                            assert_eq!(&body, f, "{host}: neither the old nor the new policy");
                            assert!(!seen_new[i], "{host}: back to the old policy");
                        }
                    }
                    polls += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                polls
            })
        };
        let path = dir.config_path();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            f.write_all(first.as_bytes()).unwrap();
            if reopen {
                drop(f);
                std::thread::sleep(Duration::from_millis(1200));
                f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
            } else {
                std::thread::sleep(Duration::from_millis(1200));
            }
            f.write_all(second.as_bytes()).unwrap();
        })
        .await
        .unwrap();
        assert_eq!(std::fs::read_to_string(dir.config_path()).unwrap(), text);
        eventually("the whole new file served", || async {
            let r = plain_client()
                .get(format!("http://{http}{PATH}"))
                .header("host", "mta-sts.b.example")
                .send()
                .await
                .ok()?;
            (r.text().await.ok()? == want_to.1).then_some(())
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let polls = poller.await.unwrap();
        assert!(polls > 10, "only {polls} polls");
    }
    // The count follows the swap: wait for it, then it must be exactly one per rewrite.
    let ok = "mta_stsd_config_reloads_total{result=\"ok\"}";
    let n = eventually("both reloads counted", || async {
        let n = crate::serve::sample(&d.metrics().await, ok);
        (n >= 2.0).then_some(n)
    })
    .await;
    assert_eq!(n, 2.0, "one reload per rewrite");
}
