//! One element of "policies" (RFC 8460 §4.4): its `policy`, `summary` and
//! `failure-details`, read by the visitors of [`super`].

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::super::{FailureDetail, PolicyResult, PolicyType, MAX_FAILURES};
use super::{value, Count, Key, List, Str, Strings};

/// RFC 8460 §4.4 one element of "policies".
#[derive(Clone, Copy)]
pub(super) struct PolicySeed;

impl<'de> DeserializeSeed<'de> for PolicySeed {
    type Value = PolicyResult;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PolicyResult, D::Error> {
        d.deserialize_map(PolicySeed)
    }
}

/// The fields of one policy, gathered from its `policy` and `summary` objects.
#[derive(Default)]
struct PolicyFields {
    policy_type: Option<String>,
    policy_string: Option<Vec<String>>,
    domain: Option<String>,
    mx_hosts: Option<Vec<String>>,
    successful: u64,
    failed: u64,
}

impl<'de> Visitor<'de> for PolicySeed {
    type Value = PolicyResult;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<PolicyResult, A::Error> {
        let mut p = PolicyFields::default();
        let mut failures = Vec::new();
        while let Some(k) = m.next_key::<Key>()? {
            match k.0.as_str() {
                "policy" => value(&mut m, &k.0, Fields(&mut p, PolicyPart))?,
                "summary" => value(&mut m, &k.0, Fields(&mut p, SummaryPart))?,
                "failure-details" => {
                    failures = value(&mut m, &k.0, List(FailureSeed, MAX_FAILURES))?
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(PolicyResult {
            policy_type: PolicyType::parse(&p.policy_type.unwrap_or_default()),
            policy_string: p.policy_string,
            domain: p
                .domain
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty()),
            mx_hosts: p.mx_hosts.unwrap_or_default(),
            successful: p.successful,
            failed: p.failed,
            failures,
        })
    }
}

/// Which object of a policy [`Fields`] reads.
#[derive(Clone, Copy)]
struct PolicyPart;
#[derive(Clone, Copy)]
struct SummaryPart;

trait Part {
    fn field<'de, A: MapAccess<'de>>(
        p: &mut PolicyFields,
        key: &str,
        m: &mut A,
    ) -> Result<(), A::Error>;
}

impl Part for PolicyPart {
    fn field<'de, A: MapAccess<'de>>(
        p: &mut PolicyFields,
        key: &str,
        m: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "policy-type" => p.policy_type = value(m, key, Str)?,
            "policy-string" => p.policy_string = value(m, key, Strings)?,
            "policy-domain" => p.domain = value(m, key, Str)?,
            // RFC 8460 §4.4's example has a string; the schema and most reporters an array.
            "mx-host" => p.mx_hosts = value(m, key, Strings)?,
            _ => {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl Part for SummaryPart {
    fn field<'de, A: MapAccess<'de>>(
        p: &mut PolicyFields,
        key: &str,
        m: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "total-successful-session-count" => p.successful = value(m, key, Count)?,
            "total-failure-session-count" => p.failed = value(m, key, Count)?,
            _ => {
                m.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// An object (or null) whose keys go into a [`PolicyFields`].
struct Fields<'a, P>(&'a mut PolicyFields, P);

impl<'de, P: Part> DeserializeSeed<'de> for Fields<'_, P> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, P: Part> Visitor<'de> for Fields<'_, P> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<Key>()? {
            P::field(self.0, &k.0, &mut m)?;
        }
        Ok(())
    }
}

/// RFC 8460 §4.4 one element of "failure-details".
#[derive(Clone, Copy)]
struct FailureSeed;

impl<'de> DeserializeSeed<'de> for FailureSeed {
    type Value = FailureDetail;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FailureDetail, D::Error> {
        d.deserialize_map(FailureSeed)
    }
}

impl<'de> Visitor<'de> for FailureSeed {
    type Value = FailureDetail;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<FailureDetail, A::Error> {
        let mut f = FailureDetail {
            result_type: String::new(),
            sending_mta_ip: None,
            receiving_mx_hostname: None,
            receiving_mx_helo: None,
            receiving_ip: None,
            count: 0,
            additional_information: None,
            failure_reason_code: None,
        };
        while let Some(k) = m.next_key::<Key>()? {
            let key = k.0.as_str();
            // Some reporters send "" for what they do not know: the same as absent.
            let slot = match key {
                "result-type" => {
                    f.result_type = value(&mut m, key, Str)?.unwrap_or_default();
                    continue;
                }
                "failed-session-count" => {
                    f.count = value(&mut m, key, Count)?;
                    continue;
                }
                "sending-mta-ip" => &mut f.sending_mta_ip,
                "receiving-mx-hostname" => &mut f.receiving_mx_hostname,
                "receiving-mx-helo" => &mut f.receiving_mx_helo,
                "receiving-ip" => &mut f.receiving_ip,
                "additional-information" => &mut f.additional_information,
                "failure-reason-code" => &mut f.failure_reason_code,
                _ => {
                    m.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = value(&mut m, key, Str)?.filter(|s| !s.is_empty());
        }
        f.receiving_mx_hostname = f
            .receiving_mx_hostname
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        Ok(f)
    }
}
