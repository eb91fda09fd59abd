//! `check`'s view of the TLS-RPT records against `[tlsrpt]`: an `https` rua we publish that
//! names a host or path this daemon does not receive on sends reports nowhere we read.

use std::sync::Arc;

use super::diag::{At, Problems};
use super::Tlsrpt;
use crate::rua::Rua;

/// The `[tlsrpt]` receiver's hosts and path, or `None` without the section.
pub(super) struct Receiver {
    hosts: Vec<String>,
    path: String,
}

impl Receiver {
    pub(super) fn of(t: Option<&Tlsrpt>) -> Option<Receiver> {
        t.map(|t| Receiver {
            hosts: t.hosts.iter().map(|h| h.as_str().to_owned()).collect(),
            path: t.path.clone(),
        })
    }

    /// Warns for each `https` rua of `rua` that is not `https://<a [tlsrpt] host><path>`.
    /// Without `[tlsrpt]` nothing is ours to receive, and a `mailto:` goes to the MTA.
    pub(super) fn check(&self, rua: &At<Arc<[Rua]>>, problems: &mut Problems) {
        for r in rua.value.iter() {
            let Some((host, path)) = r.https_target() else {
                continue;
            };
            if !self.hosts.contains(&host) {
                problems.warn(
                    rua.at,
                    format!(
                        "rua `{r}`: {host} is not one of [tlsrpt] hosts ({}); reports sent there are not received here",
                        if self.hosts.is_empty() { "none".to_owned() } else { self.hosts.join(", ") }
                    ),
                );
            } else if path != self.path {
                problems.warn(
                    rua.at,
                    format!(
                        "rua `{r}`: path {path} is not [tlsrpt] path {}; reports sent there get 404",
                        self.path
                    ),
                );
            }
        }
    }
}
