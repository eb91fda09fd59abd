//! `dist/exec/mta-stsd-lexicon` (the exec protocol over dns-lexicon) through the provider
//! battery, against a real PowerDNS through lexicon's `powerdns` provider.

use hickory_proto::rr::RecordType;

use crate::harness::pdns::PdnsServer;
use crate::harness::venv::venv;
use crate::harness::ConfigDir;
use crate::providers::battery::{Backend, ZONE};

/// The release line the test installs (`scripts/test.sh` makes the venv).
const LEXICON: &str = "dns-lexicon==3.*";

struct Lexicon(PdnsServer);

impl Lexicon {
    fn start() -> Lexicon {
        Lexicon(PdnsServer::start(ZONE))
    }

    /// Lexicon takes its credentials from the environment (`LEXICON_POWERDNS_*`); `env` sets
    /// them here, on the command line, only because this is a test.
    fn toml(&self, key: &str) -> String {
        let python = venv("lexicon-venv", "MTA_STSD_LEXICON_VENV", LEXICON, "lexicon");
        format!(
            "[providers.p]\nkind = \"exec\"\ncommand = [\"/usr/bin/env\", \"LEXICON_POWERDNS_PDNS_SERVER={}\", \"LEXICON_POWERDNS_AUTH_TOKEN={key}\", \"{}\", \"{}\", \"--provider\", \"powerdns\", \"--zone\", \"{ZONE}\"]\n",
            self.0.url(),
            python.join("bin/python").display(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/dist/exec/mta-stsd-lexicon"),
        )
    }
}

impl Backend for Lexicon {
    fn provider_toml(&self, _dir: &ConfigDir) -> String {
        self.toml(&self.0.api_key)
    }

    fn bad_auth_provider_toml(&self, _dir: &ConfigDir) -> String {
        self.toml("not-the-key")
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

crate::battery!(lexicon_powerdns, Lexicon::start);
