//! The `[server]` and `[tls]` tables: listeners, limits, trusted proxies, and the configured
//! certificate files.

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::de::DeTable;

use super::keys::keys;
use super::{Item, RawFile, Reader};
use crate::certs::CertFiles;
use crate::config::diag::{At, Loc};
use crate::config::Server;
use mta_stsd_providers::{Secret, SecretSource};

keys! {
    /// `[server]` keys.
    enum ServerKey {
        Https = "https",
        Http = "http",
        Admin = "admin",
        AdminTokenFile = "admin_token_file",
        TrustedProxies = "trusted_proxies",
        HandshakeTimeout = "handshake_timeout",
        HeaderTimeout = "header_timeout",
        IdleTimeout = "idle_timeout",
        ShutdownTimeout = "shutdown_timeout",
        MaxHeaderBytes = "max_header_bytes",
        MaxConnections = "max_connections",
        MaxConnectionsPerIp = "max_connections_per_ip",
        MinBodyRate = "min_body_rate",
        BodyGrace = "body_grace",
        MaxConnectionLifetime = "max_connection_lifetime",
        MaxRequestsPerConnection = "max_requests_per_connection",
    }
}

keys! {
    /// `[tls]` keys.
    enum TlsKey {
        Certs = "certs",
        SelfSigned = "self_signed",
    }
}

keys! {
    /// The keys of a `[tls] certs` entry.
    enum CertKey {
        Cert = "cert",
        Key = "key",
    }
}

impl Reader<'_> {
    pub(super) fn server(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> At<Server> {
        let mut server = Server::default();
        let mut lifetime_at = None;
        let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
        let mut admin_at = None;
        let mut check_dup = |r: &mut Self, addr: SocketAddr, at: Loc, what: &'static str| {
            // Port 0 asks the kernel for a free port: never a clash.
            if addr.port() == 0 {
                return;
            }
            if let Some(prev) = seen.insert(addr, what) {
                r.problems
                    .error(at, format!("{addr} is already the {prev} listener"));
            }
        };
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match ServerKey::of(kname) {
                Some(key @ (ServerKey::Https | ServerKey::Http)) => {
                    let mut addrs = Vec::new();
                    for s in self.strings(kname, v).unwrap_or_default() {
                        if let Some(a) = self.socket_addr(s.value, s.at) {
                            check_dup(self, a, s.at, key.name());
                            addrs.push(a);
                        }
                    }
                    if key == ServerKey::Https {
                        server.https = addrs
                    } else {
                        server.http = addrs
                    }
                }
                Some(ServerKey::Admin) => {
                    server.admin = self.string(kname, v).and_then(|s| {
                        let a = self.socket_addr(s.value, s.at)?;
                        check_dup(self, a, s.at, "admin");
                        admin_at = Some(s.at);
                        Some(a)
                    })
                }
                Some(ServerKey::AdminTokenFile) => {
                    if let Some(s) = self.string(kname, v) {
                        let path = self.path(s.value);
                        self.private(&path, s.at);
                        // An empty file is refused by `Secret::read`: it would let an empty
                        // bearer in.
                        server.admin_token = Secret::read(&SecretSource::File(path))
                            .map_err(|e| self.problems.error(s.at, e))
                            .ok();
                    }
                }
                Some(ServerKey::TrustedProxies) => {
                    for s in self.strings(kname, v).unwrap_or_default() {
                        match proxy_net(s.value) {
                            Some(net) => server.trusted_proxies.push(net),
                            None => self.problems.error(
                                s.at,
                                format!("`{}` is not an IP address or network (e.g. \"127.0.0.1\", \"10.0.0.0/8\")", s.value),
                            ),
                        }
                    }
                }
                Some(
                    key @ (ServerKey::HandshakeTimeout
                    | ServerKey::HeaderTimeout
                    | ServerKey::IdleTimeout
                    | ServerKey::ShutdownTimeout
                    | ServerKey::BodyGrace
                    | ServerKey::MaxConnectionLifetime),
                ) => {
                    if key == ServerKey::MaxConnectionLifetime {
                        lifetime_at = Some(self.at(v.span()));
                    }
                    if let Some(d) = self.duration(kname, v) {
                        let l = &mut server.limits;
                        *match key {
                            ServerKey::HandshakeTimeout => &mut l.handshake_timeout,
                            ServerKey::HeaderTimeout => &mut l.header_timeout,
                            ServerKey::IdleTimeout => &mut l.idle_timeout,
                            ServerKey::BodyGrace => &mut l.body_grace,
                            ServerKey::MaxConnectionLifetime => &mut l.max_connection_lifetime,
                            _ => &mut l.shutdown_timeout,
                        } = d;
                    }
                }
                Some(key @ (ServerKey::MinBodyRate | ServerKey::MaxRequestsPerConnection)) => {
                    if let Some(n) = self.integer(kname, v) {
                        let l = &mut server.limits;
                        match u64::try_from(n.value).ok().filter(|&n| n > 0) {
                            Some(n) if key == ServerKey::MinBodyRate => l.min_body_rate = n,
                            Some(n) => l.max_requests_per_connection = n,
                            None => self
                                .problems
                                .error(n.at, format!("`{kname}` must be a positive number")),
                        }
                    }
                }
                Some(
                    key @ (ServerKey::MaxHeaderBytes
                    | ServerKey::MaxConnections
                    | ServerKey::MaxConnectionsPerIp),
                ) => {
                    if let Some(n) = self.integer(kname, v) {
                        let l = &mut server.limits;
                        match usize::try_from(n.value).ok().filter(|&n| n > 0) {
                            Some(n) if key == ServerKey::MaxHeaderBytes => l.max_header_bytes = n,
                            Some(n) if key == ServerKey::MaxConnections => l.max_connections = n,
                            Some(n) => l.max_connections_per_ip = n,
                            None => self
                                .problems
                                .error(n.at, format!("`{kname}` must be a positive number")),
                        }
                    }
                }
                None => self.unknown("[server]", k, ServerKey::ALL),
            }
        }
        let l = &server.limits;
        // A lifetime within the time a request may take to arrive would close connections
        // before their first request: nonsense, refused.
        if l.max_connection_lifetime <= l.handshake_timeout + l.header_timeout {
            self.problems.error(
                lifetime_at.unwrap_or_else(|| self.at(item.span())),
                format!(
                    "`max_connection_lifetime` ({:?}) must be longer than handshake_timeout + header_timeout ({:?})",
                    l.max_connection_lifetime,
                    l.handshake_timeout + l.header_timeout
                ),
            );
        }
        if let (Some(a), Some(at)) = (server.admin, admin_at) {
            if !a.ip().is_loopback() && server.admin_token.is_none() {
                self.problems.warn(at, format!(
                    "admin listener {a} is not on loopback and has no `admin_token_file`: the dashboard, /status and /metrics will be reachable from the network by anyone"
                ));
            }
        }
        At {
            value: server,
            at: self.at(item.span()),
        }
    }

    pub(super) fn tls(&mut self, table: &DeTable<'_>, raw: &mut RawFile) {
        for (k, v) in table.iter() {
            match TlsKey::of(k.get_ref().as_ref()) {
                Some(TlsKey::SelfSigned) => {
                    raw.self_signed = self.boolean(TlsKey::SelfSigned.name(), v).unwrap_or(false)
                }
                Some(TlsKey::Certs) => {
                    let Some(list) = self.array(TlsKey::Certs.name(), v) else {
                        continue;
                    };
                    for entry in list {
                        let Some(t) = self.table("certs entry", entry) else {
                            continue;
                        };
                        let at = self.at(entry.span());
                        let (mut cert, mut key) = (None, None);
                        for (ck, cv) in t.iter() {
                            match CertKey::of(ck.get_ref().as_ref()) {
                                Some(CertKey::Cert) => {
                                    cert = self
                                        .string(CertKey::Cert.name(), cv)
                                        .map(|s| self.path(s.value))
                                }
                                Some(CertKey::Key) => {
                                    key = self
                                        .string(CertKey::Key.name(), cv)
                                        .map(|s| self.path(s.value))
                                }
                                None => self.unknown("a [tls] certs entry", ck, CertKey::ALL),
                            }
                        }
                        match (cert, key) {
                            (Some(cert), Some(key)) => {
                                match CertFiles::load_with(&cert, &key, self.secrets) {
                                    Ok(files) => {
                                        self.expiry_warning(&files, at);
                                        raw.certs.push(files);
                                    }
                                    Err(e) => self.problems.error(at, e),
                                }
                            }
                            _ => self
                                .problems
                                .error(at, "a certs entry needs both `cert` and `key`"),
                        }
                    }
                }
                None => self.unknown("[tls]", k, TlsKey::ALL),
            }
        }
    }

    pub(super) fn expiry_warning(&mut self, files: &CertFiles, at: Loc) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if files.not_after < now {
            self.problems.warn(
                at,
                format!("certificate {} has expired", files.cert.display()),
            );
        } else if files.not_after < now + 14 * 86400 {
            self.problems.warn(
                at,
                format!(
                    "certificate {} expires within 14 days",
                    files.cert.display()
                ),
            );
        }
    }
}

/// A `trusted_proxies` entry: one address, or a network in CIDR notation.
fn proxy_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .ok()
        .map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_nets() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let one = proxy_net("127.0.0.1").unwrap();
        assert!(one.contains(&ip("127.0.0.1")) && !one.contains(&ip("127.0.0.2")));
        let net = proxy_net("10.1.2.3/8").unwrap();
        assert!(net.contains(&ip("10.200.0.1")) && !net.contains(&ip("11.0.0.1")));
        assert!(proxy_net("fd00::/8").unwrap().contains(&ip("fd12::1")));
        for bad in ["", "localhost", "10.0.0.0/33", "1.2.3"] {
            assert_eq!(proxy_net(bad), None, "{bad}");
        }
    }
}
