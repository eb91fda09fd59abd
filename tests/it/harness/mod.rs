//! Helpers shared by the integration tests: a temporary config directory, the real
//! `mta-stsd` binary run against it, and assertions on its `file:line:col` diagnostics.

#![allow(dead_code)] // each test module uses its own subset

pub mod acme;
pub mod acme_proxy;
pub mod chromium;
pub mod cloudflare;
pub mod daemon;
pub mod db;
pub mod desec;
pub mod digitalocean;
pub mod dns;
pub mod drift;
pub mod fakeapi;
pub mod gandi;
pub mod hetzner;
pub mod moto;
pub mod ovh;
pub mod pdns;
pub mod pebble;
pub mod pgbouncer;
pub mod postfix;
pub mod postgres;
pub mod process;
pub mod resolver;
pub mod venv;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// The binary under test, built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_mta-stsd");

/// The name of the main config file in every [`ConfigDir`].
pub const MAIN: &str = "mta-stsd.toml";

/// A temporary directory holding a config (the main file is [`MAIN`]) and whatever files it
/// refers to; removed on drop.
pub struct ConfigDir {
    dir: TempDir,
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigDir {
    pub fn new() -> Self {
        ConfigDir {
            dir: tempfile::Builder::new()
                .prefix("mta-stsd-it-")
                .tempdir()
                .expect("creating a temporary directory"),
        }
    }

    /// A directory holding `text` as its main config file.
    pub fn with_config(text: &str) -> Self {
        let d = Self::new();
        d.write(MAIN, text);
        d
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The main config file, as passed to `--config` (and so as diagnostics name it).
    pub fn config_path(&self) -> PathBuf {
        self.file(MAIN)
    }

    /// `name` inside the directory, as the binary names it in diagnostics.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` (relative to the directory), creating parent directories.
    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.file(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating a directory");
        }
        std::fs::write(&path, text).expect("writing a file");
        path
    }

    /// Runs `mta-stsd --config <dir>/mta-stsd.toml <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_config(&self.config_path(), args)
    }

    /// Like [`ConfigDir::run`], with extra environment variables (`None` removes one).
    pub fn run_env(&self, args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
        let mut cmd = command();
        cmd.env("STATE_DIRECTORY", state_dir_for(&self.config_path()));
        cmd.arg("--config").arg(self.config_path()).args(args);
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        Output::of(&mut cmd)
    }

    /// Runs `mta-stsd --config mta-stsd.toml <args>` inside the directory: a relative path.
    pub fn run_relative(&self, args: &[&str]) -> Output {
        let mut cmd = command();
        cmd.env("STATE_DIRECTORY", state_dir_for(&self.config_path()));
        cmd.current_dir(self.path())
            .arg("--config")
            .arg(MAIN)
            .args(args);
        Output::of(&mut cmd)
    }

    pub fn check(&self) -> Output {
        self.run(&["check"])
    }
}

/// Each test's own `[state] dir` (the default the binary takes from `$STATE_DIRECTORY`, as
/// under systemd): `state/` beside its config, so tests never share an id history.
pub fn state_dir_for(config: &Path) -> PathBuf {
    let dir = config.parent().unwrap_or(Path::new("."));
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_owned())
        .join("state")
}

/// The binary with a clean environment as far as mta-stsd is concerned.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("MTA_STSD_CONFIG");
    cmd
}

/// Runs `mta-stsd --config <config> <args>`.
pub fn run_with_config(config: &Path, args: &[&str]) -> Output {
    let mut cmd = command();
    cmd.env("STATE_DIRECTORY", state_dir_for(config));
    cmd.arg("--config").arg(config).args(args);
    Output::of(&mut cmd)
}

/// Runs the binary with exactly `args` (no `--config` added).
pub fn run_args<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    let mut cmd = command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Output::of(&mut cmd)
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Output {
    /// The exit code; `None` if killed by a signal.
    pub status: Option<i32>,
    pub stdout_bytes: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for failure messages.
    pub cmdline: String,
}

impl Output {
    fn of(cmd: &mut Command) -> Self {
        let cmdline = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = cmd.output().expect("running mta-stsd");
        Output {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stdout_bytes: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmdline,
        }
    }

    /// Everything the run printed, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "$ {}\nexit status: {:?}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn assert_status(&self, want: i32) -> &Self {
        assert_eq!(
            self.status,
            Some(want),
            "unexpected exit status\n{}",
            self.dump()
        );
        self
    }

    /// Exit 0 and not a single error line.
    #[track_caller]
    pub fn assert_valid(&self) -> &Self {
        self.assert_status(0);
        assert_eq!(self.errors().len(), 0, "errors reported\n{}", self.dump());
        self
    }

    /// Exit 0 with nothing at all on stderr: no errors and no warnings.
    #[track_caller]
    pub fn assert_clean(&self) -> &Self {
        self.assert_status(0);
        assert_eq!(self.stderr, "", "unexpected diagnostics\n{}", self.dump());
        self
    }

    /// stderr lines that are diagnostics of this severity (`error` or `warning`).
    pub fn diagnostics(&self, severity: &str) -> Vec<&str> {
        let tag = format!(": {severity}: ");
        self.stderr.lines().filter(|l| l.contains(&tag)).collect()
    }

    pub fn errors(&self) -> Vec<&str> {
        self.diagnostics("error")
    }

    pub fn warnings(&self) -> Vec<&str> {
        self.diagnostics("warning")
    }

    /// Asserts a diagnostic line `<file>:<line>:<col>: <severity>: …<fragment>…` exists and
    /// returns it.
    #[track_caller]
    pub fn assert_diag(
        &self,
        severity: &str,
        file: &Path,
        (line, col): (usize, usize),
        fragment: &str,
    ) -> &str {
        let prefix = format!("{}:{line}:{col}: {severity}: ", file.display());
        let found = self
            .stderr
            .lines()
            .find(|l| l.starts_with(&prefix) && l[prefix.len()..].contains(fragment));
        match found {
            Some(l) => l,
            None => panic!(
                "no diagnostic `{prefix}…{fragment}…` on stderr\n{}",
                self.dump()
            ),
        }
    }

    #[track_caller]
    pub fn assert_error(&self, file: &Path, at: (usize, usize), fragment: &str) -> &str {
        self.assert_diag("error", file, at, fragment)
    }

    #[track_caller]
    pub fn assert_warning(&self, file: &Path, at: (usize, usize), fragment: &str) -> &str {
        self.assert_diag("warning", file, at, fragment)
    }

    /// Asserts that exactly `n` error lines were printed.
    #[track_caller]
    pub fn assert_error_count(&self, n: usize) -> &Self {
        assert_eq!(
            self.errors().len(),
            n,
            "wrong number of errors\n{}",
            self.dump()
        );
        self
    }
}

/// 1-based line and column (in characters) of the first occurrence of `needle` in `text`.
#[track_caller]
pub fn pos(text: &str, needle: &str) -> (usize, usize) {
    pos_nth(text, needle, 0)
}

/// Like [`pos`], for the `n`-th (0-based) occurrence.
#[track_caller]
pub fn pos_nth(text: &str, needle: &str, n: usize) -> (usize, usize) {
    let (offset, _) = text
        .match_indices(needle)
        .nth(n)
        .unwrap_or_else(|| panic!("`{needle}` (occurrence {n}) is not in the config text"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Position of `needle`, which must occur exactly once in `text`.
#[track_caller]
pub fn pos1(text: &str, needle: &str) -> (usize, usize) {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "`{needle}` must occur exactly once in the config text"
    );
    pos(text, needle)
}

/// Position of `needle` inside `context`, which must occur exactly once in `text`: for a value
/// that also occurs elsewhere, such as the `0` of `ttl = 0`.
#[track_caller]
pub fn pos_within(text: &str, context: &str, needle: &str) -> (usize, usize) {
    let (line, col) = pos1(text, context);
    let inner = context
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` is not in `{context}`"));
    assert!(
        !context[..inner].contains('\n'),
        "`{needle}` must be on the first line of `{context}`"
    );
    (line, col + context[..inner].chars().count())
}

/// A self-signed certificate for `names`, written as `<stem>.crt` and `<stem>.key` PEM files
/// into `dir`; returns the two file names relative to the directory.
pub fn write_cert(dir: &ConfigDir, stem: &str, names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("generating a certificate");
    let (cert, key) = (format!("{stem}.crt"), format!("{stem}.key"));
    dir.write(&cert, ck.cert.pem());
    dir.write(&key, ck.signing_key.serialize_pem());
    (cert, key)
}

/// A TSIG key file as `tsig-keygen -a <algorithm> <name>` writes it.
pub fn tsig_key_file(name: &str, algorithm: &str) -> String {
    format!(
        "key \"{name}\" {{\n\talgorithm {algorithm};\n\tsecret \"8rgF3Ehc0tF0r5ZSPzEdrB+ZUMN9Hh0v5QsWQ2Yzjrs=\";\n}};\n"
    )
}

/// A `/status` time (RFC 3339, UTC) as seconds since the epoch; `None` for null or anything
/// that is not such a time.
pub fn epoch(v: &serde_json::Value) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339)
            .ok()?;
    (t.offset() == time::UtcOffset::UTC).then(|| t.unix_timestamp())
}
