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
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or(l.strip_prefix("pub "))
                .unwrap_or(l);
            l.strip_prefix("mod ")
        })
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

/// A file's module path under `src/` (`serve/conns.rs` → `["serve", "conns"]`, `acme/mod.rs`
/// → `["acme"]`).
fn module_of(rel: &str) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if segs
        .last()
        .is_some_and(|s| s == "mod" || s == "lib" || s == "main")
    {
        segs.pop();
    }
    segs
}

/// The full paths (`crate::`, `super::`, `self::`, brace groups expanded) a file's code
/// names, made absolute from `module` (the file's module path).
fn paths_named(text: &str, module: &[String]) -> Vec<Vec<String>> {
    fn ident(s: &str) -> (&str, &str) {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        s.split_at(end)
    }
    // `rest` starts after a path's head; pushes every path it spells.
    fn expand(prefix: Vec<String>, rest: &str, out: &mut Vec<Vec<String>>) {
        let Some(rest) = rest.trim_start().strip_prefix("::") else {
            out.push(prefix);
            return;
        };
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        item(&prefix, &group[start..i], out);
                        return;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        item(&prefix, &group[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        } else {
            item(&prefix, rest, out);
        }
    }
    fn item(prefix: &[String], s: &str, out: &mut Vec<Vec<String>>) {
        let (name, rest) = ident(s.trim_start());
        if name.is_empty() || name == "self" {
            out.push(prefix.to_vec());
            return;
        }
        let mut p = prefix.to_vec();
        p.push(name.to_owned());
        expand(p, rest, out);
    }
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let code: String = code
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for head in ["crate", "super", "self"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(head) {
            let at = from + i;
            from = at + head.len();
            let before_ok = at == 0
                || !(bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':');
            if !before_ok || !code[from..].trim_start().starts_with("::") {
                continue;
            }
            let mut base: Vec<String> = match head {
                "crate" => Vec::new(),
                "self" => module.to_vec(),
                _ => module[..module.len().saturating_sub(1)].to_vec(),
            };
            let mut rest = &code[from..];
            // `super::super::…` climbs once more per `super`.
            while let Some(r) = (head == "super")
                .then(|| rest.trim_start().strip_prefix("::").map(str::trim_start))
                .flatten()
                .filter(|r| ident(r).0 == "super")
            {
                base.pop();
                rest = &r["super".len()..];
            }
            expand(std::mem::take(&mut base), rest, &mut out);
        }
    }
    out
}

/// No two files reach into each other (directly or through others), beyond a module's
/// `mod.rs` and its own files: the Layout orders modules, this orders the files in them.
#[test]
fn no_cycle_between_files() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root().join("src"))
                .unwrap()
                .to_str()
                .unwrap();
            (module_of(rel), rel.to_owned())
        })
        .collect();
    let ancestor = |a: &[String], b: &[String]| a.len() < b.len() && b[..a.len()] == *a;
    let mut edges: BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> = BTreeMap::new();
    for (module, rel) in &modules {
        let text = std::fs::read_to_string(root().join("src").join(rel)).unwrap();
        for path in paths_named(&text, module) {
            // The file holding the path: its longest prefix that is a file's module.
            let Some(target) = (1..=path.len())
                .rev()
                .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k))
            else {
                continue;
            };
            if target != module && !ancestor(target, module) && !ancestor(module, target) {
                edges.entry(module).or_default().insert(target);
            }
        }
    }
    assert!(
        edges.len() > 20,
        "too few edges found: the path reader is broken"
    );
    // A cycle is an edge whose target reaches back to its source.
    let reaches = |from: &Vec<String>, to: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(m) = todo.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m) {
                todo.extend(edges.get(m).into_iter().flatten().copied());
            }
        }
        false
    };
    let mut cycles = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if reaches(to, from) {
                cycles.push(format!("{} -> {}", modules[*from], modules[*to]));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that reach back to each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn file_paths_are_found_in_every_form() {
    let m = |s: &str| module_of(s);
    let text = "use super::idle::Idle;\nuse super::{conns::{Slot, Conns}, self};\n\
                use crate::acme::manager::backoff;\nlet x = self::inner::f();\n\
                use super::super::name;\n";
    let got = paths_named(text, &m("serve/http1/parse.rs"));
    let show: BTreeSet<String> = got.iter().map(|p| p.join("::")).collect();
    for want in [
        "serve::http1::idle::Idle",
        "serve::http1::conns::Slot",
        "serve::http1::conns::Conns",
        "acme::manager::backoff",
        "serve::http1::parse::inner::f",
        "serve::name",
    ] {
        assert!(show.contains(want), "{want} not in {show:?}");
    }
}
