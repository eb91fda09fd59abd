//! `check` cases on `[providers.*]`: undefined names, secrets (never inline, never printed,
//! files and variables that must exist), every problem of several providers at once.

use super::base;
use super::table::{in_case_dir, run, world_readable, Case, Out};
use crate::harness::{pos1, tsig_key_file, MAIN};

const UNSET: &str = "MTA_STSD_IT_PDNS_KEY_UNSET";
const ALSO_UNSET: &str = "MTA_STSD_IT_PDNS_KEY_ALSO_UNSET";

#[test]
fn check_cases_providers() {
    run(vec![
        {
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
            Case::new("undefined_provider_is_an_error", &text)
                .file("pdns.key", "secret-key\n")
                .error(
                    MAIN,
                    pos1(&text, "\"primary\""),
                    "provider `primary` is not defined (defined: pdns)",
                )
                .error(
                    MAIN,
                    pos1(&text, "\"cloudflare\""),
                    "provider `cloudflare` is not defined",
                )
                .warning(
                    MAIN,
                    pos1(&text, "\"pdns.key\""),
                    world_readable("pdns.key"),
                )
        },
        {
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
            Case::new("inline_secret_is_an_error", &text)
                .file("pdns.key", "secret-key\n")
                .file("mta-stsd.key", tsig_key_file("mta-stsd", "hmac-sha256"))
                .error(
                    MAIN,
                    pos1(&text, "api_key ="),
                    "`api_key`: secrets are not allowed inline",
                )
                .error(
                    MAIN,
                    pos1(&text, "secret ="),
                    "`secret`: secrets are not allowed inline",
                )
                .warning(
                    MAIN,
                    pos1(&text, "\"pdns.key\""),
                    world_readable("pdns.key"),
                )
                .warning(
                    MAIN,
                    pos1(&text, "\"mta-stsd.key\""),
                    world_readable("mta-stsd.key"),
                )
                .output(Out::Hidden("changeme"))
                .output(Out::Hidden("8rgF3Ehc"))
        },
        {
            let text = base(&format!(
                r#"
[providers.a]
kind = "rfc2136"

[providers.b]
kind = "powerdns"
api_key_env = "{ALSO_UNSET}"

[providers.c]
knd = "cloudflare"
api_token_env = "CLOUDFLARE_API_TOKEN"

[domains."example.org"]
"#
            ));
            Case::new("every_provider_problem_is_reported", &text)
                .env(ALSO_UNSET, None)
                .error(
                    MAIN,
                    pos1(&text, "[providers.a]"),
                    "[providers.a] needs `server`",
                )
                .error(
                    MAIN,
                    pos1(&text, "[providers.a]"),
                    "[providers.a] needs `tsig_key`",
                )
                .error(
                    MAIN,
                    pos1(&text, "[providers.b]"),
                    "[providers.b] needs `url`",
                )
                .error(
                    MAIN,
                    pos1(&text, &format!("\"{ALSO_UNSET}\"")),
                    format!("environment variable {ALSO_UNSET} is not set"),
                )
                .error(
                    MAIN,
                    pos1(&text, "[providers.c]"),
                    "[providers.c] needs `kind`",
                )
                .error(
                    MAIN,
                    pos1(&text, "knd"),
                    "unknown key `knd` in [providers.c]",
                )
        },
        {
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
            Case::new("api_key_file_missing_is_an_error_with_its_path", &text).error(
                MAIN,
                pos1(&text, "\"secrets/pdns.key\""),
                in_case_dir("secrets/pdns.key"),
            )
        },
        {
            let text = base(&pdns_key_env());
            Case::new("api_key_env_unset_is_an_error", &text)
                .env(UNSET, None)
                .error(
                    MAIN,
                    pos1(&text, &format!("\"{UNSET}\"")),
                    format!("environment variable {UNSET} is not set"),
                )
        },
        // Set, it passes, and the key is never printed.
        Case::new("api_key_env_set_passes_unprinted", base(&pdns_key_env()))
            .env(UNSET, Some("s3cr3t-api-key"))
            .output(Out::Hidden("s3cr3t")),
        // As the install steps leave the key (a world-readable key is a warning).
        Case::new(
            "rfc2136_with_tsig_keygen_key_file_passes",
            base(
                r#"
[dns]
provider = "primary"

[providers.primary]
kind = "rfc2136"
server = "ns1.example.org:5353"
tsig_key = "mta-stsd.key"

[domains."example.org"]
"#,
            ),
        )
        .file_mode(
            "mta-stsd.key",
            tsig_key_file("mta-stsd", "hmac-sha256"),
            0o640,
        )
        .output(Out::Has(" 1 provider,".into()))
        .then(&["records"], 0, vec![Out::Has("provider primary".into())]),
        {
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
            Case::new("tsig_hmac_md5_is_an_error", &text)
                .file("mta-stsd.key", tsig_key_file("mta-stsd", "hmac-md5"))
                .error_naming(
                    MAIN,
                    pos1(&text, "\"mta-stsd.key\""),
                    "algorithm `hmac-md5` is not supported",
                    in_case_dir("mta-stsd.key"),
                )
                .warning(
                    MAIN,
                    pos1(&text, "\"mta-stsd.key\""),
                    world_readable("mta-stsd.key"),
                )
        },
    ]);
}

/// A PowerDNS provider whose key is in the environment variable [`UNSET`].
fn pdns_key_env() -> String {
    format!(
        r#"
[providers.pdns]
kind = "powerdns"
url = "http://127.0.0.1:8081"
api_key_env = "{UNSET}"

[domains."example.org"]
provider = "pdns"
"#
    )
}
