//! `serve` while its config changes: reloads under load, broken and half-written files, SIGHUP,
//! includes, ConfigMap symlink swaps, and no reload without a change.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use super::{config_text, policy_url, replace_config, sample, two_domains, BODY_A, PATH};
use crate::harness::daemon::{eventually, plain_client, Daemon, TestCa};
use crate::harness::MAIN;

/// A client polls without pause while the config is rewritten 20 times, in place and by
/// rename: no request fails, and each new body is served after its change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_loses_no_request() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let https = d.https.unwrap();
    let client = ca.client(&["mta-sts.a.example"], https, false);
    let url = policy_url("mta-sts.a.example", https);

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (client, url, stop, served) =
            (client.clone(), url.clone(), stop.clone(), served.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        let body = r.text().await.unwrap_or_default();
                        if !body.starts_with(
                            "version: STSv1\r\nmode: enforce\r\nmx: mail.a.example\r\nmax_age: ",
                        ) {
                            failures.push(format!("odd body {body:?}"));
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            failures
        })
    };

    for i in 0..20u32 {
        let max_age = (100_000 + i).to_string();
        let text = config_text("", &max_age);
        if i % 2 == 0 {
            std::fs::write(dir.config_path(), &text).unwrap();
        } else {
            replace_config(&dir, &text);
        }
        let want = format!("max_age: {max_age}\r\n");
        eventually(&format!("change {i} to be served"), || {
            let (client, url, want) = (client.clone(), url.clone(), want.clone());
            async move {
                let body = client.get(&url).send().await.ok()?.text().await.ok()?;
                body.ends_with(&want).then_some(())
            }
        })
        .await;
        // The id follows the body.
        let s = d.status().await;
        let expected = std::process::Command::new(crate::harness::BIN)
            .args([
                "--config",
                dir.config_path().to_str().unwrap(),
                "policy",
                "a.example",
            ])
            .output()
            .unwrap();
        let id = String::from_utf8(expected.stderr).unwrap();
        assert_eq!(
            format!("id: {}\n", s["domains"][0]["policy_id"].as_str().unwrap()),
            id
        );
    }
    stop.store(true, Ordering::Relaxed);
    let failures = poller.await.unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during reloads: {failures:?}"
    );
    assert!(
        served.load(Ordering::Relaxed) >= 20,
        "the poller hardly ran"
    );
}

#[tokio::test]
async fn broken_config_keeps_the_last_good_one_serving() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let get_a = || async {
        plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.a.example")
            .send()
            .await
            .unwrap()
    };
    let broken = config_text("", "86400").replace("mode = \"enforce\"", "mode = \"enforcing\"");
    replace_config(&dir, &broken);
    let s = eventually("the failed reload in /status", || async {
        let s = d.status().await;
        (s["config"]["last_reload"]["ok"] == false).then_some(s)
    })
    .await;
    let problems = s["config"]["last_reload"]["problems"].as_array().unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("enforcing"))
        .unwrap()
        + 1;
    let want = format!(
        "{}:{line}:8: error: mode `enforcing`",
        dir.config_path().display()
    );
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&want)),
        "{want} not in {problems:?}"
    );
    let r = get_a().await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), BODY_A);
    let m = d.metrics().await;
    assert_eq!(sample(&m, "mta_stsd_config_last_reload_success"), 0.0);
    assert!(sample(&m, "mta_stsd_config_reloads_total{result=\"error\"}") >= 1.0);
    d.wait_log(&want);

    // Fixed again: served and reported as such.
    replace_config(&dir, &config_text("", "90000"));
    eventually("the fixed config", || async {
        let body = get_a().await.text().await.unwrap();
        body.ends_with("max_age: 90000\r\n").then_some(())
    })
    .await;
    assert_eq!(d.status().await["config"]["last_reload"]["ok"], true);
}

#[tokio::test]
async fn sighup_reloads_and_included_files_are_watched() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let text = format!(
        "include = [\"domains.d/*.toml\"]\n{}",
        config_text("", "86400")
    );
    std::fs::create_dir(dir.file("domains.d")).unwrap();
    dir.write(MAIN, &text);
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();
    let get = |host: &'static str| async move {
        plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", host)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(
        get("mta-sts.c.example").await.status(),
        StatusCode::NOT_FOUND
    );

    // A new file in the include directory: its domain is served (self-signed, as no
    // configured certificate covers it).
    dir.write(MAIN, text.replace("[tls]\n", "[tls]\nself_signed = true\n"));
    dir.write(
        "domains.d/c.toml",
        "[domains.\"c.example\"]\nmode = \"testing\"\n",
    );
    eventually("c.example from the included file", || async {
        (get("mta-sts.c.example").await.status() == StatusCode::OK).then_some(())
    })
    .await;
    // Edited in place.
    dir.write(
        "domains.d/c.toml",
        "[domains.\"c.example\"]\nmode = \"none\"\n",
    );
    eventually("the edited included file", || async {
        get("mta-sts.c.example")
            .await
            .text()
            .await
            .unwrap()
            .contains("mode: none")
            .then_some(())
    })
    .await;

    // SIGHUP reloads even without a change.
    let ok_before = sample(
        &d.metrics().await,
        "mta_stsd_config_reloads_total{result=\"ok\"}",
    );
    let seen = d.lines().len();
    d.signal("HUP");
    d.wait_log_after(seen, "SIGHUP: reloading");
    eventually("the SIGHUP reload to count", || async {
        let now = sample(
            &d.metrics().await,
            "mta_stsd_config_reloads_total{result=\"ok\"}",
        );
        (now > ok_before).then_some(())
    })
    .await;
}

/// Kubernetes ConfigMap volumes: the config is a symlink through `..data`, which is swapped.
#[tokio::test]
async fn configmap_symlink_swap_is_seen() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let text = std::fs::read_to_string(dir.config_path()).unwrap();
    std::fs::remove_file(dir.config_path()).unwrap();
    let version = |n: &str, body: &str| {
        let v = dir.file(n);
        std::fs::create_dir(&v).unwrap();
        // Certificate paths are relative to the config file's directory (the volume).
        std::fs::write(v.join(MAIN), body).unwrap();
    };
    version("..2026_01", &text);
    std::os::unix::fs::symlink("..2026_01", dir.file("..data")).unwrap();
    std::os::unix::fs::symlink("..data/mta-stsd.toml", dir.config_path()).unwrap();
    let d = Daemon::start(&dir.config_path());
    let http = d.http.unwrap();

    version(
        "..2026_02",
        &text.replace("max_age = 86400", "max_age = 7200"),
    );
    std::os::unix::fs::symlink("..2026_02", dir.file("..data_tmp")).unwrap();
    std::fs::rename(dir.file("..data_tmp"), dir.file("..data")).unwrap();
    eventually("the swapped ConfigMap", || async {
        let body = plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.b.example")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.ends_with("max_age: 7200\r\n").then_some(())
    })
    .await;
}

/// `--config` relative to the working directory (as in README's first command): changes are
/// still seen, though the watcher reports absolute paths.
#[tokio::test]
async fn relative_config_path_is_watched_too() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start_in(Some(dir.path()), std::path::Path::new(MAIN), &[]);
    let http = d.http.unwrap();
    replace_config(&dir, &config_text("", "77777"));
    eventually("the edit to be served", || async {
        let body = plain_client()
            .get(format!("http://{http}{PATH}"))
            .header("host", "mta-sts.a.example")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        body.ends_with("max_age: 77777\r\n").then_some(())
    })
    .await;
}

/// Regression (lifecycle issue): any file event used to start a reload, and every reload's own
/// reads were reported again, so one `cat` made the daemon reload ~15 times a second forever.
#[tokio::test]
async fn reads_cause_no_reload_and_one_edit_causes_one() {
    let ca = TestCa::new();
    let dir = two_domains(&ca, "");
    let d = Daemon::start(&dir.config_path());
    let reloads = || async {
        sample(
            &d.metrics().await,
            "mta_stsd_config_reloads_total{result=\"ok\"}",
        )
    };
    // Absence can only be observed over a window: 10 debounce periods.
    let idle = Duration::from_secs(2);
    let before = reloads().await;

    // Others read the files: cat, and `check` (which opens every file, certificates too).
    for name in [MAIN, "a.pem", "a.key", "b.pem"] {
        std::fs::read(dir.file(name)).unwrap();
    }
    dir.check().assert_clean();
    tokio::time::sleep(idle).await;
    assert_eq!(reloads().await, before, "reads made the daemon reload");

    // One edit in place: exactly one reload, and then the daemon is idle again (its own
    // reload reads the files).
    dir.write(MAIN, config_text("", "90000"));
    eventually("the edit's reload", || async {
        (reloads().await > before).then_some(())
    })
    .await;
    tokio::time::sleep(idle).await;
    assert_eq!(reloads().await, before + 1.0, "one edit, one reload");
}
