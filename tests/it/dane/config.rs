//! `[[dane]]` without servers: its keys checked like every table, what `records` prints, and
//! `check` on a provider that cannot publish TLSA.

use rcgen::KeyPair;

use crate::dane::records::{spki_sha256, Ca, NAME};
use crate::harness::{pos, pos_nth, ConfigDir, MAIN};

/// `[[dane]]` keys are checked like every table, and `records` prints the TLSA records the
/// files give: 3 1 1 of the leaf and next key, 2 1 1 of the CA.
#[test]
fn config_and_records() {
    let dir = ConfigDir::new();
    let ca = Ca::new();
    let (a, b) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    dir.write("fullchain.pem", ca.fullchain(&a));
    dir.write("next.pub", b.public_key_pem());
    let text = "[server]\nhttps = []\n[policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\n[dns]\nttl = 300\n[domains.\"example.org\"]\n[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\nnext_key = \"next.pub\"\nissuer = true\n";
    dir.write(MAIN, format!("{text}certificate = \"x\"\n"));
    let out = crate::harness::run_with_config(&dir.config_path(), &["check"]);
    let main = dir.config_path();
    let bad = std::fs::read_to_string(&main).unwrap();
    out.assert_error(
        &main,
        pos(&bad, "certificate ="),
        "unknown key `certificate` in [[dane]]",
    );

    dir.write(MAIN, text);
    let out = crate::harness::run_with_config(&dir.config_path(), &["records"]);
    let stdout = &out.stdout;
    let hex = |d: Vec<u8>| d.iter().map(|b| format!("{b:02X}")).collect::<String>();
    for (usage, key) in [(3, &a), (3, &b), (2, &ca.key)] {
        let line = format!(
            "{NAME}\t300\tIN\tTLSA\t{usage} 1 1 {}",
            hex(spki_sha256(key))
        );
        assert!(stdout.contains(&line), "no {line:?} in:\n{stdout}");
    }
}

/// The same host twice is an error at the second entry naming the first.
#[test]
fn a_host_listed_twice_names_both_places() {
    let dir = ConfigDir::new();
    dir.write(
        "fullchain.pem",
        Ca::new().fullchain(&KeyPair::generate().unwrap()),
    );
    let entry = "[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\n";
    let text = format!("[server]\nhttps = []\n[policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\n{entry}{entry}");
    dir.write(MAIN, &text);
    let out = crate::harness::run_with_config(&dir.config_path(), &["check"]);
    let first = pos(&text, "[[dane]]");
    let msg = out.assert_error(
        &dir.config_path(),
        pos_nth(&text, "[[dane]]", 1),
        "[[dane]] host `mail.example.org` is listed twice",
    );
    assert!(msg.contains(&format!(":{}:{}", first.0, first.1)), "{msg}");
}

/// A provider that cannot write TLSA: `check` fails on it rather than every round later.
#[test]
fn check_names_a_provider_that_cannot_publish_tlsa() {
    let dir = ConfigDir::new();
    dir.write(
        "fullchain.pem",
        Ca::new().fullchain(&KeyPair::generate().unwrap()),
    );
    let token = dir.write("cf.token", "t\n");
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = []\n[policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\n[dns]\nprovider = \"cf\"\n[providers.cf]\nkind = \"cloudflare\"\nbase_url = \"http://127.0.0.1:9\"\napi_token_file = \"{}\"\n[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\n",
            token.display()
        ),
    );
    let out = crate::harness::run_with_config(&dir.config_path(), &["check"]);
    assert!(
        out.stderr
            .contains("error: [[dane]] mail.example.org: provider cf cannot publish TLSA"),
        "{}",
        out.dump()
    );
    assert_eq!(out.status, Some(1), "{}", out.dump());
    assert!(out.stderr.contains("invalid: 1 error"), "{}", out.dump());
}
