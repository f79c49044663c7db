//! Deadlines for the manager: one current wake-up per dialog or pending INVITE, kept in
//! sharded timing wheels so that arming a timer locks one shard briefly on a cold path (dialog
//! creation, BYE, 2xx) and the in-dialog hot path never touches them at all: activity is
//! a relaxed store in the hot slot, read back only when the idle deadline comes.
//!
//! Most deadlines are less than a minute away (Timer B, an INVITE record's 64×T1 linger): they
//! go into a wheel of [`SLOTS`] slots of [`TICK_MS`] each, where arming is a push onto the
//! slot's list and taking what is due walks the slots up to now. Farther ones (idle dialogs,
//! hours away) wait in a min-heap and are taken from it when due. With min-heaps alone a
//! busy manager spent about an eighth of its time in heap pops and sift-ups, each a walk of
//! cache lines through a heap of tens of thousands of entries.

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
/// The span of one wheel slot.
const TICK_MS: u64 = 64;
/// Slots in a shard's wheel: with [`TICK_MS`], deadlines up to about 65 s ahead.
const SLOTS: u64 = 1024;
/// A drained slot keeps at most this much room for the next lap.
const SLOT_KEEP: usize = 64;

type Entry = (u64, Target);

/// One shard: the wheel for near deadlines, a heap for far ones.
struct Shard {
    /// Slot `tick % SLOTS` holds the entries of `tick` (`at / TICK_MS`) for the ticks from
    /// `cursor` to `cursor + SLOTS - 1`, and entries armed for a tick already passed in the
    /// slot of `cursor`. Allocated at the first near deadline.
    wheel: Vec<Vec<Entry>>,
    /// The first tick whose slot may still hold entries; only takes move it, to the tick of
    /// their `now` (0 before the first: deadlines armed before it wait in the heap).
    cursor: u64,
    /// Entries in the wheel.
    near: usize,
    /// No entry of the wheel is due before this (a lower bound, exact after each take).
    near_min: u64,
    far: BinaryHeap<Reverse<Entry>>,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            wheel: Vec::new(),
            cursor: 0,
            near: 0,
            near_min: u64::MAX,
            far: BinaryHeap::new(),
        }
    }

    fn len(&self) -> usize {
        self.near + self.far.len()
    }

    fn slot(&mut self, tick: u64) -> &mut Vec<Entry> {
        if self.wheel.is_empty() {
            self.wheel = (0..SLOTS).map(|_| Vec::new()).collect();
        }
        &mut self.wheel[(tick % SLOTS) as usize]
    }

    fn push(&mut self, entry: Entry) {
        let tick = entry.0 / TICK_MS;
        if tick >= self.cursor + SLOTS {
            self.far.push(Reverse(entry));
            return;
        }
        // A tick the last take passed already goes where the next take looks first.
        let tick = tick.max(self.cursor);
        self.slot(tick).push(entry);
        self.near += 1;
        self.near_min = self.near_min.min(entry.0);
    }

    fn next_deadline(&self) -> Option<u64> {
        let near = (self.near > 0).then_some(self.near_min);
        let far = self.far.peek().map(|Reverse((at, _))| *at);
        match (near, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves up to `max` entries due at `now_ms` into `due`.
    fn take_due(&mut self, now_ms: u64, max: usize, due: &mut Vec<Entry>) -> usize {
        let mut taken = 0;
        let now_tick = now_ms / TICK_MS;
        // The wheel, slot by slot up to now: at most one lap, the cursor's slot at least (it
        // holds what was armed for a tick already passed).
        if self.near > 0 && self.near_min <= now_ms {
            let last = now_tick.min(self.cursor + SLOTS - 1).max(self.cursor);
            let mut tick = self.cursor;
            loop {
                let slot = &mut self.wheel[(tick % SLOTS) as usize];
                let before = slot.len();
                let mut i = 0;
                while i < slot.len() && taken < max {
                    if slot[i].0 <= now_ms {
                        due.push(slot.swap_remove(i));
                        taken += 1;
                    } else {
                        i += 1;
                    }
                }
                self.near -= before - slot.len();
                if slot.is_empty() && slot.capacity() > SLOT_KEEP {
                    slot.shrink_to(SLOT_KEEP);
                }
                // A slot left with entries is the current tick's (later ones) or `max` ran out.
                if !slot.is_empty() || tick >= last || taken >= max {
                    break;
                }
                tick += 1;
            }
            self.cursor = tick;
            self.near_min = self.exact_near_min();
        }
        if self.near == 0 {
            // Nothing near: the wheel starts again at now, so that deadlines a minute ahead
            // of now go into it rather than into the heap.
            self.cursor = self.cursor.max(now_tick);
        }
        while taken < max {
            match self.far.peek() {
                Some(Reverse((at, _))) if *at <= now_ms => {}
                _ => break,
            }
            if let Some(Reverse(entry)) = self.far.pop() {
                due.push(entry);
                taken += 1;
            }
        }
        // After a burst (a flood of calls that all expired), give the capacity back.
        if self.far.capacity() > 1_024 && self.far.len() < self.far.capacity() / 4 {
            let keep = self.far.len() * 2;
            self.far.shrink_to(keep);
        }
        taken
    }

    /// The earliest near deadline: the smallest in the first slot that holds any.
    fn exact_near_min(&self) -> u64 {
        if self.near == 0 {
            return u64::MAX;
        }
        (self.cursor..self.cursor + SLOTS)
            .map(|tick| &self.wheel[(tick % SLOTS) as usize])
            .find(|slot| !slot.is_empty())
            .and_then(|slot| slot.iter().map(|(at, _)| *at).min())
            .unwrap_or(u64::MAX)
    }

    fn retain_near(&mut self, alive: impl Fn(u64, Target) -> bool) {
        for slot in &mut self.wheel {
            slot.retain(|(at, t)| alive(*at, *t));
        }
        self.near = self.wheel.iter().map(Vec::len).sum();
        self.near_min = self.exact_near_min();
    }

    fn retain_far(&mut self, alive: impl Fn(u64, Target) -> bool) {
        self.far.retain(|Reverse((at, t))| alive(*at, *t));
    }
}

/// Sharded deadline wheels. Entries are not cancelled one by one: a woken target re-checks its
/// own state, so a stale entry costs one take. So that ended calls' entries do not pile up
/// until their (possibly hours-away) deadline, a shard that grows past twice its share of the
/// live entries is swept of dead ones on the next `arm`: amortised O(1) per entry, memory
/// bounded by the live dialogs and INVITE records.
pub(crate) struct Timers {
    /// One cache line each: threads arming timers in different shards do not share lines.
    shards: [CachePadded<Mutex<Shard>>; SHARDS],
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard cannot leave it half-updated in a way that matters:
    // every entry is self-checking.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            shards: std::array::from_fn(|_| CachePadded::new(Mutex::new(Shard::new()))),
        }
    }

    fn shard(&self, target: &Target) -> &Mutex<Shard> {
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
        let mut shard = lock(self.shard(&target));
        shard.push((at_ms, target));
        let share = live / SHARDS;
        // Far entries of ended calls would wait hours: swept at twice the share. Near ones
        // leave within a lap anyway; a live target re-armed once or twice (an INVITE record
        // at its creation, then at its answer) leaves as many stale ones, so the wheel is
        // swept only past four times its share.
        if shard.far.len() > 2 * share + SWEEP_SLACK {
            shard.retain_far(&alive);
        }
        if shard.near > 4 * share + SWEEP_SLACK {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_come_out_when_due_and_respect_max() {
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

    /// What a run of arms and takes does, against a plain list: deadlines already passed,
    /// near (in the wheel) and far (in the heap, past a lap), takes with small `max` and
    /// jumps of time past a whole lap. Every entry comes out once, never before its time, and
    /// every due one by the first take without a limit; the next deadline is always exact.
    #[test]
    fn the_wheel_agrees_with_a_list() {
        use proptest::prelude::*;
        let ops = proptest::collection::vec((0u8..6, 0u64..200_000, 1usize..40), 1..400);
        proptest!(ProptestConfig::with_cases(200), |(ops in ops)| {
            let t = Timers::new();
            let mut model: Vec<(u64, u128)> = Vec::new();
            let mut now = 1_000u64;
            let mut next_id = 0u128;
            for (kind, amount, max) in ops {
                match kind {
                    // Arm: behind now, near, or far.
                    0..=2 => {
                        let at = match kind {
                            0 => now.saturating_sub(amount % 500),
                            1 => now + amount % 70_000,
                            _ => now + amount * 50,
                        };
                        next_id += 1;
                        t.arm(at, Target::Pending(Fingerprint(next_id)), usize::MAX / 2, |_, _| true);
                        model.push((at, next_id));
                    }
                    // Time passes: a little, or more than a lap.
                    3 => now += amount % 300,
                    4 => now += amount,
                    // Take, with or without a limit.
                    _ => {
                        let limit = if max % 2 == 0 { usize::MAX } else { max };
                        let mut due = Vec::new();
                        let n = t.take_due(now, limit, &mut due);
                        prop_assert_eq!(n, due.len());
                        for (at, target) in &due {
                            prop_assert!(*at <= now, "taken early: {} at {}", at, now);
                            let Target::Pending(fp) = target else { unreachable!() };
                            let i = model.iter().position(|e| *e == (*at, fp.0));
                            prop_assert!(i.is_some(), "taken twice or never armed");
                            model.swap_remove(i.unwrap());
                        }
                        let left_due = model.iter().filter(|(at, _)| *at <= now).count();
                        if limit == usize::MAX {
                            prop_assert_eq!(left_due, 0);
                        } else {
                            prop_assert!(n == limit || left_due == 0);
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert_eq!(t.next_deadline(), model.iter().map(|(at, _)| *at).min());
            }
        });
    }

    /// Near entries past four times a shard's share of the live ones, far ones past twice,
    /// are swept; a sweep never drops a live entry.
    #[test]
    fn dead_entries_are_swept_once_a_shard_outgrows_its_share() {
        for (at, times) in [(5, 4), (1 << 40, 2)] {
            let t = Timers::new();
            let total = SHARDS * SWEEP_SLACK * 16;
            // One entry in sixteen stays alive.
            let alive =
                |_: u64, target: Target| matches!(target, Target::Pending(fp) if fp.0 % 16 == 0);
            let live = total / 16;
            for i in 0..total as u128 {
                t.arm(at, Target::Pending(Fingerprint(i)), live, alive);
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
