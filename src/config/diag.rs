//! Config problems with their place: `file:line:col: severity: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Severity {
    Error,
    Warning,
}

/// One problem found while loading the config, with its place in a file when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub(crate) severity: Severity,
    pub(crate) file: Arc<Path>,
    /// 1-based line and column (in characters); absent when the file itself is the problem.
    pub position: Option<(u32, u32)>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.position {
            Some((line, col)) => write!(
                f,
                "{}:{line}:{col}: {severity}: {}",
                self.file.display(),
                self.message
            ),
            None => write!(f, "{}: {severity}: {}", self.file.display(), self.message),
        }
    }
}

/// A place in a loaded file: the file's index in [`Sources`] and a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) file: u32,
    pub(crate) offset: u32,
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub(crate) value: T,
    pub(crate) at: Loc,
}

/// A problem not yet turned into line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) severity: Severity,
    pub(crate) at: Option<Loc>,
    pub(crate) file: u32,
    pub message: String,
}

/// Collects problems while a file or the whole config is read.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Pending>);

impl Problems {
    pub(super) fn error(&mut self, at: Loc, message: impl Into<String>) {
        self.push(Severity::Error, at, message.into());
    }

    pub(super) fn warn(&mut self, at: Loc, message: impl Into<String>) {
        self.push(Severity::Warning, at, message.into());
    }

    /// A problem with the file as a whole (unreadable, say).
    pub(super) fn file_error(&mut self, file: u32, message: impl Into<String>) {
        self.0.push(Pending {
            severity: Severity::Error,
            at: None,
            file,
            message: message.into(),
        });
    }

    fn push(&mut self, severity: Severity, at: Loc, message: String) {
        self.0.push(Pending {
            severity,
            at: Some(at),
            file: at.file,
            message,
        });
    }

    pub(super) fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }
}

/// The files read for one config, kept until problems have their line and column. Indexed
/// by the file number in each [`Loc`]; an included file kept by the reload cache keeps its
/// number (and its text, shared) across loads.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub(crate) files: Vec<Arc<Source>>,
}

#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) path: Arc<Path>,
    pub(crate) text: String,
    /// Byte offsets where lines start, built on the first lookup: positions of many
    /// problems in one big file cost a binary search each, not a scan from the start.
    line_starts: std::sync::OnceLock<Vec<u32>>,
}

impl Source {
    pub(crate) fn new(path: PathBuf, text: String) -> Arc<Source> {
        Arc::new(Source {
            path: path.into(),
            text,
            line_starts: Default::default(),
        })
    }

    fn line_col(&self, offset: usize) -> (u32, u32) {
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(
                    self.text
                        .bytes()
                        .enumerate()
                        .filter(|&(_, b)| b == b'\n')
                        .map(|(i, _)| i as u32 + 1),
                )
                .collect()
        });
        let offset = offset.min(self.text.len());
        let line = starts.partition_point(|&s| s as usize <= offset);
        let start = starts[line - 1] as usize;
        let col = String::from_utf8_lossy(&self.text.as_bytes()[start..offset])
            .chars()
            .count()
            + 1;
        (line as u32, col as u32)
    }
}

impl Sources {
    pub(super) fn add(&mut self, path: PathBuf, text: String) -> u32 {
        self.files.push(Source::new(path, text));
        (self.files.len() - 1) as u32
    }

    /// Puts `source` at number `file`; numbers not (yet) given hold an empty placeholder.
    pub(super) fn put(&mut self, file: u32, source: Arc<Source>) {
        let i = file as usize;
        while self.files.len() <= i {
            self.files.push(Source::new(PathBuf::new(), String::new()));
        }
        self.files[i] = source;
    }

    pub(super) fn loc(file: u32, span: &Range<usize>) -> Loc {
        Loc {
            file,
            offset: span.start as u32,
        }
    }

    /// `file:line:col`, to name another place in a message.
    pub(super) fn place(&self, at: Loc) -> String {
        let source = &self.files[at.file as usize];
        let (line, col) = source.line_col(at.offset as usize);
        format!("{}:{line}:{col}", source.path.display())
    }

    pub(super) fn resolve(&self, pending: Pending) -> Diagnostic {
        let source = &self.files[pending.file as usize];
        let position = pending.at.map(|at| source.line_col(at.offset as usize));
        Diagnostic {
            severity: pending.severity,
            file: source.path.clone(),
            position,
            message: pending.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_in_characters() {
        let mut sources = Sources::default();
        let text = "a = 1\nbé = \"x\"\n";
        sources.add(PathBuf::from("f"), text.to_owned());
        let s = &sources.files[0];
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(5), (1, 6));
        assert_eq!(s.line_col(6), (2, 1));
        let eq = text.find(" = \"").unwrap() + 1;
        assert_eq!(s.line_col(eq), (2, 4));
        assert_eq!(s.line_col(text.len()), (3, 1));
    }
}
