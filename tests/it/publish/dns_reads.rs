//! DNS reads at scale against a real BIND that logs every query: a reconcile of a zone
//! nothing changed asks only its SOA, and of many zones asks their SOAs on one connection; a
//! change behind our back is read and repaired; a large read is one zone transfer where the
//! key may transfer.

use hickory_proto::rr::RecordType;

use crate::harness::daemon::{eventually, Daemon};
use crate::harness::dns::{DnsServer, Kind, Options, TsigKey, Zone};
use crate::harness::{ConfigDir, MAIN};

const ZONE: &str = "example.org.";

fn server(transfers: bool, records: &[&str]) -> DnsServer {
    let options = Options {
        transfers,
        querylog: true,
        ..Options::default()
    };
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    DnsServer::start_with(Kind::Bind, &options, ZONE, &key, records)
}

/// `d1_max_age`: d1's own `max_age` (the others keep 86400).
fn write_config(dns: &DnsServer, dir: &ConfigDir, domains: usize, d1_max_age: u32) {
    let key = dns.key_file(dir.path());
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\nmax_age = 86400\n\n\
         [dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\nreconcile = \"1s\"\n\
         tlsrpt = [\"mailto:tlsrpt@example.org\"]\n\n\
         [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n\n",
        dns.addr,
        key.display()
    );
    for i in 0..domains {
        text.push_str(&format!("[domains.\"d{i}.example.org\"]\n"));
        if i == 1 {
            text.push_str(&format!("max_age = {d1_max_age}\n"));
        }
    }
    let tmp = dir.write(".next.toml", text);
    std::fs::rename(tmp, dir.file(MAIN)).unwrap();
}

/// The queries BIND logged (`name type`, lowercase) from line `skip` of its log on.
fn queries(dns: &DnsServer, skip: usize) -> (Vec<String>, usize) {
    let (asked, end) = queries_from(dns, skip);
    (asked.into_iter().map(|(q, _)| q).collect(), end)
}

/// Like [`queries`], with the client's address and port each came from (one per connection).
fn queries_from(dns: &DnsServer, skip: usize) -> (Vec<(String, String)>, usize) {
    let log = dns.log();
    let lines: Vec<&str> = log.lines().collect();
    let asked = lines
        .iter()
        .skip(skip)
        .filter_map(|l| {
            let (client, q) = l.split_once(": query: ")?;
            // `client @0x… 127.0.0.1#40321 (name)`
            let peer = client.split_whitespace().find(|w| w.contains('#'))?;
            let mut w = q.split_whitespace();
            let (name, _class, rtype) = (w.next()?, w.next()?, w.next()?);
            Some((
                format!("{name} {rtype}").to_ascii_lowercase(),
                peer.to_owned(),
            ))
        })
        .collect();
    (asked, lines.len())
}

fn txt(dns: &DnsServer, name: &str) -> Vec<String> {
    dns.query(name, RecordType::TXT)
}

/// Reconciles (every second here) of a zone nothing changed ask its SOA and nothing else, also
/// right after our own write; a record changed behind our back moves the serial, is read and
/// repaired, and then reconciles are one SOA query again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_of_an_unchanged_zone_is_one_soa_query() {
    let dns = server(false, &[]);
    let dir = ConfigDir::new();
    write_config(&dns, &dir, 3, 86400);
    let id = crate::providers::battery::policy_id(&dir, "d1.example.org");
    let d = Daemon::start(&dir.config_path());
    let sts = vec![format!("v=STSv1; id={id};")];
    eventually("published", || async {
        (txt(&dns, "_mta-sts.d1.example.org.") == sts).then_some(())
    })
    .await;

    // Steady state: only SOA queries of the zone, one per reconcile; three reconciles seen.
    let soa_only = |what: &'static str| {
        let dns = &dns;
        async move {
            let (_, start) = queries(dns, 0);
            let asked = eventually(what, || async {
                let (asked, _) = queries(dns, start);
                (asked.iter().filter(|q| *q == "example.org soa").count() >= 3).then_some(asked)
            })
            .await;
            assert!(
                asked.iter().all(|q| q == "example.org soa"),
                "{what}: asked more than the SOA: {asked:?}"
            );
        }
    };
    soa_only("idle").await;

    // Our own write (a new policy id for d1 alone, by a reload): remembered, so no read after
    // it; what was read before the reload is remembered too.
    write_config(&dns, &dir, 3, 86401);
    let id2 = crate::providers::battery::policy_id(&dir, "d1.example.org");
    assert_ne!(id, id2);
    let sts2 = vec![format!("v=STSv1; id={id2};")];
    eventually("the new id published", || async {
        (txt(&dns, "_mta-sts.d1.example.org.") == sts2).then_some(())
    })
    .await;
    soa_only("after our write").await;

    // Changed behind our back: the serial moves, the names are read again and repaired.
    let (_, start) = queries(&dns, 0);
    dns.nsupdate("update add _mta-sts.d2.example.org. 3600 TXT \"v=STSv1; id=rogue;\"");
    eventually("the rogue record repaired", || async {
        (txt(&dns, "_mta-sts.d2.example.org.").len() == 1).then_some(())
    })
    .await;
    let (asked, _) = queries(&dns, start);
    assert!(
        asked.iter().any(|q| q == "_mta-sts.d2.example.org txt"),
        "the changed zone was not read: {asked:?}"
    );
    d.wait_log("repaired records changed behind our back");
    soa_only("after the repair").await;
}

/// One zone per domain, as a hosting provider's customers have them: a reconcile of the
/// unchanged zones asks their SOA serials pipelined on one connection and nothing else (not a
/// connection and an exchange per zone); a zone changed behind our back is the only one read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_of_many_zones_asks_their_serials_together() {
    const ZONES: usize = 20;
    let key = TsigKey::generate("mta-stsd", "hmac-sha256");
    let zone = |i: usize| format!("z{i}.example.");
    let options = Options {
        querylog: true,
        more_zones: (0..ZONES)
            .map(|i| Zone {
                name: zone(i),
                key: key.clone(),
                records: Vec::new(),
            })
            .collect(),
        ..Options::default()
    };
    let dns = DnsServer::start_with(Kind::Bind, &options, ZONE, &key, &[]);
    let dir = ConfigDir::new();
    let key_file = dns.key_file(dir.path());
    let mut text = format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n[tls]\nself_signed = true\n\n\
         [policy]\nmode = \"enforce\"\nmx = [\"mail.example.org\"]\n\n\
         [dns]\ntarget = \"mail.example.org.\"\nprovider = \"p\"\nreconcile = \"1s\"\n\n\
         [providers.p]\nkind = \"rfc2136\"\nserver = \"{}\"\ntsig_key = \"{}\"\n\n",
        dns.addr,
        key_file.display()
    );
    for i in 0..ZONES {
        text.push_str(&format!("[domains.\"z{i}.example\"]\n"));
    }
    dir.write(MAIN, text);
    let d = Daemon::start(&dir.config_path());
    eventually("every zone published", || async {
        (0..ZONES)
            .all(|i| txt(&dns, &format!("_mta-sts.z{i}.example.")).len() == 1)
            .then_some(())
    })
    .await;

    // Three reconciles or more, each every zone's SOA: on as many connections as rounds.
    let (_, start) = queries_from(&dns, 0);
    let asked = eventually("three idle reconciles", || async {
        let (asked, _) = queries_from(&dns, start);
        let soa = asked.iter().filter(|(q, _)| q.ends_with(" soa")).count();
        (soa >= 3 * ZONES).then_some(asked)
    })
    .await;
    let others: Vec<&String> = asked
        .iter()
        .map(|(q, _)| q)
        .filter(|q| !q.ends_with(".example soa") || !q.starts_with('z'))
        .collect();
    assert!(
        others.is_empty(),
        "idle reconciles read more than SOAs: {others:?}"
    );
    let connections: std::collections::HashSet<&String> = asked.iter().map(|(_, p)| p).collect();
    // A connection per round, and a few more: under load (the full suite on 2 cores) a run
    // saw 64 questions on 7 connections. One exchange per zone would be one each.
    assert!(
        connections.len() * 4 <= asked.len(),
        "{} SOA questions came on {} connections",
        asked.len(),
        connections.len()
    );

    // One zone changed behind our back: only its names are read.
    let (_, start) = queries_from(&dns, 0);
    let out = dns.nsupdate_zone(
        &zone(5),
        &key,
        "update add _mta-sts.z5.example. 3600 TXT \"v=STSv1; id=rogue;\"",
    );
    assert!(out.status.success(), "{out:?}");
    eventually("the rogue record repaired", || async {
        (txt(&dns, "_mta-sts.z5.example.").len() == 1).then_some(())
    })
    .await;
    d.wait_log("repaired records changed behind our back");
    let (asked, _) = queries(&dns, start);
    let read: Vec<&String> = asked.iter().filter(|q| !q.ends_with(" soa")).collect();
    assert!(!read.is_empty(), "the changed zone was not read: {asked:?}");
    assert!(
        read.iter()
            .all(|q| q.split(' ').next().unwrap().ends_with("z5.example")),
        "zones that did not change were read: {read:?}"
    );
}

/// A plan of many names where the key may transfer: one AXFR instead of a query per name,
/// with the same result (foreign records kept, a conflict reported); where it may not, or the
/// zone holds many more records than we ask, one AXFR attempt and then queries.
#[test]
fn a_large_read_is_one_zone_transfer_when_allowed() {
    // 250 domains: 750 names, above the 256 from which a transfer is tried.
    let mut zone: Vec<String> = vec![
        "_mta-sts.d5 TXT \"google-site-verification=x\"".into(),
        "mta-sts.d7 A 192.0.2.1".into(),
    ];
    let small = zone.clone();
    // Past 4 records a name asked: the transfer is abandoned.
    zone.extend((0..4000).map(|i| format!("host{i} A 192.0.2.2")));
    for (transfers, records, by_transfer) in [
        (true, &small, true),
        (false, &small, false),
        (true, &zone, false),
    ] {
        let records: Vec<&str> = records.iter().map(String::as_str).collect();
        let dns = server(transfers, &records);
        let dir = ConfigDir::new();
        write_config(&dns, &dir, 250, 86400);
        let out = dir.run(&["apply"]);
        out.assert_status(0);
        let conflict = "mta-sts.d7.example.org. has A 192.0.2.1";
        assert!(out.stdout.contains(conflict), "{}", out.dump());
        let (_, start) = queries(&dns, 0);
        let out = dir.run(&["plan"]);
        out.assert_status(0);
        assert!(out.stdout.contains(conflict), "{}", out.dump());
        let (asked, _) = queries(&dns, start);
        let axfr = asked.iter().filter(|q| q.ends_with(" axfr")).count();
        let txt_queries = asked.iter().filter(|q| q.ends_with(" txt")).count();
        let case = format!("transfers {transfers}, {} records", records.len());
        // Asked once each time; given, refused, or abandoned.
        assert_eq!(axfr, 1, "{case}: {asked:?}");
        if by_transfer {
            assert_eq!(txt_queries, 0, "{case}: {asked:?}");
        } else {
            assert!(txt_queries >= 500, "{case}: {txt_queries} TXT queries");
        }
        let mut d5 = txt(&dns, "_mta-sts.d5.example.org.");
        d5.sort();
        assert_eq!(d5.len(), 2, "{case}: {d5:?}");
        assert!(d5[0].starts_with("google-site"), "{case}: {d5:?}");
    }
}
