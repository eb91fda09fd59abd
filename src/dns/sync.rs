//! Bringing zones in line with the config: find each domain's zone, read the records at its
//! names, plan, and apply one change set per zone, re-reading when the records changed
//! between our read and our write.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mta_stsd_providers::{Changes, Provider, ProviderError, Record};

use super::plan::{plan_domain, withdraw_cname, DomainPlan};
use super::providers::Providers;
use crate::config::{Domain, Retiring};
use crate::desired;

/// Attempts per zone when a prerequisite fails because someone else changed the records.
pub(crate) const CONFLICT_ATTEMPTS: usize = 3;

/// The domains of one zone at one provider.
pub struct Target<'c> {
    pub(crate) provider_name: String,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) zone: String,
    pub(crate) domains: Vec<&'c Domain>,
}

/// A domain that could not be placed in a zone.
pub struct Unplaced<'c> {
    pub(crate) domain: &'c Domain,
    pub(crate) provider: String,
    pub(crate) error: ProviderError,
}

/// Groups domains by provider and zone; domains without a provider are left out. Each
/// provider is told the zones about to be read ([`Provider::prepare_reads`]).
#[allow(clippy::expect_used, reason = "partitioned")]
pub async fn targets<'c>(
    domains: impl IntoIterator<Item = &'c Domain>,
    providers: &Providers,
) -> (Vec<Target<'c>>, Vec<Unplaced<'c>>) {
    let mut by_provider: BTreeMap<&str, Vec<&'c Domain>> = BTreeMap::new();
    let mut unplaced = Vec::new();
    for d in domains {
        let Some(p) = d.dns.provider.as_deref() else {
            continue;
        };
        // A name the DNS cannot hold fails the zone's whole update: that domain alone is
        // left out (`check` refuses such names; a removed domain from an older history may
        // still have one).
        match unpublishable(d) {
            Some(why) => unplaced.push(Unplaced {
                domain: d,
                provider: p.to_owned(),
                error: ProviderError::Config {
                    code: "name too long".into(),
                    message: why,
                },
            }),
            None => by_provider.entry(p).or_default().push(d),
        }
    }
    let mut targets: BTreeMap<(String, String), Target<'c>> = BTreeMap::new();
    for (pname, domains) in by_provider {
        let provider = match providers.get(pname) {
            Some(Ok(p)) => p.clone(),
            Some(Err(e)) => {
                unplaced.extend(domains.into_iter().map(|domain| Unplaced {
                    domain,
                    provider: pname.to_owned(),
                    error: e.clone(),
                }));
                continue;
            }
            None => unreachable!("the config checks that providers exist"),
        };
        let (known, unknown): (Vec<&Domain>, Vec<&Domain>) =
            domains.into_iter().partition(|d| d.zone.is_some());
        let asked: Vec<String> = unknown.iter().map(|d| d.name.fqdn()).collect();
        let found = if asked.is_empty() {
            Vec::new()
        } else {
            provider.zones_of(&asked).await
        };
        let zoned = known
            .into_iter()
            .map(|d| (d, Ok(d.zone.as_ref().expect("partitioned").fqdn())))
            .chain(unknown.into_iter().zip(found));
        for (d, zone) in zoned {
            match zone {
                Ok(zone) => targets
                    .entry((pname.to_owned(), zone.clone()))
                    .or_insert_with(|| Target {
                        provider_name: pname.to_owned(),
                        provider: provider.clone(),
                        zone,
                        domains: Vec::new(),
                    })
                    .domains
                    .push(d),
                Err(error) => unplaced.push(Unplaced {
                    domain: d,
                    provider: pname.to_owned(),
                    error,
                }),
            }
        }
    }
    let targets: Vec<Target<'c>> = targets.into_values().collect();
    // Sorted by provider, then zone.
    for group in targets.chunk_by(|a, b| a.provider_name == b.provider_name) {
        let zones: Vec<String> = group.iter().map(|t| t.zone.clone()).collect();
        group[0].provider.prepare_reads(&zones).await;
    }
    (targets, unplaced)
}

/// Why one of the domain's names cannot be published, if so.
fn unpublishable(d: &Domain) -> Option<String> {
    let n = desired::names(d);
    let why = [Some(&n.sts), n.host.as_ref(), Some(&n.tlsrpt)]
        .into_iter()
        .flatten()
        .find_map(|name| crate::name::wire_problem(name));
    why
}

/// Reads the zone's records at our names and plans every domain in it.
pub(crate) async fn plan_zone(t: &Target<'_>) -> Result<Vec<DomainPlan>, ProviderError> {
    let names: Vec<desired::Names> = t.domains.iter().map(|d| desired::names(d)).collect();
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(names.len() * 3);
    let mut all = Vec::with_capacity(names.len() * 3);
    for (i, n) in names.iter().enumerate() {
        for name in [Some(&n.sts), n.host.as_ref(), Some(&n.tlsrpt)]
            .into_iter()
            .flatten()
        {
            index.insert(name.as_str(), i);
            all.push(name.clone());
        }
    }
    let observed = t.provider.records(&t.zone, &all).await?;
    let mut per_domain: Vec<Vec<Record>> = vec![Vec::new(); t.domains.len()];
    for r in observed {
        if let Some(&i) = index.get(r.name.as_str()) {
            per_domain[i].push(r);
        }
    }
    Ok(t.domains
        .iter()
        .zip(&names)
        .zip(&per_domain)
        .map(|((d, n), observed)| {
            let mut plan = plan_domain(d.name.as_str(), n, &desired::records(d), observed);
            if let (Some(Retiring::Withdrawing { .. }), Some(target), Some(host)) =
                (d.retiring, &d.dns.target, &n.host)
            {
                withdraw_cname(&mut plan, host, &target.fqdn(), observed);
            }
            plan
        })
        .collect())
}

/// Plans and applies the zone; when a prerequisite fails, reads again and retries.
/// Returns the plans that were applied.
pub async fn apply_zone(t: &Target<'_>) -> Result<Vec<DomainPlan>, ProviderError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let plans = plan_zone(t).await?;
        let changes = Changes {
            domains: plans
                .iter()
                .filter(|p| !p.change.is_empty())
                .map(|p| p.change.clone())
                .collect(),
        };
        if changes.is_empty() {
            return Ok(plans);
        }
        match t.provider.apply(&t.zone, &changes).await {
            Ok(()) => return Ok(plans),
            Err(ProviderError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                tracing::info!(zone = %t.zone, provider = %t.provider_name, attempt,
                    "records changed since they were read: reading again");
            }
            Err(e) => return Err(e),
        }
    }
}
