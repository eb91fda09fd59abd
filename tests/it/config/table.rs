//! The shape of every `check` case: a config (and the files beside it) written, `check` run,
//! its exact errors and warnings expected at their `file:line:col`, then maybe further commands
//! and what they print. [`run`] runs a table of them and names every case that failed, not only
//! the first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::{write_cert, ConfigDir, Output};

use super::{parse_zone, Rr};

/// `{dir}` in a case's expected texts stands for its config directory.
const DIR: &str = "{dir}";

/// One `check` case.
pub struct Case {
    pub name: &'static str,
    /// The main config file, `mta-stsd.toml`.
    pub config: String,
    /// Written before the run.
    pub files: Vec<File>,
    /// Variables set (`Some`) or removed (`None`) for every run of the case.
    pub env: Vec<(&'static str, Option<&'static str>)>,
    /// Run from the config's directory with `--config mta-stsd.toml`, so diagnostics name the
    /// files as given (relative) instead of under the directory.
    pub relative: bool,
    /// Exactly these errors; none means exit 0, else exit 1.
    pub errors: Vec<Diag>,
    /// Exactly these warnings. With no errors and no warnings, stderr must be empty.
    pub warnings: Vec<Diag>,
    /// What `check`'s stdout and stderr must (not) hold.
    pub output: Vec<Out>,
    /// Further commands on the same directory, after `check`.
    pub then: Vec<Then>,
}

impl Case {
    pub fn new(name: &'static str, config: impl Into<String>) -> Self {
        Case {
            name,
            config: config.into(),
            files: Vec::new(),
            env: Vec::new(),
            relative: false,
            errors: Vec::new(),
            warnings: Vec::new(),
            output: Vec::new(),
            then: Vec::new(),
        }
    }

    pub fn file(mut self, path: &'static str, text: impl Into<String>) -> Self {
        self.files.push(File::Text(path, text.into(), None));
        self
    }

    /// A file with these permission bits (`chmod`), as an operator leaves a key.
    pub fn file_mode(mut self, path: &'static str, text: impl Into<String>, mode: u32) -> Self {
        self.files.push(File::Text(path, text.into(), Some(mode)));
        self
    }

    /// A self-signed certificate for `names`, as `<stem>.crt` and `<stem>.key`.
    pub fn cert(mut self, stem: &'static str, names: &'static [&'static str]) -> Self {
        self.files.push(File::Cert(stem, names));
        self
    }

    pub fn env(mut self, var: &'static str, value: Option<&'static str>) -> Self {
        self.env.push((var, value));
        self
    }

    pub fn relative(mut self) -> Self {
        self.relative = true;
        self
    }

    /// An error in `file` at `at` whose line holds `text`.
    pub fn error(
        mut self,
        file: &'static str,
        at: (usize, usize),
        text: impl Into<String>,
    ) -> Self {
        self.errors.push(Diag::new(file, at, text));
        self
    }

    /// An error whose line also holds `more` (a path, a first place).
    pub fn error_naming(
        mut self,
        file: &'static str,
        at: (usize, usize),
        text: impl Into<String>,
        more: impl Into<String>,
    ) -> Self {
        let mut d = Diag::new(file, at, text);
        d.naming = Some(more.into());
        self.errors.push(d);
        self
    }

    pub fn warning(
        mut self,
        file: &'static str,
        at: (usize, usize),
        text: impl Into<String>,
    ) -> Self {
        self.warnings.push(Diag::new(file, at, text));
        self
    }

    pub fn output(mut self, out: Out) -> Self {
        self.output.push(out);
        self
    }

    /// Then `args` exits `status` and its stdout passes every one of `outs`.
    pub fn then(mut self, args: &'static [&'static str], status: i32, outs: Vec<Out>) -> Self {
        self.then.push(Then { args, status, outs });
        self
    }
}

pub enum File {
    Text(&'static str, String, Option<u32>),
    Cert(&'static str, &'static [&'static str]),
}

/// A diagnostic expected at `file:line:col`, its line holding `text` (and `naming`).
pub struct Diag {
    pub file: &'static str,
    pub at: (usize, usize),
    pub text: String,
    pub naming: Option<String>,
}

impl Diag {
    fn new(file: &'static str, at: (usize, usize), text: impl Into<String>) -> Self {
        Diag {
            file,
            at,
            text: text.into(),
            naming: None,
        }
    }
}

/// A check of a command's stdout (and, for [`Out::Hidden`], its stderr).
pub enum Out {
    Is(String),
    Has(String),
    EndsWith(String),
    /// Neither stdout nor stderr holds this (a secret).
    Hidden(&'static str),
    /// stdout is a valid zone file (hickory's parser) with records at exactly these names.
    ZoneNames(Vec<&'static str>),
    /// stdout is a valid zone file holding this record.
    ZoneHas(Rr),
}

pub struct Then {
    pub args: &'static [&'static str],
    pub status: i32,
    pub outs: Vec<Out>,
}

/// Assertions made over all cases run so far, printed by [`run`].
static ASSERTIONS: AtomicUsize = AtomicUsize::new(0);

fn counted() {
    ASSERTIONS.fetch_add(1, Ordering::Relaxed);
}

/// `{dir}` replaced by the case's directory.
fn in_dir(text: &str, d: &ConfigDir) -> String {
    text.replace(DIR, &d.path().display().to_string())
}

impl Case {
    fn path(&self, d: &ConfigDir, file: &str) -> PathBuf {
        match self.relative {
            true => PathBuf::from(file),
            false => d.file(file),
        }
    }

    fn run_one(&self) {
        let d = ConfigDir::with_config(&self.config);
        for f in &self.files {
            match f {
                File::Text(path, text, mode) => {
                    let p = d.write(path, text);
                    if let Some(mode) = mode {
                        std::fs::set_permissions(
                            &p,
                            std::os::unix::fs::PermissionsExt::from_mode(*mode),
                        )
                        .unwrap();
                    }
                }
                File::Cert(stem, names) => {
                    write_cert(&d, stem, names);
                }
            }
        }
        let out = match self.relative {
            true => d.run_relative(&["check"]),
            false => d.run_env(&["check"], &self.env),
        };
        if self.errors.is_empty() && self.warnings.is_empty() {
            out.assert_clean();
            counted();
            counted();
        } else {
            out.assert_status(if self.errors.is_empty() { 0 } else { 1 });
            counted();
            for (severity, diags) in [("error", &self.errors), ("warning", &self.warnings)] {
                for diag in diags {
                    let line = out.assert_diag(
                        severity,
                        &self.path(&d, diag.file),
                        diag.at,
                        &in_dir(&diag.text, &d),
                    );
                    counted();
                    if let Some(more) = &diag.naming {
                        let more = in_dir(more, &d);
                        assert!(
                            line.contains(&more),
                            "the {severity} does not name `{more}`\n{}",
                            out.dump()
                        );
                        counted();
                    }
                }
                assert_eq!(
                    out.diagnostics(severity).len(),
                    diags.len(),
                    "wrong number of {severity}s\n{}",
                    out.dump()
                );
                counted();
            }
        }
        for o in &self.output {
            assert_out(o, &out, &d);
        }
        for then in &self.then {
            let out = d.run_env(then.args, &self.env);
            out.assert_status(then.status);
            counted();
            for o in &then.outs {
                assert_out(o, &out, &d);
            }
        }
    }
}

#[track_caller]
fn assert_out(o: &Out, out: &Output, d: &ConfigDir) {
    let ok = match o {
        Out::Is(want) => out.stdout == in_dir(want, d),
        Out::Has(want) => out.stdout.contains(&in_dir(want, d)),
        Out::EndsWith(want) => out.stdout.ends_with(&in_dir(want, d)),
        Out::Hidden(secret) => !out.stdout.contains(secret) && !out.stderr.contains(secret),
        Out::ZoneNames(want) => {
            let names: Vec<String> = parse_zone(&out.stdout)
                .into_iter()
                .map(|r| r.name)
                .collect();
            names == *want
        }
        Out::ZoneHas(want) => parse_zone(&out.stdout).contains(want),
    };
    let what = match o {
        Out::Is(w) => format!("stdout is {w:?}"),
        Out::Has(w) => format!("stdout holds {w:?}"),
        Out::EndsWith(w) => format!("stdout ends with {w:?}"),
        Out::Hidden(w) => format!("{w:?} printed nowhere"),
        Out::ZoneNames(w) => format!("records at exactly {w:?}"),
        Out::ZoneHas(w) => format!("a record {w:?}"),
    };
    assert!(ok, "expected {what}\n{}", out.dump());
    counted();
}

/// Runs every case (a few at a time, each on its own thread named after it) and fails naming
/// every case that failed, each with its message.
pub fn run(cases: Vec<Case>) {
    const AT_ONCE: usize = 4;
    let total = cases.len();
    let mut failed = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "two cases named {}", c.name);
    }
    for chunk in cases.chunks(AT_ONCE) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|c| {
                    let h = std::thread::Builder::new()
                        .name(c.name.to_owned())
                        .spawn_scoped(s, || c.run_one())
                        .expect("spawning a case thread");
                    (c.name, h)
                })
                .collect();
            for (name, h) in handles {
                if let Err(panic) = h.join() {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failed.push(format!("--- {name}:\n{msg}"));
                }
            }
        });
    }
    eprintln!(
        "{total} cases, {} assertions so far in this process",
        ASSERTIONS.load(Ordering::Relaxed)
    );
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// The warning a secret file written as tests write files (mode 644) gets.
pub fn world_readable(name: &str) -> String {
    format!(
        "secret file {} is readable by every user (mode 644)",
        in_case_dir(name)
    )
}

/// Where a path of a case's directory is, for texts: `{dir}/<name>`.
pub fn in_case_dir(name: &str) -> String {
    format!("{DIR}/{name}")
}
