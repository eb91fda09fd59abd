//! `check` cases from issue 23 item 9: credentials in configured URLs are refused, and the
//! message does not repeat them.

use super::base;
use super::table::{run, Case, Out};
use crate::harness::{pos1, MAIN};

#[test]
fn issue23_9_check_refuses_credentials_in_urls_without_repeating_them() {
    let pdns = base(
        r#"
[providers.pdns]
kind = "powerdns"
url = "http://admin:hunter2@127.0.0.1:8081"
api_key_env = "PATH"

[providers.cf]
kind = "cloudflare"
base_url = "https://tok3n@api.example.net/client/v4"
api_token_env = "PATH"

[domains."example.org"]
provider = "pdns"
"#,
    );
    let acme = base(
        r#"
[acme]
directory = "https://u:p4ss@acme.example.net/dir"
contact = ["mailto:admin@example.org"]

[domains."example.org"]
"#,
    );
    let rua = base(
        r#"
[dns]
tlsrpt = ["https://reporter:s3cret@reports.example.org/v1"]

[domains."example.org"]
"#,
    );
    const NOT_ALLOWED: &str = "credentials in a URL (`user:password@`) are not allowed";
    run(vec![
        Case::new("provider_urls", &pdns)
            .error(MAIN, pos1(&pdns, "\"http://admin"), NOT_ALLOWED)
            .error(MAIN, pos1(&pdns, "\"https://tok3n"), NOT_ALLOWED)
            .output(Out::Hidden("hunter2"))
            .output(Out::Hidden("tok3n")),
        Case::new("acme_directory", &acme)
            .error(MAIN, pos1(&acme, "\"https://u:p4ss"), NOT_ALLOWED)
            .output(Out::Hidden("p4ss")),
        Case::new("published_rua", &rua)
            .error(
                MAIN,
                pos1(&rua, "\"https://reporter"),
                "would be published in DNS for anyone to read",
            )
            .output(Out::Hidden("s3cret")),
    ]);
}

/// A credential in a URL's query (`check` lets it through: some APIs want one there) is never
/// printed: `plan` against a provider that cannot be reached names the URL without it.
#[test]
fn issue23_9_errors_name_provider_urls_without_their_credentials() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there any more: the connection is refused.
    let text = base(&format!(
        r#"
[providers.pdns]
kind = "powerdns"
url = "http://127.0.0.1:{port}/?api_key=Qs3cr3t&scope=dns"
api_key_env = "PATH"

[domains."example.org"]
provider = "pdns"
zone = "example.org"
"#
    ));
    let d = crate::harness::ConfigDir::with_config(&text);
    d.check().assert_status(0);
    let plan = d.run(&["plan"]);
    plan.assert_status(1);
    assert!(
        plan.stderr.contains("cannot connect") && plan.stderr.contains("api_key=***&scope=dns"),
        "{}",
        plan.dump()
    );
    assert!(
        !plan.stdout.contains("Qs3cr3t") && !plan.stderr.contains("Qs3cr3t"),
        "{}",
        plan.dump()
    );
}
