//! DNS over TCP (RFC 7766) with TSIG (RFC 8945): signed messages, pipelined on one
//! connection, answers matched by id and verified.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageVerifier, ResponseCode};
use hickory_proto::rr::RData;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ProviderError;

/// Connecting, and each exchange as a whole, are bounded: a dead server is an error, not a hang.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Queries in flight on one connection at most.
pub const PIPELINE: usize = 256;
/// Connections used at once for a large batch of queries: servers answer a connection's
/// pipelined queries largely in turn, so several connections keep a multi-threaded server busy.
pub const CONNECTIONS: usize = 4;

pub struct Wire<'a> {
    pub server: &'a str,
    /// `None` sends unsigned messages (reads of public records; see `Rfc2136::read`).
    pub signer: Option<&'a TSigner>,
}

impl Wire<'_> {
    /// Sends `messages` (ids assigned here) and returns the verified answers in the same
    /// order: pipelined, over up to [`CONNECTIONS`] connections at once for large batches.
    pub async fn exchange(
        &self,
        mut messages: Vec<Message>,
    ) -> Result<Vec<Message>, ProviderError> {
        if messages.len() <= PIPELINE {
            return self.exchange_on_one(&mut messages).await;
        }
        let per = messages.len().div_ceil(CONNECTIONS);
        let results = futures_util::future::join_all(
            messages
                .chunks_mut(per)
                .map(|chunk| self.exchange_on_one(chunk)),
        )
        .await;
        let mut out = Vec::with_capacity(messages.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    /// One connection, [`PIPELINE`] messages in flight at most.
    async fn exchange_on_one(
        &self,
        messages: &mut [Message],
    ) -> Result<Vec<Message>, ProviderError> {
        let mut stream = self.connect().await?;
        let mut out = Vec::with_capacity(messages.len());
        let base: u16 = rand::random();
        for batch in messages.chunks_mut(PIPELINE) {
            let answers =
                tokio::time::timeout(EXCHANGE_TIMEOUT, self.batch(&mut stream, batch, base))
                    .await
                    .map_err(|_| {
                        ProviderError::transient(
                            "timeout",
                            format!("{}: no answer within {EXCHANGE_TIMEOUT:?}", self.server),
                        )
                    })??;
            out.extend(answers);
        }
        Ok(out)
    }

    async fn connect(&self) -> Result<TcpStream, ProviderError> {
        let fut = TcpStream::connect(self.server);
        match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(ProviderError::transient(
                "connect",
                format!("{}: cannot connect: {e}", self.server),
            )),
            Err(_) => Err(ProviderError::transient(
                "timeout",
                format!("{}: no connection within {CONNECT_TIMEOUT:?}", self.server),
            )),
        }
    }

    async fn batch(
        &self,
        stream: &mut TcpStream,
        batch: &mut [Message],
        base: u16,
    ) -> Result<Vec<Message>, ProviderError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut verifiers: HashMap<u16, (usize, Option<MessageVerifier>)> = HashMap::new();
        let mut wire = Vec::new();
        for (i, m) in batch.iter_mut().enumerate() {
            let id = base.wrapping_add(i as u16);
            m.set_id(id);
            let verifier = match self.signer {
                Some(signer) => m
                    .finalize(signer, now)
                    .map_err(|e| ProviderError::config(format!("signing a message: {e}")))?,
                None => None,
            };
            let bytes = m
                .to_vec()
                .map_err(|e| ProviderError::config(format!("encoding a message: {e}")))?;
            let len = u16::try_from(bytes.len()).map_err(|_| {
                ProviderError::config(format!("a message of {} bytes exceeds 64 KiB", bytes.len()))
            })?;
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(&bytes);
            verifiers.insert(id, (i, verifier));
        }
        let io = |e: std::io::Error| {
            ProviderError::transient("connection", format!("{}: {e}", self.server))
        };
        stream.write_all(&wire).await.map_err(io)?;
        let mut answers: Vec<Option<Message>> = (0..batch.len()).map(|_| None).collect();
        let mut pending = batch.len();
        while pending > 0 {
            let len = stream.read_u16().await.map_err(io)?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await.map_err(io)?;
            if buf.len() < 2 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let Some((i, verifier)) = verifiers.remove(&id) else {
                continue; // not ours (or answered twice): ignore, as RFC 7766 §7 allows
            };
            answers[i] = Some(self.check(&buf, verifier)?);
            pending -= 1;
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every id answered"))
            .collect())
    }

    /// Parses an answer, turns TSIG failures into `Auth`, and verifies the signature.
    fn check(
        &self,
        buf: &[u8],
        verifier: Option<MessageVerifier>,
    ) -> Result<Message, ProviderError> {
        let message = Message::from_vec(buf).map_err(|e| {
            ProviderError::transient(
                "FORMERR",
                format!("{}: unreadable answer: {e}", self.server),
            )
        })?;
        // RFC 8945 §5.2: key and signature problems come back as NOTAUTH with a TSIG error.
        if let Some(code) = tsig_error(&message).filter(|&c| c != 0) {
            let name = match code {
                16 => "BADSIG",
                17 => "BADKEY",
                18 => "BADTIME",
                22 => "BADTRUNC",
                _ => "TSIG error",
            };
            return Err(ProviderError::Auth {
                code: name.into(),
                message: format!(
                    "{}: rejected our TSIG key: {} / {name}",
                    self.server,
                    message.response_code()
                ),
            });
        }
        if message.signature().is_empty() {
            // To a signed question, an unsigned answer is trusted only to report a failure.
            if self.signer.is_some() && message.response_code() == ResponseCode::NoError {
                return Err(ProviderError::Auth {
                    code: "unsigned".into(),
                    message: format!("{}: answered without a TSIG signature", self.server),
                });
            }
            return Ok(message);
        }
        if let Some(mut verify) = verifier {
            verify(buf).map_err(|e| ProviderError::Auth {
                code: "BADSIG".into(),
                message: format!("{}: the answer's TSIG does not verify: {e}", self.server),
            })?;
        }
        Ok(message)
    }
}

/// The TSIG error field of a signed answer: RDATA ends `… error(2) other_len(2) other`.
pub(super) fn tsig_error(message: &Message) -> Option<u16> {
    let record = message.signature().last()?;
    let RData::DNSSEC(DNSSECRData::TSIG(tsig)) = record.data() else {
        return None;
    };
    let mut bytes = Vec::new();
    tsig.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    // `other` is empty, or 6 bytes of server time on BADTIME (RFC 8945 §5.2.3).
    for other in [0usize, 6] {
        let n = bytes.len();
        if n >= other + 4 {
            let other_len = u16::from_be_bytes([bytes[n - other - 2], bytes[n - other - 1]]);
            if usize::from(other_len) == other {
                return Some(u16::from_be_bytes([
                    bytes[n - other - 4],
                    bytes[n - other - 3],
                ]));
            }
        }
    }
    None
}
