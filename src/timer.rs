//! Deadlines for the manager: one current wake-up per dialog or pending INVITE, kept in
//! sharded timing wheels so that arming a timer locks one shard briefly on a cold path (dialog
//! creation, BYE, 2xx) and the in-dialog hot path never touches them at all: activity is
//! a relaxed store in the hot slot, read back only when the idle deadline comes.
//!
//! Each shard is a [`Wheel`]: most deadlines are less than a minute away (Timer B, an INVITE
//! record's 64×T1 linger) and cost a push and a take; farther ones (idle dialogs, hours away)
//! wait in its heap.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crossbeam_utils::CachePadded;

use crate::id::Fingerprint;
use crate::table::DialogHandle;
use crate::wheel::Wheel;

/// What a deadline wakes up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    /// Re-check a dialog's deadlines.
    Dialog(DialogHandle),
    /// Drop an INVITE transaction record that outlived its use. Its key as two words
    /// ([`Target::pending`]): with a `u128`, 16-byte aligned, a deadline took 48 bytes, not 32.
    Pending([u64; 2]),
}

impl Target {
    /// The target of the INVITE record keyed `key`.
    pub(crate) fn pending(key: Fingerprint) -> Target {
        Target::Pending(key.to_words())
    }
}

const SHARDS: usize = 16;
/// Entries a shard's wheel or heap may hold beyond its bound before it is swept.
const SWEEP_SLACK: usize = 256;
/// Sharded deadline wheels. Entries are not cancelled one by one: a woken target re-checks its
/// own state, so a stale entry costs one take. So that ended calls' entries do not pile up
/// until their (possibly hours-away) deadline, a shard whose heap grows past twice its share
/// of the live entries, or its wheel past four times, has that part swept of dead ones on the
/// next `arm`: amortised O(1) per entry, memory bounded by the live dialogs and INVITE records.
pub(crate) struct Timers {
    /// One cache line each: threads arming timers in different shards do not share lines.
    shards: [CachePadded<Mutex<Wheel<Target>>>; SHARDS],
}

fn lock(m: &Mutex<Wheel<Target>>) -> MutexGuard<'_, Wheel<Target>> {
    // A panic while holding a shard cannot leave it half-updated in a way that matters:
    // every entry is self-checking.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            shards: std::array::from_fn(|_| CachePadded::new(Mutex::new(Wheel::new()))),
        }
    }

    fn shard(&self, target: &Target) -> &Mutex<Wheel<Target>> {
        let n = match target {
            Target::Dialog(h) => h.index() as usize,
            Target::Pending([_, low]) => *low as usize,
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
        let mut shard = lock(self.shard(&target));
        shard.push(at_ms, target);
        let share = live / SHARDS;
        // Far entries of ended calls would wait hours: swept at twice the share. Near ones
        // leave within a lap anyway; a live target re-armed once or twice (an INVITE record
        // at its creation, then at its answer) leaves as many stale ones, so the wheel is
        // swept only past four times its share.
        if shard.far_len() > 2 * share + SWEEP_SLACK {
            shard.retain_far(&alive);
        }
        if shard.near_len() > 4 * share + SWEEP_SLACK {
            shard.retain_near(&alive);
        }
    }

    /// The earliest deadline armed, if any.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.shards
            .iter()
            .filter_map(|s| lock(s).next_deadline())
            .min()
    }

    /// Moves up to `max` targets due at `now_ms` into `due`; returns how many it moved.
    pub(crate) fn take_due(&self, now_ms: u64, max: usize, due: &mut Vec<(u64, Target)>) -> usize {
        let mut taken = 0;
        for shard in &self.shards {
            if taken >= max {
                break;
            }
            taken += lock(shard).take_due(now_ms, max - taken, due);
        }
        taken
    }

    /// Entries held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Heap bytes the shards' wheels and heaps hold, room included.
    pub(crate) fn bytes(&self) -> usize {
        self.shards.iter().map(|s| lock(s).bytes()).sum()
    }

    /// Entries in the heaps (deadlines a lap or more ahead when armed), stale ones included.
    #[cfg(test)]
    pub(crate) fn far_len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).far_len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deadline is 32 bytes: the wheels and heaps hold one per live dialog and INVITE record.
    #[test]
    fn a_deadline_is_four_words() {
        assert_eq!(std::mem::size_of::<(u64, Target)>(), 32);
        let key = Fingerprint(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(Target::pending(key), Target::Pending(key.to_words()));
        assert_eq!(Fingerprint::from_words(key.to_words()), key);
    }

    #[test]
    fn due_entries_come_out_when_due_and_respect_max() {
        let t = Timers::new();
        for i in 0..100u128 {
            t.arm(
                1000 - i as u64,
                Target::pending(Fingerprint(i)),
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

    /// Near entries past four times a shard's share of the live ones, far ones past twice,
    /// are swept; a sweep never drops a live entry.
    #[test]
    fn dead_entries_are_swept_once_a_shard_outgrows_its_share() {
        for (at, times) in [(5, 4), (1 << 40, 2)] {
            let t = Timers::new();
            let total = SHARDS * SWEEP_SLACK * 16;
            // One entry in sixteen stays alive (the key's low word holds its low bits).
            let alive = |_: u64, target: Target| match target {
                Target::Pending([_, low]) => low.is_multiple_of(16),
                Target::Dialog(_) => false,
            };
            let live = total / 16;
            for i in 0..total as u128 {
                t.arm(at, Target::pending(Fingerprint(i)), live, alive);
            }
            let per_shard_cap = times * (live / SHARDS) + SWEEP_SLACK + 1;
            assert!(t.len() <= SHARDS * per_shard_cap, "{} entries", t.len());
            assert!(t.len() < total / 2, "sweeps happened: {} entries", t.len());
            let mut due = Vec::new();
            t.take_due(at, usize::MAX, &mut due);
            let kept_alive = due
                .iter()
                .filter(|(at, target)| alive(*at, *target))
                .count();
            assert_eq!(kept_alive, live, "a sweep never drops a live entry");
        }
    }
}
