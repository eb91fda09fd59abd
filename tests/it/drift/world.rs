//! The world a drift test runs in: zone `example.org.` on two BIND primaries, the served
//! config and its ids, the daemon serving the policies, and the builder that sets them up.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::schema::*;
use crate::harness::daemon::{Daemon, TestCa};
use crate::harness::dns::{free_port, DnsServer, Kind, TsigKey};
use crate::harness::postfix::{Listener, Postfix};
use crate::harness::{ConfigDir, MAIN};

pub const ZONE: &str = "example.org";
pub const NS1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub const NS2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
pub const TLSRPT: &str = "v=TLSRPTv1; rua=mailto:tlsrpt@example.org;";

/// `a.example.org` and friends.
pub fn fqdn(label: &str) -> String {
    format!("{label}.{ZONE}")
}

/// The policy ids of the config, by domain label.
pub type Ids = BTreeMap<String, String>;

/// The records a correct setup has for domain `label`, in zone-file syntax under
/// `$ORIGIN example.org.`.
pub fn records_for(label: &str, id: &str) -> Vec<String> {
    vec![
        format!("_mta-sts.{label} TXT \"v=STSv1; id={id};\""),
        format!("mta-sts.{label} CNAME mail.example.org."),
        format!("{label} MX 10 mx1.example.org."),
        format!("_smtp._tls.{label} TXT \"{TLSRPT}\""),
    ]
}

/// The whole correct zone: every domain's records, and the hosts they point at.
pub fn correct(ids: &Ids) -> Vec<String> {
    let mut r = vec!["mail A 127.0.0.1".to_owned(), "mx1 A 127.0.0.1".to_owned()];
    for (label, id) in ids {
        r.extend(records_for(label, id));
    }
    r
}

/// `records` without the lines starting with `prefix` (such as `"_mta-sts.a "`; there must be
/// one), plus `add`.
#[track_caller]
pub fn replace(records: Vec<String>, prefix: &str, add: &[String]) -> Vec<String> {
    let (removed, mut kept): (Vec<String>, Vec<String>) =
        records.into_iter().partition(|r| r.starts_with(prefix));
    assert!(!removed.is_empty(), "no record starts with {prefix:?}");
    kept.extend(add.iter().cloned());
    kept
}

/// How a [`World`] is set up; [`world`] gives the defaults.
pub struct Build {
    /// Domain labels and the extra TOML lines under each one's table.
    pub domains: Vec<(&'static str, String)>,
    pub max_age: u32,
    /// Extra lines in `[drift]`.
    pub drift_extra: String,
    /// A real Postfix as `mx1` (127.0.0.1) with a certificate from the test CA; without one,
    /// `[drift] smtp = false` (the other checks are under test).
    pub mx_tls: bool,
    /// `[alerts] command`: a script appending each event to `events.jsonl` in the config dir.
    pub alert_command: bool,
}

/// Domains `a` and `b`, enforce with `mx1.example.org`, TLSRPT to `tlsrpt@example.org`.
pub fn world() -> Build {
    Build {
        domains: vec![("a", String::new()), ("b", String::new())],
        max_age: 86400,
        drift_extra: String::new(),
        mx_tls: false,
        alert_command: false,
    }
}

impl Build {
    pub fn domains(mut self, labels: &[&'static str]) -> Self {
        self.domains = labels.iter().map(|l| (*l, String::new())).collect();
        self
    }

    /// Extra TOML lines under the table of domain `label`.
    pub fn domain_toml(mut self, label: &str, toml: &str) -> Self {
        let d = self
            .domains
            .iter_mut()
            .find(|(l, _)| *l == label)
            .expect("a domain of the world");
        d.1 = toml.to_owned();
        self
    }

    pub fn max_age(mut self, max_age: u32) -> Self {
        self.max_age = max_age;
        self
    }

    pub fn mx_tls(mut self) -> Self {
        self.mx_tls = true;
        self
    }

    pub fn alert_command(mut self) -> Self {
        self.alert_command = true;
        self
    }

    pub fn drift_extra(mut self, toml: &str) -> Self {
        self.drift_extra = toml.to_owned();
        self
    }

    /// A correct world.
    pub fn start(self) -> World {
        self.records(correct)
    }

    /// The config first (its ids go into the records), then both nameservers with the zone
    /// holding `records(ids)`, then the config's `[drift]` section pointing at them. No daemon
    /// yet: [`World::serve`].
    pub fn records(self, records: impl FnOnce(&Ids) -> Vec<String>) -> World {
        let ca = TestCa::new();
        let dir = ConfigDir::new();
        dir.write("ca.pem", &ca.pem);
        let hosts: Vec<String> = self
            .domains
            .iter()
            .map(|(l, _)| format!("mta-sts.{}", fqdn(l)))
            .collect();
        let (cert, key) = ca.leaf(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
        dir.write("policy.pem", cert);
        dir.write("policy.key", key);
        let daemon_port = free_port();
        let policy = self.policy_toml(daemon_port);
        dir.write(MAIN, &policy);
        let ids: Ids = self
            .domains
            .iter()
            .map(|(l, _)| (l.to_string(), policy_id(&dir, &fqdn(l))))
            .collect();
        let key = TsigKey::generate("drift-test", "hmac-sha256");
        let zone = records(&ids);
        let ns = DnsServer::start_replicas(
            Kind::Bind,
            &[("ns1", NS1), ("ns2", NS2)],
            ZONE,
            &key,
            &zone.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let dns_port = ns[0].addr.port();
        let postfix = self.mx_tls.then(|| {
            Postfix::start(
                &[Listener {
                    ip: Ipv4Addr::LOCALHOST,
                    tls: Some(ca.leaf(&["mx1.example.org"])),
                }],
                free_port(),
            )
        });
        let smtp = match &postfix {
            Some(p) => format!("smtp_port = {}", p.port),
            None => "smtp = false".to_owned(),
        };
        let drift = format!(
            "\n[drift]\nresolver = \"{NS1}:{dns_port}\"\ndns_port = {dns_port}\n\
             https_port = {}\nca = \"ca.pem\"\n{smtp}\n{}\n",
            daemon_port, self.drift_extra
        );
        let mut config = policy + &drift;
        if self.alert_command {
            crate::harness::drift::alert_script(&dir);
            config += "\n[alerts]\ncommand = \"alert.sh\"\n";
        }
        dir.write(MAIN, &config);
        dir.check().assert_status(0);
        World {
            ca,
            dir,
            ns,
            _postfix: postfix,
            ids,
            config,
            daemon_port,
        }
    }

    /// Everything but `[drift]`: the daemon listens on `127.0.0.1:<https_port>`.
    pub fn policy_toml(&self, https_port: u16) -> String {
        let mut t = format!(
            "[server]\nhttps = [\"127.0.0.1:{https_port}\"]\nadmin = \"127.0.0.1:0\"\n\n\
             [tls]\ncerts = [{{ cert = \"policy.pem\", key = \"policy.key\" }}]\n\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mx1.example.org\"]\nmax_age = {}\n\n\
             [dns]\ntarget = \"mail.example.org.\"\ntlsrpt = [\"mailto:tlsrpt@example.org\"]\n",
            self.max_age
        );
        for (label, extra) in &self.domains {
            t.push_str(&format!("\n[domains.\"{}\"]\n{extra}\n", fqdn(label)));
        }
        t
    }
}

/// The id `mta-stsd policy DOMAIN` prints on stderr.
#[track_caller]
pub fn policy_id(dir: &ConfigDir, domain: &str) -> String {
    let out = dir.run(&["policy", domain]);
    out.assert_status(0);
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no `id:` line\n{}", out.dump()))
        .to_owned()
}

/// A config, its zone on two nameservers, and the CA its certificates come from.
pub struct World {
    pub ca: TestCa,
    pub dir: ConfigDir,
    /// `ns1` (127.0.0.2, also the resolver) and `ns2` (127.0.0.3).
    pub ns: Vec<DnsServer>,
    pub _postfix: Option<Postfix>,
    pub ids: Ids,
    /// The main config's text.
    pub config: String,
    /// Where the daemon serves HTTPS, and drift fetches from.
    pub daemon_port: u16,
}

impl World {
    /// The daemon on the main config: what drift fetches the policies from.
    pub fn serve(&self) -> Daemon {
        Daemon::start(&self.dir.config_path())
    }

    pub fn id(&self, label: &str) -> &str {
        &self.ids[label]
    }

    /// `drift` on the main config, in both formats.
    #[track_caller]
    pub fn drift(&self) -> Drift {
        drift(&self.dir.config_path())
    }

    /// `drift` on a copy of the main config that fetches the policies from `127.0.0.1:<port>`.
    #[track_caller]
    pub fn drift_via(&self, port: u16) -> Drift {
        let from = format!("https_port = {}\n", self.daemon_port);
        assert!(self.config.contains(&from));
        let config = self
            .config
            .replace(&from, &format!("https_port = {port}\n"));
        drift(&self.dir.write("via.toml", config))
    }

    /// Sends the same update to both nameservers.
    #[track_caller]
    pub fn nsupdate_all(&self, commands: &str) {
        for ns in &self.ns {
            ns.nsupdate(commands);
        }
    }
}

pub fn sts(label: &str, text: &str) -> String {
    format!("_mta-sts.{label} TXT \"{text}\"")
}
