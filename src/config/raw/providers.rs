//! `[providers.*]` tables: the kind, its keys, and secrets read now so `check` fails on a
//! missing one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use mta_stsd_providers::ovh;
use mta_stsd_providers::route53::Credentials;
use mta_stsd_providers::tsig::TsigKey;
use mta_stsd_providers::{Secret, SecretSource};
use toml::de::DeTable;

use super::{Item, Reader};
use crate::config::diag::{At, Loc};
use crate::config::{ProviderConfig, ProviderKind, TokenVendor};
use crate::name::DomainName;

/// Each kind's keys, `kind` first: the keys it takes and its "expected one of".
const RFC2136_KEYS: &[&str] = &["kind", "server", "tsig_key"];
const POWERDNS_KEYS: &[&str] = &["kind", "url", "server_id", "api_key_file", "api_key_env"];
const CLOUDFLARE_KEYS: &[&str] = &["kind", "base_url", "api_token_file", "api_token_env"];
const ROUTE53_KEYS: &[&str] = &[
    "kind",
    "endpoint",
    "access_key_id_file",
    "access_key_id_env",
    "secret_access_key_file",
    "secret_access_key_env",
    "session_token_file",
    "session_token_env",
];
const EXEC_KEYS: &[&str] = &["kind", "command"];
/// Hetzner, deSEC, Gandi, DigitalOcean: the same keys as Cloudflare.
const TOKEN_KEYS: &[&str] = CLOUDFLARE_KEYS;
const OVH_KEYS: &[&str] = &[
    "kind",
    "region",
    "base_url",
    "application_key_file",
    "application_key_env",
    "application_secret_file",
    "application_secret_env",
    "consumer_key_file",
    "consumer_key_env",
];
/// What `kind` may be, for messages.
const KINDS: &str =
    "rfc2136, powerdns, cloudflare, route53, hetzner, desec, digitalocean, gandi, ovh, exec";

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
                self.no_kind(&section, at, table);
                return None;
            }
        };
        let mut text: HashMap<&str, At<&str>> = HashMap::new();
        let allowed: &[&str] = match kind.value {
            "rfc2136" => RFC2136_KEYS,
            "powerdns" => POWERDNS_KEYS,
            "cloudflare" => CLOUDFLARE_KEYS,
            "route53" => ROUTE53_KEYS,
            "exec" => EXEC_KEYS,
            "ovh" => OVH_KEYS,
            k if TokenVendor::ALL.iter().any(|v| v.kind() == k) => TOKEN_KEYS,
            other => {
                self.problems.error(
                    kind.at,
                    format!("provider kind `{other}` is not one of {KINDS}"),
                );
                return None;
            }
        };
        let mut ok = true;
        let mut command = None;
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            if matches!(
                kname,
                "secret"
                    | "tsig_secret"
                    | "api_key"
                    | "api_token"
                    | "token"
                    | "password"
                    | "secret_access_key"
                    | "session_token"
            ) {
                self.problems.error(self.at(k.span()), format!(
                    "`{kname}`: secrets are not allowed inline; give a file or an environment variable (`{}`)",
                    allowed.iter().filter(|a| a.ends_with("_file") || a.ends_with("_env") || **a == "tsig_key").copied().collect::<Vec<_>>().join("`, `")
                ));
                ok = false;
            } else if !allowed.contains(&kname) {
                self.unknown(&section, k, allowed);
                ok = false;
            } else if kname == "command" {
                command = self.command(v);
                ok &= command.is_some();
            } else if let Some(s) = self.string(kname, v) {
                text.insert(kname, s);
            } else {
                ok = false;
            }
        }
        let kind = match kind.value {
            "rfc2136" => self.rfc2136(&text, &section, at)?,
            "powerdns" => self.powerdns(&text, &section, at)?,
            "route53" => self.route53(&text, &section, at)?,
            "exec" => match command {
                Some(command) => ProviderKind::Exec { command },
                None if table.get("command").is_some() => return None, // reported
                None => {
                    self.problems
                        .error(at, format!("{section} needs `command`"));
                    return None;
                }
            },
            "cloudflare" => {
                let base_url = match text.get("base_url") {
                    Some(u) => self.base_url(u.value, u.at, None),
                    None => Some("https://api.cloudflare.com/client/v4".to_owned()),
                };
                let api_token = self.provider_secret(&text, "api_token", &section, at);
                ProviderKind::Cloudflare {
                    base_url: base_url?,
                    api_token: api_token?,
                }
            }
            "ovh" => self.ovh(&text, &section, at)?,
            k => {
                let vendor = *TokenVendor::ALL.iter().find(|v| v.kind() == k)?;
                let base_url = match text.get("base_url") {
                    Some(u) => self.base_url(u.value, u.at, None),
                    None => Some(vendor.default_url().to_owned()),
                };
                let api_token = self.provider_secret(&text, "api_token", &section, at);
                ProviderKind::Token {
                    vendor,
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

    /// No `kind`: said so, and the keys no kind has reported (a misspelt `kind`, say).
    fn no_kind(&mut self, section: &str, at: Loc, table: &DeTable<'_>) {
        self.problems
            .error(at, format!("{section} needs `kind`: one of {KINDS}"));
        // Still report keys no kind has (a misspelt `kind`, say).
        let mut any_kind: Vec<&str> = Vec::new();
        for key in [
            RFC2136_KEYS,
            POWERDNS_KEYS,
            CLOUDFLARE_KEYS,
            ROUTE53_KEYS,
            OVH_KEYS,
            EXEC_KEYS,
        ]
        .concat()
        {
            if !any_kind.contains(&key) {
                any_kind.push(key);
            }
        }
        for (k, _) in table.iter() {
            if !any_kind.contains(&k.get_ref().as_ref()) {
                self.unknown(section, k, &any_kind);
            }
        }
    }

    /// `kind = "rfc2136"`: the server and the TSIG key file, both looked at.
    fn rfc2136(
        &mut self,
        text: &HashMap<&str, At<&str>>,
        section: &str,
        at: Loc,
    ) -> Option<ProviderKind> {
        // Both looked at before giving up, so that both problems are reported.
        let server = self.required(text, "server", section, at);
        let key = self.required(text, "tsig_key", section, at);
        let server = server.and_then(|s| self.dns_server(s.value, s.at));
        let key = key.and_then(|key| {
            if !self.secrets {
                return unread_tsig_key();
            }
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
        Some(ProviderKind::Rfc2136 {
            server: server?,
            key: key?,
        })
    }

    /// `kind = "powerdns"`: the API URL, server id and key.
    fn powerdns(
        &mut self,
        text: &HashMap<&str, At<&str>>,
        section: &str,
        at: Loc,
    ) -> Option<ProviderKind> {
        let url = self
            .required(text, "url", section, at)
            .and_then(|u| self.base_url(u.value, u.at, Some("/api/v1")));
        let server_id = text
            .get("server_id")
            .map_or("localhost", |s| s.value)
            .to_owned();
        let api_key = self.provider_secret(text, "api_key", section, at);
        Some(ProviderKind::PowerDns {
            url: url?,
            server_id,
            api_key: api_key?,
        })
    }

    /// `kind = "ovh"`: the endpoint (by `base_url` or `region`) and the three credentials.
    fn ovh(
        &mut self,
        text: &HashMap<&str, At<&str>>,
        section: &str,
        at: Loc,
    ) -> Option<ProviderKind> {
        let base_url = match (text.get("base_url"), text.get("region")) {
            (Some(u), _) => self.base_url(u.value, u.at, None),
            (None, None) => ovh::region_url("ovh-eu").map(str::to_owned),
            (None, Some(r)) => {
                let url = ovh::region_url(r.value).map(str::to_owned);
                if url.is_none() {
                    self.problems.error(
                        r.at,
                        format!("region `{}` is not one of ovh-eu, ovh-ca, ovh-us", r.value),
                    );
                }
                url
            }
        };
        let application_key = self.provider_secret(text, "application_key", section, at);
        let application_secret = self.provider_secret(text, "application_secret", section, at);
        let consumer_key = self.provider_secret(text, "consumer_key", section, at);
        Some(ProviderKind::Ovh {
            base_url: base_url?,
            application_key: application_key?,
            application_secret: application_secret?,
            consumer_key: consumer_key?,
        })
    }

    /// `[providers.x] kind = "route53"`: the AWS credentials from the given files or variables,
    /// by default the SDKs' `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (when set)
    /// `AWS_SESSION_TOKEN`.
    fn route53(
        &mut self,
        text: &HashMap<&str, At<&str>>,
        section: &str,
        at: Loc,
    ) -> Option<ProviderKind> {
        let endpoint = match text.get("endpoint") {
            Some(u) => self.base_url(u.value, u.at, None),
            None => Some("https://route53.amazonaws.com".to_owned()),
        };
        let secrets = self.secrets;
        let mut aws = |base: &str, var: &str| {
            if !secrets {
                // Never used: a config loaded this way publishes nothing.
                return Some(Some(Secret::new("unread".to_owned())));
            }
            let given = [format!("{base}_file"), format!("{base}_env")]
                .iter()
                .any(|k| text.contains_key(k.as_str()));
            if given {
                return Some(self.secret(text, base, section, at));
            }
            let default = SecretSource::Env(var.to_owned());
            match Secret::read(&default) {
                Ok(s) => Some(Some(s)),
                Err(e) if base != "session_token" => {
                    self.problems.error(
                        at,
                        format!("{section}: {e} (or give `{base}_file` or `{base}_env`)"),
                    );
                    None
                }
                Err(_) => Some(None),
            }
        };
        let key_id = aws("access_key_id", "AWS_ACCESS_KEY_ID");
        let secret = aws("secret_access_key", "AWS_SECRET_ACCESS_KEY");
        let token = aws("session_token", "AWS_SESSION_TOKEN");
        Some(ProviderKind::Route53 {
            endpoint: endpoint?,
            credentials: Credentials {
                access_key_id: key_id??.expose().to_owned(),
                secret_access_key: secret??,
                session_token: token?,
            },
        })
    }

    /// `command = ["program", "arg", …]`: a program and its arguments, the program's path
    /// relative to the config file when it holds a `/`.
    fn command(&mut self, v: &Item<'_>) -> Option<Vec<String>> {
        let parts = self.strings("command", v)?;
        let Some(first) = parts.first() else {
            self.problems
                .error(self.at(v.span()), "`command` needs at least the program");
            return None;
        };
        let program = if first.value.contains('/') {
            self.path(first.value).to_string_lossy().into_owned()
        } else {
            first.value.to_owned()
        };
        Some(
            std::iter::once(program)
                .chain(parts[1..].iter().map(|p| p.value.to_owned()))
                .collect(),
        )
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

    /// A provider's or `[alerts]`' secret: [`Self::secret`], or a placeholder when this load
    /// does not read them.
    pub(super) fn provider_secret(
        &mut self,
        text: &HashMap<&str, At<&str>>,
        base: &str,
        section: &str,
        at: Loc,
    ) -> Option<Secret> {
        if self.secrets {
            self.secret(text, base, section, at)
        } else {
            // Never used: a config loaded this way publishes and alerts nothing.
            Some(Secret::new("https://unread.invalid/".to_owned()))
        }
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
        // Messages name the URL without credentials, even when it is refused for them.
        let shown = mta_stsd_providers::redact_url(s);
        let Some(rest) = rest.filter(|r| !r.is_empty() && !r.starts_with('/')) else {
            self.problems
                .error(at, format!("`{shown}` is not an http:// or https:// URL"));
            return None;
        };
        if rest
            .split(['/', '?', '#'])
            .next()
            .is_some_and(|a| a.contains('@'))
        {
            self.problems.error(
                at,
                format!("`{shown}`: credentials in a URL (`user:password@`) are not allowed: URLs are shown in logs and /status; give the secret in its own `_file` or `_env` key"),
            );
            return None;
        }
        if let Some(suffix) = forbidden_suffix.filter(|suf| url.ends_with(suf)) {
            self.problems
                .error(at, format!("`{shown}`: give the base URL without {suffix}"));
            return None;
        }
        Some(url.to_owned())
    }
}

/// The key of a config loaded without provider secrets: never used to sign anything.
fn unread_tsig_key() -> Option<TsigKey> {
    let text = Secret::new(
        "key \"unread\" { algorithm hmac-sha256; secret \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"; };"
            .to_owned(),
    );
    TsigKey::parse_bind(&text).ok()
}
