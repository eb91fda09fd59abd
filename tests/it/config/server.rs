//! `check` cases on `[server]`'s connection bounds (issue 23 item 1): each must be positive,
//! and a lifetime must leave room for a request.

use super::base;
use super::table::{run, Case};
use crate::harness::{pos1, pos_within, MAIN};

#[test]
fn check_cases_connection_bounds() {
    run(vec![
        {
            let text = base(
                "\n[server]\nmin_body_rate = 0\nmax_requests_per_connection = -3\nbody_grace = \"0s\"\n\
                 \n[domains.\"example.org\"]\n",
            );
            Case::new("bounds_must_be_positive", &text)
                .error(
                    MAIN,
                    pos_within(&text, "min_body_rate = 0", "0"),
                    "`min_body_rate` must be a positive number",
                )
                .error(
                    MAIN,
                    pos1(&text, "-3"),
                    "`max_requests_per_connection` must be a positive number",
                )
                .error(MAIN, pos1(&text, "\"0s\""), "`body_grace`")
        },
        {
            // The defaults give a request 10 s for the handshake and 10 s for its head.
            let text = base(
                "\n[server]\nmax_connection_lifetime = \"15s\"\n\n[domains.\"example.org\"]\n",
            );
            Case::new("a_lifetime_shorter_than_a_request_may_take", &text).error(
                MAIN,
                pos1(&text, "\"15s\""),
                "`max_connection_lifetime` (15s) must be longer than handshake_timeout + header_timeout (20s)",
            )
        },
        {
            let text = base(
                "\n[server]\nmin_body_rate = 512\nbody_grace = \"30s\"\n\
                 max_connection_lifetime = \"10m\"\nmax_requests_per_connection = 100\n\
                 \n[domains.\"example.org\"]\n",
            );
            Case::new("sensible_bounds_pass", &text)
        },
    ]);
}
