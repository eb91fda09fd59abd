//! The headline measurement: a `drift` run by hand while `serve` runs fires each alert
//! once, not once per process. Both take the "drift" lease in the store and diff against the
//! findings the last round kept there, whoever ran it. A real BIND; the alert command appends
//! each event's JSON to a file.

use std::collections::HashMap;

use crate::harness::daemon::{eventually, Daemon};
use crate::harness::dns::free_port;
use crate::harness::drift::{alert_script, events, example_org, NS};
use crate::harness::{run_with_config, ConfigDir, MAIN};

/// A finding appears between two rounds of `serve`; `drift` by hand sees it first and
/// alerts; `serve`'s next rounds alert nothing more: every (event, domain, check, message)
/// was sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_run_drift_beside_serve_alerts_each_finding_once() {
    let dns = example_org("drift-once", &["a MX 10 mx-a", "mx-a A 127.0.0.1"], false);
    let port = dns.addr.port();
    let dir = ConfigDir::new();
    alert_script(&dir);
    dir.write(
        MAIN,
        format!(
            "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:0\"\n\n\
             [tls]\nself_signed = true\n\n\
             [policy]\nmode = \"testing\"\nmx = [\"*.example.org\"]\nmax_age = 86400\n\n\
             [domains.\"a.example.org\"]\n\n\
             [drift]\ninterval = \"2s\"\nresolver = \"{NS}:{port}\"\ndns_port = {port}\n\
             https_port = {}\nsmtp_port = {}\nsmtp_timeout = \"1s\"\n\n\
             [alerts]\ncommand = \"alert.sh\"\n",
            free_port(),
            free_port()
        ),
    );
    let d = Daemon::start(&dir.config_path());
    let rounds = || {
        d.lines()
            .iter()
            .filter(|l| l.contains("drift checked"))
            .count()
    };
    eventually("serve's first round alerted", || async {
        (rounds() >= 1 && !events(&dir).is_empty()).then_some(())
    })
    .await;

    // A finding appears: a `v=STSv1` record with an id the config never had.
    dns.nsupdate("update add _mta-sts.a.example.org. 60 IN TXT \"v=STSv1; id=stale;\"");
    let before = events(&dir).len();
    let out = run_with_config(&dir.config_path(), &["drift", "--format", "json"]);
    assert!(!out.stdout.is_empty(), "{}", out.dump());
    let by_hand = events(&dir).len();
    assert!(
        by_hand > before,
        "the hand-run drift alerted nothing\n{}",
        out.dump()
    );

    let after_hand = rounds();
    eventually("two more rounds of serve", || async {
        (rounds() >= after_hand + 2).then_some(())
    })
    .await;
    let all = events(&dir);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in &all {
        let key = format!(
            "{} {} {} {}",
            e["event"], e["domain"], e["check"], e["message"]
        );
        *seen.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "sent more than once: {twice:#?}\nall: {all:#?}"
    );
    assert_eq!(all.len(), by_hand, "serve alerted again: {all:#?}");
}
