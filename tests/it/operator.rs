//! What an operator meets around the daemon: `mta-stsd status` against a running daemon (and
//! none), shell completions sourced into a real bash, the man page, and the Debian package's
//! inputs (the package itself is built by dist/test-deb.sh: a release build takes minutes).

use std::process::Command;

use serde_json::Value;

use crate::harness::daemon::{eventually, Daemon};
use crate::harness::dns::free_port;
use crate::harness::{command, run_args, ConfigDir, MAIN};

fn config(admin_port: u16, mx: &str) -> String {
    format!(
        "[server]\nhttps = [\"127.0.0.1:0\"]\nadmin = \"127.0.0.1:{admin_port}\"\n\
         [tls]\nself_signed = true\n\
         [policy]\nmode = \"enforce\"\nmx = [\"{mx}\"]\nmax_age = 86400\n\
         [domains.\"example.org\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn status_summarizes_the_running_daemon_and_exits_by_severity() {
    let port = free_port();
    let dir = ConfigDir::with_config(&config(port, "mail.example.org"));
    let id = crate::providers::battery::policy_id(&dir, "example.org");
    let d = Daemon::start(&dir.config_path());

    let out = dir.run(&["status"]);
    out.assert_status(0);
    assert!(
        out.stdout.contains(&format!(
            "example.org: id {id} enforce; DNS set by hand; certificate self-signed; drift not run\n"
        )) && out.stdout.ends_with("1 domain: 0 errors, 0 warnings\n"),
        "{}",
        out.dump()
    );

    // JSON is /status as served.
    let out = dir.run(&["status", "--format", "json"]);
    out.assert_status(0);
    let passed: Value = serde_json::from_str(&out.stdout).unwrap();
    let served = d.status().await;
    assert_eq!(passed["domains"], served["domains"]);
    assert_eq!(passed["started_at"], served["started_at"]);

    // A broken edit: still serving, and status says so with exit 2 and the problem's place.
    dir.write(MAIN, config(port, "mail..example.org"));
    eventually("the failed reload in /status", || async {
        (d.status().await["config"]["last_reload"]["ok"] == false).then_some(())
    })
    .await;
    let out = dir.run(&["status", "--admin", &format!("127.0.0.1:{port}")]);
    out.assert_status(2);
    assert!(
        out.stdout.contains("ERROR: reload at ")
            && out
                .stdout
                .contains(&format!("  {}:", dir.config_path().display()))
            && out
                .stdout
                .contains(&format!("example.org: id {id} enforce")),
        "{}",
        out.dump()
    );
    // Issue 23: the config itself is now invalid, yet the daemon is still asked, at the
    // admin address the file names, and what is wrong is said.
    let out = dir.run(&["status"]);
    out.assert_status(2);
    assert!(
        out.stderr.contains("is invalid (")
            && out.stderr.contains(&format!(
                "asking the daemon at 127.0.0.1:{port} (its [server] admin)"
            ))
            && out.stdout.contains("ERROR: reload at "),
        "{}",
        out.dump()
    );
    drop(d);

    let out = run_args(&["status", "--admin", &format!("127.0.0.1:{port}")], &[]);
    out.assert_status(3);
    assert!(
        out.stderr
            .contains(&format!("no daemon answering at 127.0.0.1:{port}")),
        "{}",
        out.dump()
    );
}

#[test]
fn status_without_a_daemon_is_exit_3() {
    let dir = ConfigDir::with_config(&config(free_port(), "mail.example.org"));
    let out = dir.run(&["status"]);
    out.assert_status(3);
    assert!(out.stderr.contains("no daemon answering"), "{}", out.dump());
    assert_eq!(out.stdout, "");
}

/// What bash offers after `words` (the last one being completed), from the sourced script.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n\
         f=$(complete -p mta-stsd | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
         [ -n \"$f\" ] || {{ echo 'no completion registered for mta-stsd' >&2; exit 1; }}\n\
         \"$f\" mta-stsd '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        line.len(),
        words.last().unwrap(),
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_completes_subcommands_and_options() {
    let dir = ConfigDir::new();
    let out = command().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = dir.write("mta-stsd.bash", &out.stdout);

    let all = bash_complete(&script, &["mta-stsd", ""]);
    for sub in [
        "serve",
        "check",
        "policy",
        "records",
        "plan",
        "apply",
        "drift",
        "status",
        "completions",
        "man",
    ] {
        assert!(all.iter().any(|w| w == sub), "{sub} not offered: {all:?}");
    }
    assert_eq!(bash_complete(&script, &["mta-stsd", "pl"]), vec!["plan"]);
    let plan = bash_complete(&script, &["mta-stsd", "plan", "--"]);
    assert!(
        plan.iter().any(|w| w == "--domain") && plan.iter().any(|w| w == "--format"),
        "{plan:?}"
    );
    let shells = bash_complete(&script, &["mta-stsd", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|w| w == s), "{shells:?}");
    }
    for shell in ["zsh", "fish"] {
        let out = command().args(["completions", shell]).output().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("status"),
            "{shell}"
        );
    }
}

#[test]
fn man_page_has_the_commands_and_a_config_section() {
    let out = command().arg("man").output().unwrap();
    assert!(out.status.success());
    let roff = String::from_utf8(out.stdout).unwrap();
    assert!(roff.starts_with(".ie \\n(.g .ds Aq"), "{}", &roff[..80]);
    assert!(roff.contains(".TH mta-stsd 8"), "{roff}");
    for section in [
        ".SH COMMANDS",
        ".SH CONFIGURATION",
        ".SH FILES",
        ".SH EXIT STATUS",
    ] {
        assert!(roff.contains(section), "{section} missing");
    }
    for sub in ["status", "plan", "completions"] {
        assert!(
            roff.contains(&format!(".TP\n\\fB{sub}\\fR\n")),
            "{sub} missing"
        );
    }
    // Issue 23: every config section has its entry.
    for table in [
        "[tlsrpt]",
        "[alerts]",
        "[delegation]",
        "[acme]",
        "[drift]",
        "[state]",
    ] {
        assert!(
            roff.contains(&format!("\\fB{table}\\fR")),
            "{table} missing"
        );
    }
    // Issue 23: only pages that exist are named: none per command (clap_mangen's
    // `mta-stsd-check(8)`…, never installed), and SEE ALSO's are found by `man -w`.
    assert!(
        !roff.contains("mta\\-stsd\\-"),
        "a page per command is named"
    );
    let see_also = roff.split(".SH SEE ALSO").nth(1).expect("SEE ALSO");
    for reference in see_also
        .split(", ")
        .filter_map(|r| r.trim().strip_prefix("\\fB"))
    {
        let (name, section) = reference.split_once("\\fR(").expect("name(section)");
        let name = name.replace("\\-", "-");
        let section = &section[..1];
        let found = Command::new("man")
            .args(["-w", section, &name])
            .output()
            .unwrap();
        assert!(
            found.status.success(),
            "man page {name}({section}) not found"
        );
    }
    // man itself renders it without warnings.
    let dir = ConfigDir::new();
    let page = dir.write("mta-stsd.8", &roff);
    let rendered = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .expect("running man (Debian package man-db)");
    let err = String::from_utf8_lossy(&rendered.stderr);
    assert!(rendered.status.success() && err.trim().is_empty(), "{err}");
    assert!(String::from_utf8_lossy(&rendered.stdout).contains("CONFIGURATION"));
}

/// The package's inputs exist and say what dist/test-deb.sh checks in the built package.
#[test]
fn debian_package_inputs_are_complete() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let deb = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("a [package.metadata.deb] table");
    for asset in [
        "target/release/mta-stsd",
        "dist/mta-stsd.toml",
        "mta-stsd.8.gz",
        "completions/mta-stsd",
        "vendor-completions/",
        "vendor_completions.d/",
    ] {
        assert!(deb.contains(asset), "{asset} is not an asset");
    }
    assert!(deb.contains("enable = false, start = false"));
    let unit = std::fs::read_to_string(root.join("dist/debian/mta-stsd.service")).unwrap();
    for want in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ProtectSystem=strict",
        "StateDirectory=mta-stsd",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ExecStart=/usr/bin/mta-stsd --config /etc/mta-stsd/mta-stsd.toml serve",
    ] {
        assert!(unit.lines().any(|l| l == want), "unit lacks {want}");
    }
    for script in ["postinst", "postrm"] {
        let path = root.join("dist/debian").join(script);
        let ok = Command::new("sh").arg("-n").arg(&path).status().unwrap();
        assert!(ok.success(), "{script} is not valid sh");
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("#DEBHELPER#"));
    }
    // The shipped example is valid as it is (the package's `check` runs on it too).
    let out = run_args(
        &[
            "--config",
            root.join("dist/mta-stsd.toml").to_str().unwrap(),
            "check",
        ],
        &[],
    );
    out.assert_status(0);
}

/// Issue 23: the from-source unit (dist/mta-stsd.service) is the packaged one but for the
/// binary's place: the `check` before start and `StateDirectoryMode=0750` included.
#[test]
fn from_source_unit_matches_the_packaged_one() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let lines = |text: String, bin: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("Documentation="))
            .map(|l| l.replace(bin, "BIN"))
            .collect()
    };
    let packaged = lines(read("dist/debian/mta-stsd.service"), "/usr/bin/mta-stsd");
    let source = lines(read("dist/mta-stsd.service"), "/usr/local/bin/mta-stsd");
    assert_eq!(source, packaged);
    for want in [
        "ExecStartPre=BIN --config /etc/mta-stsd/mta-stsd.toml check",
        "StateDirectoryMode=0750",
    ] {
        assert!(source.iter().any(|l| l == want), "{want}");
    }
}

/// Issue 23: `apt purge` keeps the TLS report store and says so; the rest of the state goes.
/// The package's postrm, run on a copy of a state directory.
#[test]
fn purge_keeps_the_report_store_and_says_so() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = ConfigDir::new();
    let state = dir.path().join("var-lib-mta-stsd");
    let script = std::fs::read_to_string(root.join("dist/debian/postrm"))
        .unwrap()
        .replace("/var/lib/mta-stsd", state.to_str().unwrap());
    assert!(
        script.contains(state.to_str().unwrap()),
        "postrm names no state dir"
    );
    let postrm = dir.write("postrm", script);
    let run = |arg: &str| Command::new("sh").arg(&postrm).arg(arg).output().unwrap();
    let fill = || {
        std::fs::create_dir_all(state.join("acme")).unwrap();
        std::fs::write(state.join("history.jsonl"), "{}\n").unwrap();
        std::fs::write(state.join("tlsrpt.sqlite"), "").unwrap();
        std::fs::write(state.join("tlsrpt.sqlite-wal"), "").unwrap();
    };
    fill();
    assert!(run("remove").status.success());
    assert!(state.join("history.jsonl").exists(), "remove deleted state");
    let out = run("purge");
    assert!(out.status.success());
    let left: std::collections::BTreeSet<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        ["tlsrpt.sqlite", "tlsrpt.sqlite-wal"]
            .map(String::from)
            .into(),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("kept the TLS report store"), "{said}");
    // Without reports, nothing is left.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::create_dir_all(state.join("acme")).unwrap();
    assert!(run("purge").status.success());
    assert!(!state.exists());
}

/// Issue 23: build-deb.sh's check of the installed cargo-deb matches what `cargo deb
/// --version` prints (the tool's name, then the version), and no other version.
#[test]
fn build_deb_recognises_the_cargo_deb_it_wants() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("dist/build-deb.sh")).unwrap();
    let pick = |prefix: &str| {
        script
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line"))
            .to_owned()
    };
    let (wanted, check) = (pick("cargo_deb="), pick("is_wanted()"));
    for (printed, ok) in [
        ("cargo-deb 3.8.0", true),
        ("3.8.0", true),
        ("cargo-deb 3.8.1", false),
        ("cargo-deb 13.8.0", false),
        ("", false),
    ] {
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{wanted}\n{check}\nprintf '%s\\n' \"$1\" | is_wanted"
            ))
            .arg("bash")
            .arg(printed)
            .status()
            .unwrap();
        assert_eq!(status.success(), ok, "{printed:?}");
    }
}
