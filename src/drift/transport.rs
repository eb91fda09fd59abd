//! DNS exchanges for drift: over UDP first, one socket per server shared by every question of a
//! run (answers matched by id, then by question); over TCP when the answer is truncated
//! (RFC 7766 §5), does not match, or the server refuses UDP or leaves it unanswered. A hoster's
//! million domains ask the same resolver and nameservers, so a socket (and a TCP handshake) per
//! question would dominate.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::task::AbortOnDropHandle;

/// EDNS UDP payload we advertise (RFC 6891 §6.2.5; 1232 avoids IP fragmentation).
pub(crate) const UDP_PAYLOAD: u16 = 1232;
/// A UDP question unanswered this long is sent again (the caller bounds the whole exchange).
const RETRANSMIT: Duration = Duration::from_millis(700);
/// Sent this often over UDP without an answer, the question goes over TCP: a server or path
/// that drops UDP still answers there (RFC 7766 §5).
const UDP_TRIES: u32 = 3;
/// Questions in flight on one socket; more wait for one to end. Their answers must fit the
/// socket's receive buffer when they arrive together (or the kernel drops the rest, each loss
/// costing a [`RETRANSMIT`]): a loopback datagram takes up to ~2 KiB of it.
const WINDOW: usize = 256;
/// The receive buffer asked for (the kernel caps it at `net.core.rmem_max`, 208 KiB by default).
const RECV_BUFFER: usize = 1 << 20;

type Pending = Arc<Mutex<HashMap<u16, oneshot::Sender<Option<Vec<u8>>>>>>;

/// The sockets of one run, by server.
#[derive(Default)]
pub(crate) struct Transport {
    servers: Mutex<HashMap<SocketAddr, Arc<Server>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

struct Server {
    sock: Arc<UdpSocket>,
    pending: Pending,
    window: Semaphore,
    /// Stops the reader when the run's transport is dropped.
    _reader: AbortOnDropHandle<()>,
    /// UDP went unanswered [`UDP_TRIES`] times: the rest of the run asks over TCP at once.
    tcp_only: AtomicBool,
}

/// Takes its id back out of the table however the exchange ends (answer, timeout, cancel).
struct Slot<'a> {
    pending: &'a Pending,
    id: u16,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transport {
    /// Sends `query` (its id is chosen here) to `server` and returns the answer to it.
    pub(crate) async fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
    ) -> Result<Message, String> {
        match self.udp(server, query).await {
            Ok(Some(answer)) => return Ok(answer),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let answer = tcp(server, query)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
        let answer =
            Message::from_vec(&answer).map_err(|e| format!("{server}: unreadable answer: {e}"))?;
        if !same_question(query, &answer) {
            return Err(format!("{server}: the answer is not to the question asked"));
        }
        Ok(answer)
    }

    /// `None`: ask over TCP instead.
    #[allow(clippy::expect_used, reason = "never closed")]
    async fn udp(&self, server: SocketAddr, query: &[u8]) -> Result<Option<Message>, String> {
        let Ok(s) = self.server(server).await else {
            return Ok(None);
        };
        if s.tcp_only.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let _permit = s.window.acquire().await.expect("never closed");
        let (tx, mut rx) = oneshot::channel();
        let id = {
            let mut pending = lock(&s.pending);
            let id = loop {
                let id: u16 = rand::random();
                if !pending.contains_key(&id) {
                    break id;
                }
            };
            pending.insert(id, tx);
            id
        };
        let _slot = Slot {
            pending: &s.pending,
            id,
        };
        let mut wire = query.to_vec();
        wire[..2].copy_from_slice(&id.to_be_bytes());
        let mut sent = 0;
        let bytes = loop {
            if s.sock.send(&wire).await.is_err() {
                return Ok(None);
            }
            sent += 1;
            match tokio::time::timeout(RETRANSMIT, &mut rx).await {
                Ok(Ok(Some(bytes))) => break bytes,
                // The socket failed (ICMP port unreachable): TCP says why, or works.
                Ok(_) => return Ok(None),
                Err(_) if sent >= UDP_TRIES => {
                    s.tcp_only.store(true, Ordering::Relaxed);
                    return Ok(None);
                }
                Err(_) => continue,
            }
        };
        let Ok(answer) = Message::from_vec(&bytes) else {
            return Ok(None);
        };
        if answer.truncation || !same_question(&wire, &answer) {
            return Ok(None);
        }
        Ok(Some(answer))
    }

    async fn server(&self, addr: SocketAddr) -> std::io::Result<Arc<Server>> {
        if let Some(s) = lock(&self.servers).get(&addr) {
            return Ok(s.clone());
        }
        let local: IpAddr = match addr {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let sock = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
        sock.connect(addr).await?;
        set_recv_buffer(&sock, RECV_BUFFER);
        let sock = Arc::new(sock);
        let pending: Pending = Arc::default();
        let reader = AbortOnDropHandle::new(tokio::spawn(read(sock.clone(), pending.clone())));
        let s = Arc::new(Server {
            sock,
            pending,
            window: Semaphore::new(WINDOW),
            _reader: reader,
            tcp_only: AtomicBool::new(false),
        });
        // Two questions may race to open the first socket; the one kept serves both.
        Ok(lock(&self.servers).entry(addr).or_insert(s).clone())
    }
}

/// Best effort: a smaller buffer only costs retransmissions.
fn set_recv_buffer(sock: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor, and a c_int option value of the size passed.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Hands each datagram to the question with its id; a socket error fails every question in
/// flight over to TCP.
async fn read(sock: Arc<UdpSocket>, pending: Pending) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match sock.recv(&mut buf).await {
            Ok(n) if n >= 12 => {
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                if let Some(tx) = lock(&pending).remove(&id) {
                    let _ = tx.send(Some(buf[..n].to_vec()));
                }
            }
            Ok(_) => {}
            Err(_) => {
                for (_, tx) in lock(&pending).drain() {
                    let _ = tx.send(None);
                }
            }
        }
    }
}

/// RFC 5452 §9.1: an answer is accepted only with the id and for the question asked (name,
/// case-insensitively, type and class).
fn same_question(query: &[u8], answer: &Message) -> bool {
    let Ok(q) = Message::from_vec(query) else {
        return false;
    };
    let (Some(asked), Some(got)) = (q.queries.first(), answer.queries.first()) else {
        return false;
    };
    q.id == answer.id
        && asked.name() == got.name()
        && asked.query_type() == got.query_type()
        && asked.query_class() == got.query_class()
}

async fn tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    s.write_all(&framed).await?;
    let len = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}
