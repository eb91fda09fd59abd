//! Reading the config: the main file, then its includes in parallel, then resolution.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use toml::de::DeTable;

use super::diag::{Diagnostic, Problems, Severity, Sources};
use super::raw::{RawFile, Reader};
use super::{resolve, Config};

/// A config that loaded, and the warnings it had.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// A config that did not load: every problem found, errors and warnings, in file order.
#[derive(Debug)]
pub struct Failed {
    pub diagnostics: Vec<Diagnostic>,
}

impl Failed {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

pub fn load(path: &Path) -> Result<Loaded, Failed> {
    let mut sources = Sources::default();
    let mut problems = Problems::default();
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();

    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(Failed {
                diagnostics: vec![Diagnostic {
                    severity: Severity::Error,
                    file: path.into(),
                    position: None,
                    message: format!("cannot read the config file: {e}"),
                }],
            })
        }
    };
    let main_file = sources.add(path.to_owned(), String::new());
    let main = read_one(main_file, &dir, true, &text);
    sources.files[main_file as usize].text = text;
    problems.0.extend(main.1 .0);
    let Some(main) = main.0 else {
        return Err(finish(&sources, problems));
    };

    let (paths, patterns) = expand_includes(&main, &dir, path, &mut problems);
    let base = sources.files.len() as u32;
    let included: Vec<(Result<String, String>, Option<RawFile>, Problems)> = paths
        .par_iter()
        .enumerate()
        .map(|(i, p)| {
            let file = base + i as u32;
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    let d = p.parent().unwrap_or(Path::new("."));
                    let (raw, probs) = read_one(file, d, false, &text);
                    (Ok(text), raw, probs)
                }
                Err(e) => (Err(e.to_string()), None, Problems::default()),
            }
        })
        .collect();
    let mut raws = Vec::with_capacity(included.len());
    for (p, (text, raw, probs)) in paths.iter().zip(included) {
        let file = match text {
            Ok(text) => sources.add(p.clone(), text),
            Err(e) => {
                let file = sources.add(p.clone(), String::new());
                problems.file_error(file, format!("cannot read the included file: {e}"));
                file
            }
        };
        debug_assert!(probs.0.iter().all(|pp| pp.file == file));
        problems.0.extend(probs.0);
        raws.extend(raw);
    }

    let mut files = vec![path.to_owned()];
    files.extend(paths);
    let config = resolve::resolve(&sources, main, raws, &mut problems, files, patterns);
    match config {
        Some(config) if !problems.has_errors() => {
            let warnings = finish(&sources, problems).diagnostics;
            Ok(Loaded { config, warnings })
        }
        _ => Err(finish(&sources, problems)),
    }
}

/// Parses one file and reads it; a file with TOML syntax errors is not read further.
fn read_one(file: u32, dir: &Path, main: bool, text: &str) -> (Option<RawFile>, Problems) {
    let mut problems = Problems::default();
    let (table, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            problems.error(
                Sources::loc(file, &span),
                format!("TOML syntax: {}", e.message().trim()),
            );
        }
        return (None, problems);
    }
    let mut reader = Reader {
        file,
        dir,
        main,
        problems,
    };
    let raw = reader.read(table.get_ref());
    (Some(raw), reader.problems)
}

/// The files the main file's `include` patterns name, sorted per pattern, each once.
fn expand_includes(
    main: &RawFile,
    dir: &Path,
    main_path: &Path,
    problems: &mut Problems,
) -> (Vec<PathBuf>, Vec<String>) {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut patterns = Vec::new();
    let mut seen = std::collections::HashSet::new();
    seen.insert(main_path.to_owned());
    for pattern in &main.include {
        let full = dir.join(&pattern.value);
        let full_str = full.to_string_lossy().into_owned();
        let is_glob = pattern.value.contains(['*', '?', '[']);
        if !is_glob {
            if !full.is_file() {
                problems.error(
                    pattern.at,
                    format!(
                        "include `{}`: no such file {}",
                        pattern.value,
                        full.display()
                    ),
                );
            } else if seen.insert(full.clone()) {
                paths.push(full);
            }
            patterns.push(full_str);
            continue;
        }
        match glob::glob(&full_str) {
            Ok(entries) => {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .filter(|p| p.is_file())
                    .collect();
                found.sort();
                for p in found {
                    if seen.insert(p.clone()) {
                        paths.push(p);
                    }
                }
            }
            Err(e) => problems.error(
                pattern.at,
                format!("include `{}` is not a valid pattern: {e}", pattern.value),
            ),
        }
        patterns.push(full_str);
    }
    (paths, patterns)
}

fn finish(sources: &Sources, problems: Problems) -> Failed {
    let mut pending = problems.0;
    pending.sort_by_key(|p| (p.file, p.at.map_or(0, |a| a.offset)));
    Failed {
        diagnostics: pending.into_iter().map(|p| sources.resolve(p)).collect(),
    }
}
