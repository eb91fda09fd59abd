//! `records --format`: each format read back by what reads it — hickory's zone-file parser for
//! `bind`, serde for `json`, octoDNS's own YamlProvider (from a venv) for `octodns`, node
//! evaluating the `dnscontrol` JavaScript — and holding the records the config wants.

use std::process::Command;

use serde_json::Value;

use crate::config::{base, parse_zone, Rr};
use crate::harness::venv::venv;
use crate::harness::ConfigDir;
use crate::providers::battery::policy_id;

/// Two domains in example.org (one with a TLS-RPT TXT over 255 octets), one without `zone`.
fn config() -> (ConfigDir, String) {
    let rua = format!("mailto:{}@example.org", "r".repeat(260));
    let dir = ConfigDir::with_config(&base(&format!(
        r#"
[dns]
target = "mail.example.org."
ttl = 3600

[domains."a.example.org"]
zone = "example.org"
tlsrpt = ["{rua}"]

[domains."b.example.org"]
zone = "example.org"

[domains."example.net"]
"#
    )));
    (dir, format!("v=TLSRPTv1; rua={rua};"))
}

fn records(dir: &ConfigDir, format: &str, domains: &[&str]) -> String {
    let mut args = vec!["records", "--format", format];
    args.extend(domains);
    let out = dir.run(&args);
    out.assert_status(0);
    out.stdout
}

#[test]
fn bind_is_a_zone_file_fragment_per_zone() {
    let (dir, tlsrpt) = config();
    let text = records(&dir, "bind", &["a.example.org", "b.example.org"]);
    assert!(text.contains("$ORIGIN example.org.\n"), "{text}");
    assert!(text.contains("\n_mta-sts.a\t3600\tIN\tTXT\t"), "{text}");
    let id = policy_id(&dir, "a.example.org");
    let sts = format!("v=STSv1; id={id};");
    let mut want = vec![
        Rr::txt("_mta-sts.a.example.org.", 3600, &sts),
        Rr::cname("mta-sts.a.example.org.", 3600, "mail.example.org."),
        Rr {
            strings: vec![tlsrpt[..255].to_owned(), tlsrpt[255..].to_owned()],
            ..Rr::txt("_smtp._tls.a.example.org.", 3600, "")
        },
        Rr::txt("_mta-sts.b.example.org.", 3600, &sts),
        Rr::cname("mta-sts.b.example.org.", 3600, "mail.example.org."),
    ];
    want.sort();
    assert_eq!(parse_zone(&text), want);
}

#[test]
fn json_holds_every_record_unquoted() {
    let (dir, tlsrpt) = config();
    let v: Value = serde_json::from_str(&records(&dir, "json", &[])).expect("JSON");
    let domains = v["domains"].as_array().expect("domains");
    assert_eq!(domains.len(), 3);
    let a = &domains[0];
    assert_eq!(a["domain"], "a.example.org");
    assert_eq!(a["zone"], "example.org.");
    assert_eq!(a["policy_id"], policy_id(&dir, "a.example.org"));
    let txt: Vec<&str> = a["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["type"] == "TXT")
        .map(|r| r["value"].as_str().expect("value"))
        .collect();
    let id = policy_id(&dir, "a.example.org");
    assert_eq!(txt, vec![format!("v=STSv1; id={id};"), tlsrpt]);
    assert_eq!(domains[2]["zone"], Value::Null);
}

/// octoDNS 1.x's YamlProvider loads the zone file we print (names in order, `;` escaped) and
/// holds our records.
#[test]
fn octodns_yaml_loads_in_octodns() {
    let (dir, tlsrpt) = config();
    let text = records(&dir, "octodns", &["a.example.org", "b.example.org"]);
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).expect("zones dir");
    std::fs::write(zones.join("example.org.yaml"), &text).expect("zone file");
    let venv = venv(
        "octodns-venv",
        "MTA_STSD_OCTODNS_VENV",
        OCTODNS,
        "octodns-validate",
    );
    let script = r#"
import sys
from octodns.provider.yaml import YamlProvider
from octodns.zone import Zone
zone = Zone("example.org.", [])
YamlProvider("config", sys.argv[1]).populate(zone)
for r in sorted(zone.records, key=lambda r: (r.name, r._type)):
    values = r.values if hasattr(r, "values") else [r.value]
    for v in values:
        print("%s %s %d %s" % (r.name, r._type, r.ttl, v))
"#;
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(&zones)
        .output()
        .expect("running octoDNS");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "octoDNS refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = policy_id(&dir, "a.example.org");
    let esc = |s: &str| s.replace(';', "\\;");
    let want = format!(
        "_mta-sts.a TXT 3600 {sts}\n_mta-sts.b TXT 3600 {sts}\n_smtp._tls.a TXT 3600 {rpt}\nmta-sts.a CNAME 3600 mail.example.org.\nmta-sts.b CNAME 3600 mail.example.org.\n",
        sts = esc(&format!("v=STSv1; id={id};")),
        rpt = esc(&tlsrpt)
    );
    assert_eq!(stdout, want);
}

/// The release line the test installs (`scripts/test.sh` makes the venv).
const OCTODNS: &str = "octodns==1.*";

/// The dnsconfig.js calls, run by node with the functions dnscontrol defines (D_EXTEND, TXT,
/// CNAME, TTL) recording their arguments.
#[test]
fn dnscontrol_js_evaluates_to_our_records() {
    let (dir, tlsrpt) = config();
    let js = records(&dir, "dnscontrol", &[]);
    let prelude = r#"
const out = [];
const TTL = (t) => ({ ttl: t });
const rec = (type) => (name, value, ttl) => ({ type, name, value, ttl: ttl.ttl });
const TXT = rec("TXT"), CNAME = rec("CNAME");
function D_EXTEND(zone, ...records) { for (const r of records) out.push([zone, r.type, r.name, r.value, r.ttl]); }
"#;
    let program = format!("{prelude}\n{js}\nconsole.log(JSON.stringify(out));");
    let out = Command::new("node")
        .args(["-e", &program])
        .output()
        .expect("node (Debian package nodejs)");
    assert!(
        out.status.success(),
        "node: {}\n{js}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(String, String, String, String, u32)> =
        serde_json::from_slice(&out.stdout).expect("JSON from node");
    let id = policy_id(&dir, "a.example.org");
    let sts = format!("v=STSv1; id={id};");
    let row = |z: &str, t: &str, n: &str, v: &str| (z.into(), t.into(), n.into(), v.into(), 3600);
    assert_eq!(
        got,
        vec![
            row("example.net", "TXT", "_mta-sts", &sts),
            row("example.net", "CNAME", "mta-sts", "mail.example.org."),
            row("example.org", "TXT", "_mta-sts.a", &sts),
            row("example.org", "CNAME", "mta-sts.a", "mail.example.org."),
            row("example.org", "TXT", "_smtp._tls.a", &tlsrpt),
            row("example.org", "TXT", "_mta-sts.b", &sts),
            row("example.org", "CNAME", "mta-sts.b", "mail.example.org."),
        ]
    );
}

/// A delegated domain (RFC 8461 §8.2): the customer's CNAMEs in their zone (the domain), our
/// TXT in the delegation zone.
#[test]
fn delegated_records_go_to_their_zones() {
    let dir = ConfigDir::with_config(&base(
        r#"
[dns]
target = "mail.sts.example"
delegated = true

[delegation]
zone = "sts.example"

[domains."customer.test"]
"#,
    ));
    let text = records(&dir, "bind", &[]);
    let id = policy_id(&dir, "customer.test");
    let customer = text
        .split("$ORIGIN customer.test.\n")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .unwrap_or_else(|| panic!("no customer zone:\n{text}"));
    assert!(
        customer.contains("\n_mta-sts\t3600\tIN\tCNAME\tcustomer.test.sts.example.\n"),
        "{text}"
    );
    let ours = text
        .split("$ORIGIN sts.example.\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no delegation zone:\n{text}"));
    assert!(
        ours.contains(&format!(
            "\ncustomer.test\t3600\tIN\tTXT\t\"v=STSv1; id={id};\"\n"
        )),
        "{text}"
    );
    assert!(!ours.contains("CNAME"), "{text}");
}

/// A `[[dane]]` entry's TLSA record in every format, read back by what reads each: hickory's
/// zone-file parser, serde, octoDNS (its TLSA value is a mapping) and node (dnscontrol's
/// `TLSA(name, usage, selector, type, certificate)`).
#[test]
fn tlsa_records_in_every_format() {
    let key = rcgen::KeyPair::generate().unwrap();
    let dir = ConfigDir::with_config(&base(
        "\n[dns]\nttl = 3600\n[[dane]]\nhost = \"mail.example.org\"\ncert = \"fullchain.pem\"\nzone = \"example.org\"\n",
    ));
    dir.write(
        "fullchain.pem",
        crate::dane::records::Ca::new().fullchain(&key),
    );
    let hex: String = crate::dane::records::spki_sha256(&key)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();

    let text = records(&dir, "bind", &[]);
    assert!(text.contains("$ORIGIN example.org.\n"), "{text}");
    assert!(text.contains("; [[dane]] mail.example.org\n"), "{text}");
    let (_, sets) = hickory_proto::serialize::txt::Parser::new(&text, None, None)
        .parse()
        .unwrap_or_else(|e| panic!("not a valid zone file: {e}\n{text}"));
    let parsed: Vec<String> = sets
        .values()
        .flat_map(|set| set.records_without_rrsigs())
        .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
        .collect();
    assert_eq!(
        parsed
            .iter()
            .map(|r| r.to_ascii_uppercase())
            .collect::<Vec<_>>(),
        vec![format!("_25._TCP.MAIL.EXAMPLE.ORG. 3600 3 1 1 {hex}")],
        "{text}"
    );
    assert!(
        text.contains(&format!("_25._tcp.mail\t3600\tIN\tTLSA\t3 1 1 {hex}\n")),
        "{text}"
    );

    let json: Value = serde_json::from_str(&records(&dir, "json", &[])).unwrap();
    assert_eq!(json["dane"][0]["host"], "mail.example.org");
    assert_eq!(json["dane"][0]["zone"], "example.org.");
    assert_eq!(json["dane"][0]["records"][0]["type"], "TLSA");
    assert_eq!(
        json["dane"][0]["records"][0]["value"],
        format!("3 1 1 {hex}")
    );

    let text = records(&dir, "octodns", &[]);
    let zones = dir.path().join("zones");
    std::fs::create_dir_all(&zones).expect("zones dir");
    std::fs::write(zones.join("example.org.yaml"), &text).expect("zone file");
    let venv = venv(
        "octodns-venv",
        "MTA_STSD_OCTODNS_VENV",
        OCTODNS,
        "octodns-validate",
    );
    let script = r#"
import sys
from octodns.provider.yaml import YamlProvider
from octodns.zone import Zone
zone = Zone("example.org.", [])
YamlProvider("config", sys.argv[1]).populate(zone)
for r in zone.records:
    for v in r.values:
        print(r.name, r._type, r.ttl, v.certificate_usage, v.selector, v.matching_type, v.certificate_association_data)
"#;
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(&zones)
        .output()
        .expect("running octoDNS");
    assert!(
        out.status.success(),
        "octoDNS refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).to_ascii_uppercase(),
        format!("_25._TCP.MAIL TLSA 3600 3 1 1 {hex}\n")
    );

    let js = records(&dir, "dnscontrol", &[]);
    let program = format!(
        "const out = [];\nconst TTL = (t) => ({{ ttl: t }});\nconst TLSA = (name, u, s, m, c, ttl) => [name, u, s, m, c, ttl.ttl];\nfunction D_EXTEND(zone, ...records) {{ for (const r of records) out.push([zone, ...r]); }}\n{js}\nconsole.log(JSON.stringify(out));"
    );
    let out = Command::new("node")
        .args(["-e", &program])
        .output()
        .expect("node (Debian package nodejs)");
    assert!(
        out.status.success(),
        "node: {}\n{js}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("JSON from node");
    assert_eq!(
        got,
        serde_json::json!([["example.org", "_25._tcp.mail", 3, 1, 1, hex, 3600]])
    );
}
