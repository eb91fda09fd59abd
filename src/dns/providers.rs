//! Provider instances from the config's `[providers.*]`.

use std::collections::HashMap;
use std::sync::Arc;

use mta_stsd_providers::cloudflare::Cloudflare;
use mta_stsd_providers::exec::Exec;
use mta_stsd_providers::powerdns::PowerDns;
use mta_stsd_providers::rfc2136::Rfc2136;
use mta_stsd_providers::route53::Route53;
use mta_stsd_providers::{desec, digitalocean, gandi, hetzner, ovh};
use mta_stsd_providers::{Provider, ProviderError};

use crate::config::{Config, ProviderConfig, ProviderKind, TokenVendor};

pub(crate) type Providers = HashMap<String, Result<Arc<dyn Provider>, ProviderError>>;

pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    match &config.kind {
        ProviderKind::Rfc2136 { server, key } => {
            Ok(Arc::new(Rfc2136::new(&config.name, server, key)?))
        }
        ProviderKind::PowerDns {
            url,
            server_id,
            api_key,
        } => Ok(Arc::new(PowerDns::new(
            &config.name,
            url,
            server_id,
            api_key.clone(),
        )?)),
        ProviderKind::Cloudflare {
            base_url,
            api_token,
        } => Ok(Arc::new(Cloudflare::new(
            &config.name,
            base_url,
            api_token.clone(),
        )?)),
        ProviderKind::Route53 {
            endpoint,
            credentials,
        } => Ok(Arc::new(Route53::new(
            &config.name,
            endpoint,
            credentials.clone(),
        )?)),
        ProviderKind::Exec { command } => Ok(Arc::new(Exec::new(&config.name, command.clone())?)),
        ProviderKind::Ovh {
            base_url,
            application_key,
            application_secret,
            consumer_key,
        } => {
            let keys = ovh::Keys {
                application_key: application_key.clone(),
                application_secret: application_secret.clone(),
                consumer_key: consumer_key.clone(),
            };
            Ok(Arc::new(ovh::ovh(&config.name, base_url, keys)?))
        }
        ProviderKind::Token {
            vendor,
            base_url,
            api_token,
        } => {
            let (name, token) = (&config.name, api_token.clone());
            Ok(match vendor {
                TokenVendor::Hetzner => Arc::new(hetzner::hetzner(name, base_url, token)?),
                TokenVendor::Desec => Arc::new(desec::desec(name, base_url, token)?),
                TokenVendor::Gandi => Arc::new(gandi::gandi(name, base_url, token)?),
                TokenVendor::DigitalOcean => {
                    Arc::new(digitalocean::digitalocean(name, base_url, token)?)
                }
            })
        }
    }
}

/// Every configured provider as [`all`], keeping the instances of `before` (the previous
/// config and its providers) whose settings did not change: what they remember of the zones
/// (SOA serials, records read) survives a reload.
pub(crate) fn rebuild(config: &Config, before: Option<(&Config, &Providers)>) -> Providers {
    config
        .providers
        .iter()
        .map(|(name, p)| {
            let kept = before.and_then(|(old, built)| {
                (old.providers.get(name)? == p)
                    .then(|| built.get(name)?.as_ref().ok().cloned())
                    .flatten()
            });
            (name.clone(), kept.map_or_else(|| build(p), Ok))
        })
        .collect()
}

/// Every configured provider, or why it could not be set up.
pub(crate) fn all(config: &Config) -> Providers {
    config
        .providers
        .iter()
        .map(|(name, p)| (name.clone(), build(p)))
        .collect()
}
