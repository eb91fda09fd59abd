//! The `[tlsrpt]` table: the HTTPS names and path that take reports, and the report store.

use std::collections::HashMap;

use toml::de::DeTable;

use super::keys::keys;
use super::{Item, Reader};
use crate::config::diag::{At, Loc};
use crate::config::{StoreKind, Tlsrpt};

keys! {
    /// `[tlsrpt]` keys.
    enum Key {
        Hosts = "hosts",
        Path = "path",
        Store = "store",
        UrlEnv = "url_env",
        UrlFile = "url_file",
        Retention = "retention",
        MaxReportBytes = "max_report_bytes",
        ParseBudgetBytes = "parse_budget_bytes",
        MaxStoreBytes = "max_store_bytes",
        MaxReports = "max_reports",
        MaxReportsPerSenderDay = "max_reports_per_sender_day",
        RateBurst = "rate_burst",
        RateRefill = "rate_refill",
        Resolver = "resolver",
    }
}

impl Reader<'_> {
    pub(super) fn tlsrpt(
        &mut self,
        table: &DeTable<'_>,
        item: &Item<'_>,
    ) -> Option<(Tlsrpt, Vec<Loc>)> {
        let at = self.at(item.span());
        let mut t = Tlsrpt::default();
        let mut ok = true;
        let mut locs = Vec::new();
        let mut store = None;
        let mut url: HashMap<&str, At<&str>> = HashMap::new();
        let mut budget_at = None;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Hosts) => {
                    let Some(list) = self.strings(kname, v) else {
                        ok = false;
                        continue;
                    };
                    for s in list {
                        match self.name_fqdn("[tlsrpt] hosts entry", s) {
                            Some(n) => {
                                t.hosts.push(n.value);
                                locs.push(n.at);
                            }
                            None => ok = false,
                        }
                    }
                }
                Some(Key::Path) => match self.string(kname, v) {
                    Some(s) if s.value.starts_with('/') && !s.value.contains(['?', '#']) => {
                        t.path = s.value.to_owned()
                    }
                    Some(s) => {
                        self.problems.error(
                            s.at,
                            "`path` must be an absolute path such as \"/v1/tlsrpt\", without query",
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                Some(Key::Store) => match self.string(kname, v) {
                    Some(s) if s.value == "sqlite" || s.value == "postgres" => store = Some(s),
                    Some(s) => {
                        self.problems
                            .error(s.at, "`store` is \"sqlite\" or \"postgres\"");
                        ok = false;
                    }
                    None => ok = false,
                },
                Some(Key::UrlEnv | Key::UrlFile) => match self.string(kname, v) {
                    Some(s) => {
                        url.insert(kname, s);
                    }
                    None => ok = false,
                },
                Some(Key::Retention) => match self.duration(kname, v) {
                    Some(d) => t.retention = d,
                    None => ok = false,
                },
                Some(Key::MaxReportBytes) => match self.integer(kname, v) {
                    Some(n) if n.value > 0 => t.max_report_bytes = n.value as usize,
                    Some(n) => {
                        self.problems
                            .error(n.at, "`max_report_bytes` must be positive");
                        ok = false;
                    }
                    None => ok = false,
                },
                Some(
                    k @ (Key::ParseBudgetBytes
                    | Key::MaxStoreBytes
                    | Key::MaxReports
                    | Key::MaxReportsPerSenderDay),
                ) => match self.integer(kname, v) {
                    Some(n) if n.value > 0 => match k {
                        Key::ParseBudgetBytes => {
                            t.parse_budget_bytes = n.value as usize;
                            budget_at = Some(n.at);
                        }
                        Key::MaxStoreBytes => t.max_store_bytes = n.value as u64,
                        Key::MaxReportsPerSenderDay => {
                            t.max_reports_per_sender_day = n.value as u64
                        }
                        _ => t.max_reports = n.value as u64,
                    },
                    Some(n) => {
                        self.problems
                            .error(n.at, format!("`{kname}` must be positive"));
                        ok = false;
                    }
                    None => ok = false,
                },
                Some(Key::RateBurst) => match self.integer(kname, v) {
                    Some(n) if n.value > 0 && n.value <= i64::from(u32::MAX) => {
                        t.rate_burst = n.value as u32
                    }
                    Some(n) => {
                        self.problems.error(
                            n.at,
                            "`rate_burst` must be positive (POSTs one address may send at once)",
                        );
                        ok = false;
                    }
                    None => ok = false,
                },
                Some(Key::RateRefill) => match self.duration(kname, v) {
                    Some(d) => t.rate_refill = d,
                    None => ok = false,
                },
                Some(Key::Resolver) => {
                    t.resolver = self.string(kname, v).and_then(|s| {
                        let with_port = if s.value.parse::<std::net::IpAddr>().is_ok() {
                            format!("{}:53", s.value)
                        } else {
                            s.value.to_owned()
                        };
                        self.socket_addr(&with_port, s.at)
                    });
                    ok &= t.resolver.is_some();
                }
                // Not keys: secrets written inline.
                None if matches!(kname, "url" | "password") => {
                    self.problems.error(
                        self.at(k.span()),
                        format!("`{kname}`: the database URL is not allowed inline; give `url_env` or `url_file`"),
                    );
                    ok = false;
                }
                None => {
                    self.unknown("[tlsrpt]", k, Key::ALL);
                    ok = false;
                }
            }
        }
        if t.parse_budget_bytes < t.max_report_bytes {
            self.problems.error(
                budget_at.unwrap_or(at),
                "`parse_budget_bytes` must be at least `max_report_bytes`, or no report that large is ever taken",
            );
            ok = false;
        }
        match store.map(|s| s.value) {
            Some("postgres") => {
                // Read now, so `check` fails on a missing URL.
                let url = self.secret(&url, "url", "[tlsrpt] store = \"postgres\"", at)?;
                t.store = StoreKind::Postgres(url);
            }
            named => {
                // Named: its own file, even when `[state]` is PostgreSQL.
                if named.is_some() {
                    t.store = StoreKind::Sqlite;
                }
                if let Some(u) = url.values().next() {
                    self.problems
                        .error(u.at, "`url_env`/`url_file` are for store = \"postgres\"");
                    ok = false;
                }
            }
        }
        ok.then_some((t, locs))
    }
}
