//! dist/prometheus/alerts.yml and dist/grafana/mta-stsd.json: the rules pass `promtool check
//! rules` and their unit tests (`promtool test rules`), and every metric the rules and the
//! dashboard name is one a live daemon's `/metrics` exposes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;

use crate::harness::daemon::eventually;
use crate::tlsrpt::receiver::{fixture, setup, start, Poster, JSON};

fn dist(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dist")
        .join(path)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dist("prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install the Debian package `prometheus`")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// The `mta_stsd_…` metric names in `text` (recording rules, `mta_stsd:…`, are not metrics).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("mta_stsd_") {
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_name_is_exposed() {
    let rules = std::fs::read_to_string(dist("prometheus/alerts.yml")).unwrap();
    let grafana = std::fs::read_to_string(dist("grafana/mta-stsd.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&grafana).expect("the dashboard is JSON");
    let named: BTreeSet<String> = metric_names(&rules)
        .union(&metric_names(&grafana))
        .cloned()
        .collect();
    assert!(named.len() >= 10, "{named:?}");

    // A daemon with configured certificates, [tlsrpt] (one report stored) and [drift] (whose
    // resolver answers nothing: the run still ends, with findings).
    let ca = crate::harness::daemon::TestCa::new();
    let closed = crate::harness::dns::free_port();
    let dir = setup(
        &ca,
        &format!("\n[drift]\nresolver = \"127.0.0.1:{closed}\"\ninterval = \"1h\"\n"),
    );
    let d = start(&dir, &[]);
    let p = Poster::new(&ca, &d, false);
    assert_eq!(
        p.post(JSON, fixture("rfc8460.json")).await.0,
        StatusCode::CREATED
    );
    let metrics = eventually("a drift run in /metrics", || async {
        let m = d.metrics().await;
        m.lines()
            .any(|l| {
                l.starts_with("mta_stsd_drift_last_run_timestamp_seconds ") && !l.ends_with(" 0")
            })
            .then_some(m)
    })
    .await;
    // A family with samples has `# TYPE <name> <type>`; counters' samples end in `_total`.
    let exposed: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            let has_samples = metrics
                .lines()
                .any(|s| s.starts_with(name) && !s.starts_with('#'));
            has_samples.then(|| match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_owned(),
            })
        })
        .collect();
    assert!(
        metrics.contains("mta_stsd_tlsrpt_store_up{store=\"sqlite\"} 1\n"),
        "{metrics}"
    );
    let missing: Vec<&String> = named.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "named but not in /metrics: {missing:?}\n{metrics}"
    );
}
