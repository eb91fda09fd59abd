//! `[alerts]` fired by `drift` on change only: a real Postfix as the MX (no STARTTLS, then a
//! valid certificate), the MX in a real BIND, the command form receiving each event's JSON on
//! stdin (the HTTPS webhook is in `webhook`). A finding appears (one event), stays (none),
//! changes severity (one), clears (one).

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::harness::daemon::TestCa;
use crate::harness::dns::{free_port, free_port_on};
use crate::harness::drift::{alert_script, events, example_org, NS};
use crate::harness::postfix::{Listener, Postfix};
use crate::harness::{run_with_config, ConfigDir, MAIN};

pub(crate) const PLAIN: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);
pub(crate) const VALID: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 22);

pub(crate) fn config(dns_port: u16, smtp_port: u16, mode: &str) -> String {
    format!(
        "[server]\nhttps = [\"127.0.0.1:{}\"]\nadmin = \"127.0.0.1:0\"\n\n\
         [tls]\nself_signed = true\n\n\
         [policy]\nmode = \"{mode}\"\nmx = [\"*.example.org\"]\nmax_age = 86400\n\n\
         [domains.\"a.example.org\"]\n\n\
         [drift]\nresolver = \"{NS}:{dns_port}\"\ndns_port = {dns_port}\nhttps_port = {}\n\
         ca = \"ca.pem\"\nsmtp_port = {smtp_port}\nsmtp_timeout = \"2s\"\n\n\
         [alerts]\ncommand = \"alert.sh\"\n",
        free_port(),
        free_port()
    )
}

/// A real Postfix as the MX: an smtpd without STARTTLS on [`PLAIN`], one with a certificate
/// for `mx-a.example.org` from `ca` on [`VALID`]; their port.
pub(crate) fn mx(ca: &TestCa) -> (Postfix, u16) {
    let smtp_port = free_port_on(&[PLAIN, VALID]);
    let postfix = Postfix::start(
        &[
            Listener {
                ip: PLAIN,
                tls: None,
            },
            Listener {
                ip: VALID,
                tls: Some(ca.leaf(&["mx-a.example.org"])),
            },
        ],
        smtp_port,
    );
    (postfix, smtp_port)
}

#[test]
fn command_gets_one_event_per_change_and_none_while_nothing_changes() {
    let ca = TestCa::new();
    let (_postfix, smtp_port) = mx(&ca);
    let dns = example_org(
        "alerts-test",
        &["a MX 10 mx-a", &format!("mx-a A {PLAIN}")],
        false,
    );
    let dns_port = dns.addr.port();
    let dir = ConfigDir::new();
    dir.write("ca.pem", &ca.pem);
    alert_script(&dir);
    dir.write(MAIN, config(dns_port, smtp_port, "testing"));
    let drift = || {
        let out = run_with_config(&dir.config_path(), &["drift", "--format", "json"]);
        let report: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", out.dump()));
        report
    };
    let mx_events = |all: &[Value]| -> Vec<Value> {
        all.iter()
            .filter(|e| e["check"] == "mx-tls")
            .cloned()
            .collect()
    };

    // 1. The finding appears: one event for it (beside the other checks' first findings).
    let r1 = drift();
    let first = events(&dir);
    let mx = mx_events(&first);
    assert_eq!(mx.len(), 1, "{first:#?}");
    let e = &mx[0];
    assert_eq!(e["event"], "appeared");
    assert_eq!(e["domain"], "a.example.org");
    assert_eq!(e["severity"], "warning");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("does not offer STARTTLS"),
        "{e}"
    );
    let since = e["since"].as_u64().unwrap();
    assert_eq!(since, r1["checked_at"].as_u64().unwrap());
    for e in &first {
        let keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["check", "domain", "event", "message", "severity", "since"],
            "{e}"
        );
    }

    // 2. The same findings again: nothing fires; the report keeps the first `since`.
    let r2 = drift();
    assert_eq!(events(&dir).len(), first.len(), "{:#?}", events(&dir));
    let f2 = r2["domains"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "mx-tls")
        .unwrap()
        .clone();
    assert_eq!(f2["since"].as_u64().unwrap(), since);

    // 3. enforce: the same finding, now critical: one `changed` event, nothing else.
    dir.write(MAIN, config(dns_port, smtp_port, "enforce"));
    drift();
    let third = events(&dir);
    assert_eq!(third.len(), first.len() + 1, "{third:#?}");
    let e = third.last().unwrap();
    assert_eq!(
        (&e["event"], &e["check"], &e["severity"]),
        (&"changed".into(), &"mx-tls".into(), &"critical".into())
    );
    assert_eq!(e["since"].as_u64().unwrap(), since);

    // 4. The MX moves to a listener with a valid certificate: one `cleared` event.
    dns.nsupdate(&format!(
        "update delete mx-a.example.org. A\nupdate add mx-a.example.org. 300 IN A {VALID}"
    ));
    drift();
    let fourth = events(&dir);
    assert_eq!(fourth.len(), third.len() + 1, "{fourth:#?}");
    let e = fourth.last().unwrap();
    assert_eq!(
        (&e["event"], &e["check"], &e["severity"]),
        (&"cleared".into(), &"mx-tls".into(), &"ok".into())
    );
    assert_eq!(mx_events(&fourth).len(), 3);
}
