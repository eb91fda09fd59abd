//! `[state]`: where the daemon keeps what it must remember, and the limits on retiring domains.

use toml::de::DeTable;

use super::keys::keys;
use super::Reader;
use crate::config::{RetireLimit, State};

keys! {
    /// `[state]` keys.
    enum Key {
        Dir = "dir",
        MaxRetire = "max_retire",
        RetireAfter = "retire_after",
    }
}

impl Reader<'_> {
    pub(super) fn state(&mut self, table: &DeTable<'_>) -> State {
        let mut state = State::default();
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Dir) => {
                    if let Some(s) = self.string(kname, v) {
                        state.dir = self.path(s.value);
                    }
                }
                Some(Key::RetireAfter) => {
                    if let Some(d) = self.duration(kname, v) {
                        state.retire_after = d;
                    }
                }
                Some(Key::MaxRetire) => {
                    if let Some(limit) = self.retire_limit(v) {
                        state.max_retire = limit;
                    }
                }
                None => self.unknown("[state]", k, Key::ALL),
            }
        }
        state
    }

    /// A count (`10`) or a share of the published domains (`"10%"`).
    fn retire_limit(&mut self, v: &super::Item<'_>) -> Option<RetireLimit> {
        if let toml::de::DeValue::Integer(_) = v.get_ref() {
            let n = self.integer("max_retire", v)?;
            return match u64::try_from(n.value) {
                Ok(n) => Some(RetireLimit::Count(n)),
                Err(_) => {
                    self.problems.error(
                        n.at,
                        "`max_retire` must be 0 or more domains, or a percentage such as \"10%\"",
                    );
                    None
                }
            };
        }
        let s = self.string("max_retire", v)?;
        match s
            .value
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<f64>().ok())
        {
            Some(p) if (0.0..=100.0).contains(&p) => Some(RetireLimit::Percent(p)),
            _ => {
                self.problems.error(
                    s.at,
                    format!(
                        "`max_retire`: `{}` is not a number of domains or a percentage such as \"10%\"",
                        s.value
                    ),
                );
                None
            }
        }
    }
}
