//! Running the endpoint: `/metrics` over HTTP, the status line, SIGINT/SIGTERM and the drain.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use sipdialog::state::Phase;

use crate::endpoint::Shared;

/// Serves the registry at `GET /metrics` (OpenMetrics text) on a thread of its own.
/// `tiny_http`: a small synchronous server is all a scrape endpoint needs, no async runtime.
pub fn serve_metrics(addr: SocketAddr, registry: Registry) -> std::io::Result<()> {
    let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
    let content_type = tiny_http::Header::from_bytes(
        &b"Content-Type"[..],
        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
    )
    .map_err(|()| std::io::Error::other("bad header"))?;
    thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let mut text = String::new();
                    match prometheus_client::encoding::text::encode(&mut text, &registry) {
                        Ok(()) => {
                            tiny_http::Response::from_string(text).with_header(content_type.clone())
                        }
                        Err(_) => tiny_http::Response::from_string("encoding failed\n")
                            .with_status_code(500),
                    }
                } else {
                    tiny_http::Response::from_string("not found\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}

/// Flags raised by SIGINT and SIGTERM.
pub fn termination_flag() -> std::io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// How the endpoint ends its calls on SIGINT/SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Drain {
    /// Wait for the calls to end by themselves.
    Wait,
    /// Send BYE to every confirmed call.
    Bye,
}

/// Waits for a termination signal, printing the status line every second when stderr is a
/// terminal; then drains: new INVITEs get 503, calls are hung up or waited for (at most
/// `drain_timeout`), and the workers are told to stop.
pub fn run_until_signal(
    shared: &Shared,
    drain: Drain,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let signal = termination_flag()?;
    let status = std::io::stderr().is_terminal();
    let mut last = (Instant::now(), 0u64);
    while !signal.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
        if status && last.0.elapsed() >= Duration::from_secs(1) {
            last = print_status(shared, last);
        }
    }
    tracing::info!(active = shared.manager.len(), ?drain, "draining");
    shared.draining.store(true, Ordering::Relaxed);
    if drain == Drain::Bye {
        shared.hang_up_all.store(true, Ordering::Relaxed);
    }
    let deadline = Instant::now() + drain_timeout;
    while !shared.manager.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    // Let the last responses and ACKs go out.
    thread::sleep(Duration::from_millis(200));
    tracing::info!(active = shared.manager.len(), "stopped");
    shared.stop.store(true, Ordering::Relaxed);
    Ok(())
}

fn print_status(shared: &Shared, (since, calls_before): (Instant, u64)) -> (Instant, u64) {
    let (mut early, mut confirmed) = (0u64, 0u64);
    for (_, state) in shared.manager.table().iter() {
        match state.phase() {
            Phase::Early => early += 1,
            Phase::Confirmed => confirmed += 1,
            _ => {}
        }
    }
    let calls = shared.stats.calls.load(Ordering::Relaxed);
    let rate = (calls - calls_before) as f64 / since.elapsed().as_secs_f64();
    eprintln!(
        "dialogs: {early} early, {confirmed} confirmed | {rate:.0} calls/s | rejected {} | malformed {} | in flight {}",
        shared.stats.rejected.load(Ordering::Relaxed),
        shared.stats.malformed.load(Ordering::Relaxed),
        shared.retransmissions.len(),
    );
    (Instant::now(), calls)
}
