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
