//! What DNS publication has done per domain: written by the publisher, read by `/status`,
//! the dashboard and the metrics.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PubState {
    Pending,
    Published,
    Failed,
}

impl PubState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PubState::Pending => "pending",
            PubState::Published => "published",
            PubState::Failed => "failed",
        }
    }
}

/// One domain's publication, as `/status` shows it.
#[derive(Debug, Clone)]
pub(crate) struct DomainPublication {
    pub provider: String,
    pub zone: Option<String>,
    pub state: PubState,
    /// The policy id in the TXT record we last published.
    pub published_id: Option<String>,
    pub last_published: Option<u64>,
    pub last_error: Option<String>,
    pub conflicts: Vec<String>,
    pub attempts: u32,
    pub next_retry: Option<u64>,
    /// When the records were last read back and found (or made) as desired.
    pub last_read: Option<u64>,
    /// The hash of the desired records last seen, and of those last published.
    pub(super) desired: u64,
    pub(super) published: Option<u64>,
}

/// Every domain with a provider, by name.
#[derive(Debug, Default)]
pub(crate) struct Publication {
    pub domains: HashMap<String, DomainPublication>,
}
