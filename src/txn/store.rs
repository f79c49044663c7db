//! Where transactions live: a slab of entries with generations (so a stale token never reaches
//! a reused entry), an index by key, the timer wheel, and the count and byte accounting.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::key::{AckKey, TxnKey};
use super::{Transport, TxnId, TxnState};
use crate::id::BuildIdentityHasher;
use crate::wheel::Wheel;

/// INVITE or not: the two families of state machines (§17.1.1/§17.1.2, §17.2.1/§17.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Invite,
    NonInvite,
}

/// What happens when a transaction's end timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It was only absorbing retransmissions (Timers D, I, J, K, L after the ACK, M).
    Quiet,
    /// The transaction user hears of it.
    Report(super::TimedOut),
}

/// One transaction.
#[derive(Debug)]
pub(crate) struct Txn {
    pub key: TxnKey,
    pub family: Family,
    pub state: TxnState,
    pub transport: Transport,
    /// Where its messages go: the next hop of our request, or where a response to the
    /// received request goes (§18.2.2).
    pub peer: SocketAddr,
    /// A client's request; a server's last response (resent on a retransmitted request).
    pub message: Vec<u8>,
    /// The ACK a client INVITE sent for its non-2xx, resent on each retransmission of it.
    pub ack: Vec<u8>,
    /// A server INVITE: the key the ACK of its 2xx will come with.
    pub ack_of: Option<AckKey>,
    /// A server INVITE whose 2xx waits for that ACK: the same key, indexed.
    pub ack_key: Option<AckKey>,
    /// The last status sent (server) or received (client); 0 before any.
    pub status: u16,
    /// The retransmission interval now (Timers A, E, G and the 2xx's).
    pub interval: u64,
    pub resend_at: Option<u64>,
    pub end_at: Option<(u64, Ending)>,
}

impl Txn {
    /// The earliest of its timers.
    pub fn due(&self) -> Option<u64> {
        match (self.resend_at, self.end_at) {
            (Some(a), Some((b, _))) => Some(a.min(b)),
            (a, b) => a.or(b.map(|(at, _)| at)),
        }
    }

    /// The memory its messages hold: buffer capacities, not the bytes written, so that the
    /// byte budget bounds what is really held.
    pub fn bytes(&self) -> usize {
        self.message.capacity() + self.ack.capacity()
    }

    /// Whether dropping it loses only the absorption of retransmissions, never an answer.
    pub fn evictable(&self) -> bool {
        match (self.key.role(), self.state) {
            (_, TxnState::Terminated | TxnState::Confirmed) => true,
            (super::Role::Client, TxnState::Completed | TxnState::Accepted) => true,
            (super::Role::Server, TxnState::Completed) => self.family == Family::NonInvite,
            (super::Role::Server, TxnState::Accepted) => self.ack_key.is_none(),
            _ => false,
        }
    }
}

struct Slot {
    generation: u32,
    txn: Option<Txn>,
}

/// Timer entries [`Store::pop_due`] takes from the wheel at a time.
const TAKE_BATCH: usize = 64;

/// Message buffers come in power-of-two capacities from `SMALLEST_CLASS` to
/// `SPARE_CAPACITY` (a held message wastes less than half its buffer; a larger message gets
/// an exact one). Spares are kept per capacity, up to `SPARE_BYTES_PER_CLASS` of each (1 MiB
/// in all): steady traffic allocates nothing and never grows a buffer, a burst of large
/// messages leaves nothing behind.
const SMALLEST_CLASS: usize = 512;
const SPARE_CAPACITY: usize = 4_096;
const CLASSES: usize = (SPARE_CAPACITY / SMALLEST_CLASS).trailing_zeros() as usize + 1;
const SPARE_BYTES_PER_CLASS: usize = 256 * 1024;

/// The capacity of the buffer that holds a message of `len` bytes.
pub(crate) fn capacity_for(len: usize) -> usize {
    match len <= SPARE_CAPACITY {
        true => len.max(SMALLEST_CLASS).next_power_of_two(),
        false => len,
    }
}

/// The spare stack a buffer of `capacity` goes back to, if any.
fn class_of(capacity: usize) -> Option<usize> {
    (capacity.is_power_of_two() && (SMALLEST_CLASS..=SPARE_CAPACITY).contains(&capacity))
        .then(|| (capacity.trailing_zeros() - SMALLEST_CLASS.trailing_zeros()) as usize)
}

pub(crate) struct Store {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<TxnKey, u32, BuildIdentityHasher>,
    acks: HashMap<AckKey, u32, BuildIdentityHasher>,
    /// (due, (slot, generation)); entries whose transaction moved its due time are skipped.
    timers: Wheel<(u32, u32)>,
    /// Entries taken from `timers` and not yet handed out by [`Store::pop_due`].
    taken: Vec<(u64, (u32, u32))>,
    /// Transactions that became evictable, oldest first (stale entries skipped).
    evictable: VecDeque<(u32, u32)>,
    live: usize,
    bytes: usize,
    spare: [Vec<Vec<u8>>; CLASSES],
    /// The generation new slots start at: above every generation a token may still hold
    /// after the slab was given back.
    base_generation: u32,
    /// Stamped on every token, so a token from another owner's store never matches here.
    owner: u16,
}

impl Store {
    pub fn new(owner: u16) -> Store {
        Store {
            owner,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            acks: HashMap::default(),
            timers: Wheel::new(),
            taken: Vec::new(),
            evictable: VecDeque::new(),
            live: 0,
            bytes: 0,
            spare: Default::default(),
            base_generation: 0,
        }
    }

    /// Entries in the queue of evictable transactions, stale ones included.
    #[cfg(test)]
    pub fn evictable_queued(&self) -> usize {
        self.evictable.len()
    }

    pub fn len(&self) -> usize {
        self.live
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A message buffer holding `bytes`, of [`capacity_for`] its length: a spare when one of
    /// that capacity is left.
    pub fn buffer(&mut self, bytes: &[u8]) -> Vec<u8> {
        let capacity = capacity_for(bytes.len());
        let mut buf = class_of(capacity)
            .and_then(|class| self.spare[class].pop())
            .unwrap_or_else(|| Vec::with_capacity(capacity));
        buf.extend_from_slice(bytes);
        buf
    }

    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        let capacity = buf.capacity();
        if let Some(spares) = class_of(capacity).map(|class| &mut self.spare[class]) {
            if (spares.len() + 1) * capacity <= SPARE_BYTES_PER_CLASS {
                buf.clear();
                spares.push(buf);
            }
        }
    }

    /// Makes room for `bytes` more within `(count, budget)`, dropping evictable transactions
    /// oldest first. False when there is none left to drop.
    pub fn make_room(&mut self, count: usize, budget: usize, bytes: usize) -> bool {
        while self.live >= count || self.bytes + bytes > budget {
            let Some((slot, generation)) = self.evictable.pop_front() else {
                return false;
            };
            let id = TxnId {
                slot,
                generation,
                owner: self.owner,
            };
            if self.get(id).is_some_and(Txn::evictable) {
                self.remove(id);
            }
        }
        true
    }

    pub fn insert(&mut self, txn: Txn) -> TxnId {
        self.live += 1;
        self.bytes += txn.bytes();
        let key = txn.key;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: self.base_generation,
                    txn: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.txn = Some(txn);
        let id = TxnId {
            slot,
            generation: entry.generation,
            owner: self.owner,
        };
        self.index.insert(key, slot);
        self.rearm(id);
        id
    }

    pub fn find(&self, key: &TxnKey) -> Option<TxnId> {
        let slot = *self.index.get(key)?;
        let generation = self.slots.get(slot as usize)?.generation;
        Some(TxnId {
            slot,
            generation,
            owner: self.owner,
        })
    }

    pub fn find_ack(&self, key: &AckKey) -> Option<TxnId> {
        let slot = *self.acks.get(key)?;
        let generation = self.slots.get(slot as usize)?.generation;
        Some(TxnId {
            slot,
            generation,
            owner: self.owner,
        })
    }

    pub fn get(&self, id: TxnId) -> Option<&Txn> {
        let slot = self.slots.get(id.slot as usize)?;
        (slot.generation == id.generation && id.owner == self.owner)
            .then_some(slot.txn.as_ref())
            .flatten()
    }

    /// Changes a transaction through `change`, then brings the accounting, the ACK index and
    /// the timers up to date with what it became.
    pub fn update<R>(&mut self, id: TxnId, change: impl FnOnce(&mut Txn) -> R) -> Option<R> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation || id.owner != self.owner {
            return None;
        }
        let txn = slot.txn.as_mut()?;
        let (bytes_before, due_before, ack_before, evictable_before) =
            (txn.bytes(), txn.due(), txn.ack_key, txn.evictable());
        let result = change(txn);
        let (bytes_after, due_after, ack_after, evictable_after) =
            (txn.bytes(), txn.due(), txn.ack_key, txn.evictable());
        self.bytes = self.bytes + bytes_after - bytes_before;
        if ack_before != ack_after {
            if let Some(key) = ack_before {
                self.acks.remove(&key);
            }
            if let Some(key) = ack_after {
                self.acks.insert(key, id.slot);
            }
        }
        if due_before != due_after {
            self.rearm(id);
        }
        if evictable_after && !evictable_before {
            self.evictable.push_back((id.slot, id.generation));
        }
        Some(result)
    }

    fn rearm(&mut self, id: TxnId) {
        if let Some(due) = self.get(id).and_then(Txn::due) {
            self.timers.push(due, (id.slot, id.generation));
        }
        // Stale wheel and queue entries are skipped when met; swept when they dominate.
        if self.timers.len() > 64 && self.timers.len() > 4 * self.live {
            let slots = &self.slots;
            let current = |due: u64, (slot, generation): (u32, u32)| {
                slots
                    .get(slot as usize)
                    .filter(|s| s.generation == generation)
                    .and_then(|s| s.txn.as_ref())
                    .and_then(Txn::due)
                    .is_some_and(|d| d == due)
            };
            self.timers.retain_near(current);
            self.timers.retain_far(current);
        }
        if self.evictable.len() > 64 && self.evictable.len() > 4 * self.live {
            let slots = &self.slots;
            self.evictable.retain(|&(slot, generation)| {
                slots
                    .get(slot as usize)
                    .is_some_and(|s| s.generation == generation && s.txn.is_some())
            });
        }
    }

    pub fn remove(&mut self, id: TxnId) -> Option<()> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation || id.owner != self.owner {
            return None;
        }
        let txn = slot.txn.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.slot);
        self.live -= 1;
        self.bytes -= txn.bytes();
        if self.index.get(&txn.key) == Some(&id.slot) {
            self.index.remove(&txn.key);
        }
        if let Some(key) = txn.ack_key {
            if self.acks.get(&key) == Some(&id.slot) {
                self.acks.remove(&key);
            }
        }
        self.recycle(txn.message);
        self.recycle(txn.ack);
        // The queue holds transactions in the order they became evictable, nearly the order
        // they end: its stale head goes as they do, so the sweep in `rearm` seldom runs.
        while let Some(&(slot, generation)) = self.evictable.front() {
            let live = self.slots.get(slot as usize);
            if live.is_some_and(|s| s.generation == generation && s.txn.is_some()) {
                break;
            }
            self.evictable.pop_front();
        }
        if self.live == 0 && self.slots.len() > 1024 {
            // After a burst, give the memory back; tokens of the old slots must not match.
            let newest = self.slots.iter().map(|s| s.generation).max().unwrap_or(0);
            self.base_generation = newest.wrapping_add(1);
            self.slots.clear();
            self.free.clear();
            self.index.shrink_to_fit();
            self.acks.shrink_to_fit();
            self.timers.clear();
            self.taken = Vec::new();
            self.evictable.clear();
            self.evictable.shrink_to_fit();
        }
        Some(())
    }

    /// When a timer is next due: exact with no transaction left, else the earliest entry
    /// held, which may be a stale one (the wake-up then finds nothing and drops it).
    pub fn next_due(&mut self) -> Option<u64> {
        if self.live == 0 {
            if self.timers.len() + self.taken.len() > 0 {
                self.timers.clear();
                self.taken.clear();
            }
            return None;
        }
        let taken = self.taken.iter().map(|(due, _)| *due).min();
        match (taken, self.timers.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the next transaction due at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<TxnId> {
        loop {
            while let Some((due, (slot, generation))) = self.taken.pop() {
                let id = TxnId {
                    slot,
                    generation,
                    owner: self.owner,
                };
                if self.get(id).and_then(Txn::due) == Some(due) {
                    return Some(id);
                }
            }
            if self.timers.take_due(now, TAKE_BATCH, &mut self.taken) == 0 {
                return None;
            }
        }
    }
}
