//! The public side: HTTPS (and plain HTTP) listeners serving each domain's policy.
//!
//! Serve sees the daemon only through [`Site`] (what answering reads) and the [`Respond`]
//! services the daemon hands in for what it does not answer itself (admin, report uploads).

pub(crate) mod body;
pub(crate) mod conns;
pub(crate) mod cork;
pub(crate) mod devca;
pub(crate) mod handler;
pub(crate) mod http1;
pub(crate) mod idle;
pub(crate) mod linger;
pub(crate) mod listener;
pub(crate) mod rewind;
pub(crate) mod tls;

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body_util::Full;

use crate::acme::AcmeState;
use crate::live::Live;
use crate::metrics::Metrics;

/// What the public listeners read, and nothing else of the daemon's: the live snapshot, the
/// certificates beside the configured ones (self-signed, ACME, whose challenges it answers
/// too) and the counters. The daemon writes them; serve only reads and counts.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub live: Arc<ArcSwap<Live>>,
    pub self_signed: Arc<tls::SelfSigned>,
    pub acme: Arc<AcmeState>,
    pub metrics: Arc<Metrics>,
}

/// A service the daemon hands the listeners: the admin endpoints, the TLS-RPT receiver.
pub(crate) type Respond =
    Arc<dyn Fn(Request<body::Body>) -> BoxFuture<'static, Response<Full<Bytes>>> + Send + Sync>;
