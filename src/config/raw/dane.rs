//! `[[dane]]` (SPEC "DANE for the MX hosts"): an MX host we run whose TLSA records we publish
//! from its certificate files.

use std::sync::Arc;

use toml::de::DeTable;

use super::keys::keys;
use super::{Item, Reader};
use crate::config::diag::{At, Loc};
use crate::name::DomainName;

keys! {
    /// `[[dane]]` keys.
    enum Key {
        Host = "host",
        Cert = "cert",
        Next = "next_key",
        Issuer = "issuer",
        Zone = "zone",
        Provider = "provider",
        Ttl = "ttl",
    }
}

/// One `[[dane]]` entry as written; `provider` and `ttl` inherited from `[dns]` at resolve.
#[derive(Debug)]
pub(crate) struct RawDane {
    pub at: Loc,
    pub host: At<DomainName>,
    pub cert: std::path::PathBuf,
    pub next_key: Option<std::path::PathBuf>,
    pub issuer: bool,
    pub zone: Option<At<DomainName>>,
    pub provider: Option<At<Arc<str>>>,
    pub ttl: Option<At<u32>>,
}

impl Reader<'_> {
    /// `[[dane]]`: an array of tables.
    pub(super) fn dane(&mut self, item: &Item<'_>) -> Vec<RawDane> {
        let Some(entries) = self.array("dane", item) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| {
                let t = self.table("dane", e)?;
                self.dane_entry(t, e)
            })
            .collect()
    }

    fn dane_entry(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> Option<RawDane> {
        let at = self.at(item.span());
        let (mut host, mut cert, mut next_key, mut issuer, mut zone) =
            (None, None, None, false, None);
        let mut inherit = super::Inherit::default();
        let mut ok = true;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Host) => {
                    host = self
                        .string(kname, v)
                        .and_then(|s| self.name_fqdn("host", s));
                    ok &= host.is_some();
                }
                Some(Key::Cert) => {
                    cert = self
                        .string(kname, v)
                        .and_then(|s| self.readable(s.value, s.at));
                    ok &= cert.is_some();
                }
                Some(Key::Next) => {
                    next_key = self
                        .string(kname, v)
                        .and_then(|s| self.readable(s.value, s.at));
                    ok &= next_key.is_some();
                }
                Some(Key::Issuer) => match self.boolean(kname, v) {
                    Some(b) => issuer = b,
                    None => ok = false,
                },
                Some(Key::Zone) => {
                    zone = self
                        .string(kname, v)
                        .and_then(|s| self.name_fqdn("zone", s));
                    ok &= zone.is_some();
                }
                Some(Key::Provider | Key::Ttl) => {
                    self.inherit_key(&mut inherit, kname, v);
                }
                None => {
                    self.unknown("[[dane]]", k, Key::ALL);
                    ok = false;
                }
            }
        }
        if host.is_none() && ok {
            self.problems.error(
                at,
                "[[dane]] needs `host`: the MX host name its TLSA records are for",
            );
        }
        if cert.is_none() && ok {
            self.problems.error(
                at,
                "[[dane]] needs `cert`: the certificate chain file the MX host presents",
            );
        }
        Some(RawDane {
            at,
            host: host?,
            cert: cert?,
            next_key,
            issuer,
            zone,
            provider: inherit.provider,
            ttl: inherit.ttl,
        })
    }
}
