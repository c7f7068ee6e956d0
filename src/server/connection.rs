//! One client connection: a reader that frames requests and starts a task
//! per request (pipelining), and a writer that sends responses as they
//! finish, in any order, each with its correlation id.
//!
//! Limits: a frame over `max_frame_bytes` closes the connection before
//! anything is allocated for it; request bytes in flight are bounded by
//! `max_inflight_bytes_per_connection` and requests by
//! `max_inflight_requests_per_connection`, and the request bytes buffered
//! by all of a shard's connections by `max_buffered_request_bytes_per_shard`:
//! past any of these, the reader stops reading its socket until requests
//! finish (backpressure, not buffering).
//!
//! Memory follows the bytes, not the announced length: nothing is
//! allocated until a frame's first body bytes arrive, and its buffer then
//! grows with what arrived, each growth granted by the shard's budget
//! (`server::budget`, which keeps half-read frames from deadlocking). A
//! frame must arrive whole within `request_read_timeout_ms` of its first
//! bytes (time spent waiting for the budget not counted), or the
//! connection is closed and its budget given back.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::channel::oneshot;
use futures::io::{AsyncReadExt, AsyncWriteExt};

use super::budget::{FrameBudget, ShardBudget};
use super::kafka;
use super::response::{error, Outgoing};
use super::session::Session;
use crate::auth::Principal;
use crate::net::Stream;
use crate::protocol::{self, ErrorCode};
use crate::rt;
use crate::rt::StaticPermit;
use crate::shard::Shard;

enum ReadEnd {
    Closed,
    Idle,
    /// A frame's body did not arrive within `request_read_timeout_ms`.
    Slow {
        got: usize,
        len: usize,
    },
    Stopping,
    Failed(std::io::Error),
}

/// Runs a socket read unless the client goes quiet for `wait` or the
/// shard starts to stop; end of stream is `Closed`.
async fn read_or_stop<T>(read: impl std::future::Future<Output = std::io::Result<T>>, shard: &Shard, wait: Duration) -> Result<T, ReadEnd> {
    if shard.is_shutting_down() {
        return Err(ReadEnd::Stopping);
    }
    let read = std::pin::pin!(read);
    let stop = std::pin::pin!(shard.shutdown.listen());
    match rt::timeout(wait, futures::future::select(read, stop)).await {
        None => Err(ReadEnd::Idle),
        Some(futures::future::Either::Right(_)) => Err(ReadEnd::Stopping),
        Some(futures::future::Either::Left((Ok(v), _))) => Ok(v),
        Some(futures::future::Either::Left((Err(e), _))) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadEnd::Closed),
        Some(futures::future::Either::Left((Err(e), _))) => Err(ReadEnd::Failed(e)),
    }
}

/// Reads exactly `buf.len()` bytes (see [`read_or_stop`]).
async fn read_exact_or_stop<R: futures::io::AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], shard: &Shard, idle: Duration) -> Result<(), ReadEnd> {
    read_or_stop(r.read_exact(buf), shard, idle).await
}

/// Bytes of a frame read before anything is allocated for it: enough for
/// most requests other than produce.
const FIRST_READ_BYTES: usize = 4096;
/// The first budget of a larger frame when its first read came full (more
/// is waiting); it grows fourfold as bytes come in, up to the frame's length.
const FIRST_BUFFER_BYTES: usize = 64 << 10;
/// Bytes of a frame's buffer made ready (zeroed) ahead of a read: small
/// enough to stay in cache until the read fills them.
const READ_AHEAD_BYTES: usize = 256 << 10;

/// Reads some bytes into `buf` (see [`read_or_stop`]); never `Ok(0)`.
async fn read_some<R: futures::io::AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], shard: &Shard, wait: Duration) -> Result<usize, ReadEnd> {
    match read_or_stop(r.read(buf), shard, wait).await? {
        0 => Err(ReadEnd::Closed),
        n => Ok(n),
    }
}

/// Waits for `bytes` more of the shard's budget, unless the shard stops.
async fn grow(budget: &mut FrameBudget, bytes: usize, shard: &Shard) -> Result<(), ReadEnd> {
    let stop = std::pin::pin!(shard.shutdown.listen());
    match futures::future::select(std::pin::pin!(budget.grow(bytes)), stop).await {
        futures::future::Either::Left(_) => Ok(()),
        futures::future::Either::Right(_) => Err(ReadEnd::Stopping),
    }
}

/// A frame body read whole, with what it holds of the budgets until its
/// request is answered.
struct Frame {
    body: BytesMut,
    _budget: FrameBudget,
    _permits: [StaticPermit; 2],
}

/// Reads the `len`-byte body of a frame: waits for its first bytes with
/// nothing allocated, then reads the rest into a buffer that fills with
/// what arrived, each fourfold growth granted by the shard's budget first.
///
/// The buffer's address space is reserved whole once the first bytes
/// came, so it never moves; its pages are touched (zeroed, then read into)
/// only as the frame fills, `READ_AHEAD_BYTES` at a time. (Growing it by
/// reallocation copied a 4 MiB request's first 1.3 MiB and zeroed 3 MiB
/// ahead of its reads, out of cache: a third more broker CPU a record than
/// the same records in 100 KB requests.)
async fn read_body<R: futures::io::AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    already: &[u8],
    shard: &Shard,
    budget: &Rc<ShardBudget>,
    permits: [StaticPermit; 2],
    idle: Duration,
) -> Result<Frame, ReadEnd> {
    let mut first = [0u8; FIRST_READ_BYTES];
    let k = already.len();
    debug_assert!(k <= len.min(FIRST_READ_BYTES));
    first[..k].copy_from_slice(already);
    let want = len.min(FIRST_READ_BYTES);
    let n = if k == want { k } else { k + read_some(r, &mut first[k..want], shard, idle).await? };
    let timeout = Duration::from_millis(shard.config.request_read_timeout_ms);
    let mut deadline = Instant::now() + timeout;

    let mut held = budget.begin(len);
    let initial = len.min(if n == FIRST_READ_BYTES { FIRST_BUFFER_BYTES } else { FIRST_READ_BYTES });
    let waited = Instant::now();
    grow(&mut held, initial, shard).await?;
    deadline += waited.elapsed();
    let mut body = BytesMut::with_capacity(len);
    body.resize(initial.min(READ_AHEAD_BYTES), 0);
    body[..n].copy_from_slice(&first[..n]);
    let mut granted = initial;
    let mut filled = n;
    while filled < len {
        if filled == granted {
            let next = len.min(granted * 4);
            // Time spent waiting for the budget is not the client's.
            let waited = Instant::now();
            grow(&mut held, next - granted, shard).await?;
            deadline += waited.elapsed();
            granted = next;
        }
        if filled == body.len() {
            body.resize(granted.min(filled + READ_AHEAD_BYTES), 0);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        filled += match read_some(r, &mut body[filled..], shard, left).await {
            Ok(n) => n,
            Err(ReadEnd::Idle) => return Err(ReadEnd::Slow { got: filled, len }),
            Err(e) => return Err(e),
        };
    }
    debug_assert_eq!(body.len(), len);
    held.complete();
    Ok(Frame { body, _budget: held, _permits: permits })
}

/// What the writer sends next: a native response, ready in any order, or
/// a Kafka request's answer, awaited in request order.
enum Reply {
    Ready(Outgoing),
    InTurn(oneshot::Receiver<kafka::Answer>),
}

/// `external`: the connection came in through the external listener.
pub async fn serve(shard: Rc<Shard>, stream: Stream, principal: Principal, budget: Rc<ShardBudget>, external: bool) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let cfg = shard.config.clone();
    let (mut reader, mut writer) = stream.split();
    let (tx, rx) = rt::local_bounded::<Reply>(cfg.max_inflight_requests_per_connection);
    let tx = Rc::new(tx);
    let inflight_bytes = Rc::new(rt::Semaphore::new(cfg.max_inflight_bytes_per_connection as u64));
    let inflight_reqs = Rc::new(rt::Semaphore::new(cfg.max_inflight_requests_per_connection as u64));

    let session = Rc::new(Session::new(principal, &shard));
    let writer_peer = peer.clone();
    let writer_task = glommio::spawn_local(async move {
        while let Some(reply) = rx.recv().await {
            let out = match reply {
                Reply::Ready(out) => out,
                Reply::InTurn(answer) => match answer.await {
                    Ok(kafka::Answer::Send(out)) => out,
                    Ok(kafka::Answer::Nothing) => continue,
                    Ok(kafka::Answer::Close(why)) => {
                        tracing::debug!(peer = %writer_peer, %why, "closing a Kafka connection");
                        break;
                    }
                    // The request's task ended without an answer: the
                    // broker is stopping.
                    Err(_) => break,
                },
            };
            if writer.write_all(&out.head).await.is_err() {
                return;
            }
            for c in &out.payload {
                if writer.write_all(c).await.is_err() {
                    return;
                }
            }
            // TLS keeps the end of what was written until a flush (a
            // no-op in plaintext): a response must not wait for the next.
            if writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.close().await;
    });

    let idle = Duration::from_millis(cfg.connection_idle_timeout_ms);
    // Decided by the first frame's first 8 bytes (`kafka::is_kafka`).
    let mut is_kafka: Option<bool> = None;
    let end = loop {
        if session.closing() {
            break ReadEnd::Closed;
        }
        let mut prefix = [0u8; 4];
        if let Err(e) = read_exact_or_stop(&mut reader, &mut prefix, &shard, idle).await {
            break e;
        }
        let mut already = [0u8; 4];
        let mut already_len = 0;
        let kafka_conn = match is_kafka {
            Some(k) => k,
            // A first byte other than zero is a native frame's: decided
            // without waiting for more.
            None if prefix[0] != 0 => *is_kafka.insert(false),
            None => {
                // Every frame of either protocol that starts so has at
                // least 4 more bytes.
                if let Err(e) = read_exact_or_stop(&mut reader, &mut already, &shard, idle).await {
                    break e;
                }
                already_len = 4;
                let mut first = [0u8; 8];
                first[..4].copy_from_slice(&prefix);
                first[4..].copy_from_slice(&already);
                *is_kafka.insert(kafka::is_kafka(first))
            }
        };
        let len = if kafka_conn {
            match kafka::frame_len(prefix, cfg.max_frame_bytes) {
                Ok(n) => n,
                // Kafka has no answer to a frame it cannot read: close.
                Err(e) => break ReadEnd::Failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
        } else {
            match protocol::frame_len(prefix, cfg.max_frame_bytes) {
                Ok(n) => n,
                Err(e) => {
                    // The stream cannot be re-synchronised without reading the
                    // frame, which is what the limit refuses: say why and close.
                    let _ = tx.send(Reply::Ready(error(0, e.code(), &e.to_string()))).await;
                    break ReadEnd::Failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()));
                }
            }
        };
        let Ok(bytes_permit) = inflight_bytes.clone().acquire_static_permit(len as u64).await else { break ReadEnd::Stopping };
        let Ok(req_permit) = inflight_reqs.clone().acquire_static_permit(1).await else { break ReadEnd::Stopping };
        let frame = match read_body(&mut reader, len, &already[..already_len], &shard, &budget, [bytes_permit, req_permit], idle).await {
            Ok(f) => f,
            Err(ReadEnd::Slow { got, len }) => {
                let msg = format!(
                    "a request frame did not arrive within request_read_timeout_ms ({} ms): {got} of {len} bytes came; closing the connection",
                    cfg.request_read_timeout_ms
                );
                if !kafka_conn {
                    let _ = tx.send(Reply::Ready(error(0, ErrorCode::RequestTimedOut, &msg))).await;
                }
                break ReadEnd::Slow { got, len };
            }
            Err(e) => break e,
        };
        // Until SASL succeeds, one request at a time: nothing runs beside
        // an authentication, and a failed one closes the connection.
        let inline = !session.ready();
        if kafka_conn {
            // The answer's place in line is taken now, in request order.
            let (answer, turn) = oneshot::channel();
            if tx.send(Reply::InTurn(turn)).await.is_err() {
                break ReadEnd::Closed;
            }
            let (shard, session) = (shard.clone(), session.clone());
            let task = async move {
                let Frame { body, _budget, _permits } = frame;
                let a = if shard.is_shutting_down() {
                    kafka::Answer::Close("the broker is shutting down".into())
                } else {
                    kafka::dispatch(&shard, &session, body, external).await
                };
                let _ = answer.send(a);
                drop((_budget, _permits));
            };
            if inline {
                task.await;
            } else {
                rt::spawn(task);
            }
            continue;
        }
        let (shard, tx, session) = (shard.clone(), tx.clone(), session.clone());
        let task = async move {
            let Frame { body, _budget, _permits } = frame;
            if let Some(out) = super::dispatch(&shard, &session, body, external).await {
                let _ = tx.send(Reply::Ready(out)).await;
            }
            drop((_budget, _permits));
        };
        if inline {
            task.await;
        } else {
            rt::spawn(task);
        }
    };
    match end {
        ReadEnd::Failed(e) => tracing::debug!(%peer, error = %e, "closing connection"),
        ReadEnd::Idle => tracing::debug!(%peer, "closing idle connection"),
        ReadEnd::Slow { got, len } => {
            tracing::info!(%peer, got, len, timeout_ms = cfg.request_read_timeout_ms, "a request frame did not arrive in time; closed the connection")
        }
        ReadEnd::Closed | ReadEnd::Stopping => {}
    }
    // In-flight requests finish and their responses go out before the
    // writer sees the channel close.
    drop(tx);
    writer_task.await;
}

/// Answers a request the broker will not serve because it is stopping.
pub fn stopping(corr: u32) -> Outgoing {
    error(corr, ErrorCode::BrokerShuttingDown, "the broker is shutting down")
}
