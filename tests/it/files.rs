//! SPEC "Config files": files that are no regular file or too large are refused by name, by
//! `check` and by a reload (the last good config stays, `/status` says why).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::harness::daemon::{eventually, plain_client, Daemon, TestCa};
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`check` of {} hung", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    assert_eq!(d.status().await["config"]["last_reload"]["ok"], true);
}
