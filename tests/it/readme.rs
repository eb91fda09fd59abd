//! Facts README states that can be checked (issue 23): its config reference is a config
//! `check` understands, and its from-source steps write only where a directory exists.

use std::path::Path;

use crate::harness::ConfigDir;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// The first fenced block of `lang` after the heading `heading`.
fn block(text: &str, heading: &str, lang: &str) -> String {
    let section = text
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading}"));
    let start = section.find(&format!("```{lang}\n")).expect("a code block") + lang.len() + 4;
    let len = section[start..].find("\n```").expect("the block's end");
    section[start..start + len].to_owned()
}

/// Every key of the reference is one `check` knows where it is written: `provider` and
/// `reconcile` were shown under `[delegation]`, which refuses them. (The files and secrets
/// it names do not exist here; those errors are expected.)
#[test]
fn the_config_reference_uses_only_keys_check_accepts() {
    let text = block(&readme(), "## Config reference", "toml");
    for table in [
        "[tlsrpt]",
        "[alerts]",
        "[delegation]",
        "[acme]",
        "[drift]",
        "[state]",
    ] {
        assert!(text.contains(table), "{table} missing from the reference");
    }
    let dir = ConfigDir::with_config(&text);
    let out = dir.check();
    let wrong: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("unknown key") || l.contains("does not apply"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{}", out.dump());
}

/// The from-source steps redirect into directories that exist on Debian 12 or that an
/// earlier step creates (`/usr/local/share/man/man8` does not exist there).
#[test]
fn from_source_steps_write_into_existing_directories() {
    let steps = block(&readme(), "### From source", "sh");
    let mut made: Vec<String> = Vec::new();
    let mut checked = 0;
    for line in steps.lines() {
        let line = line.split("  #").next().unwrap_or_default();
        if let Some(dir) = line.strip_prefix("install -d ") {
            made.push(dir.split_whitespace().last().unwrap().to_owned());
        }
        if let Some((_, target)) = line.split_once(" > ") {
            let target = target.split_whitespace().next().unwrap();
            let dir = Path::new(target).parent().unwrap();
            let exists = made.iter().any(|m| Path::new(m) == dir) || dir.is_dir();
            assert!(exists, "`{line}`: {} does not exist", dir.display());
            checked += 1;
        }
    }
    assert!(checked >= 2, "no redirection found in:\n{steps}");
}
