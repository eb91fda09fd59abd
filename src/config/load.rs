//! Reading the config: the main file, then its includes in parallel, then resolution. Every
//! file is bounded (SPEC "Config files"): a regular file of at most [`MAX_FILE_BYTES`].

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
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

    let text = match read_bounded(path) {
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
            match read_bounded(p) {
                Ok(text) => {
                    let d = p.parent().unwrap_or(Path::new("."));
                    let (raw, probs) = read_one(file, d, false, &text);
                    (Ok(text), raw, probs)
                }
                Err(e) => (Err(e), None, Problems::default()),
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

/// The most a config file may hold: a million domains take about 60 MiB.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a config file whole, refusing one that is not a regular file (a FIFO would block the
/// reader, `/dev/zero` never ends) or is over [`MAX_FILE_BYTES`]. Symlinks are followed; a
/// loop of them is an error too.
fn read_bounded(path: &Path) -> Result<String, String> {
    check_file(&std::fs::metadata(path).map_err(|e| e.to_string())?)?;
    // Non-blocking: should a FIFO replace the file after the check, opening it does not wait
    // for a writer; the check is repeated on what was opened.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    check_file(&meta)?;
    read_at_most(file, meta.len())
}

fn read_at_most(file: File, expected: u64) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(expected.min(MAX_FILE_BYTES) as usize);
    // One byte more than allowed shows a file that grew past the bound while being read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| "stream did not contain valid UTF-8".to_owned())
}

fn check_file(meta: &Metadata) -> Result<(), String> {
    let t = meta.file_type();
    let what = if t.is_file() {
        return if meta.len() > MAX_FILE_BYTES {
            Err(too_large())
        } else {
            Ok(())
        };
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "of an unknown kind"
    };
    Err(format!("not a regular file but {what}"))
}

fn too_large() -> String {
    format!("larger than {} MiB", MAX_FILE_BYTES >> 20)
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
            // Anything that exists is read, so that what it is (a FIFO, a loop of symlinks)
            // is reported by name rather than as a missing file.
            let missing = matches!(
                std::fs::metadata(&full),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            ) && std::fs::symlink_metadata(&full).is_err();
            if missing {
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
                // Directories are skipped; anything else that matches is read (and refused by
                // name if it is no regular file), never silently left out.
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .filter(|p| !p.is_dir())
                    .collect();
                found.sort();
                if found.is_empty() {
                    // Often a typo; the pattern stays watched, so a file added later is read.
                    problems.warn(
                        pattern.at,
                        format!(
                            "include `{}` matches no file (yet): nothing is read from it",
                            pattern.value
                        ),
                    );
                }
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
