//! Per-source state: two rate buckets and a count of live dialogs per source address, in a
//! concurrent map with a hard cap and idle expiry, so that a flood from a million spoofed
//! addresses cannot grow it: sources beyond the cap share one overflow entry.
//!
//! An entry leaves the map only through [`SourceEntry::retire`], a CAS of its dialog count
//! from 0 to a tombstone: a dialog charged to an entry keeps it in the map until it is
//! released, and a charge never lands on an entry being removed.

use std::net::IpAddr;

use crossbeam_utils::CachePadded;

use super::policy::canonical;
use super::rate::Rate;
use crate::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// The key of a source: an IPv4 address, or the /64 an IPv6 address is in (one host can hold
/// a whole /64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey(u128);

impl SourceKey {
    /// The key `ip` counts under.
    pub fn of(ip: IpAddr) -> SourceKey {
        match canonical(ip) {
            IpAddr::V4(v4) => SourceKey(0xffff_0000_0000 | u128::from(u32::from(v4))),
            IpAddr::V6(v6) => SourceKey(u128::from(v6) & !u128::from(u64::MAX)),
        }
    }
}

/// Where a dialog's share of a per-source limit was counted, so that it is given back there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// The source's own entry.
    Source(SourceKey),
    /// The overflow entry shared by sources that found the map full.
    Overflow,
}

impl Charge {
    /// `charge` as a kind byte and two words, as a dialog's cold data and an INVITE record
    /// keep it: the `u128` key would align either to 16 bytes.
    pub(crate) fn pack(charge: Option<Charge>) -> (u8, [u64; 2]) {
        match charge {
            None => (0, [0; 2]),
            Some(Charge::Overflow) => (1, [0; 2]),
            Some(Charge::Source(SourceKey(key))) => (2, [(key >> 64) as u64, key as u64]),
        }
    }

    /// The charge [`Charge::pack`] gave `kind` and `words` for.
    pub(crate) fn unpack(kind: u8, [high, low]: [u64; 2]) -> Option<Charge> {
        match kind {
            0 => None,
            1 => Some(Charge::Overflow),
            _ => Some(Charge::Source(SourceKey(
                u128::from(high) << 64 | u128::from(low),
            ))),
        }
    }
}

/// The dialog count of an entry being removed.
const RETIRED: u32 = u32::MAX;

/// One source's counters.
#[derive(Debug, Default)]
pub struct SourceEntry {
    /// New dialogs it may start.
    pub(crate) new_dialogs: Rate,
    /// Answers to its malformed requests.
    pub(crate) error_answers: Rate,
    /// Live dialogs charged to it; [`RETIRED`] once it is being removed.
    active: AtomicU32,
    /// When it was last seen (caller's clock).
    last_seen_ms: AtomicU64,
}

/// Why a charge was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeError {
    /// The source holds its maximum of dialogs.
    Full,
    /// The entry is being removed: look the source up again.
    Retired,
}

impl SourceEntry {
    /// A fresh entry, seen at `now_ms`.
    pub fn new(now_ms: u64) -> SourceEntry {
        let entry = SourceEntry::default();
        entry.last_seen_ms.store(now_ms, Ordering::Relaxed);
        entry
    }

    /// Counts one more live dialog, unless `max` are live or the entry is retiring.
    pub fn charge(&self, max: u32) -> Result<(), ChargeError> {
        let mut active = self.active.load(Ordering::Relaxed);
        loop {
            if active == RETIRED {
                return Err(ChargeError::Retired);
            }
            if active >= max {
                return Err(ChargeError::Full);
            }
            // AcqRel pairs with `retire`: exactly one of a charge and a retire of a zero
            // count can succeed, since both are read-modify-writes of one word.
            match self.active.compare_exchange_weak(
                active,
                active + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => active = now,
            }
        }
    }

    /// Gives one dialog back.
    pub fn release(&self) {
        let _ = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |a| {
                (a != RETIRED && a > 0).then(|| a - 1)
            });
    }

    /// Marks the entry for removal if it holds no dialog; `true` when it may be removed.
    pub fn retire(&self) -> bool {
        self.active
            .compare_exchange(0, RETIRED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Live dialogs charged to it (0 once retired).
    pub fn active(&self) -> u32 {
        match self.active.load(Ordering::Relaxed) {
            RETIRED => 0,
            n => n,
        }
    }

    fn seen(&self, now_ms: u64) {
        // A store only when it moves: every admission would otherwise write the line.
        if self.last_seen_ms.load(Ordering::Relaxed) < now_ms {
            self.last_seen_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    fn idle_since(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }
}

/// The map of sources.
pub(crate) struct Sources {
    /// Hashed with aHash under keys random per process: an attacker cannot aim addresses at
    /// one bucket chain, and a hit costs a few nanoseconds rather than a 128-bit keyed hash's forty.
    map: papaya::HashMap<SourceKey, SourceEntry, ahash::RandomState>,
    /// Entries in the map (papaya's own count is not exact under concurrency).
    len: CachePadded<AtomicUsize>,
    overflow: SourceEntry,
    /// When a sweep for idle entries may next run.
    next_sweep_ms: AtomicU64,
}

/// How often idle entries are looked for.
pub(crate) const SWEEP_INTERVAL_MS: u64 = 1_000;

impl Sources {
    pub(crate) fn new(capacity: usize) -> Sources {
        Sources {
            // Grown as sources come (a new source is the cold path): a table sized for the cap
            // up front would keep its touched pages for good after one spoofed flood.
            map: papaya::HashMap::builder()
                .capacity(capacity.min(1 << 10))
                .hasher(ahash::RandomState::new())
                .collector(crate::sync::collector())
                .build(),
            len: CachePadded::new(AtomicUsize::new(0)),
            overflow: SourceEntry::new(0),
            next_sweep_ms: AtomicU64::new(0),
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Runs `f` on the entry of `ip` (made if absent, the overflow entry if the map holds
    /// `cap` entries and none is idle), with where a charge on it is counted.
    pub(crate) fn with<R>(
        &self,
        ip: IpAddr,
        now_ms: u64,
        (cap, idle_ms): (usize, u64),
        f: impl Fn(&SourceEntry, Charge) -> R,
    ) -> R {
        let key = SourceKey::of(ip);
        let map = self.map.pin();
        if let Some(entry) = map.get(&key) {
            entry.seen(now_ms);
            return f(entry, Charge::Source(key));
        }
        if self.len() >= cap {
            self.sweep(now_ms, idle_ms);
        }
        if self.len.fetch_add(1, Ordering::Relaxed) >= cap {
            self.len.fetch_sub(1, Ordering::Relaxed);
            self.overflow.seen(now_ms);
            return f(&self.overflow, Charge::Overflow);
        }
        match map.try_insert(key, SourceEntry::new(now_ms)) {
            Ok(entry) => f(entry, Charge::Source(key)),
            Err(occupied) => {
                self.len.fetch_sub(1, Ordering::Relaxed);
                f(occupied.current, Charge::Source(key))
            }
        }
    }

    /// Gives a dialog back to the entry it was charged to.
    pub(crate) fn release(&self, charge: Charge) {
        match charge {
            Charge::Source(key) => {
                if let Some(entry) = self.map.pin().get(&key) {
                    entry.release();
                }
            }
            Charge::Overflow => self.overflow.release(),
        }
    }

    /// Removes the entries idle for `idle_ms` that hold no dialog, at most once a
    /// [`SWEEP_INTERVAL_MS`] (whoever wins the CAS does it).
    pub(crate) fn sweep(&self, now_ms: u64, idle_ms: u64) {
        let due = self.next_sweep_ms.load(Ordering::Relaxed);
        if now_ms < due
            || self
                .next_sweep_ms
                .compare_exchange(
                    due,
                    now_ms + SWEEP_INTERVAL_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let map = self.map.pin();
        for (key, entry) in map.iter() {
            if now_ms.saturating_sub(entry.idle_since()) >= idle_ms && entry.retire() {
                map.remove(key);
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// When [`Sources::sweep`] next has work, if any entry is held.
    pub(crate) fn next_sweep(&self) -> Option<u64> {
        (self.len() > 0).then(|| self.next_sweep_ms.load(Ordering::Relaxed))
    }
}
