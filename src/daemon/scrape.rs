//! The gauges `/metrics` sets as it is scraped, from state the daemon holds anyway: counting
//! then costs one pass per scrape, never one per change on the paths that change it.

use super::context::Daemon;
use super::publication::PubState;

/// Sets the publication-state and report-store gauges before the registry is encoded.
pub(crate) fn update(shared: &Daemon) {
    let m = &shared.metrics;
    let mut counts = [
        (PubState::Published, 0),
        (PubState::Pending, 0),
        (PubState::Failed, 0),
    ];
    {
        let publication = shared.publication();
        for p in publication.domains.values() {
            if let Some(c) = counts.iter_mut().find(|(s, _)| *s == p.state) {
                c.1 += 1;
            }
        }
    }
    // Every state is set, zeros included: an alert on `failed` sees 0, not no series.
    for (state, n) in counts {
        m.domains_by_publication_state(state.as_str(), n);
    }
    let live = shared.live.load();
    let store = live.config.tlsrpt.as_ref().map(|t| {
        if crate::tlsrpt::on_postgres(t, &live.config.state) {
            "postgresql"
        } else {
            "sqlite"
        }
    });
    m.tlsrpt_store_up(store, shared.reports.get().is_some());
}
