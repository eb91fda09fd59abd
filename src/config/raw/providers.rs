//! `[providers.*]` tables: the kind, its keys, and secrets read now so `check` fails on a
//! missing one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use mta_stsd_providers::tsig::TsigKey;
use mta_stsd_providers::{Secret, SecretSource};
use toml::de::DeTable;

use super::{Item, Reader};
use crate::config::diag::{At, Loc};
use crate::config::{ProviderConfig, ProviderKind};
use crate::name::DomainName;

/// Each kind's keys, `kind` first: the keys it takes and its "expected one of".
const RFC2136_KEYS: &[&str] = &["kind", "server", "tsig_key"];
const POWERDNS_KEYS: &[&str] = &["kind", "url", "server_id", "api_key_file", "api_key_env"];
const CLOUDFLARE_KEYS: &[&str] = &["kind", "base_url", "api_token_file", "api_token_env"];

impl Reader<'_> {
    pub(super) fn provider(
        &mut self,
        name: &str,
        table: &DeTable<'_>,
        item: &Item<'_>,
    ) -> Option<ProviderConfig> {
        let section = format!("[providers.{name}]");
        let at = self.at(item.span());
        let kind = match table.get("kind") {
            Some(v) => self.string("kind", v)?,
            None => {
                self.problems.error(
                    at,
                    format!("{section} needs `kind`: rfc2136, powerdns or cloudflare"),
                );
                // Still report keys no kind has (a misspelt `kind`, say).
                let mut any_kind: Vec<&str> = Vec::new();
                for key in [RFC2136_KEYS, POWERDNS_KEYS, CLOUDFLARE_KEYS].concat() {
                    if !any_kind.contains(&key) {
                        any_kind.push(key);
                    }
                }
                for (k, _) in table.iter() {
                    if !any_kind.contains(&k.get_ref().as_ref()) {
                        self.unknown(&section, k, &any_kind);
                    }
                }
                return None;
            }
        };
        let mut text: HashMap<&str, At<&str>> = HashMap::new();
        let allowed: &[&str] = match kind.value {
            "rfc2136" => RFC2136_KEYS,
            "powerdns" => POWERDNS_KEYS,
            "cloudflare" => CLOUDFLARE_KEYS,
            other => {
                self.problems.error(
                    kind.at,
                    format!("provider kind `{other}` is not one of rfc2136, powerdns, cloudflare"),
                );
                return None;
            }
        };
        let mut ok = true;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            if matches!(
                kname,
                "secret" | "tsig_secret" | "api_key" | "api_token" | "token" | "password"
            ) {
                self.problems.error(self.at(k.span()), format!(
                    "`{kname}`: secrets are not allowed inline; give a file or an environment variable (`{}`)",
                    allowed.iter().filter(|a| a.ends_with("_file") || a.ends_with("_env") || **a == "tsig_key").copied().collect::<Vec<_>>().join("`, `")
                ));
                ok = false;
            } else if !allowed.contains(&kname) {
                self.unknown(&section, k, allowed);
                ok = false;
            } else if let Some(s) = self.string(kname, v) {
                text.insert(kname, s);
            } else {
                ok = false;
            }
        }
        let kind = match kind.value {
            "rfc2136" => {
                // Both looked at before giving up, so that both problems are reported.
                let server = self.required(&text, "server", &section, at);
                let key = self.required(&text, "tsig_key", &section, at);
                let server = server.and_then(|s| self.dns_server(s.value, s.at));
                let key = key.and_then(|key| {
                    let path = self.path(key.value);
                    self.private(&path, key.at);
                    Secret::read(&SecretSource::File(path.clone()))
                        .and_then(|s| {
                            TsigKey::parse_bind(&s)
                                .map_err(|e| format!("TSIG key file {}: {e}", path.display()))
                        })
                        .map_err(|e| self.problems.error(key.at, e))
                        .ok()
                });
                ProviderKind::Rfc2136 {
                    server: server?,
                    key: key?,
                }
            }
            "powerdns" => {
                let url = self
                    .required(&text, "url", &section, at)
                    .and_then(|u| self.base_url(u.value, u.at, Some("/api/v1")));
                let server_id = text
                    .get("server_id")
                    .map_or("localhost", |s| s.value)
                    .to_owned();
                let api_key = self.secret(&text, "api_key", &section, at);
                ProviderKind::PowerDns {
                    url: url?,
                    server_id,
                    api_key: api_key?,
                }
            }
            _ => {
                let base_url = match text.get("base_url") {
                    Some(u) => self.base_url(u.value, u.at, None),
                    None => Some("https://api.cloudflare.com/client/v4".to_owned()),
                };
                let api_token = self.secret(&text, "api_token", &section, at);
                ProviderKind::Cloudflare {
                    base_url: base_url?,
                    api_token: api_token?,
                }
            }
        };
        ok.then(|| ProviderConfig {
            name: name.to_owned(),
            kind,
        })
    }

    fn required<'a>(
        &mut self,
        text: &HashMap<&str, At<&'a str>>,
        key: &str,
        section: &str,
        at: Loc,
    ) -> Option<At<&'a str>> {
        let v = text.get(key).cloned();
        if v.is_none() {
            self.problems.error(at, format!("{section} needs `{key}`"));
        }
        v
    }

    /// `<base>_file` or `<base>_env`, exactly one, read now so a missing secret fails `check`.
    pub(super) fn secret(
        &mut self,
        text: &HashMap<&str, At<&str>>,
        base: &str,
        section: &str,
        at: Loc,
    ) -> Option<Secret> {
        let file = text.get(format!("{base}_file").as_str());
        let env = text.get(format!("{base}_env").as_str());
        let (source, at) = match (file, env) {
            (Some(f), None) => {
                let path = self.path(f.value);
                self.private(&path, f.at);
                (SecretSource::File(path), f.at)
            }
            (None, Some(e)) => (SecretSource::Env(e.value.to_owned()), e.at),
            (Some(_), Some(e)) => {
                self.problems.error(
                    e.at,
                    format!("give either `{base}_file` or `{base}_env`, not both"),
                );
                return None;
            }
            (None, None) => {
                self.problems
                    .error(at, format!("{section} needs `{base}_file` or `{base}_env`"));
                return None;
            }
        };
        Secret::read(&source)
            .map_err(|e| self.problems.error(at, e))
            .ok()
    }

    /// A secret file every user may read (tsig-keygen writes 0644) is a warning: anyone on
    /// the machine could change the zone with it.
    pub(super) fn private(&mut self, path: &Path, at: Loc) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return; // reading it reports the problem
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            self.problems.warn(
                at,
                format!(
                    "secret file {} is readable by every user (mode {mode:03o}): `chmod 640` it and give it to the daemon's group (`chown root:mta-stsd`)",
                    path.display()
                ),
            );
        }
    }

    /// A DNS server as `host[:port]`, `ip[:port]` or `[v6][:port]`; port 53 by default.
    fn dns_server(&mut self, s: &str, at: Loc) -> Option<String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Some(a.to_string());
        }
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            return Some(SocketAddr::new(ip, 53).to_string());
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) => (h, p),
                Err(_) => {
                    self.problems
                        .error(at, format!("server `{s}`: `{p}` is not a port number"));
                    return None;
                }
            },
            None => (s, 53),
        };
        match DomainName::parse_fqdn(host) {
            Ok((h, _)) => Some(format!("{h}:{port}")),
            Err(e) => {
                self.problems.error(at, format!("server {e}"));
                None
            }
        }
    }

    pub(super) fn base_url(
        &mut self,
        s: &str,
        at: Loc,
        forbidden_suffix: Option<&str>,
    ) -> Option<String> {
        let url = s.trim_end_matches('/');
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            self.problems
                .error(at, format!("`{s}` is not an http:// or https:// URL"));
            return None;
        }
        if let Some(suffix) = forbidden_suffix.filter(|suf| url.ends_with(suf)) {
            self.problems
                .error(at, format!("`{s}`: give the base URL without {suffix}"));
            return None;
        }
        Some(url.to_owned())
    }
}
