//! `drift` against a real world: zone `example.org.` on two independent BIND primaries
//! (`ns1` on 127.0.0.2, `ns2` on 127.0.0.3, one port), the daemon serving the policies over
//! HTTPS with a certificate from a test CA, and the real binary's `drift` command, in both
//! formats. Each finding is provoked on purpose and seen with its severity, check and exit code;
//! every JSON report is validated against the schema README "Drift checks" documents, and the
//! text output checked line by line against it. Beside it, each in a world of its own:
//! `alerts` (a real Postfix as the MX, alerts on change only; `webhook` the same posted over
//! HTTPS), `dane` (a signed zone, TLSA as a DANE sender sees it), `dns` (how drift asks, from
//! BIND's query log), `mx` (the MX check against Postfix), `once` (a `drift` run beside
//! `serve` fires each alert once).

mod alerts;
mod canned;
mod dane;
mod dns;
mod dns_findings;
mod https_findings;
mod mx;
mod once;
mod report;
mod schema;
mod serve;
mod webhook;
mod world;
