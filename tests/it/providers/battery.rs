//! The provider conformance battery: one list of tests, written once against [`Backend`], run
//! for every provider (RFC 2136 on BIND and Knot, and the HTTP APIs), through the real binary's
//! `plan` and `apply`.

use std::time::{Duration, Instant};

use crate::harness::{ConfigDir, Output, MAIN};

/// Zone every backend serves.
pub const ZONE: &str = "example.org.";

/// A DNS backend as the battery sees it.
pub trait Backend {
    /// The `[providers.p]` table for the daemon's config; secret files go into `dir`.
    fn provider_toml(&self, dir: &ConfigDir) -> String;
    /// The same with credentials the server rejects.
    fn bad_auth_provider_toml(&self, dir: &ConfigDir) -> String;
    /// The data of the records of `rtype` (`TXT`, `CNAME`, `A`) at `name`, as text: TXT
    /// without quotes, names with their trailing dot.
    fn query(&self, name: &str, rtype: &str) -> Vec<String>;
    /// Adds a record behind the daemon's back.
    fn add(&self, name: &str, rtype: &str, data: &str);
    /// Makes the server unreachable (or failing) until [`Backend::revive`].
    fn kill(&mut self);
    fn revive(&mut self);
}

/// A config for two domains in [`ZONE`] published through provider `p`.
pub fn config(b: &dyn Backend, dir: &ConfigDir, extra_dns: &str, max_age: u32, bad_auth: bool) {
    let provider = if bad_auth {
        b.bad_auth_provider_toml(dir)
    } else {
        b.provider_toml(dir)
    };
    config_with(&provider, dir, extra_dns, max_age);
}

/// [`config`] with the `[providers.p]` table given.
pub fn config_with(provider: &str, dir: &ConfigDir, extra_dns: &str, max_age: u32) {
    dir.write(
        MAIN,
        format!(
            r#"[server]
https = ["127.0.0.1:0"]
admin = "127.0.0.1:0"

[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = {max_age}

[dns]
target = "mail.example.org."
ttl = 3600
provider = "p"
{extra_dns}

{provider}

[domains."a.example.org"]

[domains."b.example.org"]
"#
        ),
    );
}

pub fn policy_id(dir: &ConfigDir, domain: &str) -> String {
    let out = dir.run(&["policy", domain]);
    out.assert_status(0);
    out.stderr
        .trim()
        .strip_prefix("id: ")
        .expect("id line")
        .to_owned()
}

fn sts(b: &dyn Backend, domain: &str) -> Vec<String> {
    let mut v: Vec<String> = b.query(&format!("_mta-sts.{domain}."), "TXT");
    v.sort();
    v
}

fn sts_ours(b: &dyn Backend, domain: &str) -> Vec<String> {
    sts(b, domain)
        .into_iter()
        .filter(|t| t.starts_with("v=STSv1"))
        .collect()
}

fn apply(dir: &ConfigDir) -> Output {
    let out = dir.run(&["apply"]);
    out.assert_status(0);
    out
}

pub fn first_publication(b: &mut dyn Backend) {
    let dir = ConfigDir::new();
    config(b, &dir, "", 86400, false);
    let out = dir.run(&["plan"]);
    out.assert_status(2);
    assert!(
        out.stdout.contains("+ _mta-sts.a.example.org."),
        "{}",
        out.dump()
    );
    assert!(sts(b, "a.example.org").is_empty(), "plan changed nothing");
    apply(&dir);
    for d in ["a.example.org", "b.example.org"] {
        let id = policy_id(&dir, d);
        assert_eq!(sts(b, d), vec![format!("v=STSv1; id={id};")], "{d}");
        assert_eq!(
            b.query(&format!("mta-sts.{d}."), "CNAME"),
            vec!["mail.example.org."]
        );
    }
}

pub fn id_change_after_config_edit(b: &mut dyn Backend) {
    let dir = ConfigDir::new();
    config(b, &dir, "", 86400, false);
    apply(&dir);
    let old = policy_id(&dir, "a.example.org");
    config(b, &dir, "", 172800, false);
    let new = policy_id(&dir, "a.example.org");
    assert_ne!(old, new);
    let out = dir.run(&["plan"]);
    out.assert_status(2);
    assert!(
        out.stdout.contains(&format!(
            "- _mta-sts.a.example.org.\t3600\tIN\tTXT\t\"v=STSv1; id={old};\""
        )),
        "{}",
        out.dump()
    );
    apply(&dir);
    assert_eq!(sts(b, "a.example.org"), vec![format!("v=STSv1; id={new};")]);
}

pub fn stale_sts_removed_foreign_kept(b: &mut dyn Backend) {
    b.add("_mta-sts.a.example.org.", "TXT", "v=STSv1; id=stale1;");
    b.add("_mta-sts.a.example.org.", "TXT", "v=STSv1; id=stale2;");
    b.add(
        "_mta-sts.a.example.org.",
        "TXT",
        "site-verification=keep-me",
    );
    let dir = ConfigDir::new();
    config(b, &dir, "", 86400, false);
    apply(&dir);
    let id = policy_id(&dir, "a.example.org");
    let mut want = vec![
        format!("v=STSv1; id={id};"),
        "site-verification=keep-me".to_owned(),
    ];
    want.sort();
    assert_eq!(sts(b, "a.example.org"), want);
    assert_eq!(sts_ours(b, "a.example.org").len(), 1);
}

pub fn tlsrpt_added_then_removed(b: &mut dyn Backend) {
    b.add("_smtp._tls.a.example.org.", "TXT", "foreign tls note");
    let dir = ConfigDir::new();
    config(b, &dir, "", 86400, false);
    apply(&dir);
    let q = |b: &dyn Backend| {
        let mut v = b.query("_smtp._tls.a.example.org.", "TXT");
        v.sort();
        v
    };
    assert_eq!(q(b), vec!["foreign tls note"]);
    config(
        b,
        &dir,
        r#"tlsrpt = ["mailto:tlsrpt@example.org"]"#,
        86400,
        false,
    );
    apply(&dir);
    assert_eq!(
        q(b),
        vec![
            "foreign tls note",
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.org;"
        ]
    );
    config(b, &dir, "", 86400, false);
    apply(&dir);
    assert_eq!(q(b), vec!["foreign tls note"]);
}

pub fn conflicting_address_reported_and_left_alone(b: &mut dyn Backend) {
    b.add("mta-sts.b.example.org.", "A", "192.0.2.1");
    let dir = ConfigDir::new();
    config(b, &dir, "", 86400, false);
    let out = dir.run(&["plan"]);
    assert!(
        out.stdout
            .contains("! conflict: mta-sts.b.example.org. has A 192.0.2.1"),
        "{}",
        out.dump()
    );
    let out = apply(&dir);
    assert!(
        out.stdout.contains("! conflict: mta-sts.b.example.org."),
        "{}",
        out.dump()
    );
    assert_eq!(b.query("mta-sts.b.example.org.", "A"), vec!["192.0.2.1"]);
    assert!(b.query("mta-sts.b.example.org.", "CNAME").is_empty());
    // The rest of the domain is published regardless.
    assert_eq!(sts_ours(b, "b.example.org").len(), 1);
    assert_eq!(
        b.query("mta-sts.a.example.org.", "CNAME"),
        vec!["mail.example.org."]
    );
}

pub fn second_apply_is_a_noop(b: &mut dyn Backend) {
    let dir = ConfigDir::new();
    config(
        b,
        &dir,
        r#"tlsrpt = ["mailto:tlsrpt@example.org"]"#,
        86400,
        false,
    );
    apply(&dir);
    let before = (sts(b, "a.example.org"), sts(b, "b.example.org"));
    let out = dir.run(&["plan"]);
    out.assert_status(0);
    assert!(
        out.stdout.contains("; 0 records to change"),
        "{}",
        out.dump()
    );
    let out = apply(&dir);
    assert!(out.stdout.contains("; 0 records changed"), "{}", out.dump());
    assert!(
        !out.stdout.contains("\n+ ") && !out.stdout.contains("\n- "),
        "{}",
        out.dump()
    );
    assert_eq!((sts(b, "a.example.org"), sts(b, "b.example.org")), before);
}

pub fn auth_failure_changes_nothing(b: &mut dyn Backend) {
    b.add("_mta-sts.a.example.org.", "TXT", "v=STSv1; id=untouched;");
    let dir = ConfigDir::new();
    config(b, &dir, "", 86400, true);
    let out = dir.run(&["apply"]);
    out.assert_status(1);
    assert!(out.stderr.contains("error:"), "{}", out.dump());
    assert_eq!(sts(b, "a.example.org"), vec!["v=STSv1; id=untouched;"]);
    assert!(sts(b, "b.example.org").is_empty());
}

pub fn server_down_fails_within_bounds(b: &mut dyn Backend) {
    let dir = ConfigDir::new();
    config(b, &dir, "", 86400, false);
    b.kill();
    let started = Instant::now();
    let out = dir.run(&["apply"]);
    let took = started.elapsed();
    out.assert_status(1);
    assert!(out.stderr.contains("error:"), "{}", out.dump());
    assert!(
        took < Duration::from_secs(30),
        "apply took {took:?} against a dead server"
    );
    b.revive();
    apply(&dir);
    assert_eq!(sts_ours(b, "a.example.org").len(), 1);
}

/// Instantiates the battery for one backend: `battery!(module, || backend)`.
#[macro_export]
macro_rules! battery {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;
            use $crate::providers::battery;

            #[test]
            fn first_publication() {
                battery::first_publication(&mut $make());
            }
            #[test]
            fn id_change_after_config_edit() {
                battery::id_change_after_config_edit(&mut $make());
            }
            #[test]
            fn stale_sts_removed_foreign_kept() {
                battery::stale_sts_removed_foreign_kept(&mut $make());
            }
            #[test]
            fn tlsrpt_added_then_removed() {
                battery::tlsrpt_added_then_removed(&mut $make());
            }
            #[test]
            fn conflicting_address_reported_and_left_alone() {
                battery::conflicting_address_reported_and_left_alone(&mut $make());
            }
            #[test]
            fn second_apply_is_a_noop() {
                battery::second_apply_is_a_noop(&mut $make());
            }
            #[test]
            fn auth_failure_changes_nothing() {
                battery::auth_failure_changes_nothing(&mut $make());
            }
            #[test]
            fn server_down_fails_within_bounds() {
                battery::server_down_fails_within_bounds(&mut $make());
            }
        }
    };
}
