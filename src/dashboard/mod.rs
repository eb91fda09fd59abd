//! The admin listener's HTML dashboard: `/` (every domain, paged and searchable) and
//! `/domains/<domain>` (one domain's history, records, certificate, drift and TLS reports).
//! Server-rendered from askama templates compiled into the binary (HTML escaped
//! automatically), with inline SVG and no JavaScript; the one stylesheet is inline and
//! allowed by its hash in a Content-Security-Policy that allows nothing else.

pub(crate) mod chart;
mod pages;
pub(crate) mod reports;
pub(crate) mod search;

use std::sync::OnceLock;

use askama::Template;
use base64::Engine;
use sha2::{Digest, Sha256};

pub(crate) use pages::{
    DomainPage, DriftFinding, DriftView, IndexPage, ReportsView, Row, Served, Summary,
};

/// The stylesheet, inline in every page (no second request, nothing to allow but its hash).
pub(crate) const CSS: &str = include_str!("style.css");

/// `Content-Security-Policy` for every page: nothing may load, run or be sent anywhere but
/// the inline stylesheet (by hash), `data:` images, and the search form to this origin.
pub(crate) fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
    })
}

/// Renders a page; an error here is a template bug (the types are checked at compile time).
pub(crate) fn render(page: &impl Template) -> Result<String, askama::Error> {
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_stylesheet_by_its_hash_and_nothing_else() {
        let csp = content_security_policy();
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(!csp.contains("script-src"), "{csp}");
    }
}
