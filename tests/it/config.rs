//! The config and the offline commands (`check`, `policy`, `records`), driven through the
//! real binary. Every diagnostic is asserted at its exact `file:line:col`, computed from the
//! config text the test wrote.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::txt::Parser;

use crate::harness::{
    pos, pos1, pos_nth, pos_within, run_args, run_with_config, tsig_key_file, write_cert,
    ConfigDir, MAIN,
};

/// A valid config with no warnings: a certificate source and an `enforce` policy for one day
/// or more. Tests append their `[dns]`, `[providers.*]` and `[domains.*]` sections.
const BASE: &str = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800
"#;

fn base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

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

/// One record as the zone parser understood it: TXT strings joined, CNAME target as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: RecordType,
    /// The TXT character-strings (one element for CNAME: its target).
    strings: Vec<String>,
}

impl Rr {
    fn txt(name: &str, ttl: u32, text: &str) -> Self {
        Rr {
            name: name.into(),
            ttl,
            rtype: RecordType::TXT,
            strings: vec![text.into()],
        }
    }

    fn cname(name: &str, ttl: u32, target: &str) -> Self {
        Rr {
            name: name.into(),
            ttl,
            rtype: RecordType::CNAME,
            strings: vec![target.into()],
        }
    }
}

/// Parses `records` output with hickory's zone-file parser: proof that it is valid syntax.
#[track_caller]
fn parse_zone(text: &str) -> Vec<Rr> {
    let origin = Name::from_str("example.org.").unwrap();
    let (_, sets) = Parser::new(text, None, Some(origin))
        .parse()
        .unwrap_or_else(|e| panic!("`records` output is not a valid zone file: {e}\n{text}"));
    let mut out = Vec::new();
    for set in sets.values() {
        for r in set.records_without_rrsigs() {
            let strings = match r.data() {
                RData::TXT(txt) => txt
                    .txt_data()
                    .iter()
                    .map(|s| String::from_utf8(s.to_vec()).unwrap())
                    .collect(),
                RData::CNAME(c) => vec![c.0.to_string()],
                other => panic!("unexpected record {other:?}"),
            };
            out.push(Rr {
                name: r.name().to_string(),
                ttl: r.ttl(),
                rtype: r.record_type(),
                strings,
            });
        }
    }
    out.sort();
    out
}

/// Every TXT record's strings joined into its logical text, as a receiver reads it.
fn joined(mut rrs: Vec<Rr>) -> Vec<Rr> {
    for r in &mut rrs {
        r.strings = vec![r.strings.concat()];
    }
    rrs.sort();
    rrs
}

// --- the example and reporting ---------------------------------------------------------------

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

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = base(
        r#"
[dns]
ttl = 0

[domains."example.org"]
mode = "strict"
colour = "blue"
"#,
    );
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    let f = d.config_path();
    out.assert_status(1);
    out.assert_error(
        &f,
        pos_within(&text, "ttl = 0", "0"),
        "ttl 0 is outside 1..=2147483647",
    );
    out.assert_error(&f, pos1(&text, "\"strict\""), "mode `strict`");
    out.assert_error(&f, pos1(&text, "colour"), "unknown key `colour`");
    out.assert_error_count(3);
}

// --- unknown keys, types, syntax -------------------------------------------------------------

#[test]
fn unknown_key_at_top_level() {
    // Top-level keys come before the first table.
    let text = format!("logging = \"debug\"\n\n{BASE}\n[domains.\"example.org\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "logging"),
        "unknown key `logging` in the top level",
    );
    out.assert_error_count(1);
}

#[test]
fn unknown_key_in_policy() {
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800
max-age = 86400

[domains."example.org"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(text, "max-age"),
        "unknown key `max-age` in [policy]",
    );
    out.assert_error_count(1);
}

#[test]
fn unknown_key_in_domain() {
    let text = base("\n[domains.\"example.org\"]\nmx_hosts = [\"mail.example.org\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "mx_hosts"),
        "unknown key `mx_hosts` in [domains.\"example.org\"]",
    );
    out.assert_error_count(1);
}

#[test]
fn unknown_key_in_provider() {
    let text = base(
        r#"
[providers.primary]
kind = "rfc2136"
server = "127.0.0.1:53"
tsig_key = "mta-stsd.key"
port = 53

[domains."example.org"]
"#,
    );
    let d = ConfigDir::with_config(&text);
    d.write("mta-stsd.key", tsig_key_file("mta-stsd", "hmac-sha256"));
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "port"),
        "unknown key `port` in [providers.primary]",
    );
    out.assert_error_count(1);
}

#[test]
fn wrong_type_max_age_string() {
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = "1d"

[domains."example.org"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(text, "\"1d\""),
        "`max_age` must be an integer, not string",
    );
    out.assert_error_count(1);
}

#[test]
fn wrong_type_mx_string() {
    let text = base("\n[domains.\"example.org\"]\nmx = \"a.example\"\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"a.example\""),
        "`mx` must be an array of strings, not string",
    );
    out.assert_error_count(1);
}

#[test]
fn toml_syntax_error_has_position() {
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org" "backup.example.org"]
max_age = 604800

[domains."example.org"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    // The missing comma is noticed at the second element.
    out.assert_error(
        &d.config_path(),
        pos1(text, "\"backup.example.org\""),
        "TOML syntax: missing comma",
    );
    out.assert_error_count(1);
}

// --- policy values -----------------------------------------------------------------------------

#[test]
fn mode_must_be_enforce_testing_or_none() {
    let text = base("\n[domains.\"example.org\"]\nmode = \"Enforce\"\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"Enforce\""),
        "mode `Enforce` is not one of `enforce`, `testing`, `none`",
    );
    out.assert_error_count(1);
}

#[test]
fn invalid_mode_in_policy_is_one_error_without_follow_on_warning() {
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforcing"
mx = ["mail.example.org"]
max_age = 604800

[domains."example.org"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(text, "\"enforcing\""),
        "mode `enforcing` is not one of",
    );
    out.assert_error_count(1);
    // `mode` was written: no "no `mode` in [policy]" warning on top of the error.
    assert_eq!(out.warnings(), Vec::<&str>::new(), "{}", out.dump());
}

#[test]
fn invalid_mx_is_reported_once_not_again_per_domain() {
    // An invalid [policy] mx: one error there, none for each domain that inherits it.
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail_1.example.org"]
max_age = 604800

[domains."example.org"]
[domains."example.net"]
[domains."example.com"]
max_age = 1209600
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(text, "\"mail_1.example.org\""),
        "character `_` is not allowed",
    );
    out.assert_error_count(1);

    // A domain's own invalid mx (and mode) with no [policy] mx: no "has no `mx`" error.
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
max_age = 604800

[domains."example.org"]
mode = "enforcing"
mx = ["mail_1.example.org"]

[domains."example.net"]
mx = ["mail_1.example.net"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    let f = d.config_path();
    out.assert_error(&f, pos1(text, "\"enforcing\""), "mode `enforcing`");
    out.assert_error(&f, pos1(text, "\"mail_1.example.org\""), "character `_`");
    out.assert_error(&f, pos1(text, "\"mail_1.example.net\""), "character `_`");
    out.assert_error_count(3);

    // An empty [policy] mx in `enforce`: reported once, at [policy].
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = []

[domains."example.org"]
[domains."example.net"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(&d.config_path(), pos1(text, "[]"), "`mx` is empty");
    out.assert_error_count(1);
}

#[test]
fn max_age_above_limit_is_an_error() {
    let text = base("\n[domains.\"example.org\"]\nmax_age = 31557601\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "31557601"),
        "max_age 31557601 is outside 0..=31557600",
    );
    out.assert_error_count(1);

    let text = base("\n[domains.\"example.org\"]\nmax_age = -1\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "-1"),
        "max_age -1 is outside 0..=31557600",
    );
    out.assert_error_count(1);
}

#[test]
fn max_age_at_limit_passes() {
    let d = ConfigDir::with_config(&base("\n[domains.\"example.org\"]\nmax_age = 31557600\n"));
    d.check().assert_clean();
    let out = d.run(&["policy", "example.org"]);
    out.assert_status(0);
    assert!(
        out.stdout.ends_with("max_age: 31557600\r\n"),
        "{}",
        out.dump()
    );
}

#[test]
fn empty_mx_is_an_error_unless_mode_none() {
    let text = base("\n[domains.\"example.org\"]\nmx = []\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "[]"),
        "`mx` is empty but mode is `enforce`",
    );
    out.assert_error_count(1);

    let d = ConfigDir::with_config(&base(
        "\n[domains.\"example.org\"]\nmode = \"none\"\nmx = []\n",
    ));
    d.check().assert_clean();
}

#[test]
fn mode_none_without_mx_passes() {
    let text = r#"[tls]
self_signed = true

[policy]
mode = "none"
max_age = 86400

[domains."example.org"]
"#;
    let d = ConfigDir::with_config(text);
    d.check().assert_clean();
    let out = d.run(&["policy", "example.org"]);
    out.assert_status(0);
    assert_eq!(
        out.stdout,
        "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
    );
}

#[test]
fn domain_without_mx_anywhere_is_an_error() {
    let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
max_age = 604800

[domains."example.org"]

[domains."example.net"]
mx = ["mail.example.net"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(text, "\"example.org\""),
        "domain `example.org` has no `mx`",
    );
    out.assert_error_count(1);
}

// --- mx patterns -------------------------------------------------------------------------------

#[test]
fn mx_invalid_hostname_is_an_error() {
    // After a non-ASCII pattern on the same line: columns count characters, not bytes.
    let text =
        base("\n[domains.\"example.org\"]\nmx = [\"mäil.example.org\", \"mail_1.example.org\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"mail_1.example.org\""),
        "character `_` is not allowed",
    );
    out.assert_error_count(1);
}

#[test]
fn mx_wildcard_must_be_the_whole_leftmost_label() {
    let text = base(
        r#"
[domains."example.org"]
mx = [
  "a.*.example",
  "*mail.example",
  "*.mx.example.net",
]
"#,
    );
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    let f = d.config_path();
    out.assert_error(
        &f,
        pos1(&text, "\"a.*.example\""),
        "`*` is allowed only as the whole left-most label",
    );
    out.assert_error(
        &f,
        pos1(&text, "\"*mail.example\""),
        "`*` is allowed only as the whole left-most label",
    );
    out.assert_error_count(2);
}

#[test]
fn mx_ip_address_is_an_error() {
    let text = base("\n[domains.\"example.org\"]\nmx = [\"mail.example.org\", \"192.0.2.25\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"192.0.2.25\""),
        "is an IP address",
    );
    out.assert_error_count(1);
}

#[test]
fn mx_trailing_dot_is_an_error() {
    let text = base("\n[domains.\"example.org\"]\nmx = [\"mail.example.org.\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"mail.example.org.\""),
        "without the trailing dot",
    );
    out.assert_error_count(1);
}

#[test]
fn mx_u_label_is_converted_with_a_warning() {
    let text = base("\n[domains.\"example.org\"]\nmx = [\"mäil.example.org\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_valid();
    out.assert_warning(
        &d.config_path(),
        pos1(&text, "\"mäil.example.org\""),
        "`xn--mil-qla.example.org`",
    );
    assert_eq!(out.warnings().len(), 1, "{}", out.dump());
    let out = d.run(&["policy", "example.org"]);
    out.assert_status(0);
    assert!(
        out.stdout.contains("mx: xn--mil-qla.example.org\r\n"),
        "{}",
        out.dump()
    );
}

#[test]
fn mx_uppercase_is_lowercased_in_the_body() {
    let d = ConfigDir::with_config(&base(
        "\n[domains.\"example.org\"]\nmx = [\"MAIL.Example.ORG\", \"*.MX.example.NET\"]\n",
    ));
    d.check().assert_clean();
    let out = d.run(&["policy", "example.org"]);
    out.assert_status(0);
    assert_eq!(
        out.stdout,
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.mx.example.net\r\nmax_age: 604800\r\n"
    );
}

// --- domain names ------------------------------------------------------------------------------

#[test]
fn invalid_domain_name_is_an_error() {
    let text = base("\n[domains.\"exa_mple.org\"]\n\n[domains.\"example.org\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"exa_mple.org\""),
        "domain `exa_mple.org`: character `_` is not allowed",
    );
    out.assert_error_count(1);
}

#[test]
fn u_label_domain_is_converted_with_a_warning() {
    let text = base("\n[domains.\"bücher.example\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_valid();
    out.assert_warning(
        &d.config_path(),
        pos1(&text, "\"bücher.example\""),
        "`xn--bcher-kva.example`",
    );
    assert_eq!(out.warnings().len(), 1, "{}", out.dump());

    // Known by either spelling.
    let id = policy_id(&d, "xn--bcher-kva.example");
    assert_eq!(policy_id(&d, "bücher.example"), id);
    let out = d.run(&["records"]);
    out.assert_status(0);
    assert!(
        out.stdout.contains("_mta-sts.xn--bcher-kva.example.\t"),
        "{}",
        out.dump()
    );
}

#[test]
fn domain_defined_twice_in_two_files_names_both_places() {
    let main = with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n");
    let included = "# one file per domain\n[domains.\"example.net\"]\n\n[domains.\"Example.ORG\"]\nmode = \"none\"\n";
    let d = ConfigDir::with_config(&main);
    let inc = d.write("domains.d/a.toml", included);
    let out = d.check();
    out.assert_status(1);
    let (l, c) = pos1(&main, "\"example.org\"");
    let line = out.assert_error(
        &inc,
        pos1(included, "\"Example.ORG\""),
        "domain `example.org` is defined twice",
    );
    let first = format!("{}:{l}:{c}", d.config_path().display());
    assert!(
        line.contains(&first),
        "the message does not name the first place `{first}`\n{}",
        out.dump()
    );
    out.assert_error_count(1);
}

// --- include -----------------------------------------------------------------------------------

/// `include = [...]` first (a top-level key), then [`BASE`], then `rest`.
fn with_include(include: &str, rest: &str) -> String {
    format!("include = [{include}]\n\n{BASE}{rest}")
}

#[test]
fn include_merges_domains() {
    let main = with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n");
    let d = ConfigDir::with_config(&main);
    d.write(
        "domains.d/10-example-net.toml",
        "[domains.\"example.net\"]\nmx = [\"mx.example.net\"]\n",
    );
    d.write(
        "domains.d/20-example-com.toml",
        "[domains.\"example.com\"]\n",
    );
    d.write("domains.d/not-included.txt", "[domains.\"example.edu\"]\n");
    let out = d.check();
    out.assert_clean();
    assert!(
        out.stdout.contains("3 domains") && out.stdout.contains("3 files"),
        "{}",
        out.dump()
    );

    let out = d.run(&["policy", "example.net"]);
    out.assert_status(0);
    assert_eq!(
        out.stdout,
        "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 604800\r\n"
    );
    let out = d.run(&["records"]);
    out.assert_status(0);
    let names: Vec<String> = parse_zone(&out.stdout)
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        names,
        [
            "_mta-sts.example.com.",
            "_mta-sts.example.net.",
            "_mta-sts.example.org."
        ],
        "{}",
        out.dump()
    );
    d.run(&["policy", "example.edu"]).assert_status(1);
}

#[test]
fn error_in_included_file_has_its_path_and_position() {
    let main = with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n");
    let good = "[domains.\"example.net\"]\n";
    let bad = "# example.com\n\n[domains.\"example.com\"]\nmode = \"enforce\"\nmax_age = \"1w\"\n";
    let syntax = "[domains.\"example.edu\"]\nmx = [\"mx.example.edu\" \"mx2.example.edu\"]\n";
    let d = ConfigDir::with_config(&main);
    d.write("domains.d/a.toml", good);
    let bad_path = d.write("domains.d/b.toml", bad);
    let syntax_path = d.write("domains.d/c.toml", syntax);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &bad_path,
        pos1(bad, "\"1w\""),
        "`max_age` must be an integer",
    );
    out.assert_error(
        &syntax_path,
        pos1(syntax, "\"mx2.example.edu\""),
        "TOML syntax",
    );
    out.assert_error_count(2);
}

#[test]
fn missing_literal_include_is_an_error_at_the_entry() {
    let main = with_include(
        "\"domains.d/*.toml\", \"extra/domains.toml\"",
        "\n[domains.\"example.org\"]\n",
    );
    // An empty glob is only a warning (config management may not have dropped a file yet;
    // or the pattern has a typo), at its position.
    let d = ConfigDir::with_config(&main);
    let out = d.check();
    out.assert_status(1);
    out.assert_warning(
        &d.config_path(),
        pos1(&main, "\"domains.d/*.toml\""),
        "include `domains.d/*.toml` matches no file",
    );
    let line = out.assert_error(
        &d.config_path(),
        pos1(&main, "\"extra/domains.toml\""),
        "include `extra/domains.toml`",
    );
    assert!(
        line.contains(&d.file("extra/domains.toml").display().to_string()),
        "the message does not name the full path\n{}",
        out.dump()
    );
    out.assert_error_count(1);

    d.write("extra/domains.toml", "[domains.\"example.net\"]\n");
    d.write("domains.d/c.toml", "[domains.\"example.com\"]\n");
    d.check().assert_clean();
}

#[test]
fn diagnostic_paths_are_as_the_binary_saw_them() {
    let main = with_include(
        "\"domains.d/*.toml\"",
        "\n[domains.\"example.org\"]\nmode = \"strict\"\n",
    );
    let included = "[domains.\"example.net\"]\nttl = -5\n";
    let d = ConfigDir::with_config(&main);
    d.write("domains.d/net.toml", included);
    let out = d.run_relative(&["check"]);
    out.assert_status(1);
    out.assert_error(Path::new(MAIN), pos1(&main, "\"strict\""), "mode `strict`");
    out.assert_error(
        Path::new("domains.d/net.toml"),
        pos1(included, "-5"),
        "ttl -5 is outside",
    );
    out.assert_error_count(2);
}

#[test]
fn server_in_included_file_is_an_error() {
    let main = with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n");
    let included = "[domains.\"example.net\"]\n\n[server]\nhttps = [\"127.0.0.1:8443\"]\n";
    let d = ConfigDir::with_config(&main);
    let inc = d.write("domains.d/net.toml", included);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &inc,
        pos1(included, "server"),
        "`server` may appear only in the main config file",
    );
    out.assert_error_count(1);
}

// --- [dns] values ------------------------------------------------------------------------------

#[test]
fn target_must_be_a_valid_name() {
    let text =
        base("\n[dns]\ntarget = \"mail server.example.org.\"\n\n[domains.\"example.org\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"mail server.example.org.\""),
        "target `mail server.example.org`: character ` ` is not allowed",
    );
    out.assert_error_count(1);
}

#[test]
fn ttl_zero_is_an_error() {
    let text = base("\n[domains.\"example.org\"]\nttl = 0\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos_within(&text, "ttl = 0", "0"),
        "ttl 0 is outside 1..=2147483647",
    );
    out.assert_error_count(1);
}

#[test]
fn ttl_too_big_is_an_error() {
    let text = base("\n[dns]\nttl = 2147483648\n\n[domains.\"example.org\"]\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "2147483648"),
        "ttl 2147483648 is outside 1..=2147483647",
    );
    out.assert_error_count(1);
}

#[test]
fn rua_http_scheme_is_an_error() {
    let text = base(
        "\n[dns]\ntlsrpt = [\"http://reports.example.org/tlsrpt\"]\n\n[domains.\"example.org\"]\n",
    );
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"http://"),
        "must be a mailto: or https:// URI",
    );
    out.assert_error_count(1);
}

#[test]
fn rua_raw_delimiters_must_be_percent_encoded() {
    let text = base(
        r#"
[dns]
tlsrpt = [
  "mailto:a@example.org,mailto:b@example.org",
  "mailto:tls!rpt@example.org",
  "https://reports.example.org/a;b",
]

[domains."example.org"]
"#,
    );
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    let f = d.config_path();
    out.assert_error(
        &f,
        pos1(&text, "\"mailto:a@"),
        "`,` must be percent-encoded as %2C",
    );
    out.assert_error(
        &f,
        pos1(&text, "\"mailto:tls!"),
        "`!` must be percent-encoded as %21",
    );
    out.assert_error(
        &f,
        pos1(&text, "\"https://reports"),
        "`;` must be percent-encoded as %3B",
    );
    out.assert_error_count(3);
}

#[test]
fn rua_mailto_and_https_pass_and_are_published() {
    let d = ConfigDir::with_config(&base(
        r#"
[dns]
ttl = 300
tlsrpt = ["mailto:tls%2Crpt@example.org", "https://reports.example.org/v1/tlsrpt"]

[domains."example.org"]
"#,
    ));
    d.check().assert_clean();
    let out = d.run(&["records"]);
    out.assert_status(0);
    let rrs = parse_zone(&out.stdout);
    let want = Rr::txt(
        "_smtp._tls.example.org.",
        300,
        "v=TLSRPTv1; rua=mailto:tls%2Crpt@example.org,https://reports.example.org/v1/tlsrpt;",
    );
    assert!(rrs.contains(&want), "{rrs:#?}\n{}", out.dump());
}

// --- providers ---------------------------------------------------------------------------------

#[test]
fn undefined_provider_is_an_error() {
    let text = base(
        r#"
[dns]
provider = "primary"

[providers.pdns]
kind = "powerdns"
url = "http://127.0.0.1:8081"
api_key_file = "pdns.key"

[domains."example.org"]
provider = "cloudflare"

[domains."example.net"]
provider = "pdns"
"#,
    );
    let d = ConfigDir::with_config(&text);
    d.write("pdns.key", "secret-key\n");
    let out = d.check();
    out.assert_status(1);
    let f = d.config_path();
    out.assert_error(
        &f,
        pos1(&text, "\"primary\""),
        "provider `primary` is not defined (defined: pdns)",
    );
    out.assert_error(
        &f,
        pos1(&text, "\"cloudflare\""),
        "provider `cloudflare` is not defined",
    );
    out.assert_error_count(2);
}

#[test]
fn inline_secret_is_an_error() {
    let text = base(
        r#"
[providers.pdns]
kind = "powerdns"
url = "http://127.0.0.1:8081"
api_key_file = "pdns.key"
api_key = "changeme"

[providers.primary]
kind = "rfc2136"
server = "127.0.0.1"
tsig_key = "mta-stsd.key"
secret = "8rgF3Ehc0tF0r5ZSPzEdrB+ZUMN9Hh0v5QsWQ2Yzjrs="

[domains."example.org"]
"#,
    );
    let d = ConfigDir::with_config(&text);
    d.write("pdns.key", "secret-key\n");
    d.write("mta-stsd.key", tsig_key_file("mta-stsd", "hmac-sha256"));
    let out = d.check();
    out.assert_status(1);
    let f = d.config_path();
    out.assert_error(
        &f,
        pos1(&text, "api_key ="),
        "`api_key`: secrets are not allowed inline",
    );
    out.assert_error(
        &f,
        pos1(&text, "secret ="),
        "`secret`: secrets are not allowed inline",
    );
    out.assert_error_count(2);
    assert!(
        !out.stderr.contains("changeme") && !out.stderr.contains("8rgF3Ehc"),
        "a secret was printed\n{}",
        out.dump()
    );
}

#[test]
fn every_provider_problem_is_reported() {
    const VAR: &str = "MTA_STSD_IT_PDNS_KEY_ALSO_UNSET";
    let text = base(&format!(
        r#"
[providers.a]
kind = "rfc2136"

[providers.b]
kind = "powerdns"
api_key_env = "{VAR}"

[providers.c]
knd = "cloudflare"
api_token_env = "CLOUDFLARE_API_TOKEN"

[domains."example.org"]
"#
    ));
    let d = ConfigDir::with_config(&text);
    let out = d.run_env(&["check"], &[(VAR, None)]);
    out.assert_status(1);
    let f = d.config_path();
    out.assert_error(
        &f,
        pos1(&text, "[providers.a]"),
        "[providers.a] needs `server`",
    );
    out.assert_error(
        &f,
        pos1(&text, "[providers.a]"),
        "[providers.a] needs `tsig_key`",
    );
    out.assert_error(
        &f,
        pos1(&text, "[providers.b]"),
        "[providers.b] needs `url`",
    );
    out.assert_error(
        &f,
        pos1(&text, &format!("\"{VAR}\"")),
        &format!("environment variable {VAR} is not set"),
    );
    out.assert_error(
        &f,
        pos1(&text, "[providers.c]"),
        "[providers.c] needs `kind`",
    );
    out.assert_error(&f, pos1(&text, "knd"), "unknown key `knd` in [providers.c]");
    out.assert_error_count(6);
}

#[test]
fn api_key_file_missing_is_an_error_with_its_path() {
    let text = base(
        r#"
[providers.pdns]
kind = "powerdns"
url = "http://127.0.0.1:8081"
api_key_file = "secrets/pdns.key"

[domains."example.org"]
provider = "pdns"
"#,
    );
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"secrets/pdns.key\""),
        &d.file("secrets/pdns.key").display().to_string(),
    );
    out.assert_error_count(1);
}

#[test]
fn api_key_env_unset_is_an_error() {
    const VAR: &str = "MTA_STSD_IT_PDNS_KEY_UNSET";
    let text = base(&format!(
        r#"
[providers.pdns]
kind = "powerdns"
url = "http://127.0.0.1:8081"
api_key_env = "{VAR}"

[domains."example.org"]
provider = "pdns"
"#
    ));
    let d = ConfigDir::with_config(&text);
    let out = d.run_env(&["check"], &[(VAR, None)]);
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, &format!("\"{VAR}\"")),
        &format!("environment variable {VAR} is not set"),
    );
    out.assert_error_count(1);

    // Set, it passes, and the key is never printed.
    let out = d.run_env(&["check"], &[(VAR, Some("s3cr3t-api-key"))]);
    out.assert_clean();
    assert!(!out.stdout.contains("s3cr3t"), "{}", out.dump());
}

#[test]
fn rfc2136_with_tsig_keygen_key_file_passes() {
    let d = ConfigDir::with_config(&base(
        r#"
[dns]
provider = "primary"

[providers.primary]
kind = "rfc2136"
server = "ns1.example.org:5353"
tsig_key = "mta-stsd.key"

[domains."example.org"]
"#,
    ));
    let key = d.write("mta-stsd.key", tsig_key_file("mta-stsd", "hmac-sha256"));
    // As the install steps leave it (a world-readable key is a warning).
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let out = d.check();
    out.assert_clean();
    assert!(out.stdout.contains(" 1 provider,"), "{}", out.dump());
    let out = d.run(&["records"]);
    out.assert_status(0);
    assert!(out.stdout.contains("provider primary"), "{}", out.dump());
}

#[test]
fn tsig_hmac_md5_is_an_error() {
    let text = base(
        r#"
[providers.primary]
kind = "rfc2136"
server = "127.0.0.1"
tsig_key = "mta-stsd.key"

[domains."example.org"]
provider = "primary"
"#,
    );
    let d = ConfigDir::with_config(&text);
    let key = d.write("mta-stsd.key", tsig_key_file("mta-stsd", "hmac-md5"));
    let out = d.check();
    out.assert_status(1);
    let line = out.assert_error(
        &d.config_path(),
        pos1(&text, "\"mta-stsd.key\""),
        "algorithm `hmac-md5` is not supported",
    );
    assert!(
        line.contains(&key.display().to_string()),
        "the message does not name the key file\n{}",
        out.dump()
    );
    out.assert_error_count(1);
}

// --- certificates ------------------------------------------------------------------------------

#[test]
fn domain_without_certificate_source_is_an_error() {
    let text = r#"[tls]
self_signed = false

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800

[domains."example.org"]
"#;
    let d = ConfigDir::with_config(text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(text, "\"example.org\""),
        "no certificate for mta-sts.example.org",
    );
    out.assert_error_count(1);
}

#[test]
fn tls_wildcard_cert_covers_one_label_only() {
    let d = ConfigDir::new();
    let (cert, key) = write_cert(&d, "wildcard", &["*.example.org"]);
    let policy = "\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 604800\n";
    let tls = format!("[tls]\ncerts = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n");

    // mta-sts.example.org is covered by *.example.org.
    d.write(MAIN, format!("{tls}{policy}\n[domains.\"example.org\"]\n"));
    d.check().assert_clean();

    // mta-sts.sub.example.org is not: a wildcard covers exactly one label.
    let text =
        format!("{tls}{policy}\n[domains.\"example.org\"]\n\n[domains.\"sub.example.org\"]\n");
    d.write(MAIN, &text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "\"sub.example.org\""),
        "no certificate for mta-sts.sub.example.org",
    );
    out.assert_error_count(1);
}

#[test]
fn acme_provides_certificates() {
    let d = ConfigDir::with_config(
        r#"[tls]
self_signed = false

[acme]
directory = "https://acme.example.org/directory"
state = "acme"

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800

[domains."example.org"]
"#,
    );
    d.check().assert_clean();
}

/// `[acme] orders_per_hour`: a positive count of orders; 0 would never order.
#[test]
fn acme_orders_per_hour_must_be_positive() {
    let section = |n: &str| {
        format!(
            "[tls]\nself_signed = false\n\n[acme]\ndirectory = \"https://acme.example.org/directory\"\n\
             state = \"acme\"\norders_per_hour = {n}\n\n[policy]\nmode = \"enforce\"\n\
             mx = [\"mail.example.org\"]\nmax_age = 604800\n\n[domains.\"example.org\"]\n"
        )
    };
    ConfigDir::with_config(&section("30"))
        .check()
        .assert_clean();
    for bad in ["0", "-1"] {
        let text = section(bad);
        let d = ConfigDir::with_config(&text);
        let out = d.check();
        out.assert_status(1);
        out.assert_error(
            &d.config_path(),
            pos1(&text, &format!("{bad}\n\n[policy]")),
            "`orders_per_hour` must be 1 to 100000",
        );
        out.assert_error_count(1);
    }
}

#[test]
fn missing_cert_file_is_an_error_with_its_path() {
    let d = ConfigDir::new();
    let (_, key) = write_cert(&d, "present", &["mta-sts.example.org"]);
    let text = format!(
        "[tls]\nself_signed = true\ncerts = [\n  {{ cert = \"missing.crt\", key = \"{key}\" }},\n]\n\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\n\n[domains.\"example.org\"]\n"
    );
    d.write(MAIN, &text);
    let out = d.check();
    out.assert_status(1);
    out.assert_error(
        &d.config_path(),
        pos1(&text, "{ cert"),
        &format!(
            "cannot read certificate {}",
            d.file("missing.crt").display()
        ),
    );
    out.assert_error_count(1);
}

// --- warnings ----------------------------------------------------------------------------------

#[test]
fn short_max_age_in_enforce_warns() {
    let text = base("\n[domains.\"example.org\"]\nmax_age = 3600\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_valid();
    out.assert_warning(
        &d.config_path(),
        pos1(&text, "3600"),
        "max_age 3600 is below one day in `enforce` mode",
    );
    assert_eq!(out.warnings().len(), 1, "{}", out.dump());
}

#[test]
fn mode_testing_warns() {
    let text = base("\n[domains.\"example.org\"]\nmode = \"testing\"\n");
    let d = ConfigDir::with_config(&text);
    let out = d.check();
    out.assert_valid();
    out.assert_warning(
        &d.config_path(),
        pos1(&text, "\"testing\""),
        "switch to `enforce`",
    );
    assert_eq!(out.warnings().len(), 1, "{}", out.dump());
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
