//! `sipdialog`: the dialog layer on the wire. `serve` answers calls as a UAS over UDP, for
//! SIPp, Kamailio or any SIP peer to talk to; `b2bua` relays them to an upstream as an SBC
//! does; `/metrics` exposes the library's counters.

mod b2bua;
mod endpoint;
mod net;
mod ops;
mod serve;
mod txn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use prometheus_client::registry::Registry;
use sipdialog::manager::{DialogManager, ManagerConfig};
use sipdialog::metrics::Metrics;

use endpoint::{Mode, Shared, Worker};
use ops::Drain;

/// A SIP endpoint built on the sipdialog dialog layer (UDP).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Log level: error, warn, info, debug or trace (or a tracing filter such as
    /// `sipdialog=debug`).
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A UAS: answers INVITE with 100/180/200 and an SDP answer; handles ACK, BYE,
    /// re-INVITE, UPDATE, INFO, OPTIONS, CANCEL and REFER (202, NOTIFY 100, NOTIFY 200);
    /// answers 481 to requests in unknown dialogs.
    Serve(ServeArgs),
    /// A back-to-back user agent (the SBC shape): each inbound call becomes a new call to the
    /// upstream with its own Call-ID and tags; responses, ACK, BYE, re-INVITE, UPDATE, INFO
    /// and CANCEL are relayed; a REFER is carried out here (blind transfer, NOTIFYs to the
    /// transferor); calls that go quiet are ended with BYE on both legs.
    B2bua(B2buaArgs),
}

#[derive(Args, Debug)]
struct B2buaArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Where new calls go (IP:port); the Request-URI keeps the inbound call's user part.
    #[arg(long, value_name = "HOST:PORT")]
    upstream: SocketAddr,
}

/// What every mode is configured with.
#[derive(Args, Debug)]
struct EndpointArgs {
    /// Address to listen on (UDP).
    #[arg(long, default_value = "127.0.0.1:5060")]
    listen: SocketAddr,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Worker threads, each with its own socket on the listen port (SO_REUSEPORT); 0 means
    /// one per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Most dialogs held at once; further INVITEs get 503.
    #[arg(long, default_value_t = 1 << 20)]
    capacity: u32,
    /// RFC 3261 T1 in milliseconds: retransmissions start at T1 and stop at 64×T1.
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
    /// End any call older than this many seconds with BYE (0: never).
    #[arg(long, default_value_t = 0)]
    auto_bye: u64,
    /// End a call with no message for this many seconds with BYE (0: never).
    #[arg(long, default_value_t = 7200)]
    idle_timeout: u64,
    /// Responses remembered per worker to answer retransmitted requests.
    #[arg(long, default_value_t = 65_536)]
    response_cache: usize,
    /// On SIGINT/SIGTERM new INVITEs get 503; then `wait` lets the calls end by themselves,
    /// `bye` hangs them up.
    #[arg(long, value_enum, default_value_t = Drain::Bye)]
    drain: Drain,
    /// The longest the drain waits for calls to end, in seconds.
    #[arg(long, default_value_t = 32)]
    drain_timeout: u64,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Milliseconds from the INVITE to the 180 Ringing (0: with the 100 Trying).
    #[arg(long, default_value_t = 0)]
    ring_ms: u64,
    /// Milliseconds from the INVITE to the 200 OK.
    #[arg(long, default_value_t = 0)]
    answer_ms: u64,
    /// Milliseconds from the ACK until serve hangs up with BYE (0: the caller hangs up).
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// Milliseconds from a REFER to the final NOTIFY (the transfer target "answers"); the
    /// final NOTIFY also waits until NOTIFY 100 is answered.
    #[arg(long, default_value_t = 0)]
    transfer_ms: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => {
            let mode = serve::Serve::new(serve::ServeConfig {
                ring_ms: args.ring_ms,
                answer_ms: args.answer_ms,
                hold_ms: args.hold_ms,
                transfer_ms: args.transfer_ms,
                media_ip: args.endpoint.listen.ip().to_string(),
            });
            run(&args.endpoint, mode)
        }
        Command::B2bua(args) => {
            let mode = b2bua::B2bua::new(args.upstream, args.endpoint.listen);
            run(&args.endpoint, mode)
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipdialog: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run<M: Mode + 'static>(args: &EndpointArgs, mode: M) -> Result<(), Box<dyn std::error::Error>> {
    let listen = args.listen;
    let config = ManagerConfig {
        capacity: args.capacity,
        t1_ms: args.t1_ms,
        max_duration_ms: args.auto_bye * 1000,
        idle_timeout_ms: args.idle_timeout * 1000,
        via: format!("SIP/2.0/UDP {listen}").into_bytes().into(),
        contact: format!("<sip:sipdialog@{listen}>").into_bytes().into(),
        ..ManagerConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let manager = Arc::new(
        DialogManager::with_metrics(config, Arc::clone(&metrics))
            .map_err(|e| format!("manager: {e:?}"))?,
    );
    if let Some(addr) = args.metrics {
        let mut registry = Registry::default();
        metrics.register(&mut registry, manager.clone());
        ops::serve_metrics(addr, registry)?;
    }
    let shared = Arc::new(Shared::new(manager, args.t1_ms));
    let mode = Arc::new(mode);
    let workers = match args.workers {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    // SO_REUSEPORT would let a second endpoint share the port and take half the traffic:
    // make sure nobody holds it first.
    drop(std::net::UdpSocket::bind(listen).map_err(|e| format!("{listen}: {e}"))?);
    let mut threads = Vec::with_capacity(workers);
    for id in 0..workers {
        let socket = net::bind_worker_socket(listen, Duration::from_millis(5))?;
        let worker = Worker::new(
            id,
            Arc::clone(&shared),
            Arc::clone(&mode),
            socket,
            args.response_cache,
        );
        threads.push(
            thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())?,
        );
    }
    tracing::info!(%listen, workers, "listening");
    ops::run_until_signal(&shared, args.drain, Duration::from_secs(args.drain_timeout))?;
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
