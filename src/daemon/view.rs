//! What `/status` and the dashboard both show of a domain.

use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::config::{CertSource, Config, Domain, Retiring};

/// `configured`, or where a removed domain is in its retirement (RFC 8461 §8.3).
pub(crate) fn lifecycle_status(d: &Domain) -> Value {
    match d.retiring {
        None => json!({ "state": "configured" }),
        Some(Retiring::Missing { since, retire_at }) => {
            json!({ "state": "missing", "missing_since": rfc3339(since), "retire_at": rfc3339(retire_at) })
        }
        Some(Retiring::Retiring { since, withdraw_at }) => {
            json!({ "state": "retiring", "retiring_since": rfc3339(since), "withdraw_at": rfc3339(withdraw_at) })
        }
        Some(Retiring::Withdrawing { withdraw_at }) => {
            json!({ "state": "withdrawing", "withdraw_at": rfc3339(withdraw_at) })
        }
        Some(Retiring::Held) => json!({ "state": "held" }),
    }
}

/// When the domain's served certificate expires (RFC 3339): a configured one's, or the
/// ACME one's once issued; `None` for self-signed or none.
pub(crate) fn certificate(
    d: &Domain,
    config: &Config,
    acme: &crate::acme::AcmeState,
) -> Option<String> {
    match d.cert {
        CertSource::Configured(i) => config.tls.certs.get(i).map(|c| rfc3339(c.not_after)),
        CertSource::Acme => acme.status(&d.name.policy_host()).not_after.map(rfc3339),
        CertSource::SelfSigned | CertSource::NotNeeded => None,
    }
}
