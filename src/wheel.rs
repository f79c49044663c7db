//! A timing wheel with a heap behind it, for deadlines in milliseconds: near ones (within
//! [`SLOTS`] × [`TICK_MS`], about 65 s) go into the slot of their tick, where adding is a push
//! and taking what is due walks the slots up to now; farther ones wait in a min-heap and are
//! taken from it when due. Entries are not cancelled: their owner tells a stale one when it
//! comes out, and sweeps them with the `retain_*` methods when they pile up.
//!
//! With min-heaps alone a busy manager spent about an eighth of its time in heap pops and
//! sift-ups, each a walk of cache lines through a heap of tens of thousands of entries.
//!
//! A slot's entries are one `Vec`, read in order when the slot comes due. A slot emptied by a
//! take hands its `Vec` to the spares, and a slot armed while empty takes one from there: the
//! room moves round the wheel with the traffic. Kept in place instead, every slot reached for
//! the first time, or after a trim, allocated (about two allocations per call on each side
//! of the `call_allocs` test). A pool of linked entries also allocated nothing, but walking
//! its lists cost a call a quarter more wall time in the `calls` bench.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The span of one wheel slot.
const TICK_MS: u64 = 64;
/// Slots in a wheel: with [`TICK_MS`], deadlines up to about 65 s ahead.
const SLOTS: u64 = 1024;
/// Deadlines at most this far ahead go into the wheel, not the heap, as long as the last take
/// was less than five seconds before they were armed (the lap is 65 s). For deadlines that
/// are usually superseded before they come, such as a ringing call's (see
/// `DialogManager::rearm`): their stale entries leave with their slot instead of waiting in
/// the heap for minutes.
pub(crate) const NEAR_MS: u64 = 60_000;
const _: () = assert!(NEAR_MS < SLOTS * TICK_MS);

/// Room a slot keeps when the wheel is trimmed. Drained slots' room goes to the spares for the
/// slots armed next (steady traffic then allocates nothing), until the wheel's room passes
/// eight times its entries plus this much a slot: after a burst, every slot keeping the room
/// of a busy second held 25 MiB a manager.
const SLOT_KEEP: usize = 4;
/// Ticks between looks at the wheel's room (about 4 s).
const TRIM_EVERY: u64 = 64;

/// Deadlines with an item each: a wheel for near ones, a heap for far ones.
pub(crate) struct Wheel<T> {
    /// Slot `tick % SLOTS` holds the entries of `tick` (`at / TICK_MS`) for the ticks from
    /// `cursor` to `cursor + SLOTS - 1`, and entries armed for a tick already passed in the
    /// slot of `cursor`. Allocated at the first near deadline.
    wheel: Vec<Vec<(u64, T)>>,
    /// The room of drained slots, for the next slot armed while it has none (at most
    /// [`SLOTS`], the room for them allocated with the slots).
    spare: Vec<Vec<(u64, T)>>,
    /// The first tick whose slot may still hold entries; only takes move it, to the tick of
    /// their `now` (0 before the first: deadlines armed before it wait in the heap).
    cursor: u64,
    /// Entries in the wheel.
    near: usize,
    /// No entry of the wheel is due before this (a lower bound, exact after each take).
    near_min: u64,
    far: BinaryHeap<Reverse<(u64, T)>>,
}

impl<T: Copy + Ord> Wheel<T> {
    /// An empty wheel; its slots are allocated at the first near deadline.
    pub(crate) fn new() -> Wheel<T> {
        Wheel {
            wheel: Vec::new(),
            spare: Vec::new(),
            cursor: 0,
            near: 0,
            near_min: u64::MAX,
            far: BinaryHeap::new(),
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.near + self.far.len()
    }

    /// Entries in the wheel (deadlines less than a lap ahead when armed).
    pub(crate) fn near_len(&self) -> usize {
        self.near
    }

    /// Entries in the heap.
    pub(crate) fn far_len(&self) -> usize {
        self.far.len()
    }

    /// Heap bytes held: the slots, their room and the spares', the heap's room.
    pub(crate) fn bytes(&self) -> usize {
        let entry = std::mem::size_of::<(u64, T)>();
        let slot = std::mem::size_of::<Vec<(u64, T)>>();
        (self.wheel.capacity() + self.spare.capacity()) * slot
            + (self.room() + self.far.capacity()) * entry
    }

    /// The slot of `tick`, with room from the spares if it had none.
    fn slot(&mut self, tick: u64) -> &mut Vec<(u64, T)> {
        if self.wheel.is_empty() {
            self.wheel = (0..SLOTS).map(|_| Vec::new()).collect();
            self.spare = Vec::with_capacity(SLOTS as usize);
        }
        let slot = &mut self.wheel[(tick % SLOTS) as usize];
        if slot.capacity() == 0 {
            if let Some(room) = self.spare.pop() {
                *slot = room;
            }
        }
        slot
    }

    /// Adds `item`, due at `at`.
    pub(crate) fn push(&mut self, at: u64, item: T) {
        let entry = (at, item);
        let tick = at / TICK_MS;
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

    /// The earliest deadline held.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let near = (self.near > 0).then_some(self.near_min);
        let far = self.far.peek().map(|Reverse((at, _))| *at);
        match (near, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves up to `max` entries due at `now_ms` into `due`.
    pub(crate) fn take_due(&mut self, now_ms: u64, max: usize, due: &mut Vec<(u64, T)>) -> usize {
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
                if slot.is_empty() && slot.capacity() > 0 {
                    self.spare.push(std::mem::take(slot));
                }
                // A slot left with entries is the current tick's (later ones) or `max` ran out.
                if !slot.is_empty() || tick >= last || taken >= max {
                    break;
                }
                tick += 1;
            }
            if tick / TRIM_EVERY != self.cursor / TRIM_EVERY {
                self.trim();
            }
            self.cursor = tick;
            self.near_min = self.exact_near_min();
        }
        if self.near == 0 {
            // Nothing near: the wheel starts again at now, so that deadlines a minute ahead
            // of now go into it rather than into the heap; an idle wheel gives its room back.
            let cursor = self.cursor.max(now_tick);
            if cursor / TRIM_EVERY != self.cursor / TRIM_EVERY {
                self.trim();
            }
            self.cursor = cursor;
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

    /// Gives back the slots' room once it is far more than the entries need (see
    /// [`SLOT_KEEP`]); looked at every [`TRIM_EVERY`] ticks.
    fn trim(&mut self) {
        if self.room() > 8 * self.near + SLOTS as usize * SLOT_KEEP {
            self.spare.clear();
            for slot in &mut self.wheel {
                slot.shrink_to(slot.len().max(SLOT_KEEP));
            }
        }
    }

    /// Entries the slots and the spares have room for.
    fn room(&self) -> usize {
        let slots: usize = self.wheel.iter().map(Vec::capacity).sum();
        slots + self.spare.iter().map(Vec::capacity).sum::<usize>()
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

    /// Keeps the wheel's entries `keep` says to.
    pub(crate) fn retain_near(&mut self, keep: impl Fn(u64, T) -> bool) {
        for slot in &mut self.wheel {
            slot.retain(|(at, t)| keep(*at, *t));
        }
        self.near = self.wheel.iter().map(Vec::len).sum();
        self.near_min = self.exact_near_min();
    }

    /// Keeps the heap's entries `keep` says to.
    pub(crate) fn retain_far(&mut self, keep: impl Fn(u64, T) -> bool) {
        self.far.retain(|Reverse((at, t))| keep(*at, *t));
    }

    /// Drops every entry and gives the memory back.
    pub(crate) fn clear(&mut self) {
        *self = Wheel::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steady traffic, once the wheel has its working room, moves that room round from drained
    /// slots to armed ones: the room neither grows (an allocation) nor shrinks (a trim).
    #[test]
    fn steady_traffic_moves_the_room_round() {
        let mut w = Wheel::new();
        let mut due = Vec::new();
        let mut room = None;
        // Six laps of a call every 10 ms, each arming deadlines 0.5, 32 and 60 s ahead.
        for step in 0..6 * SLOTS * TICK_MS / 10 {
            let now = 10 * step;
            for ahead in [500, 32_000, 60_000] {
                w.push(now + ahead, step);
            }
            w.take_due(now, usize::MAX, &mut due);
            due.clear();
            if step == 2 * SLOTS * TICK_MS / 10 {
                room = Some(w.room());
            }
        }
        assert_eq!(w.near_len(), w.len(), "every deadline in the wheel");
        assert_eq!(
            room,
            Some(w.room()),
            "no slot grew, got fresh room or was trimmed"
        );
    }

    /// After a burst has come and gone, the slots soon hold their kept room only.
    #[test]
    fn a_burst_leaves_no_room_behind() {
        let mut w = Wheel::new();
        for i in 0..100_000u64 {
            w.push(1_000 + i % 60_000, i);
        }
        let mut due = Vec::new();
        w.take_due(70_000, usize::MAX, &mut due);
        assert_eq!(due.len(), 100_000);
        // Quiet seconds: one entry now and then.
        for step in 0..=TRIM_EVERY {
            let now = 70_000 + step * TICK_MS;
            w.push(now + 1, step);
            w.take_due(now + 1, usize::MAX, &mut due);
        }
        let room = w.room();
        assert!(
            room <= SLOTS as usize * SLOT_KEEP,
            "{room} entries of room kept"
        );
        // Or with nothing more armed at all: a burst within one tick, drained without the
        // cursor passing a trim, then time passes.
        let mut idle = Wheel::new();
        let tick = TRIM_EVERY + 1;
        idle.take_due(tick * TICK_MS, usize::MAX, &mut due);
        for i in 0..100_000u64 {
            idle.push(tick * TICK_MS + i % TICK_MS, i);
        }
        idle.take_due((tick + 1) * TICK_MS - 1, usize::MAX, &mut due);
        assert_eq!(idle.len(), 0);
        idle.take_due((tick + TRIM_EVERY) * TICK_MS, usize::MAX, &mut due);
        let room = idle.room();
        assert!(
            room <= SLOTS as usize * SLOT_KEEP,
            "{room} entries of room kept idle"
        );
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
            let mut t = Wheel::new();
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
                        t.push(at, next_id);
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
                            let i = model.iter().position(|e| e == &(*at, *target));
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
}
