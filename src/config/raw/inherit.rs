//! The keys a domain inherits from `[policy]` and `[dns]`, read in either place or in the
//! domain's own table: one reader per key.

use toml::de::{DeTable, DeValue};

use super::{Inherit, Inherited, Item, Reader};
use crate::config::diag::At;
use crate::name::Converted;
use crate::policy::{Mode, MxPattern, MAX_AGE_LIMIT};
use crate::rua::Rua;

impl Reader<'_> {
    pub(super) fn inherit(
        &mut self,
        section: &str,
        table: &DeTable<'_>,
        allowed: &[&str],
    ) -> Inherit {
        self.inherit_except(section, table, allowed, &[])
    }

    /// Like [`Self::inherit`], skipping the section's own keys `others` (read by the caller).
    pub(super) fn inherit_except(
        &mut self,
        section: &str,
        table: &DeTable<'_>,
        allowed: &[&str],
        others: &[&str],
    ) -> Inherit {
        let mut keys = Inherit::default();
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            if others.contains(&kname) {
                continue;
            }
            if !allowed.contains(&kname) || !self.inherit_key(&mut keys, kname, v) {
                let expected: Vec<&str> = allowed.iter().chain(others).copied().collect();
                self.unknown(section, k, &expected);
            }
        }
        keys
    }

    /// Reads one inheritable key; false when `key` is not one.
    pub(super) fn inherit_key(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) -> bool {
        match Inherited::of(key) {
            Some(Inherited::Mode) => self.key_mode(keys, key, v),
            Some(Inherited::Mx) => self.key_mx(keys, key, v),
            Some(Inherited::MaxAge) => self.key_max_age(keys, key, v),
            Some(Inherited::Target) => self.key_target(keys, key, v),
            Some(Inherited::Ttl) => self.key_ttl(keys, key, v),
            Some(Inherited::Tlsrpt) => self.key_tlsrpt(keys, key, v),
            Some(Inherited::Provider) => self.key_provider(keys, key, v),
            Some(Inherited::Delegated) => self.key_delegated(keys, key, v),
            None => return false,
        }
        true
    }

    /// `mode`: one of RFC 8461 §5's modes.
    fn key_mode(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        keys.mode = self
            .string(key, v)
            .and_then(|s| match s.value.parse::<Mode>() {
                Ok(mode) => Some(At {
                    value: mode,
                    at: s.at,
                }),
                Err(e) => {
                    self.problems.error(s.at, e);
                    None
                }
            });
        keys.mode_rejected = keys.mode.is_none();
    }

    /// `mx`: the policy's MX patterns (RFC 8461 §3.2), converted to A-labels.
    fn key_mx(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        let entries = self.strings(key, v);
        let mut ok = entries.is_some();
        let mut patterns = Vec::new();
        for s in entries.unwrap_or_default() {
            match MxPattern::parse(s.value) {
                Ok((p, conv)) => {
                    if conv == Converted::Idna {
                        self.problems.warn(
                            s.at,
                            format!("mx `{}` converted to its A-label `{p}` (IDNA); the policy lists the A-label", s.value),
                        );
                    }
                    patterns.push(p);
                }
                Err(e) => {
                    self.problems.error(s.at, e.0);
                    ok = false;
                }
            }
        }
        keys.mx = ok.then(|| At {
            value: patterns.into(),
            at: self.at(v.span()),
        });
        keys.mx_rejected = !ok;
    }

    /// `max_age`: RFC 8461 §3.2's bound.
    fn key_max_age(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        keys.max_age = self.integer(key, v).and_then(|n| {
            match u32::try_from(n.value).ok().filter(|&s| s <= MAX_AGE_LIMIT) {
                Some(s) => Some(At { value: s, at: n.at }),
                None => {
                    self.problems.error(
                        n.at,
                        format!(
                            "max_age {} is outside 0..=31557600 seconds (RFC 8461 §3.2)",
                            n.value
                        ),
                    );
                    None
                }
            }
        });
    }

    /// `target`: the CNAME target of `mta-sts.<domain>`, or `false` for none.
    fn key_target(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        keys.target = match v.get_ref() {
            // A deliberate A record at mta-sts.<domain>: no CNAME for it.
            DeValue::Boolean(false) => Some(At {
                value: None,
                at: self.at(v.span()),
            }),
            DeValue::String(_) => self
                .string(key, v)
                .and_then(|s| self.name_fqdn(key, s))
                .map(|t| At {
                    value: Some(t.value),
                    at: t.at,
                }),
            _ => {
                self.wrong_type(key, v, "a host name, or false for no CNAME");
                None
            }
        };
    }

    /// `ttl`: the records' TTL.
    fn key_ttl(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        keys.ttl = self.integer(key, v).and_then(|n| {
            // RFC 2181 §8: a TTL is at most 2^31 - 1.
            match u32::try_from(n.value).ok().filter(|&t| (1..=0x7fff_ffff).contains(&t)) {
                Some(t) => {
                    if !(60..=86400).contains(&t) {
                        self.problems.warn(n.at, format!(
                            "ttl {t} is outside 60..=86400 seconds: changes are either slow to reach senders or cost resolvers a query each time"
                        ));
                    }
                    Some(At { value: t, at: n.at })
                }
                None => {
                    self.problems.error(n.at, format!(
                        "ttl {} is outside 1..=2147483647 seconds (RFC 2181 §8)", n.value
                    ));
                    None
                }
            }
        });
    }

    /// `tlsrpt`: the `rua` URIs (RFC 8460 §3).
    fn key_tlsrpt(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        let entries = self.strings(key, v);
        let mut ok = entries.is_some();
        let mut rua = Vec::new();
        for s in entries.unwrap_or_default() {
            match Rua::parse(s.value) {
                Ok(r) => rua.push(r),
                Err(e) => {
                    self.problems.error(s.at, e);
                    ok = false;
                }
            }
        }
        keys.tlsrpt = ok.then(|| At {
            value: rua.into(),
            at: self.at(v.span()),
        });
    }

    /// `provider`: a provider's name, checked against the providers later.
    fn key_provider(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        keys.provider = self.string(key, v).map(|s| At {
            value: s.value.into(),
            at: s.at,
        });
    }

    /// `delegated`: whether the TXT records are at their delegated names.
    fn key_delegated(&mut self, keys: &mut Inherit, key: &str, v: &Item<'_>) {
        keys.delegated = self.boolean(key, v).map(|b| At {
            value: b,
            at: self.at(v.span()),
        });
    }
}
