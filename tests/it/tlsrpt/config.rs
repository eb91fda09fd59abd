//! `[tlsrpt]` in the config: accepted as the SPEC writes it, every mistake at file:line:col.

use crate::harness::{pos1, write_cert, ConfigDir};

const BASE: &str = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800

[domains."example.org"]
"#;

#[test]
fn tlsrpt_section_as_the_spec_writes_it() {
    let text = format!(
        "{BASE}\n[tlsrpt]\nhosts = [\"tlsrpt.example.org\"]\npath = \"/v1/tlsrpt\"\nstore = \"sqlite\"\nretention = \"400d\"\nmax_report_bytes = 4194304\nresolver = \"127.0.0.1:53\"\nparse_budget_bytes = 33554432\nmax_store_bytes = 1073741824\nmax_reports = 100000\n"
    );
    let d = ConfigDir::with_config(&text);
    d.check().assert_status(0);
}

/// Issue 23: the parse budget and the store's quotas; a budget below the report limit would
/// refuse every report that large, forever.
#[test]
fn tlsrpt_budget_and_quotas() {
    let text = format!(
        "{BASE}\n[tlsrpt]\nmax_report_bytes = 1000\nparse_budget_bytes = 999\nmax_store_bytes = 0\nmax_reports = -1\n"
    );
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    let at = |s| pos1(&text, s);
    out.assert_error(&d.config_path(), at("999"), "at least `max_report_bytes`");
    out.assert_error(
        &d.config_path(),
        at("0\nmax_reports"),
        "`max_store_bytes` must be positive",
    );
    out.assert_error(&d.config_path(), at("-1"), "`max_reports` must be positive");
    out.assert_error_count(3);
}

/// Issue 23 item 5: the per-sender rate limit's keys, taken as README writes them; a burst
/// of 0 (no report ever taken) and a refill of 0 (no limit at all) are errors at their place.
#[test]
fn tlsrpt_rate_limit_keys() {
    let ok = format!("{BASE}\n[tlsrpt]\nrate_burst = 100\nrate_refill = \"1s\"\n");
    ConfigDir::with_config(&ok).check().assert_status(0);
    let text = format!("{BASE}\n[tlsrpt]\nrate_burst = 0\nrate_refill = \"0s\"\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    let at = |s| pos1(&text, s);
    out.assert_error(
        &d.config_path(),
        at("0\nrate_refill"),
        "`rate_burst` must be positive",
    );
    out.assert_error(&d.config_path(), at("\"0s\""), "`rate_refill`");
    out.assert_error_count(2);
}

#[test]
fn tlsrpt_postgres_url_from_env_or_file_never_inline() {
    let text = format!("{BASE}\n[tlsrpt]\nstore = \"postgres\"\nurl_env = \"TEST_TLSRPT_URL\"\n");
    let d = ConfigDir::with_config(&text);
    let out = d.run_env(&["check"], &[("TEST_TLSRPT_URL", None)]);
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"TEST_TLSRPT_URL\""),
        "environment variable TEST_TLSRPT_URL is not set",
    );
    let out = d.run_env(
        &["check"],
        &[("TEST_TLSRPT_URL", Some("postgres://x@127.0.0.1/db"))],
    );
    out.assert_status(0);

    let text = format!("{BASE}\n[tlsrpt]\nstore = \"postgres\"\nurl = \"postgres://u:pw@h/db\"\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(&d.config_path(), pos1(&text, "url ="), "not allowed inline");
    assert!(!out.stderr.contains("pw@"), "{}", out.stderr);
}

#[test]
fn tlsrpt_bad_values() {
    let text = format!(
        "{BASE}\n[tlsrpt]\nhosts = [\"not a name\"]\npath = \"v1\"\nstore = \"mysql\"\nretention = \"forever\"\nmax_report_bytes = 0\nhost = \"x\"\n"
    );
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    let at = |s| pos1(&text, s);
    out.assert_error(&d.config_path(), at("\"not a name\""), "hosts entry");
    out.assert_error(&d.config_path(), at("\"v1\""), "absolute path");
    out.assert_error(
        &d.config_path(),
        at("\"mysql\""),
        "\"sqlite\" or \"postgres\"",
    );
    out.assert_error(&d.config_path(), at("\"forever\""), "not a duration");
    out.assert_error(&d.config_path(), at("0\nhost"), "positive");
    out.assert_error(
        &d.config_path(),
        at("host ="),
        "unknown key `host` in [tlsrpt]",
    );
    out.assert_error_count(6);
}

#[test]
fn tlsrpt_host_needs_a_certificate() {
    let d = ConfigDir::new();
    let (cert, key) = write_cert(&d, "sts", &["mta-sts.example.org"]);
    let text = format!(
        "[tls]\ncerts = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 604800\n\n[domains.\"example.org\"]\n\n[tlsrpt]\nhosts = [\"tlsrpt.example.org\"]\n"
    );
    d.write(crate::harness::MAIN, &text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"tlsrpt.example.org\""),
        "no certificate for tlsrpt.example.org",
    );
    out.assert_error_count(1);
}

/// Issue 23: an `https` rua we publish that this daemon does not receive on is a warning
/// (a third-party receiver may be meant), at the rua's place, global or per domain.
#[test]
fn tlsrpt_https_rua_not_one_of_our_hosts_warns() {
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800

[dns]
tlsrpt = ["https://elsewhere.example.net/v1/tlsrpt", "mailto:tlsrpt@example.org"]

[domains."example.org"]
[domains."example.com"]
tlsrpt = ["https://tlsrpt.example.org/v2"]
[domains."example.net"]
tlsrpt = ["https://TLSRPT.example.org:443/v1/tlsrpt"]

[tlsrpt]
hosts = ["tlsrpt.example.org"]
path = "/v1/tlsrpt"
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(0);
    let at = |s| pos1(text, s);
    out.assert_warning(
        &d.config_path(),
        at("[\"https://elsewhere"),
        "elsewhere.example.net is not one of [tlsrpt] hosts (tlsrpt.example.org)",
    );
    out.assert_warning(
        &d.config_path(),
        at("[\"https://tlsrpt.example.org/v2"),
        "path /v2 is not [tlsrpt] path /v1/tlsrpt",
    );
    let rua: Vec<_> = out
        .diagnostics("warning")
        .into_iter()
        .filter(|l| l.contains("rua"))
        .collect();
    assert_eq!(rua.len(), 2, "{}", out.dump());
}
