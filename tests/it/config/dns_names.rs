//! `check` cases from issue 23 item 6: names the DNS cannot hold, counting our longest
//! prefix and the delegation zone.

use super::base;
use super::table::{run, Case};
use crate::harness::{pos1, MAIN};

/// A name of `len` characters under `.org`, labels of at most 63.
fn long_domain(len: usize) -> String {
    let mut labels = Vec::new();
    let mut left = len - ".org".len();
    while left > 0 {
        let n = left.min(63);
        labels.push("x".repeat(n));
        // The next label's dot.
        left -= n;
        left = left.saturating_sub(1);
    }
    let name = format!("{}.org", labels.join("."));
    assert_eq!(name.len(), len, "{name}");
    name
}

#[test]
fn issue23_6_check_refuses_a_domain_whose_names_dns_cannot_hold() {
    // `_smtp._tls.` (11) + 242 characters = 253 characters: 255 octets, the most DNS holds.
    let fits = long_domain(242);
    let over = long_domain(243);
    let text = base(&format!("\n[domains.\"{fits}\"]\n\n[domains.\"{over}\"]\n"));
    let at = pos1(&text, &format!("\"{over}\""));
    let delegated = long_domain(230);
    let del_text = base(&format!(
        "\n[delegation]\nzone = \"sts.provider.example\"\n\n[domains.\"{delegated}\"]\ndelegated = true\n"
    ));
    let del_at = pos1(&del_text, &format!("\"{delegated}\""));
    run(vec![
        Case::new("longest_name_counts_the_tlsrpt_prefix", &text).error(
            MAIN,
            at,
            "is 256 octets in DNS, over the limit of 255 (RFC 1035 §2.3.4); with `_smtp._tls.` a domain has at most 242 characters",
        ),
        Case::new("a_delegated_domain_counts_the_delegation_zone", &del_text).error(
            MAIN,
            del_at,
            "with `_smtp._tls.` and the [delegation] zone `sts.provider.example` a domain has at most 221 characters",
        ),
        Case::new(
            "the_longest_that_fits_is_accepted",
            base(&format!("\n[domains.\"{fits}\"]\n")),
        ),
    ]);
}
