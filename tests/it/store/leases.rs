//! Leases (issue 24): three `serve` replicas with their own state dirs on one PostgreSQL behind
//! PgBouncer (transaction mode), one real BIND taking TSIG-signed updates. Each change is one
//! DNS UPDATE across the three (BIND logs every UPDATE it is sent, refused or not), a
//! retirement is stepped by one replica, idle replicas reconcile once per period between
//! them, a lease holder killed with -9 mid-job is taken over within `lease`, and a PostgreSQL
//! outage fails no policy fetch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::harness::daemon::{eventually, plain_client, Daemon};
use crate::harness::dns::{DnsServer, Kind, Options, TsigKey};
use crate::harness::pgbouncer::PgBouncer;
use crate::harness::postgres::Postgres;
use crate::harness::ConfigDir;

const ZONE: &str = "example.org.";
const URL_ENV: &str = "MTA_STSD_TEST_STORE_URL";
const LEASE_SECS: u64 = 4;

/// One replica's config: `domains` (`d0`…) under example.org, published by RFC 2136.
fn write_config(
    dns: &DnsServer,
    dir: &ConfigDir,
    replica: &str,
    domains: &[&str],
    max_age: u32,
    reconcile: &str,
) {
    let key = dns.key_file(dir.path());
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
         [state]\nurl_env = \"{URL_ENV}\"\nreplica = \"{replica}\"\nlease = \"{LEASE_SECS}s\"\n\
         retire_after = \"1s\"\n\n\
         [tls]\nself_signed = true\n\n\
         [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = {max_age}\n\n\
         [dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\nreconcile = \"{reconcile}\"\n\n\
         [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n\n",
        dns.addr,
        key.display()
    );
    for d in domains {
        text.push_str(&format!("[domains.\"{d}.example.org\"]\n"));
    }
    let tmp = dir.write(".next.toml", text);
    std::fs::rename(tmp, dir.config_path()).unwrap();
}

/// UPDATE messages BIND was sent (each is approved by its key first, whatever comes next).
fn updates(dns: &DnsServer) -> usize {
    dns.log()
        .lines()
        .filter(|l| l.contains("signer \"") && l.contains("approved"))
        .count()
}

fn domain<'s>(s: &'s Value, name: &str) -> Option<&'s Value> {
    s["domains"]
        .as_array()?
        .iter()
        .find(|d| d["domain"] == format!("{name}.example.org"))
}

/// Waits until `d` serves and has published `name` with the id `want` (any id: `None`).
async fn published(r: &Daemon, name: &str, want: Option<&str>) -> String {
    published_if(r, name, |id| want.is_none_or(|w| w == id)).await
}

/// Waits until `d` serves and has published `name` with an id that `ok` accepts.
async fn published_if(r: &Daemon, name: &str, ok: impl Fn(&str) -> bool) -> String {
    eventually(&format!("{name} published"), || async {
        let s = r.status().await;
        let d = domain(&s, name)?;
        let id = d["policy_id"].as_str()?.to_owned();
        (d["dns"]["state"] == "published" && d["dns"]["published_id"] == id.as_str() && ok(&id))
            .then_some(id)
    })
    .await
}

fn txt(dns: &DnsServer, name: &str) -> Vec<String> {
    dns.query(&format!("_mta-sts.{name}.example.org."), RecordType::TXT)
}

struct Cluster {
    pg: Postgres,
    _bouncer: PgBouncer,
    url: String,
    dirs: Vec<ConfigDir>,
    replicas: Vec<Option<Daemon>>,
}

impl Cluster {
    fn start(dns: &DnsServer, domains: &[&str], reconcile: &str) -> Cluster {
        let pg = Postgres::start();
        let bouncer = PgBouncer::start(&pg);
        let url = bouncer.url();
        let dirs: Vec<ConfigDir> = (0..3).map(|_| ConfigDir::new()).collect();
        for (i, dir) in dirs.iter().enumerate() {
            write_config(dns, dir, &format!("r{i}"), domains, 86400, reconcile);
        }
        let replicas = dirs
            .iter()
            .map(|d| Some(Daemon::start_with(&d.config_path(), &[(URL_ENV, &url)])))
            .collect();
        Cluster {
            pg,
            _bouncer: bouncer,
            url,
            dirs,
            replicas,
        }
    }

    fn up(&self) -> impl Iterator<Item = &Daemon> {
        self.replicas.iter().flatten()
    }

    fn edit(&self, dns: &DnsServer, domains: &[&str], max_age: u32, reconcile: &str) {
        for (i, dir) in self.dirs.iter().enumerate() {
            write_config(dns, dir, &format!("r{i}"), domains, max_age, reconcile);
        }
    }

    fn count(&self, needle: &str) -> usize {
        self.up()
            .map(|d| d.lines().iter().filter(|l| l.contains(needle)).count())
            .sum()
    }
}

/// Every change (an edit, a retirement's `mode: none`) is one UPDATE across the three
/// replicas; the retirement is stepped (recorded) by one of them and served by all with the
/// same `withdraw_at`; a replica down during an edit serves the others' retirement once back;
/// `/status` and `/metrics` show the leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_publish_each_change_once_and_step_a_retirement_once() {
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let dns = DnsServer::start_with(Kind::Bind, &Options::default(), ZONE, &key, &[]);
    let mut c = Cluster::start(&dns, &["d0", "d1"], "1h");
    let first = {
        let r = c.up().next().unwrap();
        published(r, "d0", None).await
    };
    for r in c.up() {
        published(r, "d0", Some(&first)).await;
        published(r, "d1", None).await;
    }
    // The start: three replicas, one zone, one UPDATE.
    assert_eq!(updates(&dns), 1, "{}", dns.log());

    // An edit: every id changes, one UPDATE.
    c.edit(&dns, &["d0", "d1"], 86401, "1h");
    let r0 = c.up().next().unwrap();
    let second = eventually("the edit served", || async {
        let id = domain(&r0.status().await, "d0")?["policy_id"]
            .as_str()?
            .to_owned();
        (id != first).then_some(id)
    })
    .await;
    for r in c.up() {
        published(r, "d0", Some(&second)).await;
    }
    assert_eq!(txt(&dns, "d0"), vec![format!("v=STSv1; id={second};")]);
    assert_eq!(updates(&dns), 2, "{}", dns.log());

    // /status shows the leases by job; /metrics this process's.
    let s = r0.status().await;
    let leases = s["state"]["leases"].as_array().expect("leases listed");
    assert!(
        leases.iter().any(|l| l["job"] == "zone:example.org"),
        "{s:#}"
    );
    let mut zone_gauges = 0;
    for r in c.up() {
        let m = r.metrics().await;
        zone_gauges += m
            .lines()
            .filter(|l| l.starts_with("mta_stsd_lease_held{job=\"zone:example.org\"}"))
            .count();
    }
    assert!(zone_gauges >= 1, "no replica shows the zone lease gauge");

    // r2 stops; d1 is removed: r0 and r1 retire it (retire_after 1 s), one of them steps it.
    drop(c.replicas[2].take());
    c.edit(&dns, &["d0"], 86401, "1h");
    let retiring = eventually("d1 retiring on r0", || async {
        let s = c.replicas[0].as_ref().unwrap().status().await;
        let l = domain(&s, "d1")?["lifecycle"].clone();
        (l["state"] == "retiring").then_some(l)
    })
    .await;
    for r in c.up() {
        published_if(r, "d1", |id| id != second).await;
    }
    // Back: r2 serves the retirement the others decided, from the store.
    c.replicas[2] = Some(Daemon::start_with(
        &c.dirs[2].config_path(),
        &[(URL_ENV, &c.url)],
    ));
    for r in c.up() {
        let l = eventually("d1 retiring everywhere", || async {
            let l = domain(&r.status().await, "d1")?["lifecycle"].clone();
            (l["state"] == "retiring").then_some(l)
        })
        .await;
        assert_eq!(l, retiring);
    }
    let none = published_if(c.replicas[2].as_ref().unwrap(), "d1", |id| id != second).await;
    let body = plain_client()
        .get(format!(
            "http://{}/.well-known/mta-sts.txt",
            c.replicas[2].as_ref().unwrap().http.unwrap()
        ))
        .header("host", "mta-sts.d1.example.org")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("mode: none"), "{body}");
    assert_eq!(txt(&dns, "d1"), vec![format!("v=STSv1; id={none};")]);
    // Stepped once: one replica recorded it, and it took one UPDATE.
    assert_eq!(c.count("retiring: served `mode: none`"), 1);
    assert_eq!(updates(&dns), 3, "{}", dns.log());
}

/// Three idle replicas: zero UPDATEs, and one reconcile round per period between them (each
/// replica alone would do one per period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_idle_replicas_reconcile_once_per_period_and_write_nothing() {
    const PERIOD: u64 = 4;
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let dns = DnsServer::start_with(Kind::Bind, &Options::default(), ZONE, &key, &[]);
    let c = Cluster::start(&dns, &["d0"], &format!("{PERIOD}s"));
    for r in c.up() {
        published(r, "d0", None).await;
    }
    let before = updates(&dns);
    let rounds = c.count("reconcile round: reading back");
    let t0 = Instant::now();
    eventually("four reconcile rounds", || async {
        (c.count("reconcile round: reading back") >= rounds + 4).then_some(())
    })
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let done = c.count("reconcile round: reading back") - rounds;
    assert!(
        done as f64 <= elapsed / PERIOD as f64 + 2.0,
        "{done} rounds in {elapsed:.1} s with a period of {PERIOD} s"
    );
    assert_eq!(updates(&dns), before, "{}", dns.log());
}

/// A zone's lease holder hangs in its UPDATE (a server that accepts and never answers) and is
/// killed with -9; another replica publishes within the lease (plus its retry). Meanwhile
/// PostgreSQL is stopped and started: every policy fetch from every replica succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lease_holder_is_taken_over_and_a_postgresql_outage_fails_no_fetch() {
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let mut dns = DnsServer::start_with(Kind::Bind, &Options::default(), ZONE, &key, &[]);
    let mut c = Cluster::start(&dns, &["d0"], "1h");
    let first = published(c.up().next().unwrap(), "d0", None).await;
    for r in c.up() {
        published(r, "d0", Some(&first)).await;
    }

    // PostgreSQL stopped and started while all three are fetched from.
    let stop = Arc::new(AtomicBool::new(false));
    let fetchers: Vec<_> = c
        .up()
        .map(|r| hammer(r.http.unwrap(), stop.clone()))
        .collect();
    c.pg.stop();
    for r in c.up() {
        eventually("the store shown down", || async {
            (r.status().await["state"]["up"] == false).then_some(())
        })
        .await;
    }
    c.pg.restart();
    for r in c.up() {
        eventually("the store back", || async {
            (r.status().await["state"]["up"] == true).then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for f in fetchers {
        let (n, failed) = f.await.unwrap();
        assert!(n >= 20, "only {n} fetches");
        assert!(
            failed.is_empty(),
            "{} of {n} failed: {failed:?}",
            failed.len()
        );
    }

    // BIND replaced by a server that accepts and never answers: the UPDATE hangs (15 s).
    dns.stop();
    let hole = BlackHole::bind(dns.addr);
    c.edit(&dns, &["d0"], 86401, "1h");
    let (holder, _) = eventually("a replica holding the zone lease", || async {
        let s = c.up().next()?.status().await;
        let l = s["state"]["leases"]
            .as_array()?
            .iter()
            .find(|l| l["job"] == "zone:example.org")?
            .clone();
        let h = l["holder"].as_str()?.to_owned();
        Some((h, l))
    })
    .await;
    let replica: usize = holder
        .split('/')
        .next()
        .and_then(|r| r.strip_prefix('r'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("holder {holder}"));
    let victim = c.replicas[replica].take().unwrap();
    victim.signal("KILL");
    let killed = Instant::now();
    drop(victim);
    drop(hole);
    dns.restart();
    let second = eventually("the edit served", || async {
        let id = domain(&c.up().next()?.status().await, "d0")?["policy_id"]
            .as_str()?
            .to_owned();
        (id != first).then_some(id)
    })
    .await;
    eventually("the edit in DNS", || async {
        (txt(&dns, "d0") == vec![format!("v=STSv1; id={second};")]).then_some(())
    })
    .await;
    let took = killed.elapsed();
    // The lease, then the next look (2 s), then the UPDATE itself.
    assert!(
        took <= Duration::from_secs(LEASE_SECS + 2 + 4),
        "taken over after {took:?}"
    );
    for r in c.up() {
        published(r, "d0", Some(&second)).await;
    }
}

/// Accepts TCP connections and swallows UDP datagrams on `addr`, answering nothing.
struct BlackHole {
    _tcp: std::net::TcpListener,
    _udp: std::net::UdpSocket,
    _held: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl BlackHole {
    fn bind(addr: std::net::SocketAddr) -> BlackHole {
        let tcp = std::net::TcpListener::bind(addr).expect("the DNS port is free again");
        let udp = std::net::UdpSocket::bind(addr).expect("the DNS port is free again");
        let held: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (listener, h, s) = (tcp.try_clone().unwrap(), held.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => h.lock().unwrap().push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        BlackHole {
            _tcp: tcp,
            _udp: udp,
            _held: held,
            stop,
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Let the accept thread see it and drop its clone of the listener.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Fetches d0's policy over HTTP until told to stop; the count and the failures.
fn hammer(
    http: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let policy = format!("http://{http}/.well-known/mta-sts.txt");
    let host = Some("mta-sts.d0.example.org".to_owned());
    crate::harness::daemon::hammer(vec![(policy, host)], stop)
}

/// `apply` takes the zone's lease as `serve` does: while `serve` hangs in an UPDATE (a server
/// that never answers) it waits `lease` (2 s) + 5 s, then names the holder and writes nothing;
/// with the zone free again it applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_waits_for_the_zone_lease_of_serve_and_names_its_holder() {
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let mut dns = DnsServer::start_with(Kind::Bind, &Options::default(), ZONE, &key, &[]);
    let dir = ConfigDir::new();
    let (addr, key_file) = (dns.addr, dns.key_file(dir.path()));
    let config = |max_age: u32| {
        let text = format!(
            "[server]\nhttps = []\nhttp = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
             [state]\nreplica = \"r0\"\nlease = \"2s\"\n\n\
             [policy]\nmode = \"testing\"\nmx = [\"mail.example.org\"]\nmax_age = {max_age}\n\n\
             [dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\n\n\
             [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n\n\
             [domains.\"d0.example.org\"]\nzone = \"example.org\"\n",
            addr,
            key_file.display()
        );
        let tmp = dir.write(".next.toml", text);
        std::fs::rename(tmp, dir.config_path()).unwrap();
    };
    config(86400);
    let d = Daemon::start(&dir.config_path());
    published(&d, "d0", None).await;

    dns.stop();
    let hole = BlackHole::bind(dns.addr);
    config(86401);
    eventually("serve holding the zone lease", || async {
        let s = d.status().await;
        s["state"]["leases"]
            .as_array()?
            .iter()
            .any(|l| l["job"] == "zone:example.org" && l["this_process"] == true)
            .then_some(())
    })
    .await;
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking({
        let path = dir.config_path();
        move || crate::harness::run_with_config(&path, &["apply"])
    })
    .await
    .unwrap();
    let waited = t0.elapsed();
    out.assert_status(1);
    let text = out.dump();
    assert!(
        text.contains(&format!(
            "zone example.org. is being published by r0/{}",
            d.pid()
        )),
        "{text}"
    );
    assert!(waited >= Duration::from_secs(7), "gave up after {waited:?}");

    drop(hole);
    dns.restart();
    let id = published(&d, "d0", None).await;
    let out = crate::harness::run_with_config(&dir.config_path(), &["apply"]);
    out.assert_status(0);
    assert_eq!(txt(&dns, "d0"), vec![format!("v=STSv1; id={id};")]);
}
