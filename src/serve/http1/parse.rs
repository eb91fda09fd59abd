//! The request head, parsed: what to answer (or to hand to hyper), from the bytes alone.

use std::mem::MaybeUninit;

use http::StatusCode;

use super::response::Reply;
use super::Route;
use crate::serve::handler::Head;

/// As hyper: a request with more header fields gets 431.
const MAX_HEADERS: usize = 100;

/// A parsed head's outcome.
pub(super) enum Step {
    Reply(Reply),
    Hyper,
}

/// Parses the request head at the start of `buf` and answers it; `None` while it is
/// incomplete. `stopping`: the daemon is shutting down, so this is the connection's last answer.
pub(super) fn step<R>(buf: &[u8], max_head: usize, route: &R, stopping: bool) -> Option<Step>
where
    R: Fn(&Head<'_>) -> Route,
{
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Some(Step::Reply(Reply::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                buf.len(),
            )))
        }
        Ok(httparse::Status::Partial) if buf.len() < max_head => return None,
        Ok(httparse::Status::Partial) => {
            return Some(Step::Reply(Reply::error(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                buf.len(),
            )))
        }
        // A bad token, header or version (HTTP/2.0 in a request line, say): 400 as hyper.
        Err(_) => {
            return Some(Step::Reply(Reply::error(
                StatusCode::BAD_REQUEST,
                buf.len(),
            )))
        }
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Some(Step::Reply(Reply::error(
            StatusCode::BAD_REQUEST,
            buf.len(),
        )));
    };
    let http10 = version == 0;

    let mut hosts = 0;
    let mut host = None;
    let mut forwarded = None;
    let mut content_length = None;
    let mut chunked_or_other_coding = false;
    let mut close = false;
    let mut keep_alive_asked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = visible_ascii(h.value);
        } else if h.name.eq_ignore_ascii_case("x-forwarded-host") {
            forwarded = Some(h.value);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match (content_length_of(h.value), content_length) {
                (Some(n), None) => content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                // Invalid, or differing lengths: the message cannot be framed (RFC 9112 §6.3).
                _ => {
                    return Some(Step::Reply(Reply::error(
                        StatusCode::BAD_REQUEST,
                        buf.len(),
                    )))
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked_or_other_coding = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_asked |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let has_body = chunked_or_other_coding || content_length.is_some_and(|n| n > 0);
    let (authority, path) = split_target(target);
    // RFC 9112 §3.2.2: an absolute-form target's authority is the host; §3.2: a repeated or
    // invalid Host is an error.
    let host = match (hosts, authority) {
        (2.., _) => None,
        (_, Some(authority)) => authority,
        _ => host,
    };
    let head = Head {
        method,
        path,
        host,
        has_body,
        sni: None,
        forwarded_host: crate::serve::handler::forwarded_host(forwarded.into_iter()),
    };
    let a = match route(&head) {
        Route::Answer(a) => a,
        Route::Hyper => return Some(Step::Hyper),
    };
    let keep_alive = !close && (!http10 || keep_alive_asked) && !has_body && !stopping;
    Some(Step::Reply(Reply {
        status: a.status,
        content_type: Some(a.content_type),
        body: a.body,
        allow: a.allow,
        http10,
        send_body: method != "HEAD",
        keep_alive,
        linger: has_body,
        consumed: len,
    }))
}

/// The authority (`Some(None)`: an empty one) and the path of a request target; query strings
/// are not part of routing. Targets in asterisk- or authority-form have no path we serve.
fn split_target(target: &str) -> (Option<Option<&str>>, &str) {
    let path_of = |s: &str| -> usize { s.find(['?', '#']).unwrap_or(s.len()) };
    if target.starts_with('/') {
        return (None, &target[..path_of(target)]);
    }
    if let Some((scheme, rest)) = target.split_once("://") {
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if scheme_ok {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = Some(&rest[..end]).filter(|a| !a.is_empty());
            let path = &rest[end..];
            let path = &path[..path_of(path)];
            return (Some(authority), if path.is_empty() { "/" } else { path });
        }
    }
    (None, "")
}

/// A header value as text when it is visible ASCII (as `http::HeaderValue::to_str`).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// `Content-Length`: digits, or a list of equal ones (RFC 9110 §8.6).
fn content_length_of(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::POLICY_PATH;

    #[test]
    fn targets() {
        let p = POLICY_PATH;
        assert_eq!(split_target(p), (None, p));
        assert_eq!(split_target("/a?b#c"), (None, "/a"));
        assert_eq!(
            split_target("HTTPS://h.example:443/a?b"),
            (Some(Some("h.example:443")), "/a")
        );
        assert_eq!(
            split_target("http://h.example"),
            (Some(Some("h.example")), "/")
        );
        assert_eq!(
            split_target("http://h.example?x"),
            (Some(Some("h.example")), "/")
        );
        assert_eq!(split_target("http:///a"), (Some(None), "/a"));
        assert_eq!(split_target("*"), (None, ""));
        assert_eq!(split_target("h.example:443"), (None, ""));
        assert_eq!(content_length_of(b"12"), Some(12));
        assert_eq!(content_length_of(b"3, 3"), Some(3));
        assert_eq!(content_length_of(b"3, 4"), None);
        assert_eq!(content_length_of(b"-1"), None);
        assert_eq!(content_length_of(b"99999999999999999999"), None);
    }
}
