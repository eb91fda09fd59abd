//! Publishing through provider HTTP APIs: the provider battery against a real PowerDNS and
//! against the Cloudflare fake. What is particular to each (the servers' error texts,
//! compare-and-swap emulated by a fresh read, paging, rate limits, the order of single-record
//! calls) is in `powerdns` and `cloudflare`.

use hickory_proto::rr::RecordType;
use mta_stsd_providers::cloudflare::Cloudflare;
use mta_stsd_providers::powerdns::PowerDns;
use mta_stsd_providers::{Changes, DomainChange, Expect, Record, Secret};

use crate::harness::cloudflare::FakeCloudflare;
use crate::harness::pdns::PdnsServer;
use crate::harness::ConfigDir;
use crate::providers::battery::{Backend, ZONE};

pub(crate) struct Pdns(pub(crate) PdnsServer);

impl Pdns {
    pub(crate) fn start() -> Pdns {
        Pdns(PdnsServer::start(ZONE))
    }

    pub(crate) fn provider(&self) -> PowerDns {
        PowerDns::new(
            "p",
            &self.0.url(),
            "localhost",
            Secret::new(self.0.api_key.clone()),
        )
        .expect("a PowerDNS provider")
    }

    fn toml(&self, dir: &ConfigDir, key: &str) -> String {
        let path = dir.write("pdns.key", format!("{key}\n"));
        format!(
            "[providers.p]\nkind = \"powerdns\"\nurl = \"{}\"\napi_key_file = \"{}\"\n",
            self.0.url(),
            path.display()
        )
    }
}

impl Backend for Pdns {
    fn provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, &self.0.api_key)
    }

    fn bad_auth_provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, "not-the-key")
    }

    fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        self.0
            .query(name, rtype.parse::<RecordType>().expect("a record type"))
    }

    fn add(&self, name: &str, rtype: &str, data: &str) {
        let content = if rtype == "TXT" {
            format!("\"{}\"", data.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            data.to_owned()
        };
        self.0.add(name, rtype, &content);
    }

    fn kill(&mut self) {
        self.0.stop();
    }

    fn revive(&mut self) {
        self.0.restart();
    }
}

pub(crate) const CF_TOKEN: &str = "cf-test-token-0123456789";

pub(crate) struct Cf(pub(crate) FakeCloudflare);

impl Cf {
    /// The fake with [`ZONE`], TXT content shown quoted (as the API does lately).
    pub(crate) fn start() -> Cf {
        let fake = FakeCloudflare::start(CF_TOKEN, &[ZONE]);
        fake.set_quote_txt(true);
        Cf(fake)
    }

    pub(crate) fn provider(&self) -> Cloudflare {
        Cloudflare::new("p", &self.0.base_url(), Secret::new(CF_TOKEN.into()))
            .expect("a Cloudflare provider")
    }

    fn toml(&self, dir: &ConfigDir, token: &str) -> String {
        let path = dir.write("cf.token", format!("{token}\n"));
        format!(
            "[providers.p]\nkind = \"cloudflare\"\nbase_url = \"{}\"\napi_token_file = \"{}\"\n",
            self.0.base_url(),
            path.display()
        )
    }
}

impl Backend for Cf {
    fn provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, CF_TOKEN)
    }

    fn bad_auth_provider_toml(&self, dir: &ConfigDir) -> String {
        self.toml(dir, "expired-token")
    }

    fn query(&self, name: &str, rtype: &str) -> Vec<String> {
        self.0
            .records(name, rtype)
            .into_iter()
            .map(|r| match rtype {
                "CNAME" => format!("{}.", r.content),
                _ => r.content,
            })
            .collect()
    }

    fn add(&self, name: &str, rtype: &str, data: &str) {
        self.0.add(name, rtype, data.trim_end_matches('.'), 300);
    }

    fn kill(&mut self) {
        self.0.set_failing(true);
    }

    fn revive(&mut self) {
        self.0.set_failing(false);
    }
}

crate::battery!(powerdns, Pdns::start);
crate::battery!(cloudflare, Cf::start);

pub(crate) fn sts_change(domain: &str, expect: Vec<Expect>, add: Vec<Record>) -> Changes {
    Changes {
        domains: vec![DomainChange {
            domain: domain.into(),
            expect,
            delete: vec![],
            add,
        }],
    }
}
