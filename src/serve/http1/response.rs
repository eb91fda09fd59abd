//! An answer as HTTP/1.1 bytes: the status line and headers, the cached `Date`.

use std::cell::Cell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;

/// What to answer to one request, and what then.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) content_type: Option<&'static str>,
    pub(super) body: Bytes,
    pub(super) allow: Option<&'static str>,
    /// The answer's version: HTTP/1.0 to an HTTP/1.0 request, as hyper does.
    pub(super) http10: bool,
    /// False for HEAD: the same headers, no body.
    pub(super) send_body: bool,
    pub(super) keep_alive: bool,
    /// Bytes of the request that were not read (a body, the rest of an oversize head).
    pub(super) linger: bool,
    /// The length of the request head in the buffer.
    pub(super) consumed: usize,
}

impl Reply {
    /// An answer of the connection itself (a head that cannot be parsed or is too large): no
    /// body, and the connection closes.
    pub(super) fn error(status: StatusCode, consumed: usize) -> Reply {
        Reply {
            status,
            content_type: None,
            body: Bytes::new(),
            allow: None,
            http10: false,
            send_body: false,
            keep_alive: false,
            linger: true,
            consumed,
        }
    }

    pub(super) fn write_head(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.http10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        let reason = self.status.canonical_reason().unwrap_or("");
        out.extend_from_slice(reason.as_bytes());
        if let Some(t) = self.content_type {
            out.extend_from_slice(b"\r\ncontent-type: ");
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(b"\r\ncontent-length: ");
        let _ = write!(out, "{}", self.body.len());
        if let Some(allow) = self.allow {
            out.extend_from_slice(b"\r\nallow: ");
            out.extend_from_slice(allow.as_bytes());
        }
        if !self.keep_alive {
            out.extend_from_slice(b"\r\nconnection: close");
        } else if self.http10 {
            out.extend_from_slice(b"\r\nconnection: keep-alive");
        }
        out.extend_from_slice(b"\r\ndate: ");
        out.extend_from_slice(&http_date());
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// RFC 9110 §6.6.1 `Date` in IMF-fixdate, formatted once a second per thread.
pub(super) fn http_date() -> [u8; 29] {
    thread_local! {
        static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let (at, date) = cache.get();
        if at == secs {
            return date;
        }
        let mut date = [0u8; 29];
        let _ = write!(&mut date[..], "{}", httpdate::HttpDate::from(now));
        cache.set((secs, date));
        date
    })
}
