//! Paging and search over the live snapshot's domains, which the config keeps sorted by name:
//! a page is a slice of that list, a prefix search two binary searches, a substring search
//! one pass that keeps only the page it shows. Nothing is copied but the page.

/// Rows on one page.
pub(crate) const PAGE: usize = 50;

/// The longest search text taken (a domain name has at most 253 bytes).
const MAX_QUERY: usize = 253;

/// How the search text is matched against a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    Prefix,
    Substring,
}

/// What `/` was asked: `?q=TEXT&match=prefix|substring&page=N` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Query {
    pub text: String,
    pub how: Match,
    pub page: usize,
}

impl Query {
    /// From a query string; unknown keys are ignored, bad values fall back to the defaults.
    pub(crate) fn parse(query: Option<&str>) -> Query {
        let mut q = Query {
            text: String::new(),
            how: Match::Substring,
            page: 1,
        };
        // What an HTML form with `method=get` sends.
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "q" => {
                    // Names are stored lowercase without a trailing dot.
                    let v = v.trim().trim_end_matches('.').to_ascii_lowercase();
                    q.text = v.chars().take(MAX_QUERY).collect();
                }
                "match" if v == "prefix" => q.how = Match::Prefix,
                "page" => q.page = v.parse().ok().filter(|&p| p > 0).unwrap_or(1),
                _ => {}
            }
        }
        q
    }
}

/// One page of the domains a query matches.
#[derive(Debug)]
pub(crate) struct Selection<'a, T> {
    pub rows: Vec<&'a T>,
    /// Every domain the query matches (the page count follows from it).
    pub matches: usize,
    /// The page shown: the one asked, or the last one when it asked past the end.
    pub page: usize,
    pub pages: usize,
}

/// The page of `domains` (sorted by `name`) that `q` asks for.
pub(crate) fn select<'a, T>(
    domains: &'a [T],
    name: impl Fn(&T) -> &str,
    q: &Query,
) -> Selection<'a, T> {
    let (range, matches) = match q.how {
        _ if q.text.is_empty() => (0..domains.len(), domains.len()),
        Match::Prefix => {
            let p = q.text.as_str();
            let start = domains.partition_point(|d| name(d) < p);
            let len = domains[start..].partition_point(|d| name(d).starts_with(p));
            (start..start + len, len)
        }
        Match::Substring => {
            let pages = |n: usize| n.div_ceil(PAGE).max(1);
            // One pass with one searcher: count every match, keep the asked page's (or, past
            // the end, the last page's).
            let finder = memchr::memmem::Finder::new(q.text.as_bytes());
            let mut rows = Vec::with_capacity(PAGE);
            let mut last = Vec::with_capacity(PAGE);
            let mut n = 0;
            let skip = (q.page - 1).saturating_mul(PAGE);
            for d in domains {
                if finder.find(name(d).as_bytes()).is_none() {
                    continue;
                }
                if n >= skip && rows.len() < PAGE {
                    rows.push(d);
                }
                if n % PAGE == 0 {
                    last.clear();
                }
                last.push(d);
                n += 1;
            }
            if rows.is_empty() {
                rows = last;
            }
            return Selection {
                rows,
                matches: n,
                page: q.page.min(pages(n)),
                pages: pages(n),
            };
        }
    };
    let pages = matches.div_ceil(PAGE).max(1);
    let page = q.page.min(pages);
    let start = range.start + (page - 1) * PAGE;
    let end = (start + PAGE).min(range.end);
    Selection {
        rows: domains[start..end].iter().collect(),
        matches,
        page,
        pages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i:04}.example")).collect()
    }

    fn ask(q: &str, all: &[String]) -> (Vec<String>, usize, usize, usize) {
        let s = select(all, |n| n.as_str(), &Query::parse(Some(q)));
        let rows = s.rows.iter().map(|n| n.to_string()).collect();
        (rows, s.matches, s.page, s.pages)
    }

    #[test]
    fn pages_prefix_and_substring() {
        let all = names(1000);
        let (rows, matches, page, pages) = ask("", &all);
        assert_eq!((rows.len(), matches, page, pages), (PAGE, 1000, 1, 20));
        assert_eq!(rows[0], "d0000.example");
        let (rows, ..) = ask("page=3", &all);
        assert_eq!(rows[0], "d0100.example");
        // Past the end: the last page.
        let (rows, _, page, _) = ask("page=99", &all);
        assert_eq!((rows[0].as_str(), page), ("d0950.example", 20));
        // Prefix: d01xx, 100 names on two pages; case and a trailing dot are ignored.
        let (rows, matches, _, pages) = ask("q=D01&match=prefix&page=2", &all);
        assert_eq!(
            (rows[0].as_str(), matches, pages),
            ("d0150.example", 100, 2)
        );
        // Substring "99": d0099, d0199, …, d0990…d0999 and d0x99: 19 names.
        let (rows, matches, ..) = ask("q=99", &all);
        assert_eq!(matches, 19);
        assert!(rows.iter().all(|r| r.contains("99")), "{rows:?}");
        // Substring past the end keeps the last page's rows.
        let (rows, matches, page, _) = ask("q=0&page=7", &all);
        assert_eq!((matches, page), (1000, 7));
        assert_eq!(rows[0], "d0300.example");
        let (rows, matches, page, pages) = ask("q=.example&page=40", &all);
        assert_eq!((rows.len(), matches, page, pages), (PAGE, 1000, 20, 20));
        assert_eq!(rows[0], "d0950.example");
        let (rows, matches, page, pages) = ask("q=nothing", &all);
        assert_eq!((rows.len(), matches, page, pages), (0, 0, 1, 1));
    }

    #[test]
    fn queries_parse_as_a_form_sends_them() {
        let q = Query::parse(Some("q=Example.ORG.+&match=prefix&page=x&other=1"));
        assert_eq!(
            q,
            Query {
                text: "example.org".into(),
                how: Match::Prefix,
                page: 1
            }
        );
        let q = Query::parse(Some("q=%3Cb%3E&page=0"));
        assert_eq!(
            (q.text.as_str(), q.how, q.page),
            ("<b>", Match::Substring, 1)
        );
        assert_eq!(
            Query::parse(Some(&format!("q={}", "a".repeat(400))))
                .text
                .len(),
            MAX_QUERY
        );
    }
}
