//! The metrics port: a small HTTP/1.1 server, on the shard that binds
//! it, for `/metrics` (Prometheus' text format, gathered from every shard
//! by message), `/health` (the process answers) and `/ready` (registered
//! with the quorum, unfenced, serving). One request per connection; the
//! request head is parsed by `httparse`.
//!
//! Invariants: a request head is at most [`MAX_HEAD_BYTES`] and must
//! arrive within [`READ_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are served
//! at once (more are closed at accept); nothing a client sends panics.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::{Listener, TcpStream};
use crate::rt;
use crate::shard::Shard;

/// The most bytes of one request head.
pub const MAX_HEAD_BYTES: usize = 8192;
/// A request head must arrive within this, and an answer be taken.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// Serves the metrics port until the shard stops.
pub async fn serve(shard: Rc<Shard>, listener: Listener) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        if shard.is_shutting_down() {
            return;
        }
        let (accept, stop) = (std::pin::pin!(listener.accept()), std::pin::pin!(shard.shutdown.listen()));
        let s = match futures::future::select(accept, stop).await {
            futures::future::Either::Right(_) => return,
            futures::future::Either::Left((Ok(s), _)) => s,
            futures::future::Either::Left((Err(e), _)) => {
                tracing::warn!(error = %e, "metrics port: accept failed");
                rt::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= MAX_CONNECTIONS {
            drop(s);
            continue;
        }
        open.set(open.get() + 1);
        let (shard, open) = (shard.clone(), open.clone());
        rt::spawn(async move {
            let _ = rt::timeout(READ_TIMEOUT * 2, handle(&shard, s)).await;
            open.set(open.get() - 1);
        });
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Health,
    Ready,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Reads a request head from `bytes`: `None` while it is incomplete.
fn route(bytes: &[u8]) -> Option<Route> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Route::BadRequest),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
            Some(match (req.method, path) {
                (Some("GET" | "HEAD"), "/metrics") => Route::Metrics,
                (Some("GET" | "HEAD"), "/health") => Route::Health,
                (Some("GET" | "HEAD"), "/ready") => Route::Ready,
                (Some("GET" | "HEAD"), _) => Route::NotFound,
                _ => Route::MethodNotAllowed,
            })
        }
    }
}

async fn handle(shard: &Rc<Shard>, mut s: TcpStream) {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut n = 0;
    let asked = loop {
        let read = match rt::timeout(READ_TIMEOUT, s.read(&mut buf[n..])).await {
            Some(Ok(k)) if k > 0 => k,
            _ => return,
        };
        n += read;
        match route(&buf[..n]) {
            Some(r) => break r,
            None if n == buf.len() => break Route::BadRequest,
            None => continue,
        }
    };
    let (status, content_type, body) = match asked {
        Route::Metrics => ("200 OK", crate::metrics::CONTENT_TYPE, crate::metrics::render(shard.scrape().await)),
        Route::Health => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
        Route::Ready if shard.ready() => ("200 OK", "text/plain; charset=utf-8", "ready\n".to_string()),
        Route::Ready => {
            ("503 Service Unavailable", "text/plain; charset=utf-8", "not ready: not registered with the quorum, fenced, or stopping\n".to_string())
        }
        Route::NotFound => ("404 Not Found", "text/plain; charset=utf-8", "not found: /metrics, /health and /ready are served\n".to_string()),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET and HEAD are served\n".to_string()),
        Route::BadRequest => ("400 Bad Request", "text/plain; charset=utf-8", "not an HTTP/1.x request head of at most 8 KiB\n".to_string()),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let head_only = buf[..n].starts_with(b"HEAD ");
    let _ = s.write_all(head.as_bytes()).await;
    if !head_only {
        let _ = s.write_all(body.as_bytes()).await;
    }
    let _ = s.flush().await;
    let _ = s.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_route_and_garbage_is_a_bad_request() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Some(Route::Metrics));
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"), Some(Route::Metrics));
        assert_eq!(route(b"HEAD /ready HTTP/1.0\r\n\r\n"), Some(Route::Ready));
        assert_eq!(route(b"GET /health HTTP/1.1\r\n\r\n"), Some(Route::Health));
        assert_eq!(route(b"GET /other HTTP/1.1\r\n\r\n"), Some(Route::NotFound));
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Some(Route::MethodNotAllowed));
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost"), None);
        assert_eq!(route(b"\x00\x01\x02\x03 garbage\r\n\r\n"), Some(Route::BadRequest));
        // Every prefix of a good head is incomplete, never a panic.
        let good = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";
        for i in 0..good.len() {
            assert_eq!(route(&good[..i]), None, "prefix {i}");
        }
    }
}
