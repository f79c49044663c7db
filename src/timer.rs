//! Deadlines for the manager: one current wake-up per dialog or pending INVITE, kept in
//! sharded min-heaps so that arming a timer locks one shard briefly on a cold path (dialog
//! creation, BYE, 2xx) and the in-dialog hot path never touches them at all: activity is
//! a relaxed store in the hot slot, read back only when the idle deadline comes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::id::Fingerprint;
use crate::table::DialogHandle;

/// What a deadline wakes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    /// Re-check a dialog's deadlines.
    Dialog(DialogHandle),
    /// Drop an INVITE transaction record that outlived its use.
    Pending(Fingerprint),
}

const SHARDS: usize = 16;

type Heap = BinaryHeap<Reverse<(u64, Target)>>;

/// Sharded deadline heaps. Entries are never cancelled: a woken target re-checks its own
/// state, so a stale entry costs one pop.
pub(crate) struct Timers {
    shards: [Mutex<Heap>; SHARDS],
}

fn lock(m: &Mutex<Heap>) -> MutexGuard<'_, Heap> {
    // A panic while holding a shard cannot leave a heap half-updated in a way that matters:
    // every entry is self-checking.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            shards: std::array::from_fn(|_| Mutex::new(BinaryHeap::new())),
        }
    }

    fn shard(&self, target: &Target) -> &Mutex<Heap> {
        let n = match target {
            Target::Dialog(h) => h.index() as usize,
            Target::Pending(fp) => fp.0 as usize,
        };
        &self.shards[n % SHARDS]
    }

    /// Wakes `target` at `at_ms`.
    pub(crate) fn arm(&self, at_ms: u64, target: Target) {
        lock(self.shard(&target)).push(Reverse((at_ms, target)));
    }

    /// The earliest deadline armed, if any.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.shards
            .iter()
            .filter_map(|s| lock(s).peek().map(|Reverse((at, _))| *at))
            .min()
    }

    /// Moves up to `max` targets due at `now_ms` into `due`; returns how many it moved.
    pub(crate) fn take_due(&self, now_ms: u64, max: usize, due: &mut Vec<(u64, Target)>) -> usize {
        let mut taken = 0;
        for shard in &self.shards {
            let mut heap = lock(shard);
            while taken < max {
                match heap.peek() {
                    Some(Reverse((at, _))) if *at <= now_ms => {}
                    _ => break,
                }
                if let Some(Reverse(entry)) = heap.pop() {
                    due.push(entry);
                    taken += 1;
                }
            }
        }
        taken
    }

    /// Entries held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_come_out_in_time_order_per_shard_and_respect_max() {
        let t = Timers::new();
        for i in 0..100u128 {
            t.arm(1000 - i as u64, Target::Pending(Fingerprint(i)));
        }
        assert_eq!(t.next_deadline(), Some(901));
        let mut due = Vec::new();
        assert_eq!(t.take_due(950, 10, &mut due), 10);
        assert!(due.iter().all(|(at, _)| *at <= 950));
        assert_eq!(t.take_due(950, 1000, &mut due), 40);
        assert_eq!(t.len(), 50);
        assert_eq!(t.next_deadline(), Some(951));
        assert_eq!(t.take_due(900, 1000, &mut due), 0);
    }
}
