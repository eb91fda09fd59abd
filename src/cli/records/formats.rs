//! `records --format bind|json|octodns|dnscontrol`: the same records for a zone kept in git
//! (mailcow#6686: a dnscontrol user could not get the id), grouped by the zone that holds them.
//!
//! A record's zone is the domain's `zone` when the config gives one; a delegated domain's own
//! records go in `[delegation] zone` and the customer's under the domain (their zone is not
//! known here). Without `zone` the domain itself stands in (said in a comment): names are then
//! relative to it, which dnscontrol's `D_EXTEND` takes as a subdomain of the zone holding it.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use mta_stsd_providers::record::{txt_presentation, RData, Record};
use serde_json::json;

use crate::config::Domain;
use crate::desired;

/// One record and the domain it is for, in its zone.
struct Entry<'a> {
    domain: &'a Domain,
    record: Record,
}

struct Zone<'a> {
    /// Absolute, with the trailing dot.
    name: String,
    /// Whether the config named it (else the domain stands in).
    configured: bool,
    entries: Vec<Entry<'a>>,
}

/// The selected domains' records, by zone (sorted by name).
fn zones<'a>(selected: &[&'a Domain]) -> Vec<Zone<'a>> {
    let mut zones: BTreeMap<String, Zone<'a>> = BTreeMap::new();
    let mut put = |zone: String, configured: bool, domain: &'a Domain, record: Record| {
        zones
            .entry(zone.clone())
            .or_insert_with(|| Zone {
                name: zone,
                configured,
                entries: Vec::new(),
            })
            .entries
            .push(Entry { domain, record });
    };
    for d in selected {
        let domain = (format!("{}.", d.name), false);
        // A delegated domain's `zone` is the delegation zone; the customer's is not known.
        let ours = match (&d.dns.delegated, &d.zone) {
            (Some(z), _) | (None, Some(z)) => (format!("{z}."), true),
            (None, None) => domain.clone(),
        };
        for r in desired::customer_records(d) {
            put(domain.0.clone(), domain.1, d, r);
        }
        for r in desired::records(d) {
            put(ours.0.clone(), ours.1, d, r);
        }
    }
    zones.into_values().collect()
}

/// `name` relative to `zone` (`@` for the apex); absolute when outside it.
fn relative(name: &str, zone: &str) -> String {
    if name == zone {
        return "@".to_owned();
    }
    name.strip_suffix(&format!(".{zone}"))
        .map_or_else(|| name.to_owned(), str::to_owned)
}

/// The logical value: TXT text unquoted, a CNAME target absolute.
fn value(r: &Record) -> &str {
    match &r.data {
        RData::Txt(t) => t,
        RData::Cname(t) => t,
        RData::Other { text, .. } => text,
    }
}

fn note(zone: &Zone<'_>, comment: &str) -> String {
    if zone.configured {
        format!("{comment} zone {}", zone.name)
    } else {
        format!(
            "{comment} zone {} (no `zone` set for it: names relative to the domain)",
            zone.name
        )
    }
}

/// `; a.example.org: policy id …`.
fn heading(d: &Domain, comment: &str) -> String {
    format!("{comment} {}: policy id {}", d.name, d.policy.id())
}

/// A zone-file fragment per zone: `$ORIGIN`, then relative names (RFC 1035 §5.1).
pub fn bind(out: &mut impl Write, selected: &[&Domain]) -> Result<()> {
    for (i, zone) in zones(selected).iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}", note(zone, ";"))?;
        writeln!(out, "$ORIGIN {}", zone.name)?;
        for (j, e) in zone.entries.iter().enumerate() {
            if j == 0 || zone.entries[j - 1].domain.name != e.domain.name {
                writeln!(out, "{}", heading(e.domain, ";"))?;
            }
            let rdata = match &e.record.data {
                RData::Txt(t) => txt_presentation(t),
                other => value_of(other),
            };
            writeln!(
                out,
                "{}\t{}\tIN\t{}\t{rdata}",
                relative(&e.record.name, &zone.name),
                e.record.ttl,
                e.record.data.type_name()
            )?;
        }
    }
    Ok(())
}

fn value_of(data: &RData) -> String {
    match data {
        RData::Txt(t) | RData::Cname(t) => t.clone(),
        RData::Other { text, .. } => text.clone(),
    }
}

/// `{"domains": [{domain, policy_id, provider, zone, records, customer_records}]}`, values
/// as they are meant (TXT unquoted, its strings joined).
pub fn json(out: &mut impl Write, selected: &[&Domain]) -> Result<()> {
    let rec = |r: &Record| json!({"name": r.name, "type": r.data.type_name(), "ttl": r.ttl, "value": value(r)});
    let domains: Vec<_> = selected
        .iter()
        .map(|d| {
            json!({
                "domain": d.name.as_str(),
                "policy_id": d.policy.id().to_string(),
                "provider": d.dns.provider.as_deref(),
                "zone": d.zone.as_ref().map(|z| format!("{z}.")),
                "records": desired::records(d).iter().map(rec).collect::<Vec<_>>(),
                "customer_records": desired::customer_records(d).iter().map(rec).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &json!({ "domains": domains }))?;
    writeln!(out)?;
    Ok(())
}

/// octoDNS's YAML zone file (`<zone>.yaml` of its YamlProvider), one document per zone: names
/// and keys sorted (its `enforce_order`), one record or a list per name, `;` in TXT escaped as `\;`
/// (octoDNS refuses an unescaped one).
pub fn octodns(out: &mut impl Write, selected: &[&Domain]) -> Result<()> {
    for zone in zones(selected) {
        writeln!(out, "{} (octoDNS: {}yaml)", note(&zone, "#"), zone.name)?;
        writeln!(out, "---")?;
        let mut names: BTreeMap<String, BTreeMap<&str, Vec<&Record>>> = BTreeMap::new();
        for e in &zone.entries {
            names
                .entry(relative(&e.record.name, &zone.name))
                .or_default()
                .entry(e.record.data.type_name())
                .or_default()
                .push(&e.record);
        }
        for (name, types) in names {
            let key = if name == "@" {
                "''".to_owned()
            } else {
                yaml(&name)
            };
            writeln!(out, "{key}:")?;
            let list = types.len() > 1;
            for (rtype, records) in types {
                let (first, rest) = if list { ("- ", "  ") } else { ("  ", "  ") };
                // Keys in order too: ttl, type, value(s).
                writeln!(out, "{first}ttl: {}", records[0].ttl)?;
                writeln!(out, "{rest}type: {rtype}")?;
                let v = |r: &Record| match &r.data {
                    RData::Txt(t) => yaml(&t.replace(';', "\\;")),
                    other => yaml(&value_of(other)),
                };
                if let [one] = records.as_slice() {
                    writeln!(out, "{rest}value: {}", v(one))?;
                } else {
                    writeln!(out, "{rest}values:")?;
                    for r in records {
                        writeln!(out, "{rest}- {}", v(r))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A YAML single-quoted scalar: no escapes inside but `''`.
fn yaml(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// dnscontrol's `dnsconfig.js`: a `D_EXTEND()` per zone adding our records to the `D()` that
/// defines it (dnscontrol splits TXT over 255 octets itself).
pub fn dnscontrol(out: &mut impl Write, selected: &[&Domain]) -> Result<()> {
    for zone in zones(selected) {
        writeln!(out, "{}", note(&zone, "//"))?;
        let apex = zone.name.trim_end_matches('.');
        writeln!(out, "D_EXTEND({},", serde_json::to_string(apex)?)?;
        for (j, e) in zone.entries.iter().enumerate() {
            if j == 0 || zone.entries[j - 1].domain.name != e.domain.name {
                writeln!(out, "    {}", heading(e.domain, "//"))?;
            }
            writeln!(
                out,
                "    {}({}, {}, TTL({})),",
                e.record.data.type_name(),
                serde_json::to_string(&relative(&e.record.name, &zone.name))?,
                serde_json::to_string(value(&e.record))?,
                e.record.ttl
            )?;
        }
        writeln!(out, ");")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names() {
        assert_eq!(
            relative("_mta-sts.a.example.org.", "example.org."),
            "_mta-sts.a"
        );
        assert_eq!(relative("example.org.", "example.org."), "@");
        assert_eq!(relative("x.example.net.", "example.org."), "x.example.net.");
        assert_eq!(yaml("it's"), "'it''s'");
    }
}
