//! The `[acme]` table: the ACME server (RFC 8555), contacts, challenge, and the state directory
//! of an earlier version (imported into the store once).

use std::path::PathBuf;

use toml::de::DeTable;

use super::keys::keys;
use super::{Item, Reader};
use crate::config::diag::At;
use crate::config::{Acme, Challenge};

keys! {
    /// `[acme]` keys.
    enum Key {
        Directory = "directory",
        Contact = "contact",
        Challenge = "challenge",
        State = "state",
        Ca = "ca",
        OrdersPerHour = "orders_per_hour",
        OnDemand = "on_demand",
    }
}

impl Reader<'_> {
    pub(super) fn acme(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> Option<At<Acme>> {
        let at = self.at(item.span());
        let mut acme = Acme {
            directory: String::new(),
            contact: Vec::new(),
            challenge: Challenge::TlsAlpn01,
            // Empty: `<[state] dir>/acme`, filled in when the files are combined.
            state: PathBuf::new(),
            ca: None,
            orders_per_hour: None,
            on_demand: false,
        };
        let mut ok = true;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Directory) => match self.string(kname, v) {
                    Some(s) => match self.base_url(s.value, s.at, None) {
                        Some(u) => acme.directory = u,
                        None => ok = false,
                    },
                    None => ok = false,
                },
                Some(Key::Contact) => {
                    for s in self.strings(kname, v).unwrap_or_default() {
                        if s.value.starts_with("mailto:") && s.value.contains('@') {
                            acme.contact.push(s.value.to_owned());
                        } else {
                            self.problems.error(
                                s.at,
                                format!(
                                    "contact `{}` must be a mailto: URI (RFC 8555 §7.3)",
                                    s.value
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                Some(Key::Challenge) => match self.string(kname, v).map(|s| (s.value, s.at)) {
                    Some(("tls-alpn-01", _)) => acme.challenge = Challenge::TlsAlpn01,
                    Some(("http-01", _)) => acme.challenge = Challenge::Http01,
                    Some((other, at)) => {
                        self.problems.error(
                            at,
                            format!("challenge `{other}` is not `tls-alpn-01` or `http-01`"),
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                Some(Key::State) => match self.string(kname, v) {
                    Some(s) => acme.state = self.path(s.value),
                    None => ok = false,
                },
                Some(Key::Ca) => {
                    acme.ca = self
                        .string(kname, v)
                        .and_then(|s| self.readable(s.value, s.at))
                }
                Some(Key::OrdersPerHour) => match self.integer(kname, v) {
                    Some(n) if (1..=100_000).contains(&n.value) => {
                        acme.orders_per_hour = Some(n.value as u32);
                    }
                    // Reported; the rest of [acme] stays, so no domain loses its certificate
                    // source over it.
                    Some(n) => {
                        self.problems
                            .error(n.at, "`orders_per_hour` must be 1 to 100000");
                    }
                    None => {}
                },
                Some(Key::OnDemand) => {
                    if let Some(b) = self.boolean(kname, v) {
                        acme.on_demand = b;
                    }
                }
                None => self.unknown("[acme]", k, Key::ALL),
            }
        }
        // A `directory` given but refused is reported where it is written, not again here.
        if acme.directory.is_empty() && !table.contains_key("directory") {
            self.problems.error(
                at,
                "[acme] needs `directory`, the ACME server's directory URL",
            );
            ok = false;
        }
        ok.then_some(At { value: acme, at })
    }
}
