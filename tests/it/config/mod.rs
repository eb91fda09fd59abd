//! The config and the offline commands (`check`, `policy`, `records`), driven through the
//! real binary. Every diagnostic is asserted at its exact `file:line:col`, computed from the
//! config text the test wrote. The `check` cases are tables of [`table::Case`]: `values` for
//! the keys and values of one file, `files` for includes, certificates and warnings,
//! `providers` for `[providers.*]`, `server` for `[server]`'s connection bounds; `commands` tests what `policy`, `records` and the command
//! line print.

mod commands;
mod dns_names;
mod files;
mod providers;
mod route53_exec;
mod server;
mod table;
mod unknown_keys;
mod url_credentials;
mod values;

use std::str::FromStr;

use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::txt::Parser;

/// A valid config with no warnings: a certificate source and an `enforce` policy for one day
/// or more. Tests append their `[dns]`, `[providers.*]` and `[domains.*]` sections.
pub const BASE: &str = r#"[tls]
self_signed = true

[policy]
mode = "enforce"
mx = ["mail.example.org"]
max_age = 604800
"#;

pub fn base(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// `include = [...]` first (a top-level key), then [`BASE`], then `rest`.
pub fn with_include(include: &str, rest: &str) -> String {
    format!("include = [{include}]\n\n{BASE}{rest}")
}

/// One record as the zone parser understood it: TXT strings joined, CNAME target as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: RecordType,
    /// The TXT character-strings (one element for CNAME: its target).
    pub strings: Vec<String>,
}

impl Rr {
    pub fn txt(name: &str, ttl: u32, text: &str) -> Self {
        Rr {
            name: name.into(),
            ttl,
            rtype: RecordType::TXT,
            strings: vec![text.into()],
        }
    }

    pub fn cname(name: &str, ttl: u32, target: &str) -> Self {
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
pub fn parse_zone(text: &str) -> Vec<Rr> {
    let origin = Name::from_str("example.org.").unwrap();
    let (_, sets) = Parser::new(text, None, Some(origin))
        .parse()
        .unwrap_or_else(|e| panic!("`records` output is not a valid zone file: {e}\n{text}"));
    let mut out = Vec::new();
    for set in sets.values() {
        for r in set.records_without_rrsigs() {
            let strings = match &r.data {
                RData::TXT(txt) => txt
                    .txt_data
                    .iter()
                    .map(|s| String::from_utf8(s.to_vec()).unwrap())
                    .collect(),
                RData::CNAME(c) => vec![c.0.to_string()],
                other => panic!("unexpected record {other:?}"),
            };
            out.push(Rr {
                name: r.name.to_string(),
                ttl: r.ttl,
                rtype: r.record_type(),
                strings,
            });
        }
    }
    out.sort();
    out
}
