//! AWS Signature Version 4 for header-signed requests, over ring's HMAC-SHA256 and SHA-256
//! (no AWS SDK: `aws-sigv4` brings the smithy runtime crates for ~150 lines of work).
//!
//! The steps are those of AWS's "Create a signed AWS API request" (IAM user guide): a
//! canonical request, a string to sign over its hash, a key derived from the secret through
//! the date, region and service, and an `Authorization` header. Tested against AWS's published
//! signature test suite (`get-vanilla`, `post-vanilla`, …).

use std::time::{SystemTime, UNIX_EPOCH};

use ring::{digest, hmac};

use crate::Secret;

/// An access key: the id, its secret, and for temporary credentials the session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// What is signed of a request: `path` absolute and unencoded, `query` as pairs (unencoded),
/// `headers` the ones to sign beside `host` and `x-amz-*` (lowercase names).
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The headers to add to the request: `x-amz-date`, `x-amz-security-token` when there is a
/// session token, and `authorization`. `amz_date` is `YYYYMMDDTHHMMSSZ` ([`amz_date`]).
pub fn sign(
    credentials: &Credentials,
    region: &str,
    service: &str,
    amz_date: &str,
    request: &Request<'_>,
) -> Vec<(&'static str, String)> {
    let mut added = vec![("x-amz-date", amz_date.to_owned())];
    if let Some(token) = &credentials.session_token {
        added.push(("x-amz-security-token", token.expose().to_owned()));
    }
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .chain([("host".to_owned(), request.host.to_owned())])
        .chain(added.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .map(|(k, v)| (k, collapse(&v)))
        .collect();
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical = canonical_request(request, &headers, &signed_headers);
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let secret = format!("AWS4{}", credentials.secret_access_key.expose());
    let key = [date, region, service, "aws4_request"]
        .iter()
        .fold(secret.into_bytes(), |key, part| {
            mac(&key, part.as_bytes()).as_ref().to_vec()
        });
    let signature = hex(mac(&key, to_sign.as_bytes()).as_ref());
    added.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    added
}

/// The canonical request: method, URI, query, headers, signed headers, payload hash.
fn canonical_request(
    request: &Request<'_>,
    headers: &[(String, String)],
    signed_headers: &str,
) -> String {
    // Each segment encoded once, then (as every service but S3 wants) the whole path again.
    let path: String = request
        .path
        .split('/')
        .map(|s| encode(&encode(s)))
        .collect::<Vec<_>>()
        .join("/");
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let mut query: Vec<(String, String)> = request
        .query
        .iter()
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let header_lines: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    format!(
        "{}\n{path}\n{query}\n{header_lines}\n{signed_headers}\n{}",
        request.method,
        hex(digest::digest(&digest::SHA256, request.payload).as_ref())
    )
}

fn mac(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// Header values trimmed, inner runs of spaces as one.
fn collapse(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SigV4's URI encoding: every octet but `A-Za-z0-9-._~` as `%XX` (uppercase hex).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDDTHHMMSSZ` in UTC, the `x-amz-date` form.
pub fn amz_date(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials, time, region and service of AWS's SigV4 test suite
    /// (aws-sig-v4-test-suite, every case's `context.json`).
    fn suite(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: token.map(|t| Secret::new(t.into())),
        }
    }

    fn authorization(
        credentials: &Credentials,
        method: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> String {
        let request = Request {
            method,
            host: "example.amazonaws.com",
            path: "/",
            query,
            headers,
            payload,
        };
        let added = sign(
            credentials,
            "us-east-1",
            "service",
            "20150830T123600Z",
            &request,
        );
        added
            .into_iter()
            .find(|(k, _)| *k == "authorization")
            .map(|(_, v)| v)
            .expect("an authorization header")
    }

    const SCOPE: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ";

    /// AWS's published `.authz` of each case, byte for byte.
    #[test]
    fn aws_signature_test_suite() {
        let plain = suite(None);
        let cases: &[(&str, String, &str)] = &[
            (
                "get-vanilla",
                authorization(&plain, "GET", &[], &[], b""),
                "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "post-vanilla",
                authorization(&plain, "POST", &[], &[], b""),
                "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            (
                "get-vanilla-query-order-key-case",
                authorization(&plain, "GET", &[("Param2", "value2"), ("Param1", "value1")], &[], b""),
                "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            (
                "post-vanilla-query",
                authorization(&plain, "POST", &[("Param1", "value1")], &[], b""),
                "SignedHeaders=host;x-amz-date, Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
            ),
            (
                "post-x-www-form-urlencoded",
                authorization(
                    &plain,
                    "POST",
                    &[],
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    b"Param1=value1",
                ),
                "SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
            ),
            (
                "get-vanilla-with-session-token",
                authorization(
                    &suite(Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267")),
                    "GET",
                    &[],
                    &[],
                    b"",
                ),
                "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(*got, format!("{SCOPE}{want}"), "{name}");
        }
    }

    #[test]
    fn session_token_is_sent() {
        let request = Request {
            method: "GET",
            host: "h",
            path: "/",
            query: &[],
            headers: &[],
            payload: b"",
        };
        let added = sign(&suite(Some("tok")), "r", "s", "20150830T123600Z", &request);
        assert!(added.contains(&("x-amz-security-token", "tok".into())));
    }

    #[test]
    fn dates() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(at), "20150830T123600Z");
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let leap = UNIX_EPOCH + std::time::Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(amz_date(leap), "20000229T000000Z");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("_mta-sts.a.example.org."), "_mta-sts.a.example.org.");
        assert_eq!(encode("a b/c~*"), "a%20b%2Fc~%2A");
    }
}
