//! The plan: desired records against observed ones, per domain. Pure: no I/O, so every rule
//! is tested offline.
//!
//! Ownership is by content: at `_mta-sts` only TXT records beginning `v=STSv1` are ours, at
//! `_smtp._tls` only those beginning `v=TLSRPTv1`; anything else is left alone. A record of
//! another type where our CNAME belongs is a conflict: reported, never deleted.

use mta_stsd_providers::{DomainChange, Expect, RData, Record};

use crate::desired::Names;
use crate::policy::StsRecord;
use crate::rua;

/// One domain's changes, and what stopped part of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainPlan {
    pub(crate) change: DomainChange,
    pub(crate) conflicts: Vec<String>,
}

/// Plans one domain. `observed` holds what the provider returned at the domain's names.
pub(crate) fn plan_domain(
    domain: &str,
    names: &Names,
    desired: &[Record],
    observed: &[Record],
) -> DomainPlan {
    let mut plan = DomainPlan {
        change: DomainChange {
            domain: domain.to_owned(),
            ..Default::default()
        },
        conflicts: Vec::new(),
    };
    let at = |name: &str| -> Vec<&Record> { observed.iter().filter(|r| r.name == name).collect() };
    let want = |name: &str| desired.iter().find(|r| r.name == name);

    txt(
        &mut plan,
        &names.sts,
        StsRecord::is_ours,
        want(&names.sts),
        &at(&names.sts),
    );
    txt(
        &mut plan,
        &names.tlsrpt,
        rua::is_ours,
        want(&names.tlsrpt),
        &at(&names.tlsrpt),
    );
    if let Some((name, cname)) = names.host.as_ref().and_then(|h| Some((h, want(h)?))) {
        host(&mut plan, name, cname, &at(name));
    }
    plan
}

/// Exactly one of our TXT records at `name` (or none when `desired` is `None`), foreign TXT
/// records kept.
fn txt(
    plan: &mut DomainPlan,
    name: &str,
    is_ours: fn(&str) -> bool,
    desired: Option<&Record>,
    observed: &[&Record],
) {
    if let Some(c) = observed.iter().find(|r| matches!(r.data, RData::Cname(_))) {
        if desired.is_some()
            || observed
                .iter()
                .any(|r| matches!(&r.data, RData::Txt(t) if is_ours(t)))
        {
            plan.conflicts.push(format!(
                "{name} is a CNAME to {}, so its TXT records are not managed here",
                cname_target(c)
            ));
        }
        return;
    }
    let txts: Vec<&Record> = observed
        .iter()
        .copied()
        .filter(|r| matches!(r.data, RData::Txt(_)))
        .collect();
    let ours: Vec<&Record> = txts
        .iter()
        .copied()
        .filter(|r| matches!(&r.data, RData::Txt(t) if is_ours(t)))
        .collect();
    let keep = desired.and_then(|d| ours.iter().position(|o| o.same_data(d) && o.ttl == d.ttl));
    let delete: Vec<Record> = ours
        .iter()
        .enumerate()
        .filter(|&(i, _)| Some(i) != keep)
        .map(|(_, r)| (*r).clone())
        .collect();
    let add: Option<Record> = desired.filter(|_| keep.is_none()).cloned();
    if delete.is_empty() && add.is_none() {
        return;
    }
    plan.change.expect.push(if txts.is_empty() {
        Expect::NoRRset {
            name: name.to_owned(),
            rtype: "TXT",
        }
    } else {
        Expect::RRset {
            name: name.to_owned(),
            rtype: "TXT",
            records: txts.into_iter().cloned().collect(),
        }
    });
    plan.change.delete.extend(delete);
    plan.change.add.extend(add);
}

/// The `mta-sts` CNAME: replaced when it differs; skipped when other data is at the name.
fn host(plan: &mut DomainPlan, name: &str, desired: &Record, observed: &[&Record]) {
    let others: Vec<&Record> = observed
        .iter()
        .copied()
        .filter(|r| !matches!(r.data, RData::Cname(_)))
        .collect();
    if !others.is_empty() {
        let what: Vec<String> = others
            .iter()
            .map(|r| match &r.data {
                RData::Other { rtype, text } => format!("{rtype} {text}"),
                RData::Txt(t) => format!("TXT {t:?}"),
                RData::Cname(t) => format!("CNAME {t}"),
                RData::Tlsa(t) => format!("TLSA {t}"),
            })
            .collect();
        plan.conflicts.push(format!(
            "{name} has {}; a CNAME cannot coexist with other data (RFC 1034 §3.6.2), so it is left alone (if that is deliberate, set `target = false` for {domain}: then no CNAME is managed there)",
            what.join(", "),
            domain = plan.change.domain,
        ));
        return;
    }
    let current = observed.iter().find(|r| matches!(r.data, RData::Cname(_)));
    if let Some(c) = current {
        if c.same_data(desired) && c.ttl == desired.ttl {
            return;
        }
    }
    match current {
        Some(c) => {
            plan.change.expect.push(Expect::RRset {
                name: name.to_owned(),
                rtype: "CNAME",
                records: vec![(*c).clone()],
            });
            plan.change.delete.push((*c).clone());
        }
        // Nothing there: it must still be empty when the CNAME lands.
        None => plan.change.expect.push(Expect::NameUnused {
            name: name.to_owned(),
        }),
    }
    plan.change.add.push(desired.clone());
}

/// Withdrawing a domain (RFC 8461 §8.3): its `mta-sts` CNAME goes too, but only while it
/// still points where we pointed it — a CNAME someone changed since is theirs.
pub(crate) fn withdraw_cname(plan: &mut DomainPlan, name: &str, target: &str, observed: &[Record]) {
    let ours = observed.iter().find(|r| {
        r.name == name && matches!(&r.data, RData::Cname(t) if t.eq_ignore_ascii_case(target))
    });
    if let Some(c) = ours {
        plan.change.expect.push(Expect::RRset {
            name: name.to_owned(),
            rtype: "CNAME",
            records: vec![c.clone()],
        });
        plan.change.delete.push(c.clone());
    }
}

fn cname_target(r: &Record) -> &str {
    match &r.data {
        RData::Cname(t) => t,
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withdrawal_removes_only_our_records() {
        let observed = [
            sts("old"),
            Record::txt("_mta-sts.example.org.", 3600, "something else"),
            Record::cname("mta-sts.example.org.", 3600, "mail.example.org."),
            Record::txt(
                "_smtp._tls.example.org.",
                3600,
                "v=TLSRPTv1; rua=mailto:r@example.org;",
            ),
        ];
        let mut p = plan_domain("example.org", &names(), &[], &observed);
        withdraw_cname(
            &mut p,
            "mta-sts.example.org.",
            "mail.example.org.",
            &observed,
        );
        assert_eq!(p.change.add, vec![]);
        let deleted: Vec<&Record> = p.change.delete.iter().collect();
        assert_eq!(deleted, vec![&observed[0], &observed[3], &observed[2]]);
        // A CNAME pointing elsewhere is someone else's now.
        let mut p = plan_domain("example.org", &names(), &[], &[]);
        let moved = [Record::cname(
            "mta-sts.example.org.",
            3600,
            "web.example.net.",
        )];
        withdraw_cname(&mut p, "mta-sts.example.org.", "mail.example.org.", &moved);
        assert!(p.change.is_empty());
    }

    fn names() -> Names {
        Names {
            sts: "_mta-sts.example.org.".into(),
            host: Some("mta-sts.example.org.".into()),
            tlsrpt: "_smtp._tls.example.org.".into(),
        }
    }

    fn sts(id: &str) -> Record {
        Record::txt("_mta-sts.example.org.", 3600, format!("v=STSv1; id={id};"))
    }

    fn desired(tlsrpt: bool) -> Vec<Record> {
        let mut d = vec![
            sts("new"),
            Record::cname("mta-sts.example.org.", 3600, "mail.example.org."),
        ];
        if tlsrpt {
            d.push(Record::txt(
                "_smtp._tls.example.org.",
                3600,
                "v=TLSRPTv1; rua=mailto:r@example.org;",
            ));
        }
        d
    }

    #[test]
    fn first_publication_adds_everything_on_empty_names() {
        let p = plan_domain("example.org", &names(), &desired(true), &[]);
        let (mut got, mut want) = (p.change.add.clone(), desired(true));
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(p.change.delete.is_empty());
        assert!(p.conflicts.is_empty());
        assert!(p.change.expect.contains(&Expect::NameUnused {
            name: "mta-sts.example.org.".into()
        }));
        assert!(p.change.expect.contains(&Expect::NoRRset {
            name: "_mta-sts.example.org.".into(),
            rtype: "TXT"
        }));
    }

    #[test]
    fn in_sync_plans_nothing() {
        let observed = desired(true);
        let p = plan_domain("example.org", &names(), &desired(true), &observed);
        assert!(p.change.is_empty() && p.change.expect.is_empty(), "{p:?}");
    }

    #[test]
    fn stale_sts_replaced_foreign_txt_kept_and_asserted() {
        let foreign = Record::txt("_mta-sts.example.org.", 3600, "google-site-verification=x");
        let lookalike = Record::txt("_mta-sts.example.org.", 3600, "v=STSv10 not ours");
        let observed = vec![sts("old"), sts("older"), foreign.clone(), lookalike.clone()];
        let mut want = desired(false);
        want.truncate(1);
        let p = plan_domain("example.org", &names(), &want, &observed);
        assert_eq!(p.change.delete, vec![sts("old"), sts("older")]);
        assert_eq!(p.change.add, vec![sts("new")]);
        // The prerequisite is the whole TXT RRset as read, foreign records included.
        assert_eq!(
            p.change.expect,
            vec![Expect::RRset {
                name: "_mta-sts.example.org.".into(),
                rtype: "TXT",
                records: observed.clone()
            }]
        );
    }

    #[test]
    fn tlsrpt_removed_when_no_longer_configured() {
        let ours = Record::txt(
            "_smtp._tls.example.org.",
            3600,
            "v=TLSRPTv1; rua=mailto:r@example.org;",
        );
        let observed = vec![sts("new"), ours.clone()];
        let mut want = desired(false);
        want.truncate(1);
        let p = plan_domain("example.org", &names(), &want, &observed);
        assert_eq!(p.change.delete, vec![ours]);
        assert!(p.change.add.is_empty());
    }

    #[test]
    fn conflicting_address_at_host_is_reported_not_deleted() {
        let a = Record {
            name: "mta-sts.example.org.".into(),
            ttl: 300,
            data: RData::Other {
                rtype: "A".into(),
                text: "192.0.2.1".into(),
            },
        };
        let p = plan_domain("example.org", &names(), &desired(false), &[sts("new"), a]);
        assert!(p.change.is_empty(), "{p:?}");
        assert_eq!(p.conflicts.len(), 1);
        assert!(p.conflicts[0].contains("A 192.0.2.1"), "{:?}", p.conflicts);
    }

    #[test]
    fn cname_retargeted_and_ttl_change_replaces() {
        let old = Record::cname("mta-sts.example.org.", 3600, "old.example.org.");
        let p = plan_domain(
            "example.org",
            &names(),
            &desired(false),
            &[sts("new"), old.clone()],
        );
        assert_eq!(p.change.delete, vec![old]);
        assert_eq!(p.change.add, vec![desired(false)[1].clone()]);
        let mut short = sts("new");
        short.ttl = 60;
        let p = plan_domain(
            "example.org",
            &names(),
            &desired(false),
            &[short.clone(), desired(false)[1].clone()],
        );
        assert_eq!(p.change.delete, vec![short]);
        assert_eq!(p.change.add, vec![sts("new")]);
    }

    #[test]
    fn delegated_sts_name_is_a_conflict() {
        let c = Record::cname(
            "_mta-sts.example.org.",
            300,
            "example.org.sts.provider.example.",
        );
        let p = plan_domain("example.org", &names(), &desired(false), &[c]);
        assert!(p
            .change
            .add
            .iter()
            .all(|r| r.name != "_mta-sts.example.org."));
        assert!(p.conflicts[0].contains("is a CNAME"), "{:?}", p.conflicts);
    }

    #[test]
    fn version_tags() {
        assert!(StsRecord::is_ours("v=STSv1; id=1;"));
        assert!(StsRecord::is_ours("v=STSv1"));
        assert!(!StsRecord::is_ours("v=STSv10; id=1;"));
        assert!(!StsRecord::is_ours("x v=STSv1"));
        assert!(rua::is_ours("v=TLSRPTv1;rua=mailto:a@b.example"));
        assert!(!rua::is_ours("v=TLSRPTv10;rua=mailto:a@b.example"));
    }
}
