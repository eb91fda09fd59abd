//! `serve` running drift periodically into its report file, `/status` and `/metrics`.

use serde_json::Value;

use crate::harness::daemon::eventually;

use super::schema::*;
use super::world::*;

/// The value of one sample in the Prometheus text, if there.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// The `/status` entry of one domain.
fn domain_status<'s>(status: &'s Value, domain: &str) -> &'s Value {
    status["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == domain)
        .unwrap_or_else(|| panic!("no {domain} in {status}"))
}

const CRITICAL: &str = "mta_stsd_drift_findings{severity=\"critical\"}";

#[tokio::test]
async fn serve_runs_drift_periodically_into_the_report_status_and_metrics() {
    let w = world()
        .drift_extra("report = \"state/drift.json\"\ninterval = \"1s\"")
        .alert_command()
        .records(|ids| {
            replace(
                correct(ids),
                "_mta-sts.a ",
                &[sts("a", "v=STSv1; id=old1;")],
            )
        });
    let path = w.dir.file("state/drift.json");
    let events = || {
        std::fs::read_to_string(w.dir.file("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let d = w.serve();
    let read_report = || {
        let text = std::fs::read_to_string(&path).ok()?;
        let report: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("a half-written report? {e}\n{text}"));
        validate_schema(&report);
        Some(report)
    };
    let report = eventually("the drift report file", || async { read_report() }).await;
    assert_eq!(report["status"], "critical", "{report:#}");
    assert_eq!(report["exit_code"], 2);
    assert_eq!(report["domains"][0]["domain"], "a.example.org");
    assert_eq!(report["domains"][0]["findings"][0]["check"], "sts-txt");
    assert_eq!(report["domains"][1]["findings"], serde_json::json!([]));

    let s = eventually("the drift summary in /status", || async {
        let s = d.status().await;
        (s["drift"]["status"] == "critical").then_some(s)
    })
    .await;
    assert_eq!(s["drift"]["counts"]["critical"], 1, "{s:#}");
    let a = &domain_status(&s, "a.example.org")["drift"];
    assert_eq!(a["status"], "critical", "{s:#}");
    assert_eq!(a["findings"][0]["severity"], "critical");
    assert_eq!(a["findings"][0]["check"], "sts-txt");
    assert!(
        a["findings"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("stale id at _mta-sts.a.example.org.: old1"),
        "{a:#}"
    );
    let b = &domain_status(&s, "b.example.org")["drift"];
    assert_eq!(b["status"], "ok", "{s:#}");
    assert_eq!(b["findings"], serde_json::json!([]));
    let m = d.metrics().await;
    assert_eq!(sample(&m, CRITICAL), Some(1.0), "{m}");
    // a's DNS is critical (the stale id), b's fine; no label names a domain.
    for (state, n) in [
        ("ok", 1.0),
        ("warning", 0.0),
        ("unknown", 0.0),
        ("critical", 1.0),
    ] {
        let name = format!("mta_stsd_domains_by_dns_state{{state=\"{state}\"}}");
        assert_eq!(sample(&m, &name), Some(n), "{name}\n{m}");
    }
    let series = m
        .lines()
        .filter(|l| l.starts_with("mta_stsd_domains_by_dns_state{"))
        .count();
    assert_eq!(series, 4, "{m}");
    // One event so far (a's finding appeared), delivered to the command and counted.
    let delivered = "mta_stsd_alerts_total{result=\"delivered\"}";
    let m = eventually("the delivered alert in /metrics", || async {
        let m = d.metrics().await;
        (sample(&m, delivered) == Some(1.0)).then_some(m)
    })
    .await;
    assert_eq!(events(), 1, "{m}");
    assert_eq!(
        sample(&m, "mta_stsd_alerts_total{result=\"failed\"}"),
        Some(0.0),
        "{m}"
    );
    let s = d.status().await;
    assert_eq!(
        (&s["alerts"]["delivered"], &s["alerts"]["failed"]),
        (&1.into(), &0.into()),
        "{s:#}"
    );
    assert!(
        sample(&m, "mta_stsd_drift_last_run_timestamp_seconds").unwrap() > 0.0,
        "{m}"
    );

    // Fixed on both nameservers: the next run sees it, everywhere.
    w.nsupdate_all(&format!(
        "update delete _mta-sts.a.example.org. TXT\n\
         update add _mta-sts.a.example.org. 300 IN TXT \"v=STSv1; id={};\"",
        w.id("a")
    ));
    let report = eventually("a clean drift report", || async {
        read_report().filter(|r| r["status"] == "ok")
    })
    .await;
    assert_eq!(report["counts"]["critical"], 0);
    let s = eventually("drift ok in /status", || async {
        let s = d.status().await;
        (s["drift"]["status"] == "ok").then_some(s)
    })
    .await;
    assert_eq!(
        domain_status(&s, "a.example.org")["drift"]["findings"],
        serde_json::json!([])
    );
    let m = eventually("no critical drift finding in /metrics", || async {
        let m = d.metrics().await;
        (sample(&m, CRITICAL) == Some(0.0)).then_some(m)
    })
    .await;
    assert_eq!(
        sample(&m, "mta_stsd_drift_findings{severity=\"warning\"}"),
        Some(0.0),
        "{m}"
    );
    let ok = "mta_stsd_domains_by_dns_state{state=\"ok\"}";
    assert_eq!(sample(&m, ok), Some(2.0), "{m}");
    // The finding cleared: a second event, and nothing more while nothing changes.
    eventually("the cleared alert counted", || async {
        let s = d.status().await;
        (s["alerts"]["delivered"] == 2).then_some(())
    })
    .await;
    assert_eq!(events(), 2);
    let runs = sample(
        &d.metrics().await,
        "mta_stsd_drift_last_run_timestamp_seconds",
    )
    .unwrap();
    eventually("two more drift runs", || async {
        let m = d.metrics().await;
        (sample(&m, "mta_stsd_drift_last_run_timestamp_seconds").unwrap() >= runs + 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(events(), 2);
    assert_eq!(sample(&d.metrics().await, delivered), Some(2.0));
}
