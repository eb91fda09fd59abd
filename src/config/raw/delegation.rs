//! `[delegation]` (RFC 8461 §8.2): the zone we control where delegated domains' STS TXT
//! records live, each at `<domain>.<zone>.`.

use toml::de::DeTable;

use super::keys::keys;
use super::{Item, Reader};
use crate::config::diag::At;
use crate::name::DomainName;

keys! {
    /// `[delegation]` keys.
    enum Key {
        Zone = "zone",
    }
}

impl Reader<'_> {
    pub(super) fn delegation(
        &mut self,
        table: &DeTable<'_>,
        item: &Item<'_>,
    ) -> Option<At<DomainName>> {
        let mut zone = None;
        let mut ok = true;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Zone) => {
                    zone = self
                        .string(kname, v)
                        .and_then(|s| self.name_fqdn("zone", s));
                    ok &= zone.is_some();
                }
                None => self.unknown("[delegation]", k, Key::ALL),
            }
        }
        if zone.is_none() && ok {
            self.problems.error(
                self.at(item.span()),
                "[delegation] needs `zone`: the zone (ours, through the [dns] provider) that holds delegated domains' TXT records",
            );
        }
        zone
    }
}
