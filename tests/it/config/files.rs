//! `check` cases across files and the world beside them: includes, `[dns]` values,
//! certificates, and the warnings of a valid config.

use super::table::{in_case_dir, run, Case, Out};
use super::{base, with_include, Rr};
use crate::harness::{pos1, pos_within, MAIN};

#[test]
fn check_cases_includes() {
    run(vec![
        {
            let main = with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n");
            let included = "# one file per domain\n[domains.\"example.net\"]\n\n[domains.\"Example.ORG\"]\nmode = \"none\"\n";
            let (l, c) = pos1(&main, "\"example.org\"");
            Case::new("domain_defined_twice_in_two_files_names_both_places", &main)
                .file("domains.d/a.toml", included)
                .error_naming(
                    "domains.d/a.toml",
                    pos1(included, "\"Example.ORG\""),
                    "domain `example.org` is defined twice",
                    format!("{}:{l}:{c}", in_case_dir(MAIN)),
                )
        },
        Case::new(
            "include_merges_domains",
            with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n"),
        )
        .file(
            "domains.d/10-example-net.toml",
            "[domains.\"example.net\"]\nmx = [\"mx.example.net\"]\n",
        )
        .file(
            "domains.d/20-example-com.toml",
            "[domains.\"example.com\"]\n",
        )
        .file("domains.d/not-included.txt", "[domains.\"example.edu\"]\n")
        .output(Out::Has("3 domains".into()))
        .output(Out::Has("3 files".into()))
        .then(
            &["policy", "example.net"],
            0,
            vec![Out::Is(
                "version: STSv1\r\nmode: enforce\r\nmx: mx.example.net\r\nmax_age: 604800\r\n"
                    .into(),
            )],
        )
        .then(
            &["records"],
            0,
            vec![Out::ZoneNames(vec![
                "_mta-sts.example.com.",
                "_mta-sts.example.net.",
                "_mta-sts.example.org.",
            ])],
        )
        .then(&["policy", "example.edu"], 1, vec![]),
        {
            let bad = "# example.com\n\n[domains.\"example.com\"]\nmode = \"enforce\"\nmax_age = \"1w\"\n";
            let syntax =
                "[domains.\"example.edu\"]\nmx = [\"mx.example.edu\" \"mx2.example.edu\"]\n";
            Case::new(
                "error_in_included_file_has_its_path_and_position",
                with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n"),
            )
            .file("domains.d/a.toml", "[domains.\"example.net\"]\n")
            .file("domains.d/b.toml", bad)
            .file("domains.d/c.toml", syntax)
            .error(
                "domains.d/b.toml",
                pos1(bad, "\"1w\""),
                "`max_age` must be an integer",
            )
            .error(
                "domains.d/c.toml",
                pos1(syntax, "\"mx2.example.edu\""),
                "TOML syntax",
            )
        },
        {
            // An empty glob is only a warning (config management may not have dropped a file
            // yet; or the pattern has a typo), at its position.
            let main = with_include(
                "\"domains.d/*.toml\", \"extra/domains.toml\"",
                "\n[domains.\"example.org\"]\n",
            );
            Case::new("missing_literal_include_is_an_error_at_the_entry", &main)
                .warning(
                    MAIN,
                    pos1(&main, "\"domains.d/*.toml\""),
                    "include `domains.d/*.toml` matches no file",
                )
                .error_naming(
                    MAIN,
                    pos1(&main, "\"extra/domains.toml\""),
                    "include `extra/domains.toml`",
                    in_case_dir("extra/domains.toml"),
                )
        },
        Case::new(
            "includes_pass_once_their_files_exist",
            with_include(
                "\"domains.d/*.toml\", \"extra/domains.toml\"",
                "\n[domains.\"example.org\"]\n",
            ),
        )
        .file("extra/domains.toml", "[domains.\"example.net\"]\n")
        .file("domains.d/c.toml", "[domains.\"example.com\"]\n"),
        {
            let main = with_include(
                "\"domains.d/*.toml\"",
                "\n[domains.\"example.org\"]\nmode = \"strict\"\n",
            );
            let included = "[domains.\"example.net\"]\nttl = -5\n";
            Case::new("diagnostic_paths_are_as_the_binary_saw_them", &main)
                .relative()
                .file("domains.d/net.toml", included)
                .error(MAIN, pos1(&main, "\"strict\""), "mode `strict`")
                .error(
                    "domains.d/net.toml",
                    pos1(included, "-5"),
                    "ttl -5 is outside",
                )
        },
        {
            let included = "[domains.\"example.net\"]\n\n[server]\nhttps = [\"127.0.0.1:8443\"]\n";
            Case::new(
                "server_in_included_file_is_an_error",
                with_include("\"domains.d/*.toml\"", "\n[domains.\"example.org\"]\n"),
            )
            .file("domains.d/net.toml", included)
            .error(
                "domains.d/net.toml",
                pos1(included, "server"),
                "`server` may appear only in the main config file",
            )
        },
    ]);
}

#[test]
fn check_cases_dns_values() {
    run(vec![
        {
            let text =
                base("\n[dns]\ntarget = \"mail server.example.org.\"\n\n[domains.\"example.org\"]\n");
            Case::new("target_must_be_a_valid_name", &text).error(
                MAIN,
                pos1(&text, "\"mail server.example.org.\""),
                "target `mail server.example.org`: character ` ` is not allowed",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nttl = 0\n");
            Case::new("ttl_zero_is_an_error", &text).error(
                MAIN,
                pos_within(&text, "ttl = 0", "0"),
                "ttl 0 is outside 1..=2147483647",
            )
        },
        {
            let text = base("\n[dns]\nttl = 2147483648\n\n[domains.\"example.org\"]\n");
            Case::new("ttl_too_big_is_an_error", &text).error(
                MAIN,
                pos1(&text, "2147483648"),
                "ttl 2147483648 is outside 1..=2147483647",
            )
        },
        {
            let text = base(
                "\n[dns]\ntlsrpt = [\"http://reports.example.org/tlsrpt\"]\n\n[domains.\"example.org\"]\n",
            );
            Case::new("rua_http_scheme_is_an_error", &text).error(
                MAIN,
                pos1(&text, "\"http://"),
                "must be a mailto: or https:// URI",
            )
        },
        {
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
            Case::new("rua_raw_delimiters_must_be_percent_encoded", &text)
                .error(
                    MAIN,
                    pos1(&text, "\"mailto:a@"),
                    "`,` must be percent-encoded as %2C",
                )
                .error(
                    MAIN,
                    pos1(&text, "\"mailto:tls!"),
                    "`!` must be percent-encoded as %21",
                )
                .error(
                    MAIN,
                    pos1(&text, "\"https://reports"),
                    "`;` must be percent-encoded as %3B",
                )
        },
        Case::new(
            "rua_mailto_and_https_pass_and_are_published",
            base(
                r#"
[dns]
ttl = 300
tlsrpt = ["mailto:tls%2Crpt@example.org", "https://reports.example.org/v1/tlsrpt"]

[domains."example.org"]
"#,
            ),
        )
        .then(
            &["records"],
            0,
            vec![Out::ZoneHas(Rr::txt(
                "_smtp._tls.example.org.",
                300,
                "v=TLSRPTv1; rua=mailto:tls%2Crpt@example.org,https://reports.example.org/v1/tlsrpt;",
            ))],
        ),
    ]);
}

const POLICY: &str =
    "\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 604800\n";
const WILDCARD_TLS: &str = "[tls]\ncerts = [{ cert = \"wildcard.crt\", key = \"wildcard.key\" }]\n";

/// `[acme] orders_per_hour = n`: a positive count of orders; 0 would never order.
fn orders_per_hour(n: &str) -> String {
    format!(
        "[tls]\nself_signed = false\n\n[acme]\ndirectory = \"https://acme.example.org/directory\"\n\
         state = \"acme\"\norders_per_hour = {n}\n\n[policy]\nmode = \"enforce\"\n\
         mx = [\"mail.example.org\"]\nmax_age = 604800\n\n[domains.\"example.org\"]\n"
    )
}

#[test]
fn check_cases_certificates_and_warnings() {
    run(vec![
        {
            let text = r#"[tls]
self_signed = false

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800

[domains."example.org"]
"#;
            Case::new("domain_without_certificate_source_is_an_error", text).error(
                MAIN,
                pos1(text, "\"example.org\""),
                "no certificate for mta-sts.example.org",
            )
        },
        // mta-sts.example.org is covered by *.example.org.
        Case::new(
            "tls_wildcard_cert_covers_its_label",
            format!("{WILDCARD_TLS}{POLICY}\n[domains.\"example.org\"]\n"),
        )
        .cert("wildcard", &["*.example.org"]),
        {
            // mta-sts.sub.example.org is not: a wildcard covers exactly one label.
            let text = format!(
                "{WILDCARD_TLS}{POLICY}\n[domains.\"example.org\"]\n\n[domains.\"sub.example.org\"]\n"
            );
            Case::new("tls_wildcard_cert_covers_one_label_only", &text)
                .cert("wildcard", &["*.example.org"])
                .error(
                    MAIN,
                    pos1(&text, "\"sub.example.org\""),
                    "no certificate for mta-sts.sub.example.org",
                )
        },
        Case::new(
            "acme_provides_certificates",
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
        ),
        Case::new("acme_orders_per_hour_30_passes", orders_per_hour("30")),
        {
            let text = orders_per_hour("0");
            Case::new("acme_orders_per_hour_0_is_an_error", &text).error(
                MAIN,
                pos1(&text, "0\n\n[policy]"),
                "`orders_per_hour` must be 1 to 100000",
            )
        },
        {
            let text = orders_per_hour("-1");
            Case::new("acme_orders_per_hour_negative_is_an_error", &text).error(
                MAIN,
                pos1(&text, "-1\n\n[policy]"),
                "`orders_per_hour` must be 1 to 100000",
            )
        },
        {
            let text = "[tls]\nself_signed = true\ncerts = [\n  { cert = \"missing.crt\", key = \"present.key\" },\n]\n\n[policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\n\n[domains.\"example.org\"]\n";
            Case::new("missing_cert_file_is_an_error_with_its_path", text)
                .cert("present", &["mta-sts.example.org"])
                .error(
                    MAIN,
                    pos1(text, "{ cert"),
                    format!("cannot read certificate {}", in_case_dir("missing.crt")),
                )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmax_age = 3600\n");
            Case::new("short_max_age_in_enforce_warns", &text).warning(
                MAIN,
                pos1(&text, "3600"),
                "max_age 3600 is below one day in `enforce` mode",
            )
        },
        {
            let text = base("\n[domains.\"example.org\"]\nmode = \"testing\"\n");
            Case::new("mode_testing_warns", &text).warning(
                MAIN,
                pos1(&text, "\"testing\""),
                "switch to `enforce`",
            )
        },
    ]);
}
