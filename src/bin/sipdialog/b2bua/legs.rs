//! The B2BUA's leg maps: which outbound INVITE serves which caller, which leg is paired with
//! which, which relayed request waits for its answer. Outside input grows them, so they have
//! a count cap and a byte budget together, and every way a call ends takes its entries out
//! (final answer, CANCEL, no answer, a leg ending, a relayed request answered or timed out).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sipdialog::id::Tag;
use sipdialog::manager::{Answering, InviteId, KeptRequest, Replaced};
use sipdialog::table::DialogHandle;

use crate::endpoint::Sent;

/// An outbound INVITE on its way, and what its answer is for.
pub struct Outbound {
    /// Its Call-ID and our From tag (to CANCEL it).
    pub call_id: Box<[u8]>,
    pub from_tag: Tag,
    pub origin: Origin,
}

/// What an outbound call is for.
pub enum Origin {
    /// The caller's INVITE it relays.
    Caller {
        invite: InviteId,
        replaces: Option<Replaced>,
    },
    /// A transfer the B2BUA carries out for `transferor` (REFER event id `id`): once the
    /// target answers, `keep` (the transferor's peer) is bridged to it.
    Transfer {
        transferor: DialogHandle,
        id: u32,
        subscribed: bool,
        keep: Option<DialogHandle>,
        /// NOTIFY 100's client transaction: the final NOTIFY waits for its answer.
        trying: Option<Arc<Sent>>,
    },
}

/// What each kind of entry costs besides the bytes it holds: its key, value and map slot
/// (an outbound entry's Call-ID is the manager's, 32 bytes).
const OUTBOUND_COST: usize = std::mem::size_of::<Outbound>() + 96 + 32;
const INBOUND_COST: usize = 64;
const LINK_COST: usize = 48;
const RELAYED_COST: usize = 96;

/// A request relayed onto the other leg, kept to be answered, and the transaction its answer
/// goes on.
pub type Relayed = (Arc<KeptRequest>, Option<Answering>);

/// Count and byte limits.
#[derive(Clone, Copy, Debug)]
pub struct LegBudget {
    pub entries: usize,
    pub bytes: usize,
}

/// The maps, and what they hold together.
pub struct Legs {
    /// Our INVITEs, by their transaction.
    outbound: papaya::HashMap<InviteId, Arc<Outbound>>,
    /// A caller's INVITE → ours (to cancel it when the caller does).
    by_inbound: papaya::HashMap<InviteId, InviteId>,
    /// Each leg → the other.
    links: papaya::HashMap<DialogHandle, DialogHandle>,
    /// Requests relayed onto a leg, by (leg, CSeq) → the request as received on the other,
    /// and its transaction there.
    relayed: papaya::HashMap<(DialogHandle, u32), Relayed>,
    budget: LegBudget,
    entries: AtomicUsize,
    bytes: AtomicUsize,
}

impl Legs {
    pub fn new(budget: LegBudget) -> Legs {
        Legs {
            outbound: papaya::HashMap::new(),
            by_inbound: papaya::HashMap::new(),
            links: papaya::HashMap::new(),
            relayed: papaya::HashMap::new(),
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

    /// Counts in an outbound INVITE's entry (and the caller's beside it, `for_caller`) before
    /// it is sent; `false` past the budget. [`Legs::add_outbound`] stores it, or
    /// [`Legs::unreserve_outbound`] gives it back.
    pub fn reserve_outbound(&self, for_caller: bool) -> bool {
        let n = 1 + usize::from(for_caller);
        self.reserve(n, OUTBOUND_COST + INBOUND_COST * (n - 1))
    }

    pub fn unreserve_outbound(&self, for_caller: bool) {
        let n = 1 + usize::from(for_caller);
        self.release(n, OUTBOUND_COST + INBOUND_COST * (n - 1));
    }

    /// Stores our INVITE `id` (reserved before) and, for a caller's call, the caller's INVITE
    /// beside it.
    pub fn add_outbound(&self, id: InviteId, outbound: Outbound) {
        if let Origin::Caller { invite, .. } = outbound.origin {
            self.by_inbound.pin().insert(invite, id);
        }
        self.outbound.pin().insert(id, Arc::new(outbound));
    }

    /// Our INVITE `id`, while it waits for its final answer.
    pub fn outbound(&self, id: InviteId) -> Option<Arc<Outbound>> {
        self.outbound.pin().get(&id).cloned()
    }

    /// Takes our INVITE `id` out (it has its answer, or none will come), with the caller's
    /// entry beside it.
    pub fn take_outbound(&self, id: InviteId) -> Option<Arc<Outbound>> {
        let outbound = self.outbound.pin().remove(&id).cloned()?;
        self.release(1, OUTBOUND_COST);
        if let Origin::Caller { invite, .. } = outbound.origin {
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

    /// Pairs two legs.
    pub fn link(&self, a: DialogHandle, b: DialogHandle) -> bool {
        if !self.reserve(2, 2 * LINK_COST) {
            return false;
        }
        let links = self.links.pin();
        for (from, to) in [(a, b), (b, a)] {
            if links.insert(from, to).is_some() {
                self.release(1, LINK_COST);
            }
        }
        true
    }

    /// The leg paired with `leg`.
    pub fn other(&self, leg: DialogHandle) -> Option<DialogHandle> {
        self.links.pin().get(&leg).copied()
    }

    /// Takes out both directions of `leg`'s pairing; the other leg.
    pub fn unlink(&self, leg: DialogHandle) -> Option<DialogHandle> {
        let links = self.links.pin();
        let other = *links.remove(&leg)?;
        self.release(1, LINK_COST);
        if links
            .remove_if(&other, |_, back| *back == leg)
            .ok()
            .flatten()
            .is_some()
        {
            self.release(1, LINK_COST);
        }
        Some(other)
    }

    /// Whether a relayed request kept in `len` bytes fits; if so it is counted until
    /// [`Legs::add_relayed`] stores it or [`Legs::unreserve_relayed`] gives it back.
    pub fn reserve_relayed(&self, len: usize) -> bool {
        self.reserve(1, RELAYED_COST + len)
    }

    pub fn unreserve_relayed(&self, len: usize) {
        self.release(1, RELAYED_COST + len);
    }

    /// Stores a request relayed onto `leg` as CSeq `cseq` (reserved before), with the
    /// transaction its answer goes on.
    pub fn add_relayed(
        &self,
        leg: DialogHandle,
        cseq: u32,
        request: KeptRequest,
        answering: Option<Answering>,
    ) {
        let relayed = (Arc::new(request), answering);
        if let Some(old) = self.relayed.pin().insert((leg, cseq), relayed) {
            self.release(1, RELAYED_COST + old.0.bytes());
        }
    }

    /// Takes out the request relayed onto `leg` as CSeq `cseq`.
    pub fn take_relayed(&self, leg: DialogHandle, cseq: u32) -> Option<Relayed> {
        let relayed = self.relayed.pin().remove(&(leg, cseq)).cloned()?;
        self.release(1, RELAYED_COST + relayed.0.bytes());
        Some(relayed)
    }

    /// Entries and bytes held, and the size of each map: (outbound, inbound, links, relayed).
    pub fn usage(&self) -> (usize, usize, [usize; 4]) {
        (
            self.entries.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            [
                self.outbound.len(),
                self.by_inbound.len(),
                self.links.len(),
                self.relayed.len(),
            ],
        )
    }
}

/// The user part of a SIP URI (`sip:user@host` → `user`), `b2bua` when there is none.
pub fn user_part(uri: &[u8]) -> &[u8] {
    let rest = uri
        .strip_prefix(b"sips:")
        .or_else(|| uri.strip_prefix(b"sip:"))
        .unwrap_or(uri);
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'@' | b';' | b'?' | b':'))
        .unwrap_or(rest.len());
    match rest.get(end) {
        Some(b'@') if end > 0 => &rest[..end],
        _ => b"b2bua",
    }
}

/// The address the B2BUA says it is at.
pub fn local_uri(local: SocketAddr) -> String {
    format!("<sip:b2bua@{local}>")
}
