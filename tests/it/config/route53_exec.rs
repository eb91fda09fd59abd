//! `check` cases on `[providers.*]` of kind `route53` (AWS credentials from files or the SDKs'
//! variables) and `exec` (`command`).

use super::base;
use super::table::{run, Case};
use crate::harness::{pos1, MAIN};

#[test]
fn check_cases_route53_and_exec() {
    run(vec![
        {
            let text = base(
                r#"
[providers.aws]
kind = "route53"
access_key_id_file = "aws.id"
secret_access_key_file = "aws.secret"
endpoint = "http://127.0.0.1:5000"

[providers.other]
kind = "exec"
command = ["./dns-helper", "--account", "main"]

[domains."example.org"]
provider = "aws"

[domains."example.net"]
provider = "other"
"#,
            );
            Case::new("route53_from_files_and_exec_are_valid", &text)
                .file_mode("aws.id", "AKIDEXAMPLE\n", 0o640)
                .file_mode("aws.secret", "secret\n", 0o640)
        },
        {
            // No keys given: the SDKs' variables, which must then be set (the session token
            // only when given).
            let text = base(
                r#"
[providers.aws]
kind = "route53"

[domains."example.org"]
provider = "aws"
"#,
            );
            Case::new("route53_default_variables_must_be_set", &text)
                .env("AWS_ACCESS_KEY_ID", None)
                .env("AWS_SECRET_ACCESS_KEY", Some("secret"))
                .env("AWS_SESSION_TOKEN", None)
                .error(
                    MAIN,
                    pos1(&text, "[providers.aws]"),
                    "[providers.aws]: environment variable AWS_ACCESS_KEY_ID is not set (or give `access_key_id_file` or `access_key_id_env`)",
                )
        },
        {
            let text = base(
                r#"
[providers.aws]
kind = "route53"
access_key_id_env = "MTA_STSD_IT_AWS_ID"
secret_access_key_env = "MTA_STSD_IT_AWS_SECRET"
session_token_file = "missing.token"
secret_access_key = "inline"

[domains."example.org"]
provider = "aws"
"#,
            );
            Case::new("route53_given_token_must_exist_and_no_inline_secret", &text)
                .env("MTA_STSD_IT_AWS_ID", Some("AKIDEXAMPLE"))
                .env("MTA_STSD_IT_AWS_SECRET", Some("secret"))
                .error(
                    MAIN,
                    pos1(&text, "secret_access_key ="),
                    "`secret_access_key`: secrets are not allowed inline",
                )
                .error(
                    MAIN,
                    pos1(&text, "\"missing.token\""),
                    "cannot read secret file",
                )
        },
        {
            let text = base(
                r#"
[providers.a]
kind = "exec"

[providers.b]
kind = "exec"
command = []

[providers.c]
kind = "exec"
command = "dns-helper --account main"

[domains."example.org"]
provider = "a"
"#,
            );
            Case::new("exec_needs_a_command_array", &text)
                .error(
                    MAIN,
                    pos1(&text, "[providers.a]"),
                    "[providers.a] needs `command`",
                )
                .error(
                    MAIN,
                    pos1(&text, "[]"),
                    "`command` needs at least the program",
                )
                .error(
                    MAIN,
                    pos1(&text, "\"dns-helper --account main\""),
                    "`command`",
                )
        },
    ]);
}
