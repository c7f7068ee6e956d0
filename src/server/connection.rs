//! One client connection: a reader that frames requests and starts a task
//! per request (pipelining), and a writer that sends responses as they
//! finish, in any order, each with its correlation id.
//!
//! Limits: a frame over `max_frame_bytes` closes the connection before
//! anything is allocated for it; request bytes in flight are bounded by
//! `max_inflight_bytes_per_connection` and requests by
//! `max_inflight_requests_per_connection`: past either, the reader stops
//! reading the socket until responses drain (backpressure, not buffering).

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures::io::{AsyncReadExt, AsyncWriteExt};

use super::listener::Stream;
use super::response::{error, Outgoing};
use crate::protocol::{self, ErrorCode};
use crate::rt;
use crate::shard::Shard;

enum ReadEnd {
    Closed,
    Idle,
    Stopping,
    Failed(std::io::Error),
}

/// Reads exactly `buf.len()` bytes, unless the client goes idle or the
/// shard starts to stop.
async fn read_exact_or_stop<R: futures::io::AsyncRead + Unpin>(r: &mut R, buf: &mut [u8], shard: &Shard, idle: Duration) -> Result<(), ReadEnd> {
    if shard.is_shutting_down() {
        return Err(ReadEnd::Stopping);
    }
    let read = std::pin::pin!(r.read_exact(buf));
    let stop = std::pin::pin!(shard.shutdown.listen());
    match rt::timeout(idle, futures::future::select(read, stop)).await {
        None => Err(ReadEnd::Idle),
        Some(futures::future::Either::Right(_)) => Err(ReadEnd::Stopping),
        Some(futures::future::Either::Left((Ok(()), _))) => Ok(()),
        Some(futures::future::Either::Left((Err(e), _))) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadEnd::Closed),
        Some(futures::future::Either::Left((Err(e), _))) => Err(ReadEnd::Failed(e)),
    }
}

pub async fn serve(shard: Rc<Shard>, stream: Stream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let cfg = shard.config.clone();
    let (mut reader, mut writer) = stream.split();
    let (tx, rx) = rt::local_bounded::<Outgoing>(cfg.max_inflight_requests_per_connection);
    let tx = Rc::new(tx);
    let inflight_bytes = Rc::new(rt::Semaphore::new(cfg.max_inflight_bytes_per_connection as u64));
    let inflight_reqs = Rc::new(rt::Semaphore::new(cfg.max_inflight_requests_per_connection as u64));

    let writer_task = glommio::spawn_local(async move {
        while let Some(out) = rx.recv().await {
            if writer.write_all(&out.head).await.is_err() {
                return;
            }
            for c in &out.payload {
                if writer.write_all(c).await.is_err() {
                    return;
                }
            }
        }
        let _ = writer.close().await;
    });

    let idle = Duration::from_millis(cfg.connection_idle_timeout_ms);
    let end = loop {
        let mut prefix = [0u8; 4];
        if let Err(e) = read_exact_or_stop(&mut reader, &mut prefix, &shard, idle).await {
            break e;
        }
        let len = match protocol::frame_len(prefix, cfg.max_frame_bytes) {
            Ok(n) => n,
            Err(e) => {
                // The stream cannot be re-synchronised without reading the
                // frame, which is what the limit refuses: say why and close.
                let _ = tx.send(error(0, e.code(), &e.to_string())).await;
                break ReadEnd::Failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()));
            }
        };
        let Ok(bytes_permit) = inflight_bytes.clone().acquire_static_permit(len as u64).await else { break ReadEnd::Stopping };
        let Ok(req_permit) = inflight_reqs.clone().acquire_static_permit(1).await else { break ReadEnd::Stopping };
        let mut body = BytesMut::zeroed(len);
        if let Err(e) = read_exact_or_stop(&mut reader, &mut body, &shard, idle).await {
            break e;
        }
        let (shard, tx) = (shard.clone(), tx.clone());
        rt::spawn(async move {
            if let Some(out) = super::dispatch(&shard, body).await {
                let _ = tx.send(out).await;
            }
            drop((bytes_permit, req_permit));
        });
    };
    match end {
        ReadEnd::Failed(e) => tracing::debug!(%peer, error = %e, "closing connection"),
        ReadEnd::Idle => tracing::debug!(%peer, "closing idle connection"),
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
