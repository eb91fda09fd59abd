//! What a reload logs: the warnings the served config did not have, not every warning again
//! (with a million domains, 1 in 20 in `testing`, that was 50,000 lines per reload); all of
//! them stay in `/status`.

use crate::harness::daemon::Daemon;
use crate::harness::{ConfigDir, MAIN};

const TESTING: &str = "mode `testing`";

fn main_file() -> &'static str {
    r#"include = ["domains.d/*.toml"]
[server]
https = []
http = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
[policy]
mode = "enforce"
mx = ["mail.example.net"]
max_age = 86400
"#
}

/// Saved as editors do: a new file renamed over the old (no in-place settling wait).
fn save(dir: &ConfigDir, name: &str, text: &str) {
    let tmp = dir.write(&format!("{name}.tmp"), text);
    std::fs::rename(tmp, dir.file(name)).unwrap();
}

/// The log lines from `from` up to and including the next `config reloaded` line.
fn reload_lines(d: &Daemon, from: usize) -> Vec<String> {
    let done = d.wait_log_after(from, "config reloaded");
    let lines = d.lines();
    let end = from + lines[from..].iter().position(|l| *l == done).unwrap();
    lines[from..=end].to_vec()
}

fn testing_warnings(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.contains(TESTING)).collect()
}

#[tokio::test]
async fn a_reload_logs_only_warnings_the_served_config_did_not_have() {
    let dir = ConfigDir::new();
    dir.write(MAIN, main_file());
    let three: String = ["a", "b", "c"]
        .iter()
        .map(|n| format!("[domains.\"{n}.example\"]\nmode = \"testing\"\n"))
        .collect();
    dir.write("domains.d/one.toml", &three);
    dir.write("domains.d/two.toml", "[domains.\"d.example\"]\n");
    let d = Daemon::start(&dir.config_path());
    assert_eq!(testing_warnings(&d.lines()).len(), 3, "{:#?}", d.lines());

    // The same domains again (SIGHUP): no warning repeated, the count in the summary.
    let seen = d.lines().len();
    d.signal("HUP");
    let lines = reload_lines(&d, seen);
    assert!(
        testing_warnings(&lines).is_empty(),
        "repeated warnings: {lines:#?}"
    );
    let done = lines.last().unwrap();
    assert!(
        done.contains("warnings=3") && done.contains("new_warnings=0"),
        "{done}"
    );

    // One more `testing` domain in the other file: only its warning is logged.
    let seen = d.lines().len();
    save(
        &dir,
        "domains.d/two.toml",
        "[domains.\"d.example\"]\n[domains.\"e.example\"]\nmode = \"testing\"\n",
    );
    let lines = reload_lines(&d, seen);
    let logged = testing_warnings(&lines);
    assert_eq!(logged.len(), 1, "{lines:#?}");
    assert!(logged[0].contains("two.toml:3:"), "{}", logged[0]);
    let done = lines.last().unwrap();
    assert!(
        done.contains("warnings=4") && done.contains("new_warnings=1"),
        "{done}"
    );
    // Every warning is still in /status.
    let status = d.status().await;
    let problems = status["config"]["last_reload"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p.as_str().unwrap().contains(TESTING))
        .count();
    assert_eq!(problems, 4);
}
