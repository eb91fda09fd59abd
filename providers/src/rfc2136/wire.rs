//! DNS over TCP (RFC 7766) with TSIG (RFC 8945): signed messages, pipelined on one
//! connection, answers matched by id and verified.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType, TSigVerifier, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ProviderError;

/// Connecting, and the wait for each answer, are bounded: a dead server is an error, not a hang.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Up to this many messages go on one connection; more are spread over [`CONNECTIONS`].
pub const PIPELINE: usize = 256;
/// Messages written on one connection before their answers are all in: below 65,536, as their
/// ids must differ.
pub const WINDOW: usize = 16_384;
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

    /// One connection: every message written while the answers are read, so the server is
    /// never idle waiting for us; in windows of [`WINDOW`] messages, as ids must be unique
    /// among those in flight.
    async fn exchange_on_one(
        &self,
        messages: &mut [Message],
    ) -> Result<Vec<Message>, ProviderError> {
        let mut stream = self.connect().await?;
        let mut out = Vec::with_capacity(messages.len());
        let base: u16 = rand::random();
        for window in messages.chunks_mut(WINDOW) {
            out.extend(self.window(&mut stream, window, base).await?);
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

    async fn window(
        &self,
        stream: &mut TcpStream,
        window: &mut [Message],
        base: u16,
    ) -> Result<Vec<Message>, ProviderError> {
        let now = unix_now();
        let mut verifiers: HashMap<u16, (usize, Option<TSigVerifier>)> = HashMap::new();
        let mut wire = Vec::new();
        for (i, m) in window.iter_mut().enumerate() {
            let id = base.wrapping_add(i as u16);
            m.metadata.id = id;
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
        let timeout = || {
            ProviderError::transient(
                "timeout",
                format!("{}: no answer within {EXCHANGE_TIMEOUT:?}", self.server),
            )
        };
        let (mut rd, mut wr) = stream.split();
        let write = async {
            wr.write_all(&wire).await.map_err(io)?;
            Ok::<(), ProviderError>(())
        };
        let read = async {
            let mut answers: Vec<Option<Message>> = (0..window.len()).map(|_| None).collect();
            let mut pending = window.len();
            while pending > 0 {
                // Bounded per answer: a dead server is an error, a long window is not.
                let buf = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
                    let len = rd.read_u16().await?;
                    let mut buf = vec![0u8; usize::from(len)];
                    rd.read_exact(&mut buf).await?;
                    Ok::<_, std::io::Error>(buf)
                })
                .await
                .map_err(|_| timeout())?
                .map_err(io)?;
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
            Ok::<_, ProviderError>(answers)
        };
        let ((), answers) = tokio::try_join!(write, read)?;
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every id answered"))
            .collect())
    }

    /// Parses an answer, turns TSIG failures into `Auth`, and verifies the signature.
    fn check(&self, buf: &[u8], verifier: Option<TSigVerifier>) -> Result<Message, ProviderError> {
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
                    self.server, message.response_code
                ),
            });
        }
        if message.signature.is_none() {
            // To a signed question, an unsigned answer is trusted only to report a failure.
            if self.signer.is_some() && message.response_code == ResponseCode::NoError {
                return Err(ProviderError::Auth {
                    code: "unsigned".into(),
                    message: format!("{}: answered without a TSIG signature", self.server),
                });
            }
            return Ok(message);
        }
        if let Some(mut verifier) = verifier {
            verifier.verify(buf).map_err(|e| ProviderError::Auth {
                code: "BADSIG".into(),
                message: format!("{}: the answer's TSIG does not verify: {e}", self.server),
            })?;
        }
        Ok(message)
    }
}

/// The TSIG error field of a signed answer (RFC 8945 §4.2): 0 when there is none.
pub(super) fn tsig_error(message: &Message) -> Option<u16> {
    let tsig = &message.signature.as_ref()?.data;
    Some(tsig.error.map_or(0, u16::from))
}

/// The time signed into a TSIG record (RFC 8945 §4.2: seconds since 1970).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A zone transfer's outcome.
pub enum Transfer {
    /// The zone's records that `keep` chose, and how many records it has in all.
    Records {
        kept: Vec<hickory_proto::rr::Record>,
        size: usize,
    },
    /// Stopped past the limit, after `seen` records.
    TooLarge { seen: usize },
    /// Not given: REFUSED, NOTAUTH or NOTIMP (the key may not transfer), or messages left
    /// unsigned, which RFC 8945 §5.3.1 allows but we do not verify.
    Declined,
}

/// A transfer as a whole; large zones take longer than one exchange.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

impl Wire<'_> {
    /// AXFR (RFC 5936) of `zone` on one connection, stopped past `limit` records; every
    /// message's TSIG verified in sequence (RFC 8945 §5.3.1).
    pub async fn transfer(
        &self,
        zone: &Name,
        limit: usize,
        keep: impl FnMut(&hickory_proto::rr::Record) -> bool,
    ) -> Result<Transfer, ProviderError> {
        tokio::time::timeout(TRANSFER_TIMEOUT, self.transfer_inner(zone, limit, keep))
            .await
            .map_err(|_| {
                ProviderError::transient(
                    "timeout",
                    format!(
                        "{}: zone transfer not done within {TRANSFER_TIMEOUT:?}",
                        self.server
                    ),
                )
            })?
    }

    async fn transfer_inner(
        &self,
        zone: &Name,
        limit: usize,
        mut keep: impl FnMut(&hickory_proto::rr::Record) -> bool,
    ) -> Result<Transfer, ProviderError> {
        let id: u16 = rand::random();
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(zone.clone(), RecordType::AXFR));
        let now = unix_now();
        let mut verifier = match self.signer {
            Some(signer) => m
                .finalize(signer, now)
                .map_err(|e| ProviderError::config(format!("signing a message: {e}")))?,
            None => None,
        };
        let bytes = m
            .to_vec()
            .map_err(|e| ProviderError::config(format!("encoding a message: {e}")))?;
        let io = |e: std::io::Error| {
            ProviderError::transient("connection", format!("{}: {e}", self.server))
        };
        let mut stream = self.connect().await?;
        let mut wire = (bytes.len() as u16).to_be_bytes().to_vec();
        wire.extend_from_slice(&bytes);
        stream.write_all(&wire).await.map_err(io)?;
        let (mut kept, mut size, mut soas) = (Vec::new(), 0usize, 0);
        loop {
            let len = stream.read_u16().await.map_err(io)?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await.map_err(io)?;
            let message = Message::from_vec(&buf).map_err(|e| {
                ProviderError::transient(
                    "FORMERR",
                    format!("{}: unreadable transfer message: {e}", self.server),
                )
            })?;
            if message.id != id {
                continue;
            }
            let rcode = message.response_code;
            if matches!(
                rcode,
                ResponseCode::Refused | ResponseCode::NotAuth | ResponseCode::NotImp
            ) {
                return Ok(Transfer::Declined);
            }
            if rcode != ResponseCode::NoError {
                return Err(ProviderError::transient(
                    "transfer",
                    format!("{}: zone transfer answered {rcode}", self.server),
                ));
            }
            if let Some(verifier) = verifier.as_mut() {
                if message.signature.is_none() {
                    return Ok(Transfer::Declined);
                }
                verifier.verify(&buf).map_err(|e| ProviderError::Auth {
                    code: "BADSIG".into(),
                    message: format!(
                        "{}: a zone transfer message's TSIG does not verify: {e}",
                        self.server
                    ),
                })?;
            }
            for r in &message.answers {
                // RFC 5936 §2.2: the zone's SOA opens and closes the transfer.
                if r.record_type() == RecordType::SOA {
                    soas += 1;
                    if soas == 2 {
                        return Ok(Transfer::Records { kept, size });
                    }
                }
                size += 1;
                if keep(r) {
                    kept.push(r.clone());
                }
            }
            if size > limit {
                return Ok(Transfer::TooLarge { seen: size });
            }
        }
    }
}
