//! What a back-to-back user agent keeps beside the manager's dialogs: which outbound INVITE
//! serves which caller, which leg is paired with which, which relayed request waits for its
//! answer. Outside input grows these maps, so they have a count cap and a byte budget
//! together; and they hang off the manager's single end path ([`DialogManager::on_end`]), so
//! whatever ends a leg (a BYE either way, an error answer, an expiry, a CANCEL, a Replaces,
//! [`DialogManager::terminate`]) takes its pairing and its relayed requests out. What the
//! application still owes for it (a BYE to the other leg, an answer to each request relayed
//! onto the ended leg) waits in [`Legs::take_ended`].
//!
//! ```
//! use std::sync::Arc;
//! use sipdialog::b2bua::{LegBudget, Legs};
//! use sipdialog::manager::{DialogManager, ManagerConfig};
//!
//! let manager = DialogManager::new(ManagerConfig::default()).unwrap();
//! let legs: Arc<Legs<()>> = Arc::new(Legs::new(LegBudget { entries: 1_000, bytes: 1 << 20 }));
//! assert!(manager.on_end(legs.clone()).is_ok());
//! // Pair the two legs of each call with `legs.link(a, b)`; after each batch of messages
//! // and timeouts, hang up what `legs.take_ended()` lists.
//! assert!(legs.take_ended().is_empty());
//! ```
//!
//! [`DialogManager::on_end`]: crate::manager::DialogManager::on_end
//! [`DialogManager::terminate`]: crate::manager::DialogManager::terminate

mod relay;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use smallvec::SmallVec;

use crate::id::Tag;
use crate::manager::{Answering, DialogManager, EndHook, InviteId, KeptRequest};
use crate::metrics::TerminationReason;
use crate::table::DialogHandle;

pub use relay::Relay;

/// An outbound INVITE on its way, and what its answer is for.
#[derive(Debug)]
pub struct Outbound<T> {
    /// Its Call-ID (to CANCEL it).
    pub call_id: Box<[u8]>,
    /// Our From tag (to CANCEL it).
    pub from_tag: Tag,
    /// The caller's INVITE it relays, if it relays one (a transfer's call relays none).
    pub caller: Option<InviteId>,
    /// What the application keeps with it.
    pub data: T,
}

/// A request relayed onto a leg, kept to be answered on the other, and the server
/// transaction its answer goes on.
pub type Relayed = (Arc<KeptRequest>, Option<Answering>);

/// Count and byte limits of everything [`Legs`] holds.
#[derive(Clone, Copy, Debug)]
pub struct LegBudget {
    /// Entries in all maps together.
    pub entries: usize,
    /// Bytes those entries hold, kept requests included.
    pub bytes: usize,
}

/// What [`Legs`] holds: entries and bytes, and each map's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegUsage {
    /// Entries in all maps, ended legs not yet taken included.
    pub entries: usize,
    /// Bytes they hold.
    pub bytes: usize,
    /// Outbound INVITEs waiting for a final answer.
    pub outbound: usize,
    /// Callers' INVITEs waiting for ours.
    pub inbound: usize,
    /// Leg pairings, one per direction (two per call).
    pub links: usize,
    /// Legs with requests relayed onto them waiting for their answers.
    pub relayed: usize,
}

/// A leg that ended while paired or with relayed requests waiting: what the application
/// owes for it.
#[derive(Debug)]
pub struct EndedLeg {
    /// The leg that ended (stale now).
    pub leg: DialogHandle,
    /// Why it ended.
    pub reason: TerminationReason,
    /// The leg it was paired with: hang it up.
    pub partner: Option<DialogHandle>,
    /// Requests relayed onto the ended leg, by the CSeq they went out with: answer each to
    /// its sender.
    pub unanswered: SmallVec<[(u32, Relayed); 1]>,
    /// What the entries held, given back when it is taken.
    held: (usize, usize),
}

/// What each kind of entry costs besides the bytes it holds: its key, value and map slot (an
/// outbound entry's Call-ID is the manager's, 32 bytes).
const OUTBOUND_COST: usize = 96 + 32 + 64;
const INBOUND_COST: usize = 64;
const LINK_COST: usize = 48;
const RELAYED_COST: usize = 96;

type RelayedOnLeg = SmallVec<[(u32, Relayed); 1]>;

/// The maps, and what they hold together. `T` is what the application keeps with each
/// outbound INVITE.
pub struct Legs<T> {
    /// Our INVITEs, by their transaction.
    outbound: papaya::HashMap<InviteId, Arc<Outbound<T>>>,
    /// A caller's INVITE → ours (to cancel it when the caller does).
    by_inbound: papaya::HashMap<InviteId, InviteId>,
    /// Each leg → the other.
    links: papaya::HashMap<DialogHandle, DialogHandle>,
    /// Requests relayed onto a leg, by leg (so its end finds them) and CSeq. A lock, not a
    /// concurrent map: a leg's end and a request relayed onto it must not interleave, and
    /// relaying allocates (the kept copy) anyway.
    relayed: Mutex<std::collections::HashMap<DialogHandle, RelayedOnLeg>>,
    /// Legs ended with something owed, until the application takes them.
    ended: Mutex<Vec<EndedLeg>>,
    budget: LegBudget,
    entries: AtomicUsize,
    bytes: AtomicUsize,
}

impl<T> std::fmt::Debug for Legs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Legs")
            .field("usage", &self.usage())
            .finish_non_exhaustive()
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T> Legs<T> {
    /// Empty maps within `budget`.
    pub fn new(budget: LegBudget) -> Legs<T> {
        Legs {
            outbound: crate::sync::map(),
            by_inbound: crate::sync::map(),
            links: crate::sync::map(),
            relayed: Mutex::default(),
            ended: Mutex::new(Vec::new()),
            budget,
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Counts `n` entries of `bytes` in; `false` (nothing counted) past the budget.
    fn reserve(&self, n: usize, bytes: usize) -> bool {
        if self.entries.fetch_add(n, Ordering::Relaxed) + n > self.budget.entries {
            self.entries.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        if self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.budget.bytes {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.entries.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self, n: usize, bytes: usize) {
        self.entries.fetch_sub(n, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn outbound_cost(for_caller: bool) -> (usize, usize) {
        let n = 1 + usize::from(for_caller);
        (n, OUTBOUND_COST + INBOUND_COST * (n - 1))
    }

    /// Counts in an outbound INVITE's entry (and the caller's beside it, `for_caller`) before
    /// the INVITE is sent; `false` past the budget. [`Legs::add_outbound`] stores it, or
    /// [`Legs::unreserve_outbound`] gives it back.
    pub fn reserve_outbound(&self, for_caller: bool) -> bool {
        let (n, bytes) = Self::outbound_cost(for_caller);
        self.reserve(n, bytes)
    }

    /// Gives back what [`Legs::reserve_outbound`] counted in (the INVITE did not go).
    pub fn unreserve_outbound(&self, for_caller: bool) {
        let (n, bytes) = Self::outbound_cost(for_caller);
        self.release(n, bytes);
    }

    /// Stores our INVITE `id` (reserved before, with `for_caller` set when
    /// `outbound.caller` is).
    pub fn add_outbound(&self, id: InviteId, outbound: Outbound<T>) {
        if let Some(invite) = outbound.caller {
            self.by_inbound.pin().insert(invite, id);
        }
        self.outbound.pin().insert(id, Arc::new(outbound));
    }

    /// Our INVITE `id`, while it waits for its final answer.
    pub fn outbound(&self, id: InviteId) -> Option<Arc<Outbound<T>>> {
        self.outbound.pin().get(&id).cloned()
    }

    /// Takes our INVITE `id` out (it has its answer, or none will come), with the caller's
    /// entry beside it.
    pub fn take_outbound(&self, id: InviteId) -> Option<Arc<Outbound<T>>> {
        let outbound = self.outbound.pin().remove(&id).cloned()?;
        self.release(1, OUTBOUND_COST);
        if let Some(invite) = outbound.caller {
            self.take_inbound(invite);
        }
        Some(outbound)
    }

    /// Takes the caller's INVITE out; ours, if it is still on its way.
    pub fn take_inbound(&self, invite: InviteId) -> Option<InviteId> {
        let ours = *self.by_inbound.pin().remove(&invite)?;
        self.release(1, INBOUND_COST);
        Some(ours)
    }

    /// Pairs two legs of `manager`'s; `false` past the budget, or when either leg ended
    /// meanwhile (then nothing is kept: hang up the other).
    pub fn link(&self, manager: &DialogManager, a: DialogHandle, b: DialogHandle) -> bool {
        if !self.reserve(2, 2 * LINK_COST) {
            return false;
        }
        let links = self.links.pin();
        for (from, to) in [(a, b), (b, a)] {
            if links.insert(from, to).is_some() {
                self.release(1, LINK_COST);
            }
        }
        // A leg's end takes its links out after it leaves the table: links made after that
        // are taken out here.
        if manager.state(a).is_err() || manager.state(b).is_err() {
            for leg in [a, b] {
                if links.remove_if(&leg, |_, _| true).ok().flatten().is_some() {
                    self.release(1, LINK_COST);
                }
            }
            return false;
        }
        true
    }

    /// The leg paired with `leg`.
    pub fn other(&self, leg: DialogHandle) -> Option<DialogHandle> {
        self.links.pin().get(&leg).copied()
    }

    /// Takes out both directions of `leg`'s pairing (a transferor leaving its call); the
    /// other leg.
    pub fn unlink(&self, leg: DialogHandle) -> Option<DialogHandle> {
        let (other, n) = self.remove_links(leg)?;
        self.release(n, n * LINK_COST);
        Some(other)
    }

    /// Removes both directions of `leg`'s pairing without giving their budget back: the
    /// other leg and how many entries went.
    fn remove_links(&self, leg: DialogHandle) -> Option<(DialogHandle, usize)> {
        let links = self.links.pin();
        let other = *links.remove(&leg)?;
        let back = links
            .remove_if(&other, |_, back| *back == leg)
            .ok()
            .flatten()
            .is_some();
        Some((other, 1 + usize::from(back)))
    }

    /// Whether a relayed request kept in `len` bytes fits; if so it is counted until
    /// [`Legs::add_relayed`] stores it or [`Legs::unreserve_relayed`] gives it back.
    pub fn reserve_relayed(&self, len: usize) -> bool {
        self.reserve(1, RELAYED_COST + len)
    }

    /// Gives back what [`Legs::reserve_relayed`] counted in (the request did not go).
    pub fn unreserve_relayed(&self, len: usize) {
        self.release(1, RELAYED_COST + len);
    }

    /// Stores a request relayed onto `manager`'s dialog `leg` as CSeq `cseq` (reserved
    /// before), with the transaction its answer goes on. When the leg ended meanwhile it is
    /// not kept but handed back, to be answered now.
    pub fn add_relayed(
        &self,
        manager: &DialogManager,
        leg: DialogHandle,
        cseq: u32,
        request: KeptRequest,
        answering: Option<Answering>,
    ) -> Option<Relayed> {
        let relayed = (Arc::new(request), answering);
        {
            let mut map = lock(&self.relayed);
            let on_leg = map.entry(leg).or_default();
            if let Some(old) = on_leg.iter_mut().find(|(c, _)| *c == cseq) {
                let old = std::mem::replace(&mut old.1, relayed);
                self.release(1, RELAYED_COST + old.0.bytes());
            } else {
                on_leg.push((cseq, relayed));
            }
        }
        // As for links: the leg's end may have looked before this was stored.
        if manager.state(leg).is_err() {
            return self.take_relayed(leg, cseq);
        }
        None
    }

    /// Takes out the request relayed onto `leg` as CSeq `cseq`.
    pub fn take_relayed(&self, leg: DialogHandle, cseq: u32) -> Option<Relayed> {
        let mut map = lock(&self.relayed);
        let on_leg = map.get_mut(&leg)?;
        let at = on_leg.iter().position(|(c, _)| *c == cseq)?;
        let (_, relayed) = on_leg.swap_remove(at);
        if on_leg.is_empty() {
            map.remove(&leg);
        }
        drop(map);
        self.release(1, RELAYED_COST + relayed.0.bytes());
        Some(relayed)
    }

    /// The legs that ended with something owed since the last call: hang up each partner,
    /// answer each unanswered request (481, or the status that ended the leg). Their entries
    /// count against the budget until taken.
    pub fn take_ended(&self) -> Vec<EndedLeg> {
        let ended = std::mem::take(&mut *lock(&self.ended));
        for e in &ended {
            self.release(e.held.0, e.held.1);
        }
        ended
    }

    /// Entries and bytes held, and the size of each map.
    pub fn usage(&self) -> LegUsage {
        LegUsage {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            outbound: self.outbound.len(),
            inbound: self.by_inbound.len(),
            links: self.links.len(),
            relayed: lock(&self.relayed).len(),
        }
    }
}

impl<T: Send + Sync> EndHook for Legs<T> {
    fn dialog_ended(&self, leg: DialogHandle, reason: TerminationReason) {
        let links = self.remove_links(leg);
        let unanswered = lock(&self.relayed).remove(&leg).unwrap_or_default();
        if links.is_none() && unanswered.is_empty() {
            return;
        }
        let (partner, n) = links.map_or((None, 0), |(other, n)| (Some(other), n));
        let bytes = n * LINK_COST
            + unanswered
                .iter()
                .map(|(_, r)| RELAYED_COST + r.0.bytes())
                .sum::<usize>();
        lock(&self.ended).push(EndedLeg {
            leg,
            reason,
            partner,
            held: (n + unanswered.len(), bytes),
            unanswered,
        });
    }
}
