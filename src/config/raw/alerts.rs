//! The `[alerts]` table: a webhook (URL inline, or from a file or the environment, since it
//! often carries a token) and/or a command run with each event on stdin.

use std::collections::HashMap;

use mta_stsd_providers::Secret;
use toml::de::DeTable;

use super::{Item, Reader};
use crate::config::diag::At;
use crate::config::Alerts;

const KEYS: &[&str] = &["webhook", "webhook_env", "webhook_file", "command"];

impl Reader<'_> {
    pub(super) fn alerts(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> Option<Alerts> {
        let at = self.at(item.span());
        let mut alerts = Alerts::default();
        let mut ok = true;
        let mut source: HashMap<&str, At<&str>> = HashMap::new();
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match kname {
                "webhook" | "webhook_env" | "webhook_file" => match self.string(kname, v) {
                    Some(s) => {
                        source.insert(kname, s);
                    }
                    None => ok = false,
                },
                "command" => match self.string(kname, v) {
                    Some(s) => alerts.command = self.readable(s.value, s.at),
                    None => ok = false,
                },
                _ => {
                    self.unknown("[alerts]", k, KEYS);
                    ok = false;
                }
            }
        }
        if source.len() > 1 {
            self.problems.error(
                at,
                "[alerts]: give one of `webhook`, `webhook_env`, `webhook_file`",
            );
            return None;
        }
        if let Some(inline) = source.remove("webhook") {
            alerts.webhook = Some(Secret::new(inline.value.to_owned()));
        } else if !source.is_empty() {
            alerts.webhook = Some(self.secret(&source, "webhook", "[alerts]", at)?);
        }
        if let Some(url) = &alerts.webhook {
            if !url.expose().starts_with("https://") || url.expose().parse::<http::Uri>().is_err() {
                // The URL itself is not repeated: it may hold a token.
                self.problems
                    .error(at, "[alerts] webhook must be an https:// URL");
                ok = false;
            }
        }
        if alerts.webhook.is_none() && alerts.command.is_none() {
            self.problems.error(
                at,
                "[alerts] needs `webhook` (or webhook_env/webhook_file) or `command`",
            );
            ok = false;
        }
        ok.then_some(alerts)
    }
}
