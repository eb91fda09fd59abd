//! `[server] admin_token_file`: with it, every admin request needs the bearer token (401 with
//! a challenge otherwise); `check` warns about an admin listener off loopback without one.

use reqwest::StatusCode;

use crate::harness::daemon::{plain_client, Daemon};
use crate::harness::ConfigDir;

const TOKEN: &str = "s3cret-token-for-the-admin-listener";

fn config(admin: &str, token: bool) -> String {
    format!(
        "[server]\nhttps = []\nadmin = \"{admin}\"\n{}\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mx.example.net\"]\nmax_age = 86400\n\n\
         [domains.\"example.org\"]\n",
        if token {
            "admin_token_file = \"admin.token\""
        } else {
            ""
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_every_admin_path() {
    let dir = ConfigDir::with_config(&config("127.0.0.1:0", true));
    let f = dir.write("admin.token", format!("{TOKEN}\n"));
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let d = Daemon::start(&dir.config_path());
    let c = plain_client();
    for path in [
        "/",
        "/domains/example.org",
        "/status",
        "/metrics",
        "/healthz",
        "/nope",
    ] {
        let r = c.get(d.admin_url(path)).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without a token"
        );
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"mta-stsd admin\""
        );
        for wrong in [
            "Bearer wrong",
            "Bearer s3cret-token-for-the-admin-listenerX",
            "Basic czNjcmV0",
            TOKEN,
        ] {
            let r = c
                .get(d.admin_url(path))
                .header("authorization", wrong)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{path} with {wrong:?}"
            );
        }
        let r = c
            .get(d.admin_url(path))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .unwrap();
        let want = if path == "/nope" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(r.status(), want, "{path} with the token");
    }
    // No [tlsrpt]: no report-store series for an alert to fire on.
    let m = c
        .get(d.admin_url("/metrics"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("mta_stsd_domains_by_publication_state{"), "{m}");
    assert!(!m.contains("mta_stsd_tlsrpt_store_up{"), "{m}");
    // `mta-stsd status` sends the config's token.
    let admin = d.admin.unwrap().to_string();
    let cfg = dir.config_path();
    let status = |args: &[&str]| {
        let mut all = vec![
            "--config",
            cfg.to_str().unwrap(),
            "status",
            "--admin",
            &admin,
        ];
        all.extend_from_slice(args);
        crate::harness::run_args(&all, &[])
    };
    status(&[]).assert_status(0);
    // Without it (another config), the daemon refuses.
    std::fs::write(dir.file("admin.token"), "another-token").unwrap();
    assert_ne!(status(&[]).status, Some(0));
    // The token is never logged.
    assert!(!d.lines().iter().any(|l| l.contains(TOKEN)));
}

#[test]
fn check_warns_about_an_open_admin_listener_without_a_token() {
    let warning = "is not on loopback and has no `admin_token_file`";
    let open = ConfigDir::with_config(&config("192.0.2.1:9464", false));
    let out = open.check();
    assert!(
        out.stderr.contains(warning) || out.stdout.contains(warning),
        "{}",
        out.dump()
    );

    let guarded = ConfigDir::with_config(&config("192.0.2.1:9464", true));
    let f = guarded.write("admin.token", TOKEN);
    std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = guarded.check();
    out.assert_status(0);
    assert!(
        !out.stderr.contains(warning) && !out.stdout.contains(warning),
        "{}",
        out.dump()
    );

    let local = ConfigDir::with_config(&config("127.0.0.1:9464", false));
    let out = local.check();
    assert!(
        !out.stderr.contains(warning) && !out.stdout.contains(warning),
        "{}",
        out.dump()
    );

    // An empty token file would let an empty bearer in: refused.
    let empty = ConfigDir::with_config(&config("127.0.0.1:9464", true));
    empty.write("admin.token", "\n");
    let out = empty.check();
    assert_ne!(out.status, Some(0), "{}", out.dump());
    assert!(
        out.stderr.contains("admin.token is empty"),
        "{}",
        out.dump()
    );
}
