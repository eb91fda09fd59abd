//! What `policy`, `records` and the command line print for a valid config, and the example
//! config passing `check`.

use std::collections::BTreeMap;
use std::path::Path;

use super::{base, parse_zone, Rr};
use crate::harness::{pos, pos_nth, pos_within, run_args, run_with_config, ConfigDir};

/// The `id: …` line of `policy DOMAIN`, checked to be the only stderr line.
#[track_caller]
fn policy_id(d: &ConfigDir, domain: &str) -> String {
    let out = d.run(&["policy", domain]);
    out.assert_status(0);
    let id = out
        .stderr
        .strip_prefix("id: ")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("stderr is not one `id: …` line\n{}", out.dump()));
    assert!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()),
        "id `{id}` is not 32 characters of [a-z0-9]\n{}",
        out.dump()
    );
    id.to_owned()
}

/// Every TXT record's strings joined into its logical text, as a receiver reads it.
fn joined(mut rrs: Vec<Rr>) -> Vec<Rr> {
    for r in &mut rrs {
        r.strings = vec![r.strings.concat()];
    }
    rrs.sort();
    rrs
}

#[test]
fn example_config_passes_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mta-stsd.toml");
    let out = run_with_config(&example, &["check"]);
    out.assert_valid();
    assert!(
        out.stdout.contains("ok"),
        "no `ok` summary on stdout\n{}",
        out.dump()
    );
}

// --- policy DOMAIN -----------------------------------------------------------------------------

const POLICY_CONFIG: &str = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org", "*.mx.example.net", "backup.example.org"]
max_age = 1209600

[dns]
target = "mail.example.org."
tlsrpt = ["mailto:tlsrpt@example.org"]

[domains."example.org"]

[domains."example.net"]
mode = "testing"
mx = ["mx.example.net"]
max_age = 86400
"#;

#[test]
fn policy_body_is_byte_exact_and_id_on_stderr() {
    let d = ConfigDir::with_config(POLICY_CONFIG);
    let out = d.run(&["policy", "example.org"]);
    out.assert_status(0);
    assert_eq!(
        out.stdout_bytes,
        b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.mx.example.net\r\nmx: backup.example.org\r\nmax_age: 1209600\r\n"
    );
    // `policy_id` checks that `id: <32 × [a-z0-9]>` is the only line on stderr.
    policy_id(&d, "example.org");

    let out = d.run(&["policy", "example.net"]);
    out.assert_status(0);
    assert_eq!(
        out.stdout_bytes,
        b"version: STSv1\r\nmode: testing\r\nmx: mx.example.net\r\nmax_age: 86400\r\n"
    );
    assert_ne!(policy_id(&d, "example.net"), policy_id(&d, "example.org"));
}

#[test]
fn policy_accepts_host_forms() {
    let d = ConfigDir::with_config(POLICY_CONFIG);
    let id = policy_id(&d, "example.org");
    let body = d.run(&["policy", "example.org"]).stdout_bytes;
    for asked in [
        "mta-sts.example.org",
        "EXAMPLE.org.",
        "MTA-STS.Example.Org.",
    ] {
        let out = d.run(&["policy", asked]);
        out.assert_status(0);
        assert_eq!(out.stdout_bytes, body, "{asked}");
        assert_eq!(policy_id(&d, asked), id, "{asked}");
    }
}

#[test]
fn policy_unknown_domain_exits_1() {
    let d = ConfigDir::with_config(POLICY_CONFIG);
    for asked in ["example.com", "sub.example.org", "mta-sts.example.com"] {
        let out = d.run(&["policy", asked]);
        out.assert_status(1);
        assert_eq!(
            out.stdout,
            "",
            "{asked}: a body was printed\n{}",
            out.dump()
        );
        assert!(
            out.stderr.contains(asked) && !out.stderr.contains("id: "),
            "{}",
            out.dump()
        );
    }
}

#[test]
fn policy_id_matches_records() {
    let d = ConfigDir::with_config(POLICY_CONFIG);
    let out = d.run(&["records"]);
    out.assert_status(0);
    let rrs = parse_zone(&out.stdout);
    for domain in ["example.org", "example.net"] {
        let want = Rr::txt(
            &format!("_mta-sts.{domain}."),
            3600,
            &format!("v=STSv1; id={};", policy_id(&d, domain)),
        );
        assert!(rrs.contains(&want), "{want:?} not in {rrs:#?}");
    }
}

#[test]
fn policy_id_is_stable_across_directories() {
    let a = ConfigDir::with_config(POLICY_CONFIG);
    let b = ConfigDir::with_config(POLICY_CONFIG);
    assert_ne!(a.path(), b.path());
    for domain in ["example.org", "example.net"] {
        let id = policy_id(&a, domain);
        assert_eq!(policy_id(&b, domain), id, "{domain}");
        assert_eq!(policy_id(&a, domain), id, "{domain}: a second run");
    }
    // A change that does not touch the policy keeps the id.
    let c = ConfigDir::with_config(
        &POLICY_CONFIG.replace("[dns]\n", "[dns]\nttl = 600\n# a comment\n"),
    );
    assert_eq!(policy_id(&c, "example.org"), policy_id(&a, "example.org"));
}

#[test]
fn policy_id_changes_with_max_age() {
    let a = ConfigDir::with_config(POLICY_CONFIG);
    let changed = POLICY_CONFIG.replace("max_age = 1209600", "max_age = 1209601");
    assert_ne!(changed, POLICY_CONFIG);
    let b = ConfigDir::with_config(&changed);
    assert_ne!(policy_id(&a, "example.org"), policy_id(&b, "example.org"));
    // example.net has its own max_age and keeps its id.
    assert_eq!(policy_id(&a, "example.net"), policy_id(&b, "example.net"));
}

// --- records -----------------------------------------------------------------------------------

#[test]
fn records_are_valid_zone_syntax_with_exactly_the_expected_records() {
    let d = ConfigDir::with_config(POLICY_CONFIG);
    let out = d.run(&["records"]);
    out.assert_status(0);
    let (org, net) = (policy_id(&d, "example.org"), policy_id(&d, "example.net"));
    let mut want = vec![
        Rr::txt(
            "_mta-sts.example.org.",
            3600,
            &format!("v=STSv1; id={org};"),
        ),
        Rr::cname("mta-sts.example.org.", 3600, "mail.example.org."),
        Rr::txt(
            "_smtp._tls.example.org.",
            3600,
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.org;",
        ),
        Rr::txt(
            "_mta-sts.example.net.",
            3600,
            &format!("v=STSv1; id={net};"),
        ),
        Rr::cname("mta-sts.example.net.", 3600, "mail.example.org."),
        Rr::txt(
            "_smtp._tls.example.net.",
            3600,
            "v=TLSRPTv1; rua=mailto:tlsrpt@example.org;",
        ),
    ];
    want.sort();
    assert_eq!(parse_zone(&out.stdout), want, "{}", out.dump());
}

#[test]
fn records_long_tlsrpt_is_split_into_strings() {
    let rua: Vec<String> = (0..10)
        .map(|i| format!("mailto:tlsrpt-reports-{i:02}@reports.example.org"))
        .collect();
    let text = base(&format!(
        "\n[dns]\ntlsrpt = [{}]\n\n[domains.\"example.org\"]\n",
        rua.iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let d = ConfigDir::with_config(&text);
    d.check().assert_clean();
    let out = d.run(&["records"]);
    out.assert_status(0);
    let full = format!("v=TLSRPTv1; rua={};", rua.join(","));
    assert!(full.len() > 255);

    let rrs = parse_zone(&out.stdout);
    let tlsrpt = rrs
        .iter()
        .find(|r| r.name == "_smtp._tls.example.org.")
        .unwrap_or_else(|| panic!("no TLSRPT record\n{}", out.dump()));
    assert!(
        tlsrpt.strings.len() >= 2,
        "not split into character-strings: {tlsrpt:?}"
    );
    assert!(
        tlsrpt.strings.iter().all(|s| s.len() <= 255),
        "a character-string is longer than 255 octets: {tlsrpt:?}"
    );
    assert_eq!(tlsrpt.strings.concat(), full);
    let id = policy_id(&d, "example.org");
    assert_eq!(
        joined(rrs),
        vec![
            Rr::txt("_mta-sts.example.org.", 3600, &format!("v=STSv1; id={id};")),
            Rr::txt("_smtp._tls.example.org.", 3600, &full),
        ]
    );
}

#[test]
fn records_for_one_domain() {
    let d = ConfigDir::with_config(POLICY_CONFIG);
    let out = d.run(&["records", "example.org"]);
    out.assert_status(0);
    let rrs = parse_zone(&out.stdout);
    let names: Vec<&str> = rrs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "_mta-sts.example.org.",
            "_smtp._tls.example.org.",
            "mta-sts.example.org."
        ],
        "{}",
        out.dump()
    );
    assert!(!out.stdout.contains("example.net"), "{}", out.dump());

    // Several, in any spelling the policy command takes.
    let out = d.run(&["records", "mta-sts.EXAMPLE.net.", "example.org"]);
    out.assert_status(0);
    let by_name: BTreeMap<String, usize> =
        parse_zone(&out.stdout)
            .into_iter()
            .fold(BTreeMap::new(), |mut m, r| {
                *m.entry(r.name).or_default() += 1;
                m
            });
    assert_eq!(by_name.len(), 6, "{}", out.dump());
}

#[test]
fn records_unknown_domain_exits_1() {
    let d = ConfigDir::with_config(POLICY_CONFIG);
    let out = d.run(&["records", "example.org", "example.com"]);
    out.assert_status(1);
    assert!(out.stderr.contains("example.com"), "{}", out.dump());
}

// --- the command line --------------------------------------------------------------------------

#[test]
fn config_from_env_var_when_no_flag() {
    let d = ConfigDir::with_config(&base("\n[domains.\"example.org\"]\n"));
    let path = d.config_path();
    let out = run_args(&["check"], &[("MTA_STSD_CONFIG", path.to_str().unwrap())]);
    out.assert_clean();
    assert!(
        out.stdout.contains(&path.display().to_string()),
        "{}",
        out.dump()
    );
    let out = run_args(
        &["policy", "example.org"],
        &[("MTA_STSD_CONFIG", path.to_str().unwrap())],
    );
    out.assert_status(0);
    assert!(
        out.stdout.starts_with("version: STSv1\r\n"),
        "{}",
        out.dump()
    );
}

#[test]
fn config_flag_overrides_env_var() {
    let good = ConfigDir::with_config(&base("\n[domains.\"example.org\"]\n"));
    let bad = ConfigDir::with_config("this is not toml\n");
    let out = run_args(
        &["--config", good.config_path().to_str().unwrap(), "check"],
        &[("MTA_STSD_CONFIG", bad.config_path().to_str().unwrap())],
    );
    out.assert_clean();
    // `--config` is global: it may follow the subcommand too.
    let out = run_args(
        &["check", "--config", good.config_path().to_str().unwrap()],
        &[("MTA_STSD_CONFIG", bad.config_path().to_str().unwrap())],
    );
    out.assert_clean();
}

#[test]
fn config_default_path() {
    const DEFAULT: &str = "/etc/mta-stsd/mta-stsd.toml";
    let out = run_args(&["check"], &[]);
    assert!(
        out.stdout.contains(DEFAULT) || out.stderr.contains(DEFAULT),
        "the default path is not used\n{}",
        out.dump()
    );
    if !Path::new(DEFAULT).exists() {
        out.assert_status(1);
        assert!(
            out.stderr
                .starts_with(&format!("{DEFAULT}: error: cannot read")),
            "{}",
            out.dump()
        );
    }
    let help = run_args(&["--help"], &[]);
    help.assert_status(0);
    assert!(help.stdout.contains(DEFAULT), "{}", help.dump());
}

#[test]
fn help_for_every_subcommand() {
    for sub in ["check", "policy", "records"] {
        for args in [vec![sub, "--help"], vec!["help", sub]] {
            let out = run_args(&args, &[]);
            out.assert_status(0);
            assert!(
                out.stdout.contains("Usage:") && out.stdout.contains(sub),
                "{}",
                out.dump()
            );
        }
    }
    let out = run_args(&["--help"], &[]);
    out.assert_status(0);
    for sub in ["check", "policy", "records"] {
        assert!(out.stdout.contains(sub), "{sub} not listed\n{}", out.dump());
    }
}

/// Keeps `pos` and `pos_nth` exercised by a direct check of the helper itself.
#[test]
fn positions_are_one_based_characters() {
    let text = "a = 1\nmx = [\"mäil\", \"x\"]\n";
    assert_eq!(pos(text, "a"), (1, 1));
    assert_eq!(pos(text, "\"x\""), (2, 15));
    assert_eq!(pos_nth(text, "\"", 2), (2, 15));
    assert_eq!(pos_within(text, "mx = [", "["), (2, 6));
}

#[test]
fn u_label_domain_is_known_by_either_spelling() {
    let d = ConfigDir::with_config(&base("\n[domains.\"bücher.example\"]\n"));
    let id = policy_id(&d, "xn--bcher-kva.example");
    assert_eq!(policy_id(&d, "bücher.example"), id);
}
