//! The layering of `src/lib.rs`'s `# Layout`, kept true: every `crate::` path in `src/` (outside
//! `mod tests`) names a module its module may use, each module may use only modules listed
//! above it (so there is no import cycle), and README's "## Layout" lists the same lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `- \`module\`: … Uses: \`a\`, \`b\`.` lines of a Layout section, in order.
fn layout_lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter(|l| l.starts_with("- `") && l.contains("Uses:"))
        .map(str::to_owned)
        .collect()
}

/// Module → the modules it may use, in Layout order.
fn parse_layout(lines: &[String]) -> Vec<(String, BTreeSet<String>)> {
    lines
        .iter()
        .map(|l| {
            let name = l[3..].split('`').next().unwrap().to_owned();
            let (_, uses) = l.split_once("Uses:").unwrap();
            let uses = uses
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (name, uses)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's code (comments and `mod tests` aside) names as `crate::x`.
fn crate_uses(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let code: String = code
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut uses = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`: the first segment of each item at depth one.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[j..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && c.is_ascii_alphabetic() => {
                        let name: String = group[j..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        uses.insert(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            uses.insert(name);
        }
    }
    uses
}

#[test]
fn every_crate_path_follows_the_layout() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let lines = layout_lines(&lib, "//! ");
    let layout = parse_layout(&lines);
    assert!(layout.len() > 10, "no Layout section in src/lib.rs");

    // Each module is declared in lib.rs, and may use only modules on the lines above.
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_owned())
        .collect();
    let listed: BTreeSet<String> = layout.iter().map(|(m, _)| m.clone()).collect();
    assert_eq!(declared, listed, "lib.rs modules vs its Layout lines");
    let mut above = BTreeSet::new();
    for (module, uses) in &layout {
        let not_above: Vec<_> = uses.difference(&above).collect();
        assert!(
            not_above.is_empty(),
            "Layout: {module} uses {not_above:?}, not listed above it"
        );
        above.insert(module.clone());
    }

    let allowed: BTreeMap<&str, &BTreeSet<String>> =
        layout.iter().map(|(m, u)| (m.as_str(), u)).collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut wrong = Vec::new();
    for path in files {
        let rel = path.strip_prefix(root().join("src")).unwrap();
        let rel_str = rel.to_str().unwrap().to_owned();
        let module = rel_str.split('/').next().unwrap().trim_end_matches(".rs");
        if module == "lib" || module == "main" {
            continue;
        }
        let may = allowed
            .get(module)
            .unwrap_or_else(|| panic!("src/{rel_str}: module {module} not in the Layout"));
        let text = std::fs::read_to_string(&path).unwrap();
        for used in crate_uses(&text) {
            if used == module || may.contains(&used) {
                continue;
            }
            wrong.push(format!("src/{rel_str} uses crate::{used}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports the Layout in src/lib.rs does not allow:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn readme_lists_the_same_layout() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split_once("## Layout\n")
        .expect("README has a ## Layout")
        .1;
    let section = section.split("\n## ").next().unwrap();
    assert_eq!(
        layout_lines(section, ""),
        layout_lines(&lib, "//! "),
        "README's ## Layout and src/lib.rs's # Layout differ"
    );
}

#[test]
fn crate_paths_are_found_in_every_form() {
    let text = "use crate::a::B;\nuse crate::{b, c::{D, e}};\nlet x = crate::f::g();\n\
                // crate::comment\n#[cfg(test)]\nmod tests {\n    use crate::t;\n}\n";
    let got: Vec<_> = crate_uses(text).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "f"]);
}
