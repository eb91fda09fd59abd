//! The public side: HTTPS (and plain HTTP) listeners serving each domain's policy.

pub mod conns;
pub mod devca;
pub mod handler;
pub mod http1;
pub mod idle;
pub mod listener;
pub mod tls;
