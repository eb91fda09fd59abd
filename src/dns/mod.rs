//! The DNS side: the records mta-stsd wants, in a model providers and zone files share.

pub mod record;
