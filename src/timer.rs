//! Deadlines for the manager: one current wake-up per dialog or pending INVITE, kept in
//! sharded min-heaps so that arming a timer locks one shard briefly on a cold path (dialog
//! creation, BYE, 2xx) and the in-dialog hot path never touches them at all: activity is
//! a relaxed store in the hot slot, read back only when the idle deadline comes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crossbeam_utils::CachePadded;

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
/// Entries a shard may hold beyond twice its share before it is swept.
const SWEEP_SLACK: usize = 256;

type Heap = BinaryHeap<Reverse<(u64, Target)>>;

/// Sharded deadline heaps. Entries are not cancelled one by one: a woken target re-checks its
/// own state, so a stale entry costs one pop. So that ended calls' entries do not pile up until
/// their (possibly hours-away) deadline, a shard that grows past twice its share of the live
/// entries is swept of dead ones on the next `arm`: amortised O(1) per entry, memory bounded by
/// the live dialogs and INVITE records.
pub(crate) struct Timers {
    /// One cache line each: threads arming timers in different shards do not share lines.
    shards: [CachePadded<Mutex<Heap>>; SHARDS],
}

fn lock(m: &Mutex<Heap>) -> MutexGuard<'_, Heap> {
    // A panic while holding a shard cannot leave a heap half-updated in a way that matters:
    // every entry is self-checking.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            shards: std::array::from_fn(|_| CachePadded::new(Mutex::new(BinaryHeap::new()))),
        }
    }

    fn shard(&self, target: &Target) -> &Mutex<Heap> {
        let n = match target {
            Target::Dialog(h) => h.index() as usize,
            Target::Pending(fp) => fp.0 as usize,
        };
        &self.shards[n % SHARDS]
    }

    /// Wakes `target` at `at_ms`. `live` is how many entries can be alive across all shards;
    /// `alive` tells a live entry from a dead one when the shard is swept.
    pub(crate) fn arm(
        &self,
        at_ms: u64,
        target: Target,
        live: usize,
        alive: impl Fn(u64, Target) -> bool,
    ) {
        let mut heap = lock(self.shard(&target));
        heap.push(Reverse((at_ms, target)));
        if heap.len() > 2 * (live / SHARDS) + SWEEP_SLACK {
            heap.retain(|Reverse((at, t))| alive(*at, *t));
        }
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
            // After a burst (a flood of calls that all expired), give the capacity back.
            if heap.capacity() > 1_024 && heap.len() < heap.capacity() / 4 {
                let keep = heap.len() * 2;
                heap.shrink_to(keep);
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
            t.arm(
                1000 - i as u64,
                Target::Pending(Fingerprint(i)),
                1000,
                |_, _| true,
            );
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

    #[test]
    fn dead_entries_are_swept_once_a_shard_outgrows_its_share() {
        let t = Timers::new();
        let total = SHARDS * SWEEP_SLACK * 8;
        // One entry in eight stays alive.
        let alive = |_: u64, target: Target| matches!(target, Target::Pending(fp) if fp.0 % 8 == 0);
        let live = total / 8;
        for i in 0..total as u128 {
            t.arm(5, Target::Pending(Fingerprint(i)), live, alive);
        }
        let per_shard_cap = 2 * (live / SHARDS) + SWEEP_SLACK + 1;
        assert!(t.len() <= SHARDS * per_shard_cap, "{} entries", t.len());
        assert!(t.len() < total / 2, "sweeps happened: {} entries", t.len());
        let mut due = Vec::new();
        t.take_due(5, usize::MAX, &mut due);
        let kept_alive = due
            .iter()
            .filter(|(at, target)| alive(*at, *target))
            .count();
        assert_eq!(kept_alive, live, "a sweep never drops a live entry");
    }
}
