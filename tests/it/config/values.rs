//! `check` cases on the values of one file: unknown keys, types and syntax, the policy's
//! values, MX patterns and domain names.

use super::table::{run, world_readable, Case, Out};
use super::{base, BASE};
use crate::harness::{pos1, pos_within, tsig_key_file, MAIN};

#[test]
fn check_cases_keys_types_and_syntax() {
    run(vec![
        {
            let text = base(
                r#"
[dns]
ttl = 0

[domains."example.org"]
mode = "strict"
colour = "blue"
"#,
            );
            Case::new("every_problem_is_reported_not_only_the_first", &text)
                .error(
                    MAIN,
                    pos_within(&text, "ttl = 0", "0"),
                    "ttl 0 is outside 1..=2147483647",
                )
                .error(MAIN, pos1(&text, "\"strict\""), "mode `strict`")
                .error(MAIN, pos1(&text, "colour"), "unknown key `colour`")
        },
        {
            // Leases are counted in whole seconds and renewed every third of their length.
            let text = format!("[state]\nlease = \"1s\"\n\n{BASE}\n[domains.\"example.org\"]\n");
            Case::new("a_lease_under_two_seconds_is_refused", &text).error(
                MAIN,
                pos1(&text, "\"1s\""),
                "`lease` must be at least 2s",
            )
        },
        {
            // LISTEN is PostgreSQL's: the SQLite store has no session to listen on.
            let text = format!("[state]\nlisten = true\n\n{BASE}\n[domains.\"example.org\"]\n");
            Case::new("listen_without_a_postgresql_url_is_refused", &text).error(
                MAIN,
                pos_within(&text, "listen = true", "true"),
                "`listen` needs the store on PostgreSQL",
            )
        },
        {
            // Top-level keys come before the first table.
            let text = format!("logging = \"debug\"\n\n{BASE}\n[domains.\"example.org\"]\n");
            Case::new("unknown_key_at_top_level", &text).error(
                MAIN,
                pos1(&text, "logging"),
                "unknown key `logging` in the top level",
            )
        },
        {
            let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800
max-age = 86400

[domains."example.org"]
"#;
            Case::new("unknown_key_in_policy", text).error(
                MAIN,
                pos1(text, "max-age"),
                "unknown key `max-age` in [policy]",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmx_hosts = [\"mail.example.org\"]\n");
            Case::new("unknown_key_in_domain", &text).error(
                MAIN,
                pos1(&text, "mx_hosts"),
                "unknown key `mx_hosts` in [domains.\"example.org\"]",
            )
        },
        {
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
            Case::new("unknown_key_in_provider", &text)
                .file("mta-stsd.key", tsig_key_file("mta-stsd", "hmac-sha256"))
                .error(
                    MAIN,
                    pos1(&text, "port"),
                    "unknown key `port` in [providers.primary]",
                )
                .warning(
                    MAIN,
                    pos1(&text, "\"mta-stsd.key\""),
                    world_readable("mta-stsd.key"),
                )
        },
        {
            let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = "1d"

[domains."example.org"]
"#;
            Case::new("wrong_type_max_age_string", text).error(
                MAIN,
                pos1(text, "\"1d\""),
                "`max_age` must be an integer, not string",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmx = \"a.example\"\n");
            Case::new("wrong_type_mx_string", &text).error(
                MAIN,
                pos1(&text, "\"a.example\""),
                "`mx` must be an array of strings, not string",
            )
        },
        {
            let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org" "backup.example.org"]
max_age = 604800

[domains."example.org"]
"#;
            // The missing comma is noticed at the second element.
            Case::new("toml_syntax_error_has_position", text).error(
                MAIN,
                pos1(text, "\"backup.example.org\""),
                "TOML syntax: missing comma",
            )
        },
    ]);
}

#[test]
fn check_cases_policy_values() {
    run(vec![
        {
            let text = base("\n[domains.\"example.org\"]\nmode = \"Enforce\"\n");
            Case::new("mode_must_be_enforce_testing_or_none", &text).error(
                MAIN,
                pos1(&text, "\"Enforce\""),
                "mode `Enforce` is not one of `enforce`, `testing`, `none`",
            )
        },
        {
            // `mode` was written: no "no `mode` in [policy]" warning on top of the error.
            let text = r#"[tls]
self_signed = true

[policy]
mode = "enforcing"
mx = ["mail.example.org"]
max_age = 604800

[domains."example.org"]
"#;
            Case::new(
                "invalid_mode_in_policy_is_one_error_without_follow_on_warning",
                text,
            )
            .error(
                MAIN,
                pos1(text, "\"enforcing\""),
                "mode `enforcing` is not one of",
            )
        },
        {
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
            Case::new("invalid_mx_is_reported_once_not_again_per_domain", text).error(
                MAIN,
                pos1(text, "\"mail_1.example.org\""),
                "character `_` is not allowed",
            )
        },
        {
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
            Case::new("invalid_domain_mx_is_not_also_a_missing_mx", text)
                .error(MAIN, pos1(text, "\"enforcing\""), "mode `enforcing`")
                .error(MAIN, pos1(text, "\"mail_1.example.org\""), "character `_`")
                .error(MAIN, pos1(text, "\"mail_1.example.net\""), "character `_`")
        },
        {
            // An empty [policy] mx in `enforce`: reported once, at [policy].
            let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = []

[domains."example.org"]
[domains."example.net"]
"#;
            Case::new("empty_policy_mx_is_reported_once", text).error(
                MAIN,
                pos1(text, "[]"),
                "`mx` is empty",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmax_age = 31557601\n");
            Case::new("max_age_above_limit_is_an_error", &text).error(
                MAIN,
                pos1(&text, "31557601"),
                "max_age 31557601 is outside 0..=31557600",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmax_age = -1\n");
            Case::new("max_age_negative_is_an_error", &text).error(
                MAIN,
                pos1(&text, "-1"),
                "max_age -1 is outside 0..=31557600",
            )
        },
        Case::new(
            "max_age_at_limit_passes",
            base("\n[domains.\"example.org\"]\nmax_age = 31557600\n"),
        )
        .then(
            &["policy", "example.org"],
            0,
            vec![Out::EndsWith("max_age: 31557600\r\n".into())],
        ),
        {
            let text = base("\n[domains.\"example.org\"]\nmx = []\n");
            Case::new("empty_mx_is_an_error_in_enforce", &text).error(
                MAIN,
                pos1(&text, "[]"),
                "`mx` is empty but mode is `enforce`",
            )
        },
        Case::new(
            "empty_mx_passes_in_mode_none",
            base("\n[domains.\"example.org\"]\nmode = \"none\"\nmx = []\n"),
        ),
        Case::new(
            "mode_none_without_mx_passes",
            r#"[tls]
self_signed = true

[policy]
mode = "none"
max_age = 86400

[domains."example.org"]
"#,
        )
        .then(
            &["policy", "example.org"],
            0,
            vec![Out::Is(
                "version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n".into(),
            )],
        ),
        {
            let text = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
max_age = 604800

[domains."example.org"]

[domains."example.net"]
mx = ["mail.example.net"]
"#;
            Case::new("domain_without_mx_anywhere_is_an_error", text).error(
                MAIN,
                pos1(text, "\"example.org\""),
                "domain `example.org` has no `mx`",
            )
        },
    ]);
}

#[test]
fn check_cases_mx_patterns_and_domain_names() {
    run(vec![
        {
            // After a non-ASCII pattern on the same line: columns count characters, not bytes.
            let text = base(
                "\n[domains.\"example.org\"]\nmx = [\"mäil.example.org\", \"mail_1.example.org\"]\n",
            );
            Case::new("mx_invalid_hostname_is_an_error", &text)
                .error(
                    MAIN,
                    pos1(&text, "\"mail_1.example.org\""),
                    "character `_` is not allowed",
                )
                .warning(
                    MAIN,
                    pos1(&text, "\"mäil.example.org\""),
                    "`xn--mil-qla.example.org`",
                )
        },
        {
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
            Case::new("mx_wildcard_must_be_the_whole_leftmost_label", &text)
                .error(
                    MAIN,
                    pos1(&text, "\"a.*.example\""),
                    "`*` is allowed only as the whole left-most label",
                )
                .error(
                    MAIN,
                    pos1(&text, "\"*mail.example\""),
                    "`*` is allowed only as the whole left-most label",
                )
        },
        {
            let text =
                base("\n[domains.\"example.org\"]\nmx = [\"mail.example.org\", \"192.0.2.25\"]\n");
            Case::new("mx_ip_address_is_an_error", &text).error(
                MAIN,
                pos1(&text, "\"192.0.2.25\""),
                "is an IP address",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmx = [\"mail.example.org.\"]\n");
            Case::new("mx_trailing_dot_is_an_error", &text).error(
                MAIN,
                pos1(&text, "\"mail.example.org.\""),
                "without the trailing dot",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmx = [\"mäil.example.org\"]\n");
            Case::new("mx_u_label_is_converted_with_a_warning", &text)
                .warning(
                    MAIN,
                    pos1(&text, "\"mäil.example.org\""),
                    "`xn--mil-qla.example.org`",
                )
                .then(
                    &["policy", "example.org"],
                    0,
                    vec![Out::Has("mx: xn--mil-qla.example.org\r\n".into())],
                )
        },
        Case::new(
            "mx_uppercase_is_lowercased_in_the_body",
            base("\n[domains.\"example.org\"]\nmx = [\"MAIL.Example.ORG\", \"*.MX.example.NET\"]\n"),
        )
        .then(
            &["policy", "example.org"],
            0,
            vec![Out::Is(
                "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.mx.example.net\r\nmax_age: 604800\r\n"
                    .into(),
            )],
        ),
        {
            let text = base("\n[domains.\"exa_mple.org\"]\n\n[domains.\"example.org\"]\n");
            Case::new("invalid_domain_name_is_an_error", &text).error(
                MAIN,
                pos1(&text, "\"exa_mple.org\""),
                "domain `exa_mple.org`: character `_` is not allowed",
            )
        },
        {
            // Known by either spelling: commands::u_label_domain_is_known_by_either_spelling.
            let text = base("\n[domains.\"bücher.example\"]\n");
            Case::new("u_label_domain_is_converted_with_a_warning", &text)
                .warning(
                    MAIN,
                    pos1(&text, "\"bücher.example\""),
                    "`xn--bcher-kva.example`",
                )
                .then(
                    &["records"],
                    0,
                    vec![Out::Has("_mta-sts.xn--bcher-kva.example.\t".into())],
                )
        },
    ]);
}
