//! One function per command; errors become messages and exit codes here and nowhere else.

mod dane;
mod docs;
mod ingest;
mod progress;
mod records;
mod reports;
mod status;
mod sync;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{self, Config, Domain};
use crate::name;

#[derive(Debug, Parser)]
#[command(name = "mta-stsd", version, about, long_about = None)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "MTA_STSD_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: serve every policy over HTTPS, reload on change (and SIGHUP).
    Serve {
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate the config: every problem as file:line:col (exit 0 valid, 1 invalid).
    Check,
    /// Print the exact policy body served for DOMAIN; its id goes to stderr as `id: <id>`.
    Policy {
        /// The mail domain (`mta-sts.` prefix, case and a trailing dot are ignored).
        domain: String,
    },
    /// Print the DNS records the config wants, in zone-file syntax (all domains by default).
    Records {
        /// Only these domains.
        domains: Vec<String>,
        /// text: zone-file lines with notes; bind: a zone-file fragment per zone ($ORIGIN,
        /// relative names); json; octodns: its YAML zone file; dnscontrol: D_EXTEND() calls.
        #[arg(long, value_enum, default_value_t = records::RecordsFormat::Text)]
        format: records::RecordsFormat,
    },
    /// Show the DNS changes `apply` would make; changes nothing (exit 0 none, 2 pending, 1 error).
    Plan(SyncArgs),
    /// Make DNS match the config and print what changed (exit 0 done, 1 error).
    Apply(SyncArgs),
    /// Every policy DOMAIN has served (id, first and last served) and where a removed domain
    /// is in its retirement, from the id history in `[state] dir`.
    History {
        domain: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check what senders see against the config (exit 0 OK, 1 warning, 2 critical, 3 could not check).
    Drift {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also list the checks that passed, with what each looked at.
        #[arg(long)]
        verbose: bool,
        /// Check only these domains (the others keep their previous findings).
        domains: Vec<String>,
    },
    /// Ask the running daemon how it is (exit 0 fine, 1 warnings, 2 errors, 3 not reachable).
    Status {
        /// The admin listener to ask; default: `[server] admin` of the config.
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
        /// Only this domain (needed above 1,000 domains, where /status lists none).
        #[arg(long, value_name = "DOMAIN")]
        domain: Option<String>,
        /// `text`: a summary; `json`: /status as the daemon served it.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The stored TLS reports (RFC 8460) per domain and day, and for a domain in `testing`
    /// whether they show it is ready for `enforce`.
    Reports {
        /// Only these domains (default: every domain with reports).
        domains: Vec<String>,
        /// From this UTC day on (YYYY-MM-DD); default: the last 30 days.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// TLS reports (RFC 8460) received by mail.
    Tlsrpt {
        #[command(subcommand)]
        command: TlsrptCommand,
    },
    /// Print shell completions on stdout: `mta-stsd completions bash > /etc/bash_completion.d/mta-stsd`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout: `mta-stsd man | man -l -`.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum TlsrptCommand {
    /// Store the report mail on stdin (an MTA pipe transport): DKIM-verified, exit 0 stored,
    /// duplicate or dropped (logged), 75 (EX_TEMPFAIL) when it should be retried.
    Ingest,
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// Only this domain (repeatable); its zone's other domains are left alone.
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(config_path: &Path, command: Command) -> Result<u8> {
    match command {
        Command::Serve { log_format } => {
            init_logging(log_format);
            crate::daemon::run(config_path)
        }
        Command::Check => check(config_path),
        Command::Policy { domain } => policy(config_path, &domain),
        Command::Records { domains, format } => records::records(config_path, &domains, format),
        Command::Plan(a) => sync::run(config_path, false, &a.domains, a.format),
        Command::Apply(a) => sync::run(config_path, true, &a.domains, a.format),
        Command::Drift {
            format,
            verbose,
            domains,
        } => drift(config_path, format, verbose, &domains),
        Command::History { domain, format } => history(config_path, &domain, format),
        Command::Status {
            admin,
            domain,
            format,
        } => Ok(status::run(config_path, admin, domain.as_deref(), format)),
        Command::Reports {
            domains,
            since,
            format,
        } => reports::run(config_path, &domains, since.as_deref(), format),
        Command::Tlsrpt {
            command: TlsrptCommand::Ingest,
        } => Ok(ingest::run(config_path)),
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            docs::completions(shell, &mut out).and_then(|()| out.flush())?;
            Ok(0)
        }
        Command::Man => {
            let mut out = std::io::stdout().lock();
            docs::man(&mut out).and_then(|()| out.flush())?;
            Ok(0)
        }
    }
}

fn check(path: &Path) -> Result<u8> {
    let mut err = std::io::BufWriter::new(std::io::stderr().lock());
    match config::load(path) {
        Ok(loaded) => {
            print_warnings(&mut err, &loaded.warnings)?;
            err.flush()?;
            let c = &loaded.config;
            let dane = dane::check(c)?;
            for w in &dane.warnings {
                writeln!(err, "warning: {w}")?;
            }
            for e in &dane.errors {
                writeln!(err, "error: {e}")?;
            }
            if !dane.errors.is_empty() {
                writeln!(
                    err,
                    "{}: invalid: {}",
                    path.display(),
                    plural(dane.errors.len(), "error")
                )?;
                err.flush()?;
                return Ok(1);
            }
            err.flush()?;
            println!(
                "{}: ok: {}, {}, {}, {}",
                path.display(),
                plural(c.domains.len(), "domain"),
                plural(c.providers.len(), "provider"),
                plural(c.files.len(), "file"),
                plural(loaded.warnings.len() + dane.warnings.len(), "warning")
            );
            // What each provider guarantees against a concurrent writer (README's table).
            for (name, p) in &c.providers {
                let guarantee = match crate::dns::providers::build(p) {
                    Ok(built) => built.consistency().as_str().to_owned(),
                    Err(e) => format!("cannot be set up: {e}"),
                };
                println!("provider {name}: {}, {guarantee}", p.kind.kind());
            }
            Ok(0)
        }
        Err(failed) => {
            // Every error is printed; warnings are summarized like `print_warnings` does.
            let (errors, warnings): (Vec<_>, Vec<_>) = failed
                .diagnostics
                .into_iter()
                .partition(|d| d.severity == config::Severity::Error);
            for d in &errors {
                writeln!(err, "{d}")?;
            }
            print_warnings(&mut err, &warnings)?;
            writeln!(
                err,
                "{}: invalid: {}",
                path.display(),
                plural(errors.len(), "error")
            )?;
            err.flush()?;
            Ok(1)
        }
    }
}

/// How many places one warning is shown at before the rest are counted.
const SAME_WARNING_SHOWN: usize = 5;

/// Warnings, each message at its first few places then a count: a hosting provider with
/// 50,000 domains in `testing` needs one reminder, not 50,000.
fn print_warnings(out: &mut impl Write, warnings: &[config::Diagnostic]) -> std::io::Result<()> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for w in warnings {
        let n = seen.entry(w.message.as_str()).or_default();
        *n += 1;
        if *n <= SAME_WARNING_SHOWN {
            writeln!(out, "{w}")?;
        }
    }
    let mut more: Vec<(&str, usize)> = seen
        .into_iter()
        .filter(|&(_, n)| n > SAME_WARNING_SHOWN)
        .collect();
    more.sort();
    for (message, n) in more {
        writeln!(
            out,
            "note: {} more places with the warning: {message}",
            n - SAME_WARNING_SHOWN
        )?;
    }
    Ok(())
}

/// Loads the config for a command that needs a valid one; errors only, warnings are `check`'s.
pub(super) fn load_valid(path: &Path) -> Result<Config, u8> {
    config::load(path).map(|l| l.config).map_err(|failed| {
        for d in failed.errors() {
            eprintln!("{d}");
        }
        eprintln!("{}: invalid config; run `mta-stsd check`", path.display());
        1
    })
}

fn find<'c>(config: &'c Config, asked: &str) -> Option<&'c Domain> {
    config
        .domain(&name::domain_of_host(asked)?)
        .or_else(|| config.domain(&asked.trim_end_matches('.').to_ascii_lowercase()))
}

/// The domains `asked` for, each once, in the order asked; all of them when none is asked.
pub(super) fn select<'c>(config: &'c Config, asked: &[String]) -> Result<Vec<&'c Domain>, u8> {
    if asked.is_empty() {
        return Ok(config.domains.iter().collect());
    }
    let mut selected: Vec<&Domain> = Vec::new();
    for a in asked {
        match find(config, a) {
            Some(d) if selected.iter().any(|s| s.name == d.name) => {}
            Some(d) => selected.push(d),
            None => {
                eprintln!("mta-stsd: `{a}` is not a configured domain");
                return Err(1);
            }
        }
    }
    Ok(selected)
}

/// `1 error`, `2 errors`: the words used here take an `s`.
fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn policy(path: &Path, asked: &str) -> Result<u8> {
    let config = match load_valid(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(domain) = find(&config, asked) else {
        eprintln!("mta-stsd: `{asked}` is not a configured domain");
        return Ok(1);
    };
    let mut out = std::io::stdout().lock();
    out.write_all(domain.policy.body())
        .and_then(|()| out.flush())
        .context("writing the policy")?;
    eprintln!("id: {}", domain.policy.id());
    Ok(0)
}

/// Structured logs on stderr; `RUST_LOG` filters (default `info`).
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// How long a hand-run `drift` waits for a round of `serve` under way.
const DRIFT_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

/// `drift`: every check once; the exit code follows the monitoring-plugin convention.
fn drift(path: &Path, format: Format, verbose: bool, domains: &[String]) -> Result<u8> {
    let config = match load_valid(path) {
        // Not a config problem for monitoring: "could not check".
        Err(_) => return Ok(3),
        Ok(c) => c,
    };
    let only: Option<std::collections::BTreeSet<String>> = (!domains.is_empty()).then(|| {
        domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect()
    });
    if let Some(unknown) = only.iter().flatten().find(|d| config.domain(d).is_none()) {
        eprintln!("{unknown} is not a domain of the config");
        return Ok(3);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stats = crate::alerts::Stats::default();
    let ran = runtime.block_on(async {
        let store =
            crate::state::store::Store::open(&crate::lifecycle::store_target(&config.state))
                .await
                .map_err(crate::drift::NotRun::Store)?;
        // A round of `serve` under way ends first: its findings are this run's previous ones,
        // so each finding alerts once, whoever sees it first.
        crate::drift::run_tracked(
            &config,
            only.as_ref(),
            &store,
            crate::drift::Take::Wait(DRIFT_WAIT),
            &stats,
            false,
            verbose,
        )
        .await
    });
    let report = match ran {
        Ok(r) => r,
        Err(crate::drift::NotRun::Held) => {
            eprintln!("mta-stsd: a drift round of another process still runs after {DRIFT_WAIT:?}; try again later");
            return Ok(3);
        }
        Err(crate::drift::NotRun::Store(e)) => {
            eprintln!("mta-stsd: {e}");
            return Ok(3);
        }
    };
    if stats.failed.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        let why = stats
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        eprintln!("alerts: {}", why.unwrap_or_default());
    }
    let text = match format {
        Format::Text => report.text(),
        Format::Json => report.json(),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(report.exit_code)
}

/// `history DOMAIN`: read from the state directory, never written.
fn history(path: &Path, asked: &str, format: Format) -> Result<u8> {
    let config = match load_valid(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let name = asked.trim_end_matches('.').to_ascii_lowercase();
    let name = name.strip_prefix("mta-sts.").unwrap_or(&name);
    let history = crate::state::store::read_domain_history_blocking(
        &crate::lifecycle::store_target(&config.state),
        name,
    )
    .with_context(|| format!("reading the id history in {}", config.state.dir.display()))?;
    let Some(h) = history.domain(name) else {
        eprintln!(
            "mta-stsd: no history for `{name}` in {}",
            config.state.dir.display()
        );
        return Ok(1);
    };
    let text = match format {
        Format::Text => crate::state::show::text(name, h, &history),
        Format::Json => {
            serde_json::to_string_pretty(&crate::state::show::json(name, h, &history))? + "\n"
        }
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(0)
}
