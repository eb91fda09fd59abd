//! The `[alerts]` table: a webhook (URL inline, or from a file or the environment, since it
//! often carries a token) and/or a command run with each event on stdin.

use std::collections::HashMap;

use mta_stsd_providers::Secret;
use toml::de::DeTable;

use super::keys::keys;
use super::{Item, Reader};
use crate::config::diag::At;
use crate::config::Alerts;

keys! {
    /// `[alerts]` keys.
    enum Key {
        Webhook = "webhook",
        WebhookEnv = "webhook_env",
        WebhookFile = "webhook_file",
        Command = "command",
    }
}

impl Reader<'_> {
    pub(super) fn alerts(&mut self, table: &DeTable<'_>, item: &Item<'_>) -> Option<Alerts> {
        let at = self.at(item.span());
        let mut alerts = Alerts::default();
        let mut ok = true;
        let mut source: HashMap<&str, At<&str>> = HashMap::new();
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            match Key::of(kname) {
                Some(Key::Webhook | Key::WebhookEnv | Key::WebhookFile) => {
                    match self.string(kname, v) {
                        Some(s) => {
                            source.insert(kname, s);
                        }
                        None => ok = false,
                    }
                }
                Some(Key::Command) => match self.string(kname, v) {
                    Some(s) => alerts.command = self.readable(s.value, s.at),
                    None => ok = false,
                },
                None => {
                    self.unknown("[alerts]", k, Key::ALL);
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
        if let Some(inline) = source.remove(Key::Webhook.name()) {
            alerts.webhook = Some(Secret::new(inline.value.to_owned()));
        } else if !source.is_empty() {
            alerts.webhook = Some(self.provider_secret(&source, "webhook", "[alerts]", at)?);
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
