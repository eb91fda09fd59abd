//! The DNS side: the records mta-stsd wants, the plan that brings a zone there, and the
//! providers that carry it out.

pub(crate) mod plan;
pub mod providers;
pub mod sync;

pub(crate) use mta_stsd_providers::record;
