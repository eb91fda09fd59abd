//! The `[drift]` table: how often and how the world is checked against the config.

use toml::de::DeTable;

use super::Reader;
use crate::config::Drift;

const KEYS: &[&str] = &[
    "interval",
    "report",
    "resolver",
    "ca",
    "dns_port",
    "https_port",
    "smtp",
    "smtp_port",
    "smtp_timeout",
];

impl Reader<'_> {
    pub(super) fn drift(&mut self, table: &DeTable<'_>) -> Drift {
        // Writing the section turns the periodic checks in `serve` on.
        let mut drift = Drift {
            enabled: true,
            ..Drift::default()
        };
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match kname {
                "interval" => {
                    if let Some(d) = self.duration(kname, v) {
                        drift.interval = d;
                    }
                }
                "report" => drift.report = self.string(kname, v).map(|s| self.path(s.value)),
                "resolver" => {
                    drift.resolver = self.string(kname, v).and_then(|s| {
                        let with_port = if s.value.parse::<std::net::IpAddr>().is_ok() {
                            format!("{}:53", s.value)
                        } else {
                            s.value.to_owned()
                        };
                        self.socket_addr(&with_port, s.at)
                    })
                }
                "ca" => {
                    drift.ca = self
                        .string(kname, v)
                        .and_then(|s| self.readable(s.value, s.at))
                }
                "smtp" => {
                    if let Some(b) = self.boolean(kname, v) {
                        drift.smtp = b;
                    }
                }
                "smtp_timeout" => {
                    if let Some(d) = self.duration(kname, v) {
                        drift.smtp_timeout = d;
                    }
                }
                "dns_port" | "https_port" | "smtp_port" => {
                    if let Some(n) = self.integer(kname, v) {
                        match u16::try_from(n.value).ok().filter(|&p| p > 0) {
                            Some(p) if kname == "dns_port" => drift.dns_port = p,
                            Some(p) if kname == "smtp_port" => drift.smtp_port = p,
                            Some(p) => drift.https_port = p,
                            None => self
                                .problems
                                .error(n.at, format!("`{kname}` must be a port, 1..=65535")),
                        }
                    }
                }
                _ => self.unknown("[drift]", k, KEYS),
            }
        }
        drift
    }
}
