//! Metrics of the dialog layer: hot counters sharded per thread, exported through
//! `prometheus-client` in the Prometheus/OpenMetrics text format.
//!
//! Updating is cheap from any thread: each counter is a plain `AtomicU64` in one of N
//! cache-padded shards, the shard picked by a thread-local index assigned round-robin on first
//! use, and every label is an enum index into a fixed array. No allocation, no lock, no label
//! lookup on the update path. The shards are summed only when scraped, by a
//! [`prometheus_client::collector::Collector`] that [`Metrics::register`] installs; the gauges
//! of the dialog table are read from a [`TableStats`] at the same moment, so they can neither
//! drift nor underflow.
//!
//! See `src/metrics/README.md` for what every metric means, example PromQL, and the Grafana
//! dashboard beside it.
//!
//! ```
//! use std::sync::Arc;
//! use prometheus_client::registry::Registry;
//! use sipdialog::dialog::Role;
//! use sipdialog::metrics::{Metrics, TableStats};
//!
//! #[derive(Debug)]
//! struct Table;
//! impl TableStats for Table {
//!     fn capacity(&self) -> u64 { 1024 }
//!     fn live(&self) -> u64 { 1 }
//!     fn by_phase(&self) -> (u64, u64) { (0, 1) }
//!     fn slab_bytes(&self) -> u64 { 131_072 }
//! }
//!
//! let metrics = Arc::new(Metrics::new());
//! let mut registry = Registry::default();
//! metrics.register(&mut registry, Arc::new(Table));
//! metrics.dialog_created(Role::Uas);
//!
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! assert!(text.contains("sipdialog_dialogs_created_total{role=\"uas\"} 1\n"));
//! ```

mod collector;
mod counters;
mod histogram;
mod labels;
#[cfg(test)]
mod tests;

pub use counters::Snapshot;
pub use histogram::{HistogramSnapshot, DURATION_BOUNDS_MS, SETUP_BOUNDS_MS};
pub use labels::{
    method_label, role_label, status_label, MessageKind, ReferOutcome, TerminationReason,
    REJECT_STATUSES,
};

use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::dialog::Role;
use crate::wire::Method;
use counters::{bump, thread_index, Shard};
use labels::{method_index, role_index, status_index};

/// The most shards a [`Metrics`] has (each is about 700 bytes).
pub const MAX_SHARDS: usize = 64;

/// What the table gauges read at scrape time; the manager implements it over its table.
pub trait TableStats: Send + Sync + std::fmt::Debug {
    /// Dialogs the table can hold (`sipdialog_table_capacity_dialogs`).
    fn capacity(&self) -> u64;
    /// Slots holding a dialog now (`sipdialog_table_slots_in_use`).
    fn live(&self) -> u64;
    /// Live dialogs by phase, `(early, confirmed)` (`sipdialog_dialogs_active{state}`).
    fn by_phase(&self) -> (u64, u64);
    /// Bytes of the slab, allocated or reserved (`sipdialog_table_bytes`, with the index).
    fn slab_bytes(&self) -> u64;
    /// Bytes of the table's index, allocated for the capacity (in `sipdialog_table_bytes`).
    fn index_bytes(&self) -> u64 {
        0
    }
    /// INVITE transactions tracked, and the bytes they hold (`sipdialog_invite_records`,
    /// `sipdialog_invite_record_bytes`).
    fn invite_records(&self) -> (u64, u64) {
        (0, 0)
    }
    /// Bytes the live dialogs' data holds (`sipdialog_dialog_data_bytes`).
    fn dialog_bytes(&self) -> u64 {
        0
    }
    /// Sources the per-source limits track (`sipdialog_security_sources`).
    fn sources(&self) -> u64 {
        0
    }
}

/// Everything the dialog layer counts. Cheap to update from any thread (see the
/// [module documentation](self)); share it as `Arc<Metrics>`.
pub struct Metrics {
    shards: Box<[CachePadded<Shard>]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
}

impl Metrics {
    /// Metrics with one shard per hardware thread, twice over (rounded up to a power of two,
    /// at most [`MAX_SHARDS`]), so that worker threads rarely share one.
    pub fn new() -> Metrics {
        let threads = std::thread::available_parallelism().map_or(8, |n| n.get());
        Metrics::with_shards(threads.saturating_mul(2))
    }

    /// Metrics with `shards` shards, rounded up to a power of two within `1..=MAX_SHARDS`.
    pub fn with_shards(shards: usize) -> Metrics {
        let count = shards.clamp(1, MAX_SHARDS).next_power_of_two();
        let shards: Box<[CachePadded<Shard>]> =
            (0..count).map(|_| CachePadded::new(Shard::new())).collect();
        Metrics {
            mask: count - 1,
            shards,
        }
    }

    /// How many shards the counters are spread over.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// This thread's shard.
    #[inline]
    fn shard(&self) -> Option<&Shard> {
        self.shards.get(thread_index() & self.mask).map(|s| &**s)
    }

    /// A dialog was created (early or confirmed; once per dialog, forks included):
    /// `sipdialog_dialogs_created_total{role="uac|uas|observed"}`.
    #[inline]
    pub fn dialog_created(&self, role: Role) {
        bump(self.shard().and_then(|s| s.created.get(role_index(role))));
    }

    /// A dialog ended after `duration_ms` (creation to end):
    /// `sipdialog_dialogs_terminated_total{reason}` and `sipdialog_dialog_duration_seconds`.
    #[inline]
    pub fn dialog_terminated(&self, reason: TerminationReason, duration_ms: u64) {
        if let Some(shard) = self.shard() {
            bump(shard.terminated.get(reason.index()));
            shard.duration.observe(&DURATION_BOUNDS_MS, duration_ms);
        }
    }

    /// An INVITE got its 2xx `duration_ms` after it was sent or received:
    /// `sipdialog_setup_duration_seconds`.
    #[inline]
    pub fn setup_completed(&self, duration_ms: u64) {
        if let Some(shard) = self.shard() {
            shard.setup.observe(&SETUP_BOUNDS_MS, duration_ms);
        }
    }

    /// A message was handled (a response counts under its CSeq method):
    /// `sipdialog_messages_total{kind,method}`, extension methods as `other`.
    #[inline]
    pub fn message(&self, kind: MessageKind, method: Method) {
        bump(self.shard().and_then(|s| {
            s.messages
                .get(kind.index())
                .and_then(|row| row.get(method_index(method)))
        }));
    }

    /// A request was refused with `status`: `sipdialog_rejected_total{status}`, where statuses
    /// outside [`REJECT_STATUSES`] count as `other`.
    #[inline]
    pub fn rejected(&self, status: u16) {
        bump(
            self.shard()
                .and_then(|s| s.rejected.get(status_index(status))),
        );
    }

    /// A request was refused by a rate limit: `sipdialog_rate_limited_total`.
    #[inline]
    pub fn rate_limited(&self) {
        bump(self.shard().map(|s| &s.rate_limited));
    }

    /// A REFER reached `outcome`: `sipdialog_refer_total{outcome}`.
    #[inline]
    pub fn refer(&self, outcome: ReferOutcome) {
        bump(self.shard().and_then(|s| s.refer.get(outcome.index())));
    }

    /// Every counter summed over the shards (cold: allocates, reads every shard).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::sum(self.shards.iter().map(|s| &**s))
    }

    /// Registers every metric under `registry` (which may be a sub-registry of the caller's,
    /// with its own prefix and labels). The counters are read from `self` and the gauges from
    /// `table` at each scrape. Register once per registry: twice exports everything twice.
    pub fn register(
        self: &Arc<Self>,
        registry: &mut prometheus_client::registry::Registry,
        table: Arc<dyn TableStats>,
    ) {
        registry.register_collector(Box::new(collector::MetricsCollector::new(
            Arc::clone(self),
            table,
        )));
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}
