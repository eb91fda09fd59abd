//! `reports [DOMAIN…] [--since DATE]`: the stored TLS reports per domain and day, read from the
//! store `[tlsrpt]` names (never written, besides creating an empty one).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::Format;
use crate::tlsrpt::store::{utc_day, Store};
use crate::tlsrpt::summary;

/// Without `--since`: the last 30 days.
const DEFAULT_DAYS: i64 = 30;

pub(super) fn run(
    path: &Path,
    asked: &[String],
    since: Option<&str>,
    format: Format,
) -> Result<u8> {
    let config = match super::load_valid(path) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(tlsrpt) = config.tlsrpt.as_ref() else {
        eprintln!("mta-stsd: {} has no [tlsrpt] section", path.display());
        return Ok(1);
    };
    let since = match since {
        Some(s) => {
            match time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")) {
                Ok(_) => s.to_owned(),
                Err(_) => {
                    eprintln!("mta-stsd: --since {s:?} is not a date (YYYY-MM-DD)");
                    return Ok(1);
                }
            }
        }
        None => utc_day(crate::clock::unix_now() as i64 - DEFAULT_DAYS * 86_400),
    };
    let domains: Vec<String> = asked
        .iter()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let backend = crate::tlsrpt::backend(tlsrpt, &config.state)
        .with_context(|| format!("creating {}", config.state.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (days, failures) = runtime.block_on(async {
        let store = Store::open(&backend).await?;
        Ok::<_, crate::tlsrpt::store::StoreError>((
            store.days(&domains, &since).await?,
            store.failures(&domains, &since).await?,
        ))
    })?;
    let in_config = |d: &str| {
        config
            .domain(d)
            .map(|d| (d.policy.mode.as_str().to_owned(), d.policy.id().to_string()))
    };
    let today = utc_day(crate::clock::unix_now() as i64);
    let out = summary::build(&days, &failures, in_config, &domains, &today);
    let text = match format {
        Format::Text => summary::text(&out, &since),
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({ "since": since, "domains": out }))?
                + "\n"
        }
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(0)
}
