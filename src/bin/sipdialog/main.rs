//! `sipdialog`: the dialog layer on the wire. `serve` answers calls as a UAS over UDP, for
//! SIPp, Kamailio or any SIP peer to talk to; `b2bua` relays them to an upstream as an SBC
//! does; `/metrics` exposes the library's counters.

mod b2bua;
mod batch;
mod endpoint;
mod net;
mod ops;
mod serve;
mod steer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;
use prometheus_client::registry::Registry;
use sipdialog::manager::{DialogManager, ManagerConfig};
use sipdialog::metrics::Metrics;
use sipdialog::security::Policy;
use sipdialog::txn::TxnConfig;

use endpoint::{Inboxes, Mode, Shared, Worker};
use ops::metrics::HttpLimits;
use ops::{Drain, PolicySource};

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
    /// Networks a REFER may transfer to (repeatable; the policy's `transfer_targets`).
    /// Default: the upstream's address only.
    #[arg(long = "transfer-to", value_name = "NET")]
    transfer_to: Vec<IpNet>,
    /// Entries the B2BUA keeps per call leg at most, all calls together (outbound INVITEs,
    /// pairings, relayed requests); new calls beyond get 503.
    #[arg(long, default_value_t = 1 << 21)]
    legs: usize,
    /// Bytes those entries may hold together.
    #[arg(long, default_value_t = 128 << 20)]
    leg_bytes: usize,
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
    /// The security policy (TOML; keys are the fields of `sipdialog::security::Policy`),
    /// read at start and again on SIGHUP.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// RFC 3261 T1 in milliseconds: retransmissions start at T1 and stop at 64×T1.
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
    /// End any call older than this many seconds with BYE (0: never).
    #[arg(long, default_value_t = 0)]
    auto_bye: u64,
    /// End a call with no message for this many seconds with BYE (0: never).
    #[arg(long, default_value_t = 7200)]
    idle_timeout: u64,
    /// Transactions each worker holds at most (requests in flight, answers kept for
    /// retransmitted requests, each for 64×T1 at most); beyond, new requests get 503.
    #[arg(long, default_value_t = 65_536)]
    transactions: usize,
    /// Bytes of messages those transactions may hold, per worker.
    #[arg(long, default_value_t = 16 << 20)]
    transaction_bytes: usize,
    /// Connections to /metrics served at once; more are closed.
    #[arg(long, default_value_t = 32)]
    metrics_connections: usize,
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
    /// Milliseconds from the INVITE to the 180 Ringing (0: at once). A 100 Trying goes first
    /// only when neither the 180 nor the 200 goes at once.
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
            let budget = b2bua::LegBudget {
                entries: args.legs,
                bytes: args.leg_bytes,
            };
            let mode = b2bua::B2bua::new(args.upstream, args.endpoint.listen, budget);
            let targets = match args.transfer_to.is_empty() {
                true => vec![IpNet::from(args.upstream.ip())],
                false => args.transfer_to,
            };
            let base = Policy {
                transfer_targets: Some(targets),
                ..Policy::default()
            };
            run_with(&args.endpoint, mode, base)
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
    run_with(args, mode, Policy::default())
}

/// Runs `mode` with the policy `base` as overridden by `--policy`.
fn run_with<M: Mode + 'static>(
    args: &EndpointArgs,
    mode: M,
    base: Policy,
) -> Result<(), Box<dyn std::error::Error>> {
    let listen = args.listen;
    let policy = match &args.policy {
        Some(file) => ops::policy::load(file, base.clone())?,
        None => base.clone(),
    };
    let source = PolicySource {
        file: args.policy.clone(),
        base,
    };
    let config = ManagerConfig {
        capacity: args.capacity,
        t1_ms: args.t1_ms,
        max_duration_ms: args.auto_bye * 1000,
        idle_timeout_ms: args.idle_timeout * 1000,
        via: format!("SIP/2.0/UDP {listen}").into_bytes().into(),
        contact: format!("<sip:sipdialog@{listen}>").into_bytes().into(),
        policy,
        ..ManagerConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let manager = Arc::new(
        DialogManager::with_metrics(config, Arc::clone(&metrics))
            .map_err(|e| format!("manager: {e:?}"))?,
    );
    let workers = match args.workers {
        0 => thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let txn = TxnConfig {
        t1_ms: args.t1_ms,
        t2_ms: args.t1_ms.max(4_000),
        max_transactions: args.transactions,
        max_bytes: args.transaction_bytes,
        ..TxnConfig::default()
    };
    mode.attach(&manager);
    let shared = Arc::new(Shared::new(manager.clone(), txn));
    let mode = Arc::new(mode);
    if let Some(addr) = args.metrics {
        let mut registry = Registry::default();
        metrics.register(&mut registry, manager);
        registry.register_collector(Box::new(ops::gauges::EndpointGauges {
            shared: Arc::clone(&shared),
            mode: Arc::clone(&mode),
        }));
        let limits = HttpLimits {
            max_connections: args.metrics_connections,
            ..HttpLimits::default()
        };
        ops::metrics::serve(addr, registry, limits)?;
    }
    // SO_REUSEPORT would let a second endpoint share the port and take half the traffic:
    // make sure nobody holds it first.
    drop(std::net::UdpSocket::bind(listen).map_err(|e| format!("{listen}: {e}"))?);
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        sockets.push(net::bind_worker_socket(listen, Duration::from_millis(2))?);
    }
    if workers > 1 {
        // Each worker keeps its own peers' transactions: the kernel must steer as we do.
        steer::attach(&sockets[0], workers, listen.is_ipv6()).map_err(|e| {
            format!("steering datagrams to {workers} workers: {e} (try --workers 1)")
        })?;
    }
    let (inboxes, receivers) = Inboxes::new(workers);
    let inboxes = Arc::new(inboxes);
    let mut threads = Vec::with_capacity(workers);
    for (id, (socket, inbox)) in sockets.into_iter().zip(receivers).enumerate() {
        let mail = (Arc::clone(&inboxes), inbox);
        let worker = Worker::new(
            (id, workers),
            Arc::clone(&shared),
            Arc::clone(&mode),
            socket,
            mail,
        )
        .map_err(|e| format!("transactions: {e}"))?;
        threads.push(
            thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())?,
        );
    }
    tracing::info!(%listen, workers, "listening");
    let drain_timeout = Duration::from_secs(args.drain_timeout);
    ops::run_until_signal(&shared, &source, args.drain, drain_timeout)?;
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
