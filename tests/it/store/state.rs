//! The store: a state dir written by the previous version imported entry by entry, and
//! PostgreSQL (behind PgBouncer in transaction mode) stopped while serving, and shared by
//! two replicas.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::harness::daemon::{eventually, Daemon};
use crate::harness::pgbouncer::PgBouncer;
use crate::harness::postgres::Postgres;
use crate::harness::{state_dir_for, ConfigDir};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/main-state");
const URL_ENV: &str = "MTA_STSD_TEST_STATE_URL";

/// The config `make.sh` ended with (a and c; b withdrawn, d retiring), publishing to a
/// server that is not there: nothing the test does may record anything.
fn fixture_config(dir: &ConfigDir) {
    let key = dir.write(
        "key.conf",
        "key \"mta-stsd\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n",
    );
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    dir.write(
        crate::harness::MAIN,
        format!(
            "[server]\nhttps = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
             [state]\nretire_after = \"1s\"\n\n[tls]\nself_signed = true\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 5\n\n\
             [dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\ntlsrpt = [\"mailto:tlsrpt@example.org\"]\n\n\
             [providers.p]\nkind = \"rfc2136\"\nserver = \"127.0.0.1:9\"\ntsig_key = \"{}\"\n\n\
             [domains.\"a.example.org\"]\n[domains.\"c.example.org\"]\n",
            key.display()
        ),
    );
}

fn history(dir: &ConfigDir, domain: &str, env: &[(&str, Option<&str>)]) -> Value {
    let out = dir.run_env(&["history", domain, "--format", "json"], env);
    out.assert_status(0);
    serde_json::from_str(&out.stdout).expect("history JSON")
}

/// `history.jsonl` written by main (`tests/fixtures/main-state/make.sh`: ids changed, a
/// domain withdrawn, one re-added while retiring, one retiring) goes into the store on the
/// first start: `history` then says for every domain what main's `history` said, with the
/// file moved away (so it is the store that answers); the file is left as it was, and a
/// second start imports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_written_by_main_is_imported_entry_by_entry() {
    let dir = ConfigDir::new();
    fixture_config(&dir);
    let state = state_dir_for(&dir.config_path());
    std::fs::create_dir_all(&state).unwrap();
    let journal = std::fs::read(format!("{FIXTURE}/history.jsonl")).unwrap();
    std::fs::write(state.join("history.jsonl"), &journal).unwrap();

    let mut d = Daemon::start(&dir.config_path());
    let line = d.wait_log("imported the id history");
    assert!(line.contains("events=23"), "{line}");
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    assert_eq!(std::fs::read(state.join("history.jsonl")).unwrap(), journal);

    std::fs::rename(state.join("history.jsonl"), state.join("moved")).unwrap();
    for name in ["a", "b", "c", "d"] {
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{FIXTURE}/history-{name}.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            history(&dir, &format!("{name}.example.org"), &[]),
            want,
            "{name}"
        );
    }

    std::fs::rename(state.join("moved"), state.join("history.jsonl")).unwrap();
    let mut d = Daemon::start(&dir.config_path());
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    assert!(
        !d.lines()
            .iter()
            .any(|l| l.contains("imported the id history")),
        "imported twice"
    );
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURE}/history-b.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(history(&dir, "b.example.org", &[]), want);
}

/// A config on the shared store, served over HTTP; `domains` under example.org, no DNS
/// provider (what matters here is the history).
fn replica_config(dir: &ConfigDir, replica: &str, domains: &[&str]) {
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
         [state]\nurl_env = \"{URL_ENV}\"\nreplica = \"{replica}\"\nretire_after = \"1s\"\n\n\
         [tls]\nself_signed = true\n\n\
         [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\n"
    );
    for d in domains {
        text.push_str(&format!("[domains.\"{d}.example.org\"]\n"));
    }
    let tmp = dir.write(".next.toml", text);
    std::fs::rename(tmp, dir.config_path()).unwrap();
}

fn domain_status<'s>(s: &'s Value, name: &str) -> Option<&'s Value> {
    s["domains"]
        .as_array()?
        .iter()
        .find(|d| d["domain"] == format!("{name}.example.org"))
}

/// Fetches a's policy and `/healthz` back to back until told to stop; counts failures.
fn hammer(d: &Daemon, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let policy = format!("http://{}/.well-known/mta-sts.txt", d.http.unwrap());
    let host = Some("mta-sts.a.example.org".to_owned());
    crate::harness::daemon::hammer(vec![(policy, host), (d.admin_url("/healthz"), None)], stop)
}

/// S1 and S2 of the hardening issue on PostgreSQL behind PgBouncer: with the database
/// stopped, policies and `/healthz` are answered without one failure, a reload still takes
/// effect, `/status` and `/metrics` say the store is down and how many events wait; once it
/// is back the waiting event is written (and `history`, from any machine with the URL,
/// shows it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_goes_on_while_postgresql_is_stopped_and_the_history_catches_up() {
    let pg = Postgres::start();
    let bouncer = PgBouncer::start(&pg);
    let url = bouncer.url();
    let dir = ConfigDir::new();
    replica_config(&dir, "r1", &["a", "b"]);
    let d = Daemon::start_with(&dir.config_path(), &[(URL_ENV, &url)]);
    let s = d.status().await;
    assert_eq!(s["state"]["engine"], "postgresql", "{s}");
    assert_eq!(s["state"]["up"], true, "{s}");

    let stop = Arc::new(AtomicBool::new(false));
    let fetches = hammer(&d, stop.clone());
    pg.stop();
    let lines = d.lines().len();
    replica_config(&dir, "r1", &["a"]);
    d.wait_log_after(lines, "config reloaded");
    let s = eventually("the store shown down with an event waiting", || async {
        let s = d.status().await;
        (s["state"]["up"] == false && s["state"]["pending_events"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert!(s["state"]["error"].as_str().is_some(), "{s}");
    let m = d.metrics().await;
    assert!(m.contains("mta_stsd_store_up 0"), "{m}");
    // The reload took effect meanwhile: b is on its way out (retire_after is 1 s).
    let b = &domain_status(&s, "b").unwrap()["lifecycle"]["state"];
    assert!(b == "missing" || b == "retiring", "{s}");

    pg.restart();
    eventually("the waiting event written", || async {
        let s = d.status().await;
        (s["state"]["up"] == true && s["state"]["pending_events"] == 0).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (n, failed) = fetches.await.unwrap();
    assert!(n >= 20, "only {n} rounds");
    assert!(
        failed.is_empty(),
        "{} of {n} failed: {failed:?}",
        failed.len()
    );
    assert!(d.metrics().await.contains("mta_stsd_store_up 1"));

    // Read from the database (this machine's state dir has no store file).
    let h = history(&dir, "b.example.org", &[(URL_ENV, Some(&url))]);
    assert!(h["missing_since"].is_u64(), "{h}");
    assert!(!state_dir_for(&dir.config_path())
        .join("state.sqlite")
        .exists());
}

/// Two replicas with their own state dirs on one PostgreSQL (through PgBouncer): a domain
/// removed from A's config retires on A's schedule; when the edit reaches B three seconds
/// later, B serves the same retirement (the same `withdraw_at`), read from the store, rather
/// than starting one of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retirement_decided_by_one_replica_is_the_others() {
    let pg = Postgres::start();
    let bouncer = PgBouncer::start(&pg);
    let url = bouncer.url();
    let (da, db) = (ConfigDir::new(), ConfigDir::new());
    replica_config(&da, "a", &["a", "b"]);
    replica_config(&db, "b", &["a", "b"]);
    let a = Daemon::start_with(&da.config_path(), &[(URL_ENV, &url)]);
    let b = Daemon::start_with(&db.config_path(), &[(URL_ENV, &url)]);

    replica_config(&da, "a", &["a"]);
    let on_a = eventually("b retiring on A", || async {
        let s = a.status().await;
        let l = domain_status(&s, "b")?["lifecycle"].clone();
        (l["state"] == "retiring").then_some(l)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    replica_config(&db, "b", &["a"]);
    let on_b = eventually("b retiring on B", || async {
        let s = b.status().await;
        let l = domain_status(&s, "b")?["lifecycle"].clone();
        (l["state"] == "retiring").then_some(l)
    })
    .await;
    assert_eq!(on_a, on_b);
    let s = b.status().await;
    assert_eq!(s["state"]["replica"], "b", "{s}");
    // Through PgBouncer, without `listen`: the poll alone brought A's edit.
    assert_eq!(s["state"]["listen"], "off", "{s}");
    assert!(b
        .metrics()
        .await
        .contains("mta_stsd_store_follows_total{cause=\"notify\"} 0"));
}

/// A config of `domains` under example.org on the store `state` (a `[state]` line), as
/// `replica`.
fn group_config(dir: &ConfigDir, replica: &str, state: &str, domains: &[&str]) {
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
         [state]\n{state}\nreplica = \"{replica}\"\nretire_after = \"1s\"\nmax_retire = 10\n\n\
         [tls]\nself_signed = true\n\n\
         [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\n"
    );
    for d in domains {
        text.push_str(&format!("[domains.\"{d}.example.org\"]\n"));
    }
    dir.write(crate::harness::MAIN, text);
}

/// `serve` on `dir`'s config, which must refuse to start: its exit code and stderr. Killed
/// after a minute, so a start that is not refused fails the test instead of hanging it.
pub(crate) fn refused_start(dir: &ConfigDir, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let bin = crate::harness::command().get_program().to_owned();
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["-s", "KILL", "60"])
        .arg(bin)
        .arg("--config")
        .arg(dir.config_path())
        .arg("serve")
        .env("STATE_DIRECTORY", state_dir_for(&dir.config_path()))
        .env_remove("MTA_STSD_CONFIG")
        .env_remove("NOTIFY_SOCKET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running timeout(1) and mta-stsd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// S3 of the hardening issue: a second config on A's store that serves none of A's domains
/// is refused at start, naming both configs, before it records anything (A's domains keep
/// their history, B's domain never gets one); a replica whose config shares a domain with A's
/// (a rolling update: one added, one removed) starts, and serves.
async fn unrelated_configs_on_one_store(state: &str, env: &[(&str, &str)]) {
    let (da, db, dc) = (ConfigDir::new(), ConfigDir::new(), ConfigDir::new());
    group_config(&da, "a", state, &["a", "b"]);
    group_config(&db, "b", state, &["x"]);
    group_config(&dc, "c", state, &["a", "c"]);
    let hist_env: Vec<(&str, Option<&str>)> = env.iter().map(|(k, v)| (*k, Some(*v))).collect();
    let a = Daemon::start_with(&da.config_path(), env);
    let before = history(&da, "b.example.org", &hist_env);

    let (code, stderr) = refused_start(&db, env);
    assert_eq!(code, Some(1), "{stderr}");
    for want in [
        "refusing to start",
        "a.example.org, b.example.org",
        &format!("replica \"a\" with {}", da.config_path().display()),
        &format!("replica \"b\" with {}", db.config_path().display()),
    ] {
        assert!(stderr.contains(want), "{want:?} missing from:\n{stderr}");
    }
    assert_eq!(history(&da, "b.example.org", &hist_env), before);
    let s = a.status().await;
    assert!(domain_status(&s, "x").is_none(), "{s}");

    let c = Daemon::start_with(&dc.config_path(), env);
    assert!(
        !c.lines().iter().any(|l| l.contains("refusing")),
        "{:?}",
        c.lines()
    );
    let s = c.status().await;
    assert!(domain_status(&s, "c").is_some(), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_s3_an_unrelated_config_on_one_sqlite_dir_is_refused() {
    let shared = tempfile::tempdir().unwrap();
    let state = format!("dir = \"{}\"", shared.path().display());
    unrelated_configs_on_one_store(&state, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue23_s3_an_unrelated_config_on_one_postgresql_is_refused() {
    let pg = Postgres::start();
    let url = pg.url();
    let state = format!("url_env = \"{URL_ENV}\"");
    unrelated_configs_on_one_store(&state, &[(URL_ENV, &url)]).await;
}

/// `replica_config` with `[state] listen = true`, on a direct connection.
fn listening_config(dir: &ConfigDir, replica: &str, domains: &[&str]) {
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
         [state]\nurl_env = \"{URL_ENV}\"\nreplica = \"{replica}\"\nlisten = true\n\n\
         [tls]\nself_signed = true\n\n\
         [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\n"
    );
    for d in domains {
        text.push_str(&format!("[domains.\"{d}.example.org\"]\n"));
    }
    let tmp = dir.write(".next.toml", text);
    std::fs::rename(tmp, dir.config_path()).unwrap();
}

/// `mta_stsd_store_follows_total{cause}`: the follow's reads started by `cause`.
async fn follows(d: &Daemon, cause: &str) -> u64 {
    let m = d.metrics().await;
    let want = format!("mta_stsd_store_follows_total{{cause=\"{cause}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .unwrap_or_else(|| panic!("no {want} in\n{m}"))
        .trim()
        .parse()
        .unwrap()
}

/// Two replicas with `[state] listen` on a direct PostgreSQL connection: an idle pair reads
/// nothing by notification (the poll goes on); a domain added on A (its policy id recorded
/// in the history) reaches B by a notification, not only by the next poll; and again after
/// PostgreSQL restarted, once B's listener has reconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_listen_a_replicas_event_wakes_the_others_follow() {
    let pg = Postgres::start();
    let url = pg.url();
    let (da, db) = (ConfigDir::new(), ConfigDir::new());
    listening_config(&da, "a", &["a"]);
    listening_config(&db, "b", &["a"]);
    let a = Daemon::start_with(&da.config_path(), &[(URL_ENV, &url)]);
    let b = Daemon::start_with(&db.config_path(), &[(URL_ENV, &url)]);
    for d in [&a, &b] {
        eventually("listening", || async {
            (d.status().await["state"]["listen"] == "listening").then_some(())
        })
        .await;
    }

    // Idle: two polls on B, and not one read woken by a notification.
    let notified = follows(&b, "notify").await;
    let polled = follows(&b, "poll").await;
    eventually("two polls on B", || async {
        (follows(&b, "poll").await >= polled + 2).then_some(())
    })
    .await;
    assert_eq!(follows(&b, "notify").await, notified);

    let seq = a.status().await["state"]["seq"].as_i64().unwrap();
    listening_config(&da, "a", &["a", "b"]);
    let written = eventually("A records b's id", || async {
        let s = a.status().await["state"]["seq"].as_i64()?;
        (s > seq).then_some(s)
    })
    .await;
    eventually("B reads A's rows by a notification", || async {
        let s = b.status().await["state"]["seq"].as_i64()?;
        (s >= written && follows(&b, "notify").await > notified).then_some(())
    })
    .await;

    // PostgreSQL restarted: B's listener reconnects (the loss logged once) and hears again.
    pg.stop();
    eventually("B's listener lost", || async {
        (b.status().await["state"]["listen"] == "reconnecting").then_some(())
    })
    .await;
    pg.restart();
    b.wait_log("listening to the store's notifications again");
    let lost = |d: &Daemon| {
        d.lines()
            .iter()
            .filter(|l| l.contains("listening to the store's notifications:"))
            .count()
    };
    assert_eq!(lost(&b), 1, "{:?}", b.lines());
    let notified = follows(&b, "notify").await;
    let seq = eventually("A writes again", || async {
        a.status().await["state"]["up"].as_bool()?.then_some(())?;
        a.status().await["state"]["seq"].as_i64()
    })
    .await;
    listening_config(&da, "a", &["a", "b", "c"]);
    let written = eventually("A records c's id", || async {
        let s = a.status().await["state"]["seq"].as_i64()?;
        (s > seq).then_some(s)
    })
    .await;
    eventually("B reads A's rows by a notification again", || async {
        let s = b.status().await["state"]["seq"].as_i64()?;
        (s >= written && follows(&b, "notify").await > notified).then_some(())
    })
    .await;
}
