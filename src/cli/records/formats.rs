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

use crate::config::{Dane, Domain};
use crate::desired;

/// One record and what it is for (a domain, or a `[[dane]]` host), in its zone.
struct Entry {
    /// `a.example.org: policy id …`, `[[dane]] mail.example.org`: a heading above its records.
    owner: String,
    record: Record,
}

/// `[[dane]]` entries with their TLSA records.
pub(super) type Tlsa<'a> = [(&'a Dane, Vec<Record>)];

struct Zone {
    /// Absolute, with the trailing dot.
    name: String,
    /// Whether the config named it (else the domain or MX host stands in).
    configured: bool,
    entries: Vec<Entry>,
}

/// The selected domains' records and the TLSA records, by zone (sorted by name).
fn zones(selected: &[&Domain], tlsa: &Tlsa<'_>) -> Vec<Zone> {
    let mut zones: BTreeMap<String, Zone> = BTreeMap::new();
    let mut put = |zone: String, configured: bool, owner: String, record: Record| {
        zones
            .entry(zone.clone())
            .or_insert_with(|| Zone {
                name: zone,
                configured,
                entries: Vec::new(),
            })
            .entries
            .push(Entry { owner, record });
    };
    for d in selected {
        let domain = (format!("{}.", d.name), false);
        // A delegated domain's `zone` is the delegation zone; the customer's is not known.
        let ours = match (&d.dns.delegated, &d.zone) {
            (Some(z), _) | (None, Some(z)) => (format!("{z}."), true),
            (None, None) => domain.clone(),
        };
        for r in desired::customer_records(d) {
            put(domain.0.clone(), domain.1, heading(d), r);
        }
        for r in desired::records(d) {
            put(ours.0.clone(), ours.1, heading(d), r);
        }
    }
    for (entry, records) in tlsa {
        let zone = entry.zone.as_ref().map_or_else(
            || (format!("{}.", entry.host), false),
            |z| (format!("{z}."), true),
        );
        for r in records {
            put(
                zone.0.clone(),
                zone.1,
                format!("[[dane]] {}", entry.host),
                r.clone(),
            );
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

/// The logical value: TXT text unquoted, a CNAME target absolute, TLSA as `3 1 1 AB…`.
fn value(r: &Record) -> String {
    value_of(&r.data)
}

fn note(zone: &Zone, comment: &str) -> String {
    if zone.configured {
        format!("{comment} zone {}", zone.name)
    } else {
        format!(
            "{comment} zone {} (no `zone` set for it: names relative to the domain)",
            zone.name
        )
    }
}

/// `a.example.org: policy id …`.
fn heading(d: &Domain) -> String {
    format!("{}: policy id {}", d.name, d.policy.id())
}

/// A zone-file fragment per zone: `$ORIGIN`, then relative names (RFC 1035 §5.1).
pub(super) fn bind(out: &mut impl Write, selected: &[&Domain], tlsa: &Tlsa<'_>) -> Result<()> {
    for (i, zone) in zones(selected, tlsa).iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}", note(zone, ";"))?;
        writeln!(out, "$ORIGIN {}", zone.name)?;
        for (j, e) in zone.entries.iter().enumerate() {
            if j == 0 || zone.entries[j - 1].owner != e.owner {
                writeln!(out, "; {}", e.owner)?;
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
        RData::Tlsa(t) => t.to_string(),
        RData::Other { text, .. } => text.clone(),
    }
}

/// `{"domains": [{domain, policy_id, provider, zone, records, customer_records}], "dane":
/// [{host, provider, zone, records}]}`, values as they are meant (TXT unquoted, its strings
/// joined; TLSA as `3 1 1 AB…`).
pub(super) fn json(out: &mut impl Write, selected: &[&Domain], tlsa: &Tlsa<'_>) -> Result<()> {
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
    let dane: Vec<_> = tlsa
        .iter()
        .map(|(entry, records)| {
            json!({
                "host": entry.host.as_str(),
                "provider": entry.provider.as_deref(),
                "zone": entry.zone.as_ref().map(|z| format!("{z}.")),
                "records": records.iter().map(rec).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &json!({ "domains": domains, "dane": dane }))?;
    writeln!(out)?;
    Ok(())
}

/// octoDNS's YAML zone file (`<zone>.yaml` of its YamlProvider), one document per zone: names
/// and keys sorted (its `enforce_order`), one record or a list per name, `;` in TXT escaped as `\;`
/// (octoDNS refuses an unescaped one).
pub(super) fn octodns(out: &mut impl Write, selected: &[&Domain], tlsa: &Tlsa<'_>) -> Result<()> {
    for zone in zones(selected, tlsa) {
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
                // `indent` is where a TLSA value's further keys start.
                let v = |r: &Record, indent: &str| {
                    match &r.data {
                    RData::Txt(t) => yaml(&t.replace(';', "\\;")),
                    // octoDNS's TLSA value is a mapping, keys sorted.
                    RData::Tlsa(t) => format!(
                        "certificate_association_data: {}\n{indent}certificate_usage: {}\n{indent}matching_type: {}\n{indent}selector: {}",
                        yaml(&hex(&t.data)),
                        t.usage,
                        t.matching,
                        t.selector
                    ),
                    other => yaml(&value_of(other)),
                }
                };
                if let [one] = records.as_slice() {
                    if matches!(one.data, RData::Tlsa(_)) {
                        writeln!(
                            out,
                            "{rest}value:\n{rest}  {}",
                            v(one, &format!("{rest}  "))
                        )?;
                    } else {
                        writeln!(out, "{rest}value: {}", v(one, ""))?;
                    }
                } else {
                    writeln!(out, "{rest}values:")?;
                    for r in records {
                        writeln!(out, "{rest}- {}", v(r, &format!("{rest}  ")))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Upper-case hex, as TLSA data is shown.
fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02X}")).collect()
}

/// A YAML single-quoted scalar: no escapes inside but `''`.
fn yaml(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// dnscontrol's `dnsconfig.js`: a `D_EXTEND()` per zone adding our records to the `D()` that
/// defines it (dnscontrol splits TXT over 255 octets itself).
pub(super) fn dnscontrol(
    out: &mut impl Write,
    selected: &[&Domain],
    tlsa: &Tlsa<'_>,
) -> Result<()> {
    for zone in zones(selected, tlsa) {
        writeln!(out, "{}", note(&zone, "//"))?;
        let apex = zone.name.trim_end_matches('.');
        writeln!(out, "D_EXTEND({},", serde_json::to_string(apex)?)?;
        for (j, e) in zone.entries.iter().enumerate() {
            if j == 0 || zone.entries[j - 1].owner != e.owner {
                writeln!(out, "    // {}", e.owner)?;
            }
            let name = serde_json::to_string(&relative(&e.record.name, &zone.name))?;
            let args = match &e.record.data {
                // dnscontrol's TLSA(name, usage, selector, type, certificate).
                RData::Tlsa(t) => format!(
                    "{name}, {}, {}, {}, {}",
                    t.usage,
                    t.selector,
                    t.matching,
                    serde_json::to_string(&hex(&t.data))?
                ),
                _ => format!("{name}, {}", serde_json::to_string(&value(&e.record))?),
            };
            writeln!(
                out,
                "    {}({args}, TTL({})),",
                e.record.data.type_name(),
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
