//! DNS providers for mta-stsd: the interface the daemon publishes through, and one
//! implementation per provider kind.
//!
//! Providers see only the names mta-stsd owns (`_mta-sts`, `mta-sts`, `_smtp._tls` under each
//! domain): a hosting provider may publish a million domains. The one exception is a zone
//! transfer where it reads less than the queries would (RFC 2136, a key that may transfer, a
//! zone not much larger than our names); even then only our names are kept.

// No `unwrap()` outside tests (as in the daemon).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cloudflare;
pub mod desec;
pub mod digitalocean;
mod error;
pub mod exec;
pub mod gandi;
pub mod hetzner;
mod http;
pub mod ovh;
pub mod powerdns;
pub mod record;
mod rest;
pub mod rfc2136;
pub mod route53;
pub mod rrsets;
mod secret;
pub mod tsig;

use async_trait::async_trait;

pub use error::ProviderError;
pub use record::{RData, Record, Tlsa};
pub use secret::{redact_url, Secret, SecretSource};

/// What must still hold at apply time for a change to be safe (RFC 2136 §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The RRset of this type at `name` is exactly `records` (as read).
    RRset {
        name: String,
        rtype: &'static str,
        records: Vec<Record>,
    },
    /// No RRset of this type at `name`.
    NoRRset { name: String, rtype: &'static str },
    /// Nothing at all at `name`.
    NameUnused { name: String },
}

impl Expect {
    /// The name the expectation is about.
    pub fn name(&self) -> &str {
        match self {
            Expect::RRset { name, .. }
            | Expect::NoRRset { name, .. }
            | Expect::NameUnused { name } => name,
        }
    }

    /// Whether it holds for `current`, every record read at [`Expect::name`] (other names are
    /// ignored). As RFC 2136 §2.4.2 compares RRsets, TTLs are ignored and order does not matter.
    pub fn holds(&self, current: &[Record]) -> bool {
        let at = current.iter().filter(|r| r.name == self.name());
        match self {
            Expect::RRset { rtype, records, .. } => {
                let mut have: Vec<&RData> = at
                    .filter(|r| r.data.type_name() == *rtype)
                    .map(|r| &r.data)
                    .collect();
                let mut want: Vec<&RData> = records.iter().map(|r| &r.data).collect();
                have.sort();
                have.dedup();
                want.sort();
                want.dedup();
                have == want
            }
            Expect::NoRRset { rtype, .. } => !at.into_iter().any(|r| r.data.type_name() == *rtype),
            Expect::NameUnused { .. } => at.count() == 0,
        }
    }
}

/// One domain's changes; never split across messages or calls that could half-apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainChange {
    pub domain: String,
    pub expect: Vec<Expect>,
    /// Removed by exact data, never as whole RRsets: foreign records at a name survive.
    pub delete: Vec<Record>,
    pub add: Vec<Record>,
}

impl DomainChange {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.add.is_empty()
    }
}

/// Every change for one zone, applied as atomically as the provider allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub domains: Vec<DomainChange>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.domains.iter().all(DomainChange::is_empty)
    }

    /// Every name the change set reads or writes (its expectations, deletes and adds), each
    /// once, absolute and lowercase, in order: what a provider reads again before writing,
    /// and locks in this order so that two applies never wait on each other in a circle.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.domains
            .iter()
            .flat_map(|d| {
                d.expect
                    .iter()
                    .map(|e| e.name())
                    .chain(d.delete.iter().chain(&d.add).map(|r| r.name.as_str()))
            })
            .map(record::absolute)
            .collect()
    }

    /// Whether any record added or deleted is of type `rtype`.
    pub fn touches(&self, rtype: &str) -> bool {
        self.domains
            .iter()
            .flat_map(|d| d.delete.iter().chain(&d.add))
            .any(|r| r.data.type_name() == rtype)
    }
}

/// What a provider can guarantee when our write races someone else's (README's provider table,
/// and `check`'s output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The server applies a change only if what we read is still there (RFC 2136 §3.2
    /// prerequisites; a Route 53 batch whose DELETE names the exact old values): a lost race
    /// fails the change, and we read again.
    CompareAndSwap,
    /// The API has no conditional write: our writes to one name are serialised and read back
    /// after writing, and a foreign value is carried over, never removed.
    ReadVerifyWrite,
}

impl Consistency {
    /// As README's provider table and `check` say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::CompareAndSwap => "compare-and-swap",
            Consistency::ReadVerifyWrite => "read-verify-write",
        }
    }
}

/// A place DNS records are read from and written to.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The configured name, for logs and metrics.
    fn name(&self) -> &str;

    /// What this provider guarantees against concurrent writers.
    fn consistency(&self) -> Consistency;

    /// Whether it can publish TLSA records (DANE, RFC 7672). Those that cannot answer a TLSA
    /// change with [`ProviderError::Config`] "provider X cannot publish TLSA".
    fn writes_tlsa(&self) -> bool {
        false
    }

    /// The zone (fully qualified, trailing dot) that holds each of `names`: one batch, since
    /// every provider can answer many names in one round (a zone list, pipelined SOA queries).
    async fn zones_of(&self, names: &[String]) -> Vec<Result<String, ProviderError>>;

    /// [`Provider::zones_of`] for one name.
    async fn zone_of(&self, name: &str) -> Result<String, ProviderError> {
        self.zones_of(&[name.to_owned()]).await.remove(0)
    }

    /// Every record at `names` (fully qualified) in `zone`: TXT and CNAME, and any other
    /// type that would conflict with them.
    async fn records(&self, zone: &str, names: &[String]) -> Result<Vec<Record>, ProviderError>;

    /// Applies `changes` to `zone`, one atomic step per domain at least.
    async fn apply(&self, zone: &str, changes: &Changes) -> Result<(), ProviderError>;

    /// Said before `zones` are read one after another: a provider that learns something of
    /// all of them at once does it here (RFC 2136: every zone's SOA serial in one pipelined
    /// exchange). Nothing by default; failures show at each zone's read.
    async fn prepare_reads(&self, _zones: &[String]) {}

    /// Whether our credentials for `zone` are accepted, for `plan`, which writes nothing: a
    /// provider whose reads do not use the credentials checks them here. `Ok` by default
    /// (HTTP APIs authenticate every read).
    async fn check_access(&self, _zone: &str) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_ignore_ttl_order_and_other_names() {
        let n = "_mta-sts.example.org.";
        let seen = vec![
            Record::txt(n, 300, "b"),
            Record::txt(n, 60, "a"),
            Record::cname("mta-sts.example.org.", 60, "mail.example.org."),
        ];
        let rrset = |texts: &[&str]| Expect::RRset {
            name: n.into(),
            rtype: "TXT",
            records: texts.iter().map(|t| Record::txt(n, 3600, *t)).collect(),
        };
        assert!(rrset(&["a", "b"]).holds(&seen));
        assert!(!rrset(&["a"]).holds(&seen));
        assert!(!rrset(&["a", "b", "c"]).holds(&seen));
        let no_txt = |name: &str| Expect::NoRRset {
            name: name.into(),
            rtype: "TXT",
        };
        assert!(!no_txt(n).holds(&seen));
        assert!(no_txt("mta-sts.example.org.").holds(&seen));
        let unused = |name: &str| Expect::NameUnused { name: name.into() };
        assert!(!unused("mta-sts.example.org.").holds(&seen));
        assert!(unused("_smtp._tls.example.org.").holds(&seen));
    }

    #[test]
    fn names_of_a_change_set_are_absolute_lowercase_sorted_and_once() {
        let changes = Changes {
            domains: vec![
                DomainChange {
                    domain: "example.org".into(),
                    expect: vec![Expect::NameUnused {
                        name: "MTA-STS.example.org".into(),
                    }],
                    delete: vec![Record::txt("_mta-sts.example.org.", 60, "v=STSv1; id=1;")],
                    add: vec![
                        Record::txt("_mta-sts.example.org", 60, "v=STSv1; id=2;"),
                        Record::cname("mta-sts.example.org.", 60, "sts.example.net."),
                    ],
                },
                DomainChange {
                    domain: "example.net".into(),
                    add: vec![Record::txt("_smtp._tls.example.net.", 60, "v=TLSRPTv1;")],
                    ..Default::default()
                },
            ],
        };
        assert_eq!(
            changes.names().into_iter().collect::<Vec<_>>(),
            [
                "_mta-sts.example.org.",
                "_smtp._tls.example.net.",
                "mta-sts.example.org."
            ]
        );
        assert!(Changes::default().names().is_empty());
    }
}
