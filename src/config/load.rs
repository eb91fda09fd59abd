//! Reading the config: the main file, then its includes in parallel (those a [`Cache`] still
//! holds unchanged are not parsed again), then resolution. Every file is bounded (SPEC "Config
//! files"): a regular file of at most [`MAX_FILE_BYTES`].

use std::collections::HashMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use toml::de::DeTable;

use super::cache::{Cache, Cached, Counts, Parsed, Resolution, Stamp};
use super::diag::{Diagnostic, Problems, Severity, Source, Sources};
use super::raw::{RawFile, Reader};
use super::{resolve, Config};

/// A config that loaded, and the warnings it had.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// A config that did not load: every problem found, errors and warnings, in file order.
#[derive(Debug)]
pub struct Failed {
    pub diagnostics: Vec<Diagnostic>,
}

impl Failed {
    pub(crate) fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }
}

pub fn load(path: &Path) -> Result<Loaded, Failed> {
    load_from(path, None, true)
}

/// Like [`load`], without reading the DNS providers' and `[alerts]` secrets (placeholders
/// stand in): for `tlsrpt ingest`, which needs `[state]`, `[tlsrpt]` (its database URL is
/// read) and the domains, and runs as a user that cannot read the TSIG key. Such a config must
/// never publish or alert.
pub(crate) fn load_without_secrets(path: &Path) -> Result<Loaded, Failed> {
    load_from(path, None, false)
}

/// Like [`load`], parsing again only the included files that changed since the last load with
/// `cache` (which then holds this load's files): the same result as [`load`], sooner.
pub(crate) fn load_cached(path: &Path, cache: &mut Cache) -> Result<Loaded, Failed> {
    load_from(path, Some(cache), true)
}

fn load_from(path: &Path, cache: Option<&mut Cache>, secrets: bool) -> Result<Loaded, Failed> {
    let mut sources = Sources::default();
    let mut problems = Problems::default();
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();

    let text = match read_bounded(path) {
        Ok((t, _)) => t,
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
    let main = read_one(main_file, &dir, true, &text, secrets);
    sources.put(main_file, Source::new(path.to_owned(), text));
    problems.0.extend(main.1 .0);
    let Some(main) = main.0 else {
        return Err(finish(&sources, problems, &[]));
    };

    let (paths, patterns) = expand_includes(&main, &dir, path, &mut problems);
    let numbers = match &cache {
        Some(c) => c.numbers(&paths),
        None => (1..=paths.len() as u32).collect(),
    };
    let view = cache.as_deref();
    let window = view.map_or(Duration::ZERO, Cache::racy_window);
    let got: Vec<Got> = paths
        .par_iter()
        .zip(numbers.par_iter())
        .map(|(p, &file)| include(p, file, view.and_then(|c| c.get(p)), window))
        .collect();

    // Problems are ordered by where their file is in the load, whatever its number.
    let mut rank = vec![0u32; numbers.iter().max().map_or(1, |&n| n as usize + 1)];
    let mut counts = Counts {
        included: paths.len(),
        ..Counts::default()
    };
    let mut parsed: Vec<Readable> = Vec::with_capacity(got.len());
    let mut keep = HashMap::new();
    for (i, ((p, &file), got)) in paths.iter().zip(&numbers).zip(got).enumerate() {
        rank[file as usize] = i as u32 + 1;
        match got {
            Got::Unreadable(e) => {
                sources.put(file, Source::new(p.clone(), String::new()));
                problems.file_error(file, format!("cannot read the included file: {e}"));
            }
            Got::Read {
                cached,
                read,
                parsed: fresh,
            } => {
                counts.read += usize::from(read);
                counts.parsed += usize::from(fresh);
                debug_assert!(cached.parsed.problems.iter().all(|pp| pp.file == file));
                sources.put(file, cached.source.clone());
                problems.0.extend(cached.parsed.problems.iter().cloned());
                if cache.is_some() {
                    parsed.push((
                        Some(p.clone()),
                        cached.parsed.clone(),
                        cached.resolved.clone(),
                    ));
                    keep.insert(p.clone(), cached);
                } else {
                    parsed.push((None, cached.parsed, None));
                }
            }
        }
    }
    let (raws, reuse): (Vec<&RawFile>, Vec<Option<&Arc<Resolution>>>) = parsed
        .iter()
        .filter_map(|(_, p, r)| Some((p.raw.as_ref()?, r.as_ref())))
        .unzip();

    let mut files = vec![path.to_owned()];
    files.extend(paths);
    let included = resolve::Included {
        files: &raws,
        reuse: &reuse,
    };
    let (config, resolutions) =
        resolve::resolve(&sources, main, included, &mut problems, files, patterns);
    if let Some(c) = cache {
        // Each file's resolution beside its parse, for the next load.
        let with_raw = parsed.iter().filter(|(_, p, _)| p.raw.is_some());
        for ((path, _, _), r) in with_raw.zip(resolutions) {
            if let Some(cached) = path.as_ref().and_then(|p| keep.get_mut(p)) {
                cached.resolved = r;
            }
        }
        c.replace(keep, counts);
    }
    match config {
        Some(config) if !problems.has_errors() => {
            let warnings = finish(&sources, problems, &rank).diagnostics;
            Ok(Loaded { config, warnings })
        }
        _ => Err(finish(&sources, problems, &rank)),
    }
}

/// A readable included file: its path (while cached), parse and last resolution.
type Readable = (Option<PathBuf>, Arc<Parsed>, Option<Arc<Resolution>>);

/// One included file, as read (or not) for one load.
enum Got {
    Unreadable(String),
    Read {
        cached: Cached,
        /// Its content was read: its metadata did not prove it unchanged.
        read: bool,
        /// It was parsed: new, or its content changed.
        parsed: bool,
    },
}

/// Reads and parses the included file `p` as file number `file`, unless `cached` is still
/// what it holds. `window`: see [`Stamp::racy`].
fn include(p: &Path, file: u32, cached: Option<&Cached>, window: Duration) -> Got {
    if let Some(c) = cached {
        if std::fs::metadata(p).is_ok_and(|m| c.unchanged(&m)) {
            return Got::Read {
                cached: c.clone(),
                read: false,
                parsed: false,
            };
        }
    }
    let (text, meta) = match read_bounded(p) {
        Ok(got) => got,
        Err(e) => return Got::Unreadable(e),
    };
    let stamp = Stamp::of(&meta);
    let racy = stamp.racy(SystemTime::now(), window);
    if let Some(c) = cached.filter(|c| c.source.text == text) {
        return Got::Read {
            cached: Cached {
                stamp,
                racy,
                ..c.clone()
            },
            read: true,
            parsed: false,
        };
    }
    let dir = p.parent().unwrap_or(Path::new("."));
    let (raw, problems) = read_one(file, dir, false, &text, true);
    Got::Read {
        cached: Cached {
            file,
            stamp,
            racy,
            source: Source::new(p.to_owned(), text),
            parsed: Arc::new(Parsed {
                raw,
                problems: problems.0,
            }),
            resolved: None,
        },
        read: true,
        parsed: true,
    }
}

/// The most a config file may hold: a million domains take about 60 MiB.
pub(super) const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a config file whole, refusing one that is not a regular file (a FIFO would block the
/// reader, `/dev/zero` never ends) or is over [`MAX_FILE_BYTES`]. Symlinks are followed; a
/// loop of them is an error too. With the text, the metadata of the file read.
fn read_bounded(path: &Path) -> Result<(String, Metadata), String> {
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
    let text = read_at_most(file, meta.len())?;
    Ok((text, meta))
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
fn read_one(
    file: u32,
    dir: &Path,
    main: bool,
    text: &str,
    secrets: bool,
) -> (Option<RawFile>, Problems) {
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
        secrets,
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

/// Problems in file order (`rank`: a file number's place in the load; the main file's is 0),
/// then by place in the file.
fn finish(sources: &Sources, problems: Problems, rank: &[u32]) -> Failed {
    let mut pending = problems.0;
    pending.sort_by_key(|p| {
        let file = rank.get(p.file as usize).copied().unwrap_or(p.file);
        (file, p.at.map_or(0, |a| a.offset))
    });
    Failed {
        diagnostics: pending.into_iter().map(|p| sources.resolve(p)).collect(),
    }
}
