//! Every MX host of the domain against the policy's `mx` patterns (RFC 8461 §4.1): an MX the
//! policy does not cover loses mail in `enforce`.

use hickory_proto::rr::RecordType;

use super::dns::Dns;
use super::report::{Check, Finding, Severity};
use crate::config::Domain;
use crate::policy::{Mode, Policy};
use crate::state::history::History;

/// An older policy of the domain that senders may still have cached (RFC 8461 §3.3: "until
/// its max_age expires").
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub policy: Policy,
    /// When the last sender's cached copy expires: last served + max_age.
    pub until: u64,
}

/// The domain's earlier `enforce` policies still within their max_age at `now`, from the id
/// history (the current one excluded: it is checked as the policy itself).
pub(crate) fn cached(history: &History, d: &Domain, now: u64) -> Vec<Cached> {
    let Some(h) = history.domain(d.name.as_str()) else {
        return Vec::new();
    };
    h.served()
        .iter()
        .filter(|e| &*e.id != d.policy.id().as_str())
        .filter_map(|e| {
            let last = e.last?;
            let policy = Policy::parse(history.body(&e.id)?.as_bytes()).ok()?;
            let until = last.saturating_add(u64::from(policy.max_age));
            (policy.mode == Mode::Enforce && until > now).then_some(Cached { policy, until })
        })
        .collect()
}

/// The domain's MX hosts, looked up once for the checks that need them (this one and the
/// MX-TLS check run together).
#[derive(Debug, Default)]
pub(crate) struct Lookup(tokio::sync::OnceCell<Result<Vec<String>, String>>);

impl Lookup {
    pub(crate) async fn hosts(&self, dns: &Dns, d: &Domain) -> &Result<Vec<String>, String> {
        self.0
            .get_or_init(|| async {
                let name = format!("{}.", d.name);
                dns.lookup(&name, RecordType::MX).await.map(|a| a.mx)
            })
            .await
    }
}

pub(crate) async fn check(
    dns: &Dns,
    d: &Domain,
    cached: &[Cached],
    lookup: &Lookup,
) -> Vec<Finding> {
    if d.policy.mode == Mode::None && cached.is_empty() {
        return Vec::new();
    }
    let name = format!("{}.", d.name);
    let hosts: Vec<String> = match lookup.hosts(dns, d).await {
        Ok(h) => h.clone(),
        Err(e) => {
            return vec![Finding::new(
                Severity::Unknown,
                Check::Mx,
                format!("could not look up the MX records of {name}: {e}"),
                "check the resolver ([drift] resolver)",
            )]
        }
    };
    // RFC 7505 null MX: the domain takes no mail.
    if hosts.iter().any(|h| h == ".") {
        return Vec::new();
    }
    if hosts.is_empty() {
        return vec![Finding::new(
            Severity::Warning,
            Check::Mx,
            format!("{name} has no MX records; MTA-STS applies to MX hosts only (RFC 8461 §4.1)"),
            "publish MX records for the domain",
        )];
    }
    let mut findings = cache_findings(&hosts, cached);
    if d.policy.mode == Mode::None {
        return findings;
    }
    let severity = if d.policy.mode == Mode::Enforce {
        Severity::Critical
    } else {
        Severity::Warning
    };
    for h in &hosts {
        if !d.policy.matches_mx(h) {
            findings.push(Finding::new(
                severity,
                Check::Mx,
                format!(
                    "MX {} is not covered by the policy's mx patterns; in `{}` mode senders {}",
                    h.trim_end_matches('.'),
                    d.policy.mode,
                    if severity == Severity::Critical {
                        "refuse to deliver to it"
                    } else {
                        "report failures for it"
                    }
                ),
                "add the host (or a `*.` pattern covering it) to mx",
            ));
        }
    }
    for p in &d.policy.mx {
        if !hosts.iter().any(|h| p.matches(h)) {
            findings.push(Finding::new(
                Severity::Warning,
                Check::Mx,
                format!("mx pattern {p} matches none of the domain's MX hosts"),
                "remove the pattern, or publish the MX it was meant for",
            ));
        }
    }
    if findings.is_empty() {
        let shown: Vec<&str> = hosts.iter().map(|h| h.trim_end_matches('.')).collect();
        findings.push(Finding::passed(
            Check::Mx,
            format!(
                "MX {} covered by the policy's mx patterns ({})",
                shown.join(", "),
                d.policy
                    .mx
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    findings
}

/// "Add the new MX to the policy first, switch DNS later": an MX that a still-cached
/// `enforce` policy does not cover gets no mail from the senders holding that copy until it
/// expires.
fn cache_findings(hosts: &[String], cached: &[Cached]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for c in cached {
        let uncovered: Vec<&str> = hosts
            .iter()
            .filter(|h| !c.policy.matches_mx(h))
            .map(|h| h.trim_end_matches('.'))
            .collect();
        if uncovered.is_empty() {
            continue;
        }
        let id = c.policy.id();
        let until = crate::clock::rfc3339(c.until);
        if uncovered.len() == hosts.len() {
            findings.push(Finding::new(
                Severity::Critical,
                Check::Mx,
                format!(
                    "none of the MX hosts ({}) is covered by policy id {id}, which senders may still have cached until {until}: they defer all mail until then",
                    uncovered.join(", ")
                ),
                "keep an MX that the previous policy lists until then, or list the new MX hosts before switching DNS",
            ));
        } else {
            for h in uncovered {
                findings.push(Finding::new(
                    Severity::Warning,
                    Check::Mx,
                    format!(
                        "MX {h} is not covered by policy id {id}, which senders may still have cached until {until}; those senders avoid it until then (safe after {until})"
                    ),
                    "list new MX hosts in the policy well before they receive mail",
                ));
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MxPattern;

    fn enforce(mx: &[&str]) -> Policy {
        let mx = mx.iter().map(|m| MxPattern::parse(m).unwrap().0).collect();
        Policy::new(Mode::Enforce, mx, 86400)
    }

    #[test]
    fn a_cached_policy_without_the_new_mx_warns_and_one_with_none_is_critical() {
        let hosts = vec!["old.mx.example.".to_owned(), "new.mx.example.".to_owned()];
        let old = Cached {
            policy: enforce(&["old.mx.example"]),
            until: 1_000_000,
        };
        let f = cache_findings(&hosts, std::slice::from_ref(&old));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Severity::Warning);
        assert!(f[0].message.contains("new.mx.example"), "{}", f[0].message);
        assert!(
            f[0].message.contains("1970-01-12T13:46:40Z"),
            "{}",
            f[0].message
        );
        let moved = vec!["new.mx.example.".to_owned()];
        let f = cache_findings(&moved, &[old]);
        assert_eq!(f[0].severity, Severity::Critical);
        let covered = Cached {
            policy: enforce(&["*.mx.example"]),
            until: 1_000_000,
        };
        assert!(cache_findings(&hosts, &[covered]).is_empty());
    }
}
