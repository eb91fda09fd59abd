//! Reports that arrive by mail (RFC 8460 §5.3): the DKIM verdict on the message and the
//! `application/tlsrpt+gzip`/`+json` parts it carries, each bounded like an HTTPS body.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use mail_parser::{MessageParser, MimeHeaders};

use super::report::Report;

/// What DKIM says about a message, as far as storing its reports goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dkim {
    /// A valid signature by the From domain (or a parent of it): `d=` domain.
    Pass(String),
    /// Not to be stored; why, for the log.
    Drop(String),
    /// The key could not be looked up now (DNS timeout, SERVFAIL): try again later.
    TempFail(String),
}

/// The DKIM verifier, asking `resolver` (else the system's resolvers) for the keys.
pub(crate) fn authenticator(resolver: Option<SocketAddr>) -> Result<MessageAuthenticator, String> {
    let mut opts = ResolverOpts::default();
    // Bounded: the MTA waits on us.
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    let r = match resolver {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            MessageAuthenticator::new(ResolverConfig::from_name_servers(vec![ns]), opts)
        }
        None => {
            let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("reading /etc/resolv.conf: {e}"))?;
            MessageAuthenticator::new(config, opts)
        }
    };
    r.map_err(|e| format!("DNS resolver: {e}"))
}

/// RFC 8460 §3: reports by mail are DKIM-signed by their submitter. A message passes when one
/// signature verifies without `l=` (mail-auth refuses those: the body could be extended) and
/// its `d=` is the From address's domain or a parent of it.
pub(crate) async fn verify(auth: &MessageAuthenticator, raw: &[u8]) -> Dkim {
    let Some(msg) = AuthenticatedMessage::parse(raw) else {
        return Dkim::Drop("not an RFC 5322 message".into());
    };
    let from_domain = msg
        .from()
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase());
    let Some(from_domain) = from_domain else {
        return Dkim::Drop("no From address".into());
    };
    if msg.dkim_headers.is_empty() && msg.errors.is_empty() {
        return Dkim::Drop("not DKIM-signed".into());
    }
    let outputs = auth.verify_dkim(&msg).await;
    let mut why = Vec::new();
    let mut temp = None;
    for o in &outputs {
        let d = o
            .signature()
            .map(|s| s.d.trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_default();
        match o.result() {
            DkimResult::Pass if aligned(&d, &from_domain) => return Dkim::Pass(d),
            DkimResult::Pass => why.push(format!(
                "signature by {d} is not aligned with From domain {from_domain}"
            )),
            DkimResult::TempError(e) => temp = Some(format!("signature by {d}: {e}")),
            DkimResult::Neutral(e) | DkimResult::Fail(e) | DkimResult::PermError(e) => {
                why.push(if d.is_empty() {
                    e.to_string()
                } else {
                    format!("signature by {d}: {e}")
                })
            }
            DkimResult::None => {}
        }
    }
    match temp {
        Some(t) => Dkim::TempFail(t),
        None => Dkim::Drop(format!("no valid DKIM signature: {}", why.join("; "))),
    }
}

/// Relaxed alignment without a public-suffix list: the signer is the From domain or one of
/// its parents (`google.com` for `mail.google.com`), never a bare top-level domain.
fn aligned(signer: &str, from: &str) -> bool {
    signer.contains('.')
        && (signer == from
            || from
                .strip_suffix(signer)
                .is_some_and(|head| head.ends_with('.')))
}

/// One report part of a message: its JSON (decompressed, UTF-8), or why it was unusable.
pub(crate) type Part = Result<(Report, String), String>;

/// The reports in `raw`: every `application/tlsrpt+gzip` or `+json` part, each at most
/// `limit` bytes once inflated. Empty when the message carries none.
pub(crate) fn reports(raw: &[u8], limit: usize) -> Vec<Part> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return vec![Err("not a MIME message".into())];
    };
    let mut out = Vec::new();
    for part in &msg.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        if !ct.c_type.eq_ignore_ascii_case("application") {
            continue;
        }
        let gzip = match ct
            .c_subtype
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("tlsrpt+gzip") => true,
            Some("tlsrpt+json") => false,
            _ => continue,
        };
        out.push(decode(part.contents(), gzip, limit));
    }
    out
}

fn decode(data: &[u8], gzip: bool, limit: usize) -> Part {
    let json = if gzip {
        let mut out = Vec::new();
        // One byte past the limit tells "too large" from "exactly the limit".
        flate2::read::MultiGzDecoder::new(data)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip: {e}"))?;
        out
    } else {
        data.to_vec()
    };
    if json.len() > limit {
        return Err(format!("over max_report_bytes ({limit}) once inflated"));
    }
    let json = String::from_utf8(json).map_err(|e| format!("not UTF-8: {e}"))?;
    let report = Report::parse(json.as_bytes()).map_err(|e| format!("malformed report: {e}"))?;
    Ok((report, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        assert!(aligned("google.com", "google.com"));
        assert!(aligned("google.com", "tls.google.com"));
        assert!(!aligned("gle.com", "google.com"));
        assert!(!aligned("mail.google.com", "google.com"));
        assert!(!aligned("com", "google.com"));
        assert!(!aligned("", "google.com"));
    }

    #[test]
    fn parts_json_gzip_bounded() {
        use std::io::Write;
        let json = std::fs::read(format!(
            "{}/tests/fixtures/tlsrpt/google.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).unwrap();
        let gz = gz.finish().unwrap();
        let b64 = |d: &[u8]| {
            use base64::Engine;
            let s = base64::engine::general_purpose::STANDARD.encode(d);
            // RFC 2045 §6.8: lines of at most 76 characters.
            s.as_bytes()
                .chunks(76)
                .map(|l| std::str::from_utf8(l).unwrap())
                .collect::<Vec<_>>()
                .join("\r\n")
        };
        let msg = format!(
            "From: r@google.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --b\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
             --b\r\nContent-Type: application/tlsrpt+json\r\n\r\n{{\"report-id\":1}}\r\n--b--\r\n",
            b64(&gz)
        );
        let parts = reports(msg.as_bytes(), 1 << 20);
        assert_eq!(parts.len(), 2, "{parts:?}");
        let (r, j) = parts[0].as_ref().unwrap();
        assert_eq!(r.organization, "Google Inc.");
        assert_eq!(j.as_bytes(), &json[..]);
        assert!(parts[1].as_ref().unwrap_err().contains("malformed report"));
        // Inflated past the limit: refused, not truncated into something parseable.
        let small = reports(msg.as_bytes(), json.len() - 1);
        assert!(small[0].as_ref().unwrap_err().contains("max_report_bytes"));
        assert!(reports(b"Subject: none\r\n\r\nbody", 100).is_empty());
    }
}
