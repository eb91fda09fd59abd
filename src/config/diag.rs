//! Config problems with their place: `file:line:col: severity: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found while loading the config, with its place in a file when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Arc<Path>,
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
    pub file: u32,
    pub offset: u32,
}

/// A value and where it was written.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub value: T,
    pub at: Loc,
}

/// A problem not yet turned into line and column.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub severity: Severity,
    pub at: Option<Loc>,
    pub file: u32,
    pub message: String,
}

/// Collects problems while a file or the whole config is read.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Pending>);

impl Problems {
    pub fn error(&mut self, at: Loc, message: impl Into<String>) {
        self.push(Severity::Error, at, message.into());
    }

    pub fn warn(&mut self, at: Loc, message: impl Into<String>) {
        self.push(Severity::Warning, at, message.into());
    }

    /// A problem with the file as a whole (unreadable, say).
    pub fn file_error(&mut self, file: u32, message: impl Into<String>) {
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

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }
}

/// The files read for one config, kept until problems have their line and column.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub files: Vec<Source>,
}

#[derive(Debug)]
pub(crate) struct Source {
    pub path: Arc<Path>,
    pub text: String,
}

impl Sources {
    pub fn add(&mut self, path: PathBuf, text: String) -> u32 {
        self.files.push(Source {
            path: path.into(),
            text,
        });
        (self.files.len() - 1) as u32
    }

    pub fn loc(file: u32, span: &Range<usize>) -> Loc {
        Loc {
            file,
            offset: span.start as u32,
        }
    }

    /// `file:line:col`, to name another place in a message.
    pub fn place(&self, at: Loc) -> String {
        let source = &self.files[at.file as usize];
        let (line, col) = line_col(&source.text, at.offset as usize);
        format!("{}:{line}:{col}", source.path.display())
    }

    pub fn resolve(&self, pending: Pending) -> Diagnostic {
        let source = &self.files[pending.file as usize];
        let position = pending
            .at
            .map(|at| line_col(&source.text, at.offset as usize));
        Diagnostic {
            severity: pending.severity,
            file: source.path.clone(),
            position,
            message: pending.message,
        }
    }
}

fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line as u32, col as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        let eq = text.find(" = \"").unwrap() + 1;
        assert_eq!(line_col(text, eq), (2, 4));
    }
}
