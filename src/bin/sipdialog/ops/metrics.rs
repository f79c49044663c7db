//! `GET /metrics` over HTTP/1.1 for Prometheus, bounded: at most `max_connections` at once
//! (more are closed on accept), headers capped in size and in the time they may take to
//! arrive, every connection closed after one answer and cut off after `connection_timeout`.
//! One thread runs it all on a current-thread tokio runtime: no thread per connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

/// How much a scraper (or anyone who connects) may hold.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Connections served at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// The request head may not be larger (431 beyond). At least 8 192 (hyper's minimum).
    pub max_header_bytes: usize,
    /// The request head must have arrived by then (slowloris).
    pub header_timeout: Duration,
    /// A connection is closed this long after it was accepted, answer written or not (a
    /// reader that never reads).
    pub connection_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 32,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
        }
    }
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `registry` at `GET /metrics` on `addr`, on a thread of its own.
pub fn serve(addr: SocketAddr, registry: Registry, limits: HttpLimits) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let registry = Arc::new(registry);
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    tracing::error!("metrics listener unusable");
                    return;
                };
                accept_loop(listener, registry, limits).await;
            })
        })?;
    Ok(())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    limits: HttpLimits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream); // at the cap: closed at once
            continue;
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, Arc::clone(&registry)));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes)
                .keep_alive(false);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(limits.connection_timeout, connection).await;
            drop(permit);
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return Ok(reply(StatusCode::NOT_FOUND, "not found\n".into()));
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => {
            let mut response = reply(StatusCode::OK, text);
            if let Ok(value) = CONTENT_TYPE.parse() {
                response
                    .headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, value);
            }
            Ok(response)
        }
        Err(_) => Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding failed\n".into(),
        )),
    }
}
