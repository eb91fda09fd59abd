//! Ways in for the fuzz targets (`fuzz/`) and for the property tests over the same parsers:
//! any bytes in, never a panic, and what each must hold checked here, so that a fuzzer's
//! finding is a failed assertion too.
//!
//! - [`http1`]: the public listeners' HTTP/1.1 server, the real one, over an in-memory
//!   connection fed in chunks: every answer is a well-formed status line of the statuses we
//!   answer with, and a head never buffers beyond the limit unanswered.
//! - [`config`]: config loading, a main file and one include.
//! - [`drift_text`]: the policy and TXT parsers drift applies to what the world serves.
//! - [`dns_answer`]: DNS answers as drift and the RFC 2136 provider read them.
//! - [`tlsrpt_json`]: TLS-RPT report bodies as the HTTPS receiver reads them (gzip inflated
//!   within the size limit, then the JSON).
//! - [`tlsrpt_mail`]: report mails as `tlsrpt ingest` reads them (DKIM, MIME parts).
#![allow(
    clippy::expect_used,
    reason = "a failed expectation here is a fuzzer's finding, as a failed assertion is"
)]

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::live::Live;
use crate::serve::handler::{route, Head};
use crate::serve::http1::{self, Served};

/// The head limit the HTTP/1.1 target runs with (the daemon's default).
pub(crate) const MAX_HEAD: usize = 8192;
/// The statuses the policy server answers with.
const STATUSES: [u16; 7] = [200, 400, 404, 405, 421, 431, 501];

/// A connection whose client sends `input` in chunks of `chunk` bytes, then closes.
struct Feed<'a> {
    input: &'a [u8],
    chunk: usize,
    read: usize,
    out: Vec<u8>,
}

impl AsyncRead for Feed<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.chunk.min(self.input.len()).min(buf.remaining());
        let (now, rest) = self.input.split_at(n);
        buf.put_slice(now);
        self.input = rest;
        self.read += n;
        Poll::Ready(Ok(()))
    }
}

impl crate::serve::cork::Cork for Feed<'_> {}

impl AsyncWrite for Feed<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A scratch directory of this process for config files.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("mta-stsd-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a scratch directory");
        d
    })
}

/// The served state the HTTP/1.1 target routes against: `a.example`.
fn live() -> &'static Arc<Live> {
    static LIVE: OnceLock<Arc<Live>> = OnceLock::new();
    LIVE.get_or_init(|| {
        let path = scratch().join("served.toml");
        std::fs::write(
            &path,
            "[server]\nhttps = [\"127.0.0.1:0\"]\n[tls]\nself_signed = true\n\
             [policy]\nmode = \"enforce\"\nmx = [\"mail.a.example\"]\n[domains.\"a.example\"]\n",
        )
        .expect("writing the served config");
        let loaded = crate::config::load(&path).expect("the served config loads");
        Arc::new(Live::build(loaded.config, None).expect("the served state builds"))
    })
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
}

/// The first byte chooses the chunk size, TLS (an SNI) or plain (h2c allowed); the rest is
/// what the client sends.
pub fn http1(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(mode & 0x3f) * 64 + 1;
    let tls = mode & 0x40 != 0;
    let opts = http1::Options {
        max_header_bytes: MAX_HEAD,
        header_timeout: Duration::from_secs(10),
        h2c: !tls,
        max_requests: 1000,
        closes_at: tokio::time::Instant::now() + Duration::from_secs(3600),
        slot: None,
    };
    let live = live();
    let sni = tls.then_some("mta-sts.a.example");
    let mut feed = Feed {
        input,
        chunk,
        read: 0,
        out: Vec::new(),
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let served = RUNTIME.with(|rt| {
        rt.block_on(http1::serve(&mut feed, &opts, shutdown, |head| {
            route(live, &Head { sni, ..*head }).into()
        }))
    });
    if let Served::H2c(_, read) = served {
        assert!(!tls, "h2c on TLS");
        assert!(read.starts_with(b"PRI * HTTP/2.0"));
        return;
    }
    if feed.out.is_empty() {
        // Nothing answered: the head was incomplete, and never held beyond the limit.
        assert!(
            feed.read <= MAX_HEAD + chunk,
            "{} bytes read, no answer",
            feed.read
        );
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let status = match response.parse(&feed.out) {
        Ok(httparse::Status::Complete(_)) => response.code.expect("a status"),
        other => panic!("not an HTTP response ({other:?}): {:?}", feed.out),
    };
    assert!(STATUSES.contains(&status), "status {status}");
}

/// A main config file and, after the first `\0`, one it may include as `inc.toml`.
pub fn config(data: &[u8]) {
    let (main, include) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let dir = scratch();
    let main_path = dir.join("main.toml");
    std::fs::write(&main_path, main).expect("writing the main file");
    std::fs::write(dir.join("inc.toml"), include).expect("writing the include");
    match crate::config::load(&main_path) {
        // A config that exists is valid: it renders.
        Ok(loaded) => {
            for d in &loaded.config.domains {
                assert!(!d.policy.body().is_empty());
            }
        }
        Err(failed) => assert!(failed.errors().next().is_some(), "failed without an error"),
    }
}

/// The parsers drift applies to the `_mta-sts` TXT, the policy body, TXT presentation text,
/// `rua` URIs and `mx` patterns.
pub fn drift_text(data: &[u8]) {
    let _ = crate::policy::PolicyText::parse(data, crate::policy::Reading::Sender);
    let _ = crate::policy::Policy::parse(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = crate::policy::StsRecord::parse(text) {
        let id = record.id();
        assert!(!id.is_empty() && id.len() <= 32);
    }
    if let Some(parsed) = mta_stsd_providers::record::parse_txt_presentation(text) {
        // What we write, we read back the same.
        let again = mta_stsd_providers::record::txt_presentation(&parsed);
        assert_eq!(
            mta_stsd_providers::record::parse_txt_presentation(&again).as_deref(),
            Some(parsed.as_str())
        );
    }
    let _ = crate::rua::Rua::parse(text);
    let _ = crate::policy::MxPattern::parse(text);
}

/// A DNS message as drift's resolver and the RFC 2136 provider read it.
pub fn dns_answer(data: &[u8]) {
    let _ = crate::drift::dns::parse_wire(data, "_mta-sts.a.example.");
    let _ = mta_stsd_providers::rfc2136::read_wire(data);
}

/// The size limit the TLS-RPT targets read within (the real one is `max_report_bytes`).
const REPORT_LIMIT: usize = 64 * 1024;

/// A report body: the first byte says whether it is gzip, the rest is the body. What is read
/// never exceeds the limit, and a report that parses has an id and a date range in order.
pub fn tlsrpt_json(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let frame = http_body_util::Full::new(bytes::Bytes::copy_from_slice(body));
    let read = RUNTIME.with(|rt| {
        rt.block_on(crate::tlsrpt::receiver::read_body(
            frame,
            mode & 1 == 1,
            REPORT_LIMIT,
        ))
    });
    let Ok(json) = read else {
        return;
    };
    assert!(json.len() <= REPORT_LIMIT, "read {} bytes", json.len());
    if let Ok(r) = crate::tlsrpt::Report::parse(&json) {
        assert!(!r.report_id.is_empty());
    }
}

/// A report mail: its report parts each within the limit, and a DKIM verdict that is never a
/// pass, since the verifier's resolver has no servers to find a key at.
pub fn tlsrpt_mail(data: &[u8]) {
    static AUTH: OnceLock<mail_auth::MessageAuthenticator> = OnceLock::new();
    for part in crate::tlsrpt::mail::reports(data, REPORT_LIMIT)
        .into_iter()
        .flatten()
    {
        assert!(
            part.1.len() <= REPORT_LIMIT,
            "part of {} bytes",
            part.1.len()
        );
    }
    let auth = AUTH.get_or_init(|| {
        use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(1);
        opts.attempts = 0;
        mail_auth::MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![]), opts)
            .expect("a resolver without servers")
    });
    let verdict = RUNTIME.with(|rt| rt.block_on(crate::tlsrpt::mail::verify(auth, data)));
    assert!(
        !matches!(verdict, crate::tlsrpt::mail::Dkim::Pass(_)),
        "a pass without a key: {verdict:?}"
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request() -> impl Strategy<Value = Vec<u8>> {
        // Requests made of the pieces that matter, and plain noise.
        let piece = prop_oneof![
            Just(&b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n"[..]),
            Just(&b"HEAD / HTTP/1.0\r\n"[..]),
            Just(&b"Host: mta-sts.a.example\r\n"[..]),
            Just(&b"Host: mta-sts.b.example\r\n"[..]),
            Just(&b"Content-Length: 5\r\n"[..]),
            Just(&b"Transfer-Encoding: chunked\r\n"[..]),
            Just(&b"Connection: close\r\n"[..]),
            Just(&b" folded\r\n"[..]),
            Just(&b"\r\n"[..]),
            Just(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]),
        ];
        let part = prop_oneof![
            piece.prop_map(<[u8]>::to_vec),
            proptest::collection::vec(any::<u8>(), 0..64),
        ];
        (any::<u8>(), proptest::collection::vec(part, 0..24)).prop_map(|(mode, parts)| {
            let mut v = vec![mode];
            v.extend(parts.concat());
            v
        })
    }

    // Few cases: the fuzz targets run millions; these keep each parser's contract in the
    // suite at a second or two.
    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn http1_any_bytes(data in request()) {
            http1(&data);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn drift_text_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            drift_text(&data);
        }

        #[test]
        fn dns_answer_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            dns_answer(&data);
        }

        #[test]
        fn tlsrpt_json_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            tlsrpt_json(&data);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

        #[test]
        fn config_any_text(main in "[\\[\\]a-z_=\". \\n0-9*]{0,200}", inc in "[\\[\\]a-z_=\". \\n]{0,80}") {
            let mut data = format!("include = [\"inc.toml\"]\n{main}").into_bytes();
            data.push(0);
            data.extend(inc.as_bytes());
            config(&data);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

        #[test]
        fn tlsrpt_mail_any_headers(head in "[A-Za-z:=; \\-\r\n@.]{0,160}", junk in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut data = format!("{head}\r\nDKIM-Signature: v=1; a=rsa-sha256; d=a.example; s=s; h=from; bh=; b=\r\n\
                Content-Type: application/tlsrpt+json\r\n\r\n").into_bytes();
            data.extend(junk);
            tlsrpt_mail(&data);
        }
    }

    #[test]
    fn an_endless_head_is_cut_at_the_limit() {
        let mut data = vec![0x3f];
        data.extend(b"GET / HTTP/1.1\r\nX: ");
        data.extend(std::iter::repeat_n(b'a', 1 << 20));
        http1(&data);
    }
}
