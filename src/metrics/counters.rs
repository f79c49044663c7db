//! The shards: every counter of the dialog layer, once per shard, each shard on its own cache
//! lines. A thread writes to the shard of its thread-local index (assigned round-robin the
//! first time it counts), so worker threads do not share cache lines; a scrape sums them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::dialog::Role;
use crate::wire::Method;

use super::histogram::{
    HistogramShard, HistogramSnapshot, DURATION_BOUNDS_MS, DURATION_BUCKETS, SETUP_BOUNDS_MS,
    SETUP_BUCKETS,
};
use super::labels::{
    method_index, role_index, status_index, MessageKind, ReferOutcome, TerminationReason, METHODS,
    ROLES, STATUS_LABELS,
};

pub(super) const N_ROLES: usize = ROLES.len();
pub(super) const N_REASONS: usize = TerminationReason::ALL.len();
pub(super) const N_KINDS: usize = MessageKind::ALL.len();
pub(super) const N_METHODS: usize = METHODS.len();
pub(super) const N_STATUSES: usize = STATUS_LABELS.len();
pub(super) const N_OUTCOMES: usize = ReferOutcome::ALL.len();

/// Next thread index to hand out.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

/// Index handed out to no thread yet.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

/// This thread's index, assigned round-robin on first use (0 if thread-locals are gone, as
/// during thread teardown: the count still lands, in shard 0).
#[inline]
pub(super) fn thread_index() -> usize {
    THREAD_INDEX
        .try_with(|cell| {
            let index = cell.get();
            if index != UNASSIGNED {
                return index;
            }
            let index = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            cell.set(index);
            index
        })
        .unwrap_or(0)
}

/// Adds one to the counter, if the index found one (it always does: indices come from enums).
#[inline]
pub(super) fn bump(counter: Option<&AtomicU64>) {
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every counter, once. Wrapped in `CachePadded` by the owner.
#[derive(Debug)]
pub(super) struct Shard {
    pub(super) created: [AtomicU64; N_ROLES],
    pub(super) terminated: [AtomicU64; N_REASONS],
    pub(super) messages: [[AtomicU64; N_METHODS]; N_KINDS],
    pub(super) rejected: [AtomicU64; N_STATUSES],
    pub(super) rate_limited: AtomicU64,
    pub(super) refer: [AtomicU64; N_OUTCOMES],
    pub(super) setup: HistogramShard<SETUP_BUCKETS>,
    pub(super) duration: HistogramShard<DURATION_BUCKETS>,
}

impl Shard {
    pub(super) const fn new() -> Shard {
        Shard {
            created: [const { AtomicU64::new(0) }; N_ROLES],
            terminated: [const { AtomicU64::new(0) }; N_REASONS],
            messages: [const { [const { AtomicU64::new(0) }; N_METHODS] }; N_KINDS],
            rejected: [const { AtomicU64::new(0) }; N_STATUSES],
            rate_limited: AtomicU64::new(0),
            refer: [const { AtomicU64::new(0) }; N_OUTCOMES],
            setup: HistogramShard::new(),
            duration: HistogramShard::new(),
        }
    }
}

fn add_all(into: &mut [u64], from: &[AtomicU64]) {
    for (total, counter) in into.iter_mut().zip(from) {
        *total = total.wrapping_add(counter.load(Ordering::Relaxed));
    }
}

/// Every counter summed over all shards at one moment: what a scrape exports, and what
/// tests read. Each value is exact for the updates that happened before the snapshot began;
/// updates racing with it may or may not be in it (each counter is read once, relaxed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    created: [u64; N_ROLES],
    terminated: [u64; N_REASONS],
    messages: [[u64; N_METHODS]; N_KINDS],
    rejected: [u64; N_STATUSES],
    rate_limited: u64,
    refer: [u64; N_OUTCOMES],
    setup: HistogramSnapshot,
    duration: HistogramSnapshot,
}

impl Snapshot {
    pub(super) fn sum<'a>(shards: impl Iterator<Item = &'a Shard>) -> Snapshot {
        let mut snapshot = Snapshot {
            created: [0; N_ROLES],
            terminated: [0; N_REASONS],
            messages: [[0; N_METHODS]; N_KINDS],
            rejected: [0; N_STATUSES],
            rate_limited: 0,
            refer: [0; N_OUTCOMES],
            setup: HistogramSnapshot::new(&SETUP_BOUNDS_MS),
            duration: HistogramSnapshot::new(&DURATION_BOUNDS_MS),
        };
        for shard in shards {
            add_all(&mut snapshot.created, &shard.created);
            add_all(&mut snapshot.terminated, &shard.terminated);
            for (into, from) in snapshot.messages.iter_mut().zip(&shard.messages) {
                add_all(into, from);
            }
            add_all(&mut snapshot.rejected, &shard.rejected);
            snapshot.rate_limited = snapshot
                .rate_limited
                .wrapping_add(shard.rate_limited.load(Ordering::Relaxed));
            add_all(&mut snapshot.refer, &shard.refer);
            snapshot.setup.add_shard(&shard.setup);
            snapshot.duration.add_shard(&shard.duration);
        }
        snapshot
    }

    /// `sipdialog_dialogs_created_total{role}`.
    pub fn created(&self, role: Role) -> u64 {
        self.created.get(role_index(role)).copied().unwrap_or(0)
    }

    /// `sipdialog_dialogs_terminated_total{reason}`.
    pub fn terminated(&self, reason: TerminationReason) -> u64 {
        self.terminated.get(reason.index()).copied().unwrap_or(0)
    }

    /// `sipdialog_messages_total{kind,method}` (every extension method counts as `other`).
    pub fn messages(&self, kind: MessageKind, method: Method) -> u64 {
        self.messages
            .get(kind.index())
            .and_then(|row| row.get(method_index(method)))
            .copied()
            .unwrap_or(0)
    }

    /// `sipdialog_rejected_total{status}` for the label `status` falls under: a status not in
    /// [`super::REJECT_STATUSES`] reads the `other` count, shared by all such statuses.
    pub fn rejected(&self, status: u16) -> u64 {
        self.rejected
            .get(status_index(status))
            .copied()
            .unwrap_or(0)
    }

    /// `sipdialog_rate_limited_total`.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }

    /// `sipdialog_refer_total{outcome}`.
    pub fn refer(&self, outcome: ReferOutcome) -> u64 {
        self.refer.get(outcome.index()).copied().unwrap_or(0)
    }

    /// `sipdialog_setup_duration_seconds`: INVITE to 2xx.
    pub fn setup(&self) -> &HistogramSnapshot {
        &self.setup
    }

    /// `sipdialog_dialog_duration_seconds`: creation to termination.
    pub fn duration(&self) -> &HistogramSnapshot {
        &self.duration
    }
}
