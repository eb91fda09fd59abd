//! The `[drift]` table: how often and how the world is checked against the config.

use toml::de::DeTable;

use super::keys::keys;
use super::Reader;
use crate::config::Drift;

keys! {
    /// `[drift]` keys.
    enum Key {
        Interval = "interval",
        Report = "report",
        Resolver = "resolver",
        Ca = "ca",
        DnsPort = "dns_port",
        HttpsPort = "https_port",
        Smtp = "smtp",
        SmtpPort = "smtp_port",
        SmtpTimeout = "smtp_timeout",
    }
}

impl Reader<'_> {
    pub(super) fn drift(&mut self, table: &DeTable<'_>) -> Drift {
        // Writing the section turns the periodic checks in `serve` on.
        let mut drift = Drift {
            enabled: true,
            ..Drift::default()
        };
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Interval) => {
                    if let Some(d) = self.duration(kname, v) {
                        drift.interval = d;
                    }
                }
                Some(Key::Report) => {
                    drift.report = self.string(kname, v).map(|s| self.path(s.value))
                }
                Some(Key::Resolver) => {
                    drift.resolver = self.string(kname, v).and_then(|s| {
                        let with_port = if s.value.parse::<std::net::IpAddr>().is_ok() {
                            format!("{}:53", s.value)
                        } else {
                            s.value.to_owned()
                        };
                        self.socket_addr(&with_port, s.at)
                    })
                }
                Some(Key::Ca) => {
                    drift.ca = self
                        .string(kname, v)
                        .and_then(|s| self.readable(s.value, s.at))
                }
                Some(Key::Smtp) => {
                    if let Some(b) = self.boolean(kname, v) {
                        drift.smtp = b;
                    }
                }
                Some(Key::SmtpTimeout) => {
                    if let Some(d) = self.duration(kname, v) {
                        drift.smtp_timeout = d;
                    }
                }
                Some(key @ (Key::DnsPort | Key::HttpsPort | Key::SmtpPort)) => {
                    if let Some(n) = self.integer(kname, v) {
                        match u16::try_from(n.value).ok().filter(|&p| p > 0) {
                            Some(p) if key == Key::DnsPort => drift.dns_port = p,
                            Some(p) if key == Key::SmtpPort => drift.smtp_port = p,
                            Some(p) => drift.https_port = p,
                            None => self
                                .problems
                                .error(n.at, format!("`{kname}` must be a port, 1..=65535")),
                        }
                    }
                }
                None => self.unknown("[drift]", k, Key::ALL),
            }
        }
        drift
    }
}
