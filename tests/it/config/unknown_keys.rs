//! hickory's `test_reject_unknown_fields` idea: a bogus key in every table of the example
//! config is refused, each at its own line and column.

use std::path::Path;

#[test]
fn a_bogus_key_in_every_table_is_refused_at_its_place() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mta-stsd.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    // After each table header (and once at the top), a key no table knows.
    let mut out = vec!["bogus_top = 1".to_owned()];
    let mut expected = vec![(1u32, "bogus_top".to_owned(), "the top level".to_owned())];
    for line in text.lines() {
        out.push(line.to_owned());
        if let Some(header) = line.strip_prefix('[') {
            let table = header.split(']').next().unwrap().to_owned();
            let key = format!("bogus_{}", expected.len());
            out.push(format!("{key} = 1"));
            expected.push((out.len() as u32, key, table));
        }
    }
    assert!(
        expected.len() >= 8,
        "the example has fewer tables than expected"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mta-stsd.toml");
    std::fs::write(&path, out.join("\n")).unwrap();

    let failed = mta_stsd::config::load(&path).expect_err("bogus keys must be refused");
    for (line, key, table) in &expected {
        let found = failed
            .diagnostics
            .iter()
            .find(|d| d.message.starts_with(&format!("unknown key `{key}` in ")));
        let d = found.unwrap_or_else(|| panic!("no error for {key} in [{table}]: {failed:?}"));
        assert_eq!(d.position, Some((*line, 1)), "{key} in [{table}]: {d}");
        assert!(
            d.message.contains("expected one of: "),
            "{key} in [{table}]: {d}"
        );
    }
    let unknown = failed
        .diagnostics
        .iter()
        .filter(|d| d.message.starts_with("unknown key"))
        .count();
    assert_eq!(unknown, expected.len(), "{failed:?}");
}

/// The example with `extra` written after the header of `table`.
fn with_line(text: &str, table: &str, extra: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        out.push(line.to_owned());
        if line.strip_prefix('[').and_then(|h| h.split(']').next()) == Some(table) {
            out.push(extra.to_owned());
        }
    }
    out.join("\n")
}

/// The keys already written in `table` of the example.
fn written_keys(text: &str, table: &str) -> Vec<String> {
    let header = format!("[{table}]");
    text.lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_owned()))
        .filter(|k| !k.starts_with('#'))
        .collect()
}

/// Each section's one key list is what its parser accepts: every key the "expected one of"
/// message names is taken (perhaps with a complaint about its value), never called unknown.
#[test]
fn every_key_an_error_message_lists_is_accepted() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mta-stsd.toml");
    // The example's tables, and those it has only in comments (empty here).
    let text = std::fs::read_to_string(&example).unwrap()
        + "\n[acme]\n[drift]\n[alerts]\n[tlsrpt]\n[delegation]\n";
    let tables: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix('['))
        .map(|h| h.split(']').next().unwrap().to_owned())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mta-stsd.toml");
    let load = |config: String| {
        std::fs::write(&path, config).unwrap();
        mta_stsd::config::load(&path)
            .err()
            .map(|f| f.diagnostics)
            .unwrap_or_default()
    };
    let mut checked = 0;
    for table in &tables {
        let problems = load(with_line(&text, table, "bogus = 1"));
        let message = &problems
            .iter()
            .find(|d| d.message.starts_with("unknown key `bogus`"))
            .unwrap_or_else(|| panic!("[{table}]: bogus not refused: {problems:?}"))
            .message;
        let list = message.split_once("expected one of: ").unwrap().1;
        let written = written_keys(&text, table);
        for key in list.split(", ") {
            if written.iter().any(|w| w == key) {
                continue;
            }
            let problems = load(with_line(&text, table, &format!("{key} = 1")));
            assert!(
                !problems
                    .iter()
                    .any(|d| d.message.starts_with("unknown key")),
                "[{table}] lists `{key}` but refuses it: {problems:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} keys checked");
}
