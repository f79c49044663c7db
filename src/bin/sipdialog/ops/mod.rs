//! Running the endpoint: `/metrics` over HTTP, the status line, the policy file and SIGHUP,
//! SIGINT/SIGTERM and the drain, and giving freed memory back to the OS.

pub mod gauges;
pub mod metrics;
pub mod policy;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sipdialog::security::Policy;
use sipdialog::state::Phase;

use crate::endpoint::Shared;

/// Flags raised by signals: termination (SIGINT, SIGTERM) and reload (SIGHUP).
struct Signals {
    terminate: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

fn signals() -> std::io::Result<Signals> {
    let terminate = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&terminate))?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))?;
    Ok(Signals { terminate, reload })
}

/// How the endpoint ends its calls on SIGINT/SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Drain {
    /// Wait for the calls to end by themselves.
    Wait,
    /// Send BYE to every confirmed call.
    Bye,
}

/// Where the policy comes from: a file read again on SIGHUP, over `base`.
pub struct PolicySource {
    pub file: Option<PathBuf>,
    pub base: Policy,
}

/// How often freed heap is handed back to the OS.
const TRIM_EVERY: Duration = Duration::from_secs(2);

/// Waits for a termination signal, printing the status line every second when stderr is a
/// terminal and reloading the policy on SIGHUP; then drains: new INVITEs get 503, calls are
/// hung up or waited for (at most `drain_timeout`), and the workers are told to stop.
pub fn run_until_signal(
    shared: &Shared,
    policy: &PolicySource,
    drain: Drain,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let signals = signals()?;
    let status = std::io::stderr().is_terminal();
    let mut last = (Instant::now(), 0u64);
    let mut trimmed = Instant::now();
    while !signals.terminate.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(100));
        if signals.reload.swap(false, Ordering::Relaxed) {
            reload(shared, policy);
        }
        if status && last.0.elapsed() >= Duration::from_secs(1) {
            last = print_status(shared, last);
        }
        if trimmed.elapsed() >= TRIM_EVERY {
            give_back_memory();
            trimmed = Instant::now();
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

fn reload(shared: &Shared, policy: &PolicySource) {
    let Some(file) = &policy.file else {
        return;
    };
    match self::policy::load(file, policy.base.clone()) {
        Ok(new) => {
            shared.manager.security().set_policy(new);
            tracing::warn!(file = %file.display(), "policy reloaded");
        }
        Err(e) => tracing::error!(error = %e, "policy not reloaded"),
    }
}

/// glibc keeps freed heap in its arenas; after a flood that is most of the process. Trimming
/// hands the free pages back (RSS returns to what is live).
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's own free lists,
    // under the allocator's locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
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
    let transactions = shared.stats.transactions.load(Ordering::Relaxed);
    let transaction_bytes = shared.stats.transaction_bytes.load(Ordering::Relaxed);
    eprintln!(
        "dialogs: {early} early, {confirmed} confirmed | {rate:.0} calls/s | rejected {} | \
         malformed {} | transactions {transactions} ({} KiB) | INVITE records {} ({} KiB) | sources {}",
        shared.stats.stack.rejected.load(Ordering::Relaxed),
        shared.stats.stack.malformed.load(Ordering::Relaxed),
        transaction_bytes / 1024,
        shared.manager.pending_invites(),
        shared.manager.invite_record_bytes() / 1024,
        shared.manager.security().sources(),
    );
    (Instant::now(), calls)
}
