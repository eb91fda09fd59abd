//! ACME across replicas (issue 24): three `serve` replicas with their own state dirs on one
//! PostgreSQL behind PgBouncer (transaction mode), a real pebble. The CA's validation always
//! reaches r0 (pebble's DNS answers 127.0.0.1 for every name, where r0 listens; r1 and r2
//! listen on 127.0.0.2 and 127.0.0.3), and r0 cannot reach the CA: so every order is placed
//! by r1 or r2 and answered by r0 from the store. Each name is ordered once across the three,
//! and all three serve the same certificate; a replica killed with -9 while it holds a name's
//! lease mid-order is taken over by another within the lease.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::harness::acme::{acme_status, client_config, wait_acme, ACME_DEADLINE};
use crate::harness::acme_proxy::FaultProxy;
use crate::harness::daemon::{eventually, Daemon};
use crate::harness::db;
use crate::harness::dns::free_port;
use crate::harness::pebble::{Pebble, PebbleOptions};
use crate::harness::pgbouncer::PgBouncer;
use crate::harness::postgres::Postgres;
use crate::harness::ConfigDir;

const URL_ENV: &str = "MTA_STSD_TEST_STORE_URL";
const LEASE_SECS: u64 = 4;

/// Replica `i`'s config: listeners on 127.0.0.(i+1) at the shared ports, `names` (`a` for
/// `a.example`), `[acme]` at `directory` with http-01.
fn write_config(
    dir: &ConfigDir,
    i: usize,
    (http, https): (u16, u16),
    names: &[&str],
    directory: &str,
    pebble: &Pebble,
) {
    let ip = format!("127.0.0.{}", i + 1);
    let mut text = format!(
        "[server]\nhttps = [\"{ip}:{https}\"]\nhttp = [\"{ip}:{http}\"]\nadmin = \"127.0.0.1:0\"\n\n\
         [state]\nurl_env = \"{URL_ENV}\"\nreplica = \"r{i}\"\nlease = \"{LEASE_SECS}s\"\n\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.a.example\"]\nmax_age = 86400\n\n\
         [drift]\nresolver = \"127.0.0.1:{}\"\n\n\
         [acme]\ndirectory = \"{directory}\"\nchallenge = \"http-01\"\nca = \"{}\"\n\n",
        free_port(),
        pebble.ca_file().display()
    );
    for n in names {
        text.push_str(&format!("[domains.\"{n}.example\"]\n"));
    }
    dir.write(crate::harness::MAIN, text);
}

struct Cluster {
    pg: Postgres,
    _bouncer: PgBouncer,
    pebble: Pebble,
    replicas: Vec<Option<Daemon>>,
    /// The HTTPS port every replica listens on (at its own address).
    https: u16,
    _dirs: Vec<ConfigDir>,
}

impl Cluster {
    /// r0 with a directory nobody answers at; r1 and r2 with `directory(&pebble)`.
    async fn start(
        names: &[&str],
        validity: Option<u64>,
        directory: impl AsyncFnOnce(&Pebble) -> (String, Option<FaultProxy>),
    ) -> (Cluster, Option<FaultProxy>) {
        let (http, https) = (free_port(), free_port());
        let pg = Postgres::start();
        let bouncer = PgBouncer::start(&pg);
        let url = bouncer.url();
        let mut opts = PebbleOptions::new(http, https);
        opts.validity = validity;
        let pebble = Pebble::start(opts).await;
        let (reachable, proxy) = directory(&pebble).await;
        let dead = format!("https://127.0.0.1:{}/dir", free_port());
        let dirs: Vec<ConfigDir> = (0..3).map(|_| ConfigDir::new()).collect();
        let mut replicas = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let d = if i == 0 { &dead } else { &reachable };
            write_config(dir, i, (http, https), names, d, &pebble);
            replicas.push(Some(Daemon::start_with(
                &dir.config_path(),
                &[(URL_ENV, &url)],
            )));
        }
        (
            Cluster {
                pg,
                _bouncer: bouncer,
                pebble,
                replicas,
                https,
                _dirs: dirs,
            },
            proxy,
        )
    }

    fn up(&self) -> impl Iterator<Item = (usize, &Daemon)> {
        self.replicas
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d.as_ref()?)))
    }

    fn logs(&self) -> String {
        self.up()
            .map(|(i, d)| format!("--- r{i} ---\n{}", d.lines().join("\n")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn count(&self, needle: &str) -> usize {
        self.up()
            .map(|(_, d)| d.lines().iter().filter(|l| l.contains(needle)).count())
            .sum()
    }

    /// Waits until every running replica shows `domain` valid.
    async fn all_valid(&self, domain: &str) {
        for (i, d) in self.up() {
            let logs = || format!("r{i}\n{}", self.pebble.log());
            wait_acme(d, domain, ACME_DEADLINE, logs, |s| s["state"] == "valid").await;
        }
    }

    /// The leaf replica `i` serves for `host` (a TLS handshake trusting only pebble's root).
    async fn served_leaf(&self, i: usize, host: &str) -> Vec<u8> {
        let root = self.pebble.issuing_root().await;
        let addr = SocketAddr::from(([127, 0, 0, i as u8 + 1], self.https));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(&root)))
            .connect(ServerName::try_from(host.to_owned()).unwrap(), tcp)
            .await
            .unwrap_or_else(|e| panic!("r{i}: handshake for {host}: {e}"));
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }
}

/// Three names, three replicas: each name is ordered once (pebble issues three, the
/// replicas' logs and metrics count three orders between them), every validation is answered
/// by r0 from the store, and each replica serves the stored certificate of each name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_order_each_name_once_and_all_serve_it() {
    let names = ["a", "b", "c"];
    let (c, _) = Cluster::start(&names, None, async |p: &Pebble| (p.directory.clone(), None)).await;
    for n in names {
        c.all_valid(&format!("{n}.example")).await;
    }
    assert_eq!(c.pebble.issued(), 3, "{}", c.pebble.log());
    assert_eq!(c.count("ordering a certificate"), 3, "{}", c.logs());
    let mut ok = 0;
    for (_, d) in c.up() {
        let m = d.metrics().await;
        ok += m
            .lines()
            .find_map(|l| l.strip_prefix("mta_stsd_acme_orders_total{result=\"ok\"} "))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap());
    }
    assert_eq!(ok, 3, "orders counted by the replicas");
    // The CA validated over HTTP, and only r0 can be reached by it.
    assert!(
        c.pebble
            .log()
            .matches("Attempting to validate w/ HTTP")
            .count()
            >= 3
    );
    let store = c.pg.url();
    for n in names {
        let host = format!("mta-sts.{n}.example");
        let stored = db::leaf(&store, &host).await;
        for i in 0..3 {
            assert_eq!(c.served_leaf(i, &host).await, stored, "r{i}: {host}");
        }
    }
    // One write per name (seq counts every write of every replica), and idle replicas
    // write nothing more: two follow periods later it is still three.
    let seqs = || async {
        db::texts(
            &store,
            "SELECT CAST(seq AS TEXT) FROM store_acme_certs ORDER BY seq",
        )
        .await
    };
    assert_eq!(seqs().await, ["1", "2", "3"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(seqs().await, ["1", "2", "3"]);
    assert_eq!(c.count("ordering a certificate"), 3);
    // Answers withdrawn; the leases are listed in /status by name.
    assert!(db::texts(&store, "SELECT id FROM store_acme_challenges")
        .await
        .is_empty());
    let s = c.replicas[0].as_ref().unwrap().status().await;
    let leases = s["state"]["leases"].as_array().expect("leases");
    for n in names {
        assert!(
            leases
                .iter()
                .any(|l| l["job"] == format!("acme:mta-sts.{n}.example")),
            "{s:#}"
        );
    }
}

/// The first newOrder hangs (the ACME server never answers it): its replica holds the lease
/// `acme:mta-sts.a.example`, renewed, and is killed with -9. The other replica that can reach
/// the CA orders within the lease (plus its look again at the store, 5 s, and the order), one
/// certificate is issued, and all the replicas left serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_order_is_taken_over_within_the_lease() {
    let (mut c, proxy) = Cluster::start(&["a"], None, async |p: &Pebble| {
        let proxy = FaultProxy::stalling(p, 1).await;
        (proxy.directory(), Some(proxy))
    })
    .await;
    let proxy = proxy.unwrap();
    let job = "acme:mta-sts.a.example";
    let store = c.pg.url();
    // Held (expiry by PostgreSQL's clock) while the order hangs.
    let holder = eventually("the stalled order's lease", || async {
        if proxy.new_orders().iter().all(|o| !o.stalled) {
            return None;
        }
        db::texts(
            &store,
            "SELECT holder FROM store_leases WHERE job = 'acme:mta-sts.a.example' \
             AND expires_at > CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
        )
        .await
        .into_iter()
        .next()
    })
    .await;
    let i: usize = holder[1..2].parse().unwrap();
    assert_ne!(i, 0, "r0 cannot reach the CA: {holder}");
    // Renewed past its first expiry while it hangs.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    let still = db::texts(
        &store,
        "SELECT holder FROM store_leases WHERE job = 'acme:mta-sts.a.example' \
         AND expires_at > CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
    )
    .await;
    assert_eq!(still, vec![holder.clone()], "{job} renewed while ordering");
    let victim = c.replicas[i].take().unwrap();
    victim.signal("KILL");
    let killed = Instant::now();
    drop(victim);

    c.all_valid("a.example").await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(LEASE_SECS + 5 + 10),
        "taken over after {took:?}"
    );
    assert_eq!(c.pebble.issued(), 1, "{}", c.pebble.log());
    let orders = proxy.new_orders();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert!(orders[0].stalled && !orders[1].stalled, "{orders:?}");
    let stored = db::leaf(&store, "mta-sts.a.example").await;
    for (i, _) in c.up() {
        assert_eq!(c.served_leaf(i, "mta-sts.a.example").await, stored, "r{i}");
    }
}

/// Certificates of 30 s, due for renewal at the same moment on every replica: each renewal
/// is claimed (on PostgreSQL, the name's row `FOR UPDATE SKIP LOCKED`, then its lease) and
/// ordered by one replica, and every replica serves the renewed certificate before the old
/// one expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_due_on_every_replica_is_ordered_once() {
    let names = ["a", "b"];
    let (c, _) = Cluster::start(&names, Some(30), async |p: &Pebble| {
        (p.directory.clone(), None)
    })
    .await;
    let mut first = Vec::new();
    for n in names {
        let domain = format!("{n}.example");
        c.all_valid(&domain).await;
        let s = acme_status(c.replicas[0].as_ref().unwrap(), &domain).await;
        first.push(crate::harness::epoch(&s["not_after"]).unwrap());
    }
    for (n, was) in names.iter().zip(&first) {
        let domain = format!("{n}.example");
        for (i, d) in c.up() {
            let logs = || format!("r{i}: not renewed\n{}", c.logs());
            let renewed = |s: &serde_json::Value| {
                crate::harness::epoch(&s["not_after"]).is_some_and(|t| t > *was)
            };
            let s = wait_acme(d, &domain, ACME_DEADLINE, logs, renewed).await;
            let now = crate::harness::acme::now();
            assert!(
                now <= *was,
                "r{i}: {domain} renewed only after it expired: {s}"
            );
        }
    }
    assert_eq!(c.pebble.issued(), 4, "{}", c.logs());
    assert_eq!(c.count("ordering a certificate"), 4, "{}", c.logs());
}
