//! The dashboard on the admin listener, loaded in a real headless Chromium: real TLS reports
//! POSTed to the daemon's receiver first; the pages load with no console message (so no CSP
//! violation and no request elsewhere), and the chart's numbers are the stored reports'.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::chromium;
use crate::harness::daemon::{plain_client, Daemon, TestCa};
use crate::tlsrpt::receiver::{setup, start, Poster, JSON};

/// `YYYY-MM-DD`, `ago` days before today (UTC).
fn day(ago: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::days(ago))
        .date()
        .to_string()
}

/// A report on example.org for one day, quoting `policy` (the body served, line by line).
fn report(
    id: &str,
    org: &str,
    ago: i64,
    policy: &[String],
    ok: i64,
    fails: &[(&str, &str, i64)],
) -> Vec<u8> {
    let day = day(ago);
    let details: Vec<Value> = fails
        .iter()
        .map(|(t, mx, n)| json!({"result-type": t, "receiving-mx-hostname": mx, "failed-session-count": n}))
        .collect();
    json!({
        "organization-name": org,
        "date-range": {"start-datetime": format!("{day}T00:00:00Z"), "end-datetime": format!("{day}T23:59:59Z")},
        "contact-info": "tlsrpt@example.net",
        "report-id": id,
        "policies": [{
            "policy": {"policy-type": "sts", "policy-string": policy, "policy-domain": "example.org",
                       "mx-host": ["*.mail.example.org"]},
            "summary": {"total-successful-session-count": ok,
                        "total-failure-session-count": fails.iter().map(|f| f.2).sum::<i64>()},
            "failure-details": details,
        }],
    })
    .to_string()
    .into_bytes()
}

/// The policy body example.org is served with, as a sender quotes it.
async fn served_policy(ca: &TestCa, d: &Daemon) -> Vec<String> {
    let addr = d.https.unwrap();
    let body = ca
        .client(&["mta-sts.example.org"], addr, false)
        .get(format!(
            "https://mta-sts.example.org:{}/.well-known/mta-sts.txt",
            addr.port()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.split_terminator("\r\n").map(str::to_owned).collect()
}

/// `attr="value"` pairs of every element opening with `<tag class="class"` in `dom`.
fn elements<'a>(dom: &'a str, open: &str) -> Vec<BTreeMap<&'a str, &'a str>> {
    dom.split(open)
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            tag.split("\" ")
                .filter_map(|kv| kv.trim().split_once("=\""))
                .map(|(k, v)| (k, v.trim_end_matches('"')))
                .collect()
        })
        .collect()
}

/// Every `src`/`href` in `dom` stays on the page's origin.
fn assert_same_origin(dom: &str) {
    for attr in ["src=\"", "href=\"", "action=\""] {
        for rest in dom.split(attr).skip(1) {
            let url = &rest[..rest.find('"').unwrap()];
            assert!(
                url.starts_with('/') && !url.starts_with("//") || url.starts_with('#'),
                "{attr}{url}\" leaves the origin"
            );
        }
    }
}

async fn get(d: &Daemon, path: &str) -> (StatusCode, String) {
    let r = plain_client().get(d.admin_url(path)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_pages_in_chromium_show_the_stored_reports() {
    let ca = TestCa::new();
    let dir = setup(&ca, "");
    let d = start(&dir, &[]);
    let p = Poster::new(&ca, &d, false);
    let policy = served_policy(&ca, &d).await;
    assert!(policy.iter().any(|l| l == "mode: testing"), "{policy:?}");

    // Reports on nine days of the 30, two reporters, failures of two types at two MXs; and
    // one from 31 days ago, outside the window.
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for ago in [0, 1, 2, 4, 6, 9, 13, 20, 29, 31] {
        let ok = 100 + ago * 7;
        let fails: Vec<(&str, &str, i64)> = if ago % 2 == 0 {
            vec![("certificate-expired", "mx1.mail.example.org", ago + 1)]
        } else {
            Vec::new()
        };
        let msft = if ago == 4 {
            vec![("sts-webpki-invalid", "mx2.mail.example.org", 3)]
        } else {
            Vec::new()
        };
        for (org, ok, fails) in [
            ("Google Inc.", ok, &fails),
            ("Microsoft Corporation", 50, &msft),
        ] {
            let id = format!("{org}-{ago}");
            let (status, body) = p
                .post(JSON, report(&id, org, ago, &policy, ok, fails))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{id}: {body}");
            if ago < 30 {
                let e = want.entry(day(ago)).or_default();
                e.0 += ok;
                e.1 += fails.iter().map(|f| f.2).sum::<i64>();
            }
        }
    }

    // What `mta-stsd reports` reads from the store: the same days and sums.
    let state = dir.path().join("state");
    let cli = crate::harness::run_args(
        &[
            "--config",
            dir.config_path().to_str().unwrap(),
            "reports",
            "example.org",
            "--format",
            "json",
        ],
        &[("STATE_DIRECTORY", state.to_str().unwrap())],
    );
    let cli: Value =
        serde_json::from_str(&cli.stdout).unwrap_or_else(|e| panic!("{e}: {}", cli.dump()));
    let stored: BTreeMap<String, (i64, i64)> = cli["domains"][0]["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                (
                    d["successful"].as_i64().unwrap(),
                    d["failed"].as_i64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(stored, want, "the store holds what was posted");

    let page = chromium::load(&d.admin_url("/domains/example.org"));
    assert!(
        page.console.is_empty(),
        "console messages: {:#?}",
        page.console
    );
    assert_same_origin(&page.dom);
    let bars = elements(&page.dom, "<g class=\"day\" ");
    assert_eq!(bars.len(), 30, "one bar a day");
    assert_eq!(bars[29]["data-day"], day(0), "the last bar is today");
    for b in &bars {
        let (ok, failed) = stored.get(b["data-day"]).copied().unwrap_or((0, 0));
        assert_eq!(
            (
                b["data-successful"].parse::<i64>().unwrap(),
                b["data-failed"].parse::<i64>().unwrap()
            ),
            (ok, failed),
            "{b:?}"
        );
    }
    // The text alternative and the breakdowns say the same.
    let total_ok: i64 = want.values().map(|v| v.0).sum();
    let total_failed: i64 = want.values().map(|v| v.1).sum();
    assert!(
        page.dom
            .contains(&format!("{total_ok} successful and {total_failed} failed")),
        "{}",
        page.dom
    );
    let expired: i64 = [0, 2, 4, 6, 20].iter().map(|a| a + 1).sum();
    assert!(page.dom.contains(&format!(
        "<th scope=\"row\"><code>certificate-expired</code></th><td>yes</td><td class=\"n\">{expired}</td>"
    )));
    assert!(page.dom.contains(&format!(
        "<th scope=\"row\">mx1.mail.example.org</th><td class=\"n\">{expired}</td>"
    )));
    assert!(page.dom.contains("<th scope=\"row\">Microsoft Corporation</th><td class=\"n\">450</td><td class=\"n\">3</td>"));
    // The verdict is the one `reports` gives.
    let r = &cli["domains"][0]["readiness"];
    assert_eq!(r["ready"], false, "{r}");
    assert!(page.dom.contains("Not ready for enforce"));
    assert!(page.dom.contains(&format!(
        "{} days with DKIM-signed reports under the policy id in force ({} needed)",
        r["days_covered"], r["days_needed"]
    )));
    // Posted over HTTPS: unauthenticated, shown and not counted.
    assert!(r["days_unauthenticated"].as_u64() > Some(0), "{r}");
    assert!(page.dom.contains(&format!(
        "{} more days with only unauthenticated (HTTPS) reports, not counted",
        r["days_unauthenticated"]
    )));
    assert!(page.dom.contains(&format!(
        "{} MTA-STS failures reported under the policy id in force",
        r["sts_failures"]
    )));
    // The timeline: the id in force, and the reports that came in under it.
    let id = cli["domains"][0]["policy_id"].as_str().unwrap();
    assert!(page.dom.contains(&format!("<code>{id}</code>")));
    assert!(page.dom.contains(&format!(
        "{total_ok} successful, {total_failed} failed sessions reported by Google Inc., Microsoft Corporation"
    )), "{}", page.dom);

    // `/`: the row's 7-day rate counts the days 0 to 6 only.
    let index = chromium::load(&d.admin_url("/"));
    assert!(
        index.console.is_empty(),
        "console messages: {:#?}",
        index.console
    );
    assert_same_origin(&index.dom);
    let week: i64 = want
        .iter()
        .filter(|(k, _)| **k >= day(6))
        .map(|(_, v)| v.0 + v.1)
        .sum();
    let row = index
        .dom
        .split("<a href=\"/domains/example.org\">")
        .nth(1)
        .unwrap();
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(&format!("successful of {week}</td>")), "{row}");
    assert!(
        index.dom.contains("<span><b>3</b> testing</span>")
            || index.dom.contains("<b>3</b> testing"),
        "{}",
        index.dom
    );

    if let Some(out) = std::env::var_os("MTA_STSD_SCREENSHOTS") {
        let out = std::path::PathBuf::from(out);
        chromium::screenshot(&d.admin_url("/"), &out.join("index.png"), 1200, 440);
        chromium::screenshot(
            &d.admin_url("/domains/example.org"),
            &out.join("domain.png"),
            1000,
            1400,
        );
    }
}

/// The console check itself: a page that breaks its CSP (an inline script, an image from
/// elsewhere) is caught. Served over loopback HTTP as the dashboard is (Chromium 148 loads no
/// `data:` URL given on its command line).
#[test]
fn chromium_reports_a_csp_violation_on_the_console() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let body = "<!doctype html><img src=http://192.0.2.1/x.png>\
                    <script>console.error('boom')</script>";
        // Chromium may also ask for /favicon.ico: every request gets the page, until the
        // browser is gone (the listener is dropped with the test).
        for conn in listener.incoming().take(4) {
            let Ok(mut conn) = conn else { break };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\
                 Content-Security-Policy: default-src 'none'\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let page = chromium::load(&url);
    assert!(
        page.console
            .iter()
            .any(|l| l.contains("violates the following Content Security Policy")),
        "{:#?}",
        page.console
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_search_pages_and_escapes() {
    let ca = TestCa::new();
    let dir = setup(&ca, "");
    let d = start(&dir, &[]);
    let names = |html: &str| -> Vec<String> {
        html.split("<a href=\"/domains/")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].to_owned())
            .collect()
    };
    let (status, all) = get(&d, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&all), ["example.com", "example.net", "example.org"]);
    // The summary line names the state store and says it is up.
    assert!(all.contains("state store: <b>sqlite, up</b>"), "{all}");
    assert_eq!(names(&get(&d, "/?q=.NET").await.1), ["example.net"]);
    assert_eq!(
        names(&get(&d, "/?q=org&match=prefix").await.1),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&get(&d, "/?q=example.o&match=prefix").await.1),
        ["example.org"]
    );
    // What is searched for is shown back escaped, never as markup.
    let (_, html) = get(&d, "/?q=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("value=\"&#60;script&#62;") || html.contains("value=\"&lt;script&gt;"),
        "{html}"
    );
    // An unknown domain is a 404, the headers keep pages to themselves.
    assert_eq!(
        get(&d, "/domains/nope.example").await.0,
        StatusCode::NOT_FOUND
    );
    let r = plain_client()
        .get(d.admin_url("/domains/EXAMPLE.org."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'sha256-"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
}
