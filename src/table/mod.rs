//! The dialog table: hot slots in a pooled slab, found through a concurrent index from the
//! dialog's keyed fingerprint to a generation-checked [`DialogHandle`].
//!
//! Lookups take no lock and allocate nothing: scan the message, hash the key, read the key's
//! home chunk of the index (one cache line), check the slot. Inserting allocates nothing
//! either: the index is sized for the capacity up front; the slab never grows past it, and a
//! full table refuses with [`TableError::Full`] (503).

mod free_list;
mod index;
#[cfg(sipdialog_loom)]
#[doc(hidden)]
pub mod loom_support;
mod slab;
mod slot;

use core::fmt;

use crossbeam_utils::CachePadded;

use crate::id::{DialogKey, Fingerprint, Fingerprinter};
use crate::state::{DialogState, Event, Phase, StateError};
use crate::sync::{AtomicUsize, Ordering};
use crate::wire::{MessageView, ScanLimits, WireError};
use index::{Index, Refused};
use slab::Slab;
pub use slot::{CSeqOrder, NewDialog};
use slot::{Slot, SlotError};

/// Size of the hot per-dialog slot, in bytes (one cache line).
pub const HOT_SLOT_BYTES: usize = core::mem::size_of::<Slot>();

// The design bound on the hot struct.
const _: () = assert!(HOT_SLOT_BYTES <= 250);

/// A reference to one dialog: slot index plus the generation the slot had when the dialog was
/// inserted. Once the dialog is removed the slot's generation moves on and the handle is stale
/// for good: every operation through it answers [`TableError::Stale`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogHandle {
    index: u32,
    generation: u32,
}

impl DialogHandle {
    /// The slot index (stable for the dialog's life; reused after it).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The slot generation this handle refers to.
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

/// Why the table refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The table holds its configured maximum of dialogs.
    Full {
        /// The configured capacity.
        capacity: u32,
    },
    /// A live dialog already has this key.
    Duplicate,
    /// The handle's dialog has been removed.
    Stale,
    /// The state machine refused the event.
    State(StateError),
    /// The peer's CSeq is lower than one it already used (RFC 3261 §12.2.2).
    CSeqOutOfOrder {
        /// The highest CSeq seen from the peer.
        last: u32,
    },
    /// The local CSeq would reach 2^31.
    CSeqExhausted,
    /// A CSeq of 2^31 or more was passed in (RFC 3261 §8.1.1.5 keeps them below).
    CSeqOutOfRange,
}

impl TableError {
    /// The SIP status a request refused by this error is answered with.
    ///
    /// ```
    /// use sipdialog::table::TableError;
    /// assert_eq!(TableError::Full { capacity: 10 }.status(), (503, "Service Unavailable"));
    /// assert_eq!(TableError::Stale.status().0, 481);
    /// ```
    pub const fn status(&self) -> (u16, &'static str) {
        match self {
            TableError::Full { .. } => (503, "Service Unavailable"),
            TableError::Stale => (481, "Call/Transaction Does Not Exist"),
            TableError::State(e) => e.status(),
            TableError::Duplicate
            | TableError::CSeqOutOfOrder { .. }
            | TableError::CSeqExhausted
            | TableError::CSeqOutOfRange => (500, "Server Internal Error"),
        }
    }
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Full { capacity } => write!(f, "dialog table full ({capacity} dialogs)"),
            TableError::Duplicate => f.write_str("a dialog with this key exists"),
            TableError::Stale => f.write_str("the dialog no longer exists"),
            TableError::State(e) => e.fmt(f),
            TableError::CSeqOutOfOrder { last } => write!(f, "CSeq lower than the last ({last})"),
            TableError::CSeqExhausted => f.write_str("local CSeq space exhausted"),
            TableError::CSeqOutOfRange => f.write_str("CSeq of 2^31 or more"),
        }
    }
}

impl std::error::Error for TableError {}

impl From<SlotError> for TableError {
    fn from(e: SlotError) -> TableError {
        match e {
            SlotError::Stale => TableError::Stale,
            SlotError::State(s) => TableError::State(s),
            SlotError::CSeqOutOfOrder { last } => TableError::CSeqOutOfOrder { last },
            SlotError::CSeqExhausted => TableError::CSeqExhausted,
            SlotError::CSeqOutOfRange => TableError::CSeqOutOfRange,
        }
    }
}

/// A message scanned and matched against the table.
#[derive(Clone, Copy, Debug)]
pub struct MessageMatch<'a> {
    /// The scanned message.
    pub message: MessageView<'a>,
    /// Its dialog, if it belongs to a live one.
    pub dialog: Option<DialogHandle>,
}

/// The dialog table.
///
/// ```
/// use sipdialog::id::DialogKey;
/// use sipdialog::state::{DialogState, Event, Phase};
/// use sipdialog::table::{DialogTable, NewDialog};
///
/// let table = DialogTable::with_capacity(1_000).unwrap();
/// let key = DialogKey { call_id: b"c1@host", local_tag: b"mine", remote_tag: b"peer" };
/// let init = NewDialog { state: DialogState::EARLY, local_cseq: 1, remote_cseq: None, now_ms: 0 };
/// let handle = table.insert(&key, &init).unwrap();
/// table.transition(handle, Event::Confirm).unwrap();
///
/// // An in-dialog request from the peer finds it from its raw bytes.
/// let bye = b"BYE sip:me@host SIP/2.0\r\nCall-ID: c1@host\r\nFrom: <sip:p@h>;tag=peer\r\n\
/// To: <sip:me@host>;tag=mine\r\nCSeq: 7 BYE\r\n\r\n";
/// let found = table.lookup_message(bye).unwrap();
/// assert_eq!(found.dialog, Some(handle));
/// assert_eq!(table.state(handle).unwrap().phase(), Phase::Confirmed);
///
/// table.remove(handle).unwrap();
/// assert!(table.state(handle).is_err()); // stale forever
/// assert!(table.is_empty());
/// ```
pub struct DialogTable {
    fingerprinter: Fingerprinter,
    index: Index,
    slab: Slab,
    live: CachePadded<AtomicUsize>,
    /// Live dialogs in the early phase: moved by whoever wins the CAS that changes a phase.
    early: CachePadded<AtomicUsize>,
    limits: ScanLimits,
}

impl fmt::Debug for DialogTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DialogTable")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl DialogTable {
    /// A table for at most `capacity` dialogs, with a fresh random fingerprint key.
    pub fn with_capacity(capacity: u32) -> Result<DialogTable, getrandom::Error> {
        Ok(DialogTable::with_fingerprinter(
            capacity,
            Fingerprinter::random()?,
        ))
    }

    /// A table for at most `capacity` dialogs, fingerprinting with `fingerprinter`.
    pub fn with_fingerprinter(capacity: u32, fingerprinter: Fingerprinter) -> DialogTable {
        // Capacity above u32::MAX - 1 would collide with the free list's end marker.
        let capacity = capacity.min(u32::MAX - 1);
        DialogTable {
            fingerprinter,
            index: Index::new(capacity),
            slab: Slab::new(capacity),
            live: CachePadded::new(AtomicUsize::new(0)),
            early: CachePadded::new(AtomicUsize::new(0)),
            limits: ScanLimits::DEFAULT,
        }
    }

    /// Replaces the scanner limits used by [`DialogTable::lookup_message`].
    pub fn set_scan_limits(&mut self, limits: ScanLimits) {
        self.limits = limits;
    }

    /// The fingerprinter (and so the secret key) of this table.
    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fingerprinter
    }

    /// The most dialogs the table holds.
    pub fn capacity(&self) -> u32 {
        self.slab.capacity()
    }

    /// Live dialogs.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether no dialog is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live dialogs in the early phase. Exact once the threads changing phases are done (every
    /// phase change is one CAS, and its winner moves this count).
    pub fn early(&self) -> usize {
        self.early.load(Ordering::Relaxed)
    }

    fn count_early(&self, before: DialogState, after: Option<DialogState>) {
        let was = before.phase() == Phase::Early;
        let is = after.is_some_and(|s| s.phase() == Phase::Early);
        match (was, is) {
            (false, true) => {
                self.early.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.early.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Bytes held by the slab's pages (the index is extra: [`Self::index_bytes`]).
    pub fn slab_bytes(&self) -> usize {
        self.slab.page_bytes()
    }

    /// Bytes of the index, allocated once for the capacity: 64 for every four dialogs of
    /// capacity, rounded up to a power of two (its pages are mapped as entries land in them).
    pub fn index_bytes(&self) -> usize {
        self.index.bytes()
    }

    /// Inserts a dialog. Fails with [`TableError::Full`] at capacity,
    /// [`TableError::Duplicate`] if the key is live already, and [`TableError::CSeqOutOfRange`]
    /// for a CSeq of 2^31 or more.
    pub fn insert(
        &self,
        key: &DialogKey<'_>,
        init: &NewDialog,
    ) -> Result<DialogHandle, TableError> {
        self.insert_fingerprinted(self.fingerprinter.fingerprint(key), init)
    }

    /// [`Self::insert`] of the key whose fingerprint is `fp`, for a caller that computed it
    /// for the lookup that found no dialog.
    pub(crate) fn insert_fingerprinted(
        &self,
        fp: Fingerprint,
        init: &NewDialog,
    ) -> Result<DialogHandle, TableError> {
        if init.local_cseq >= slot::CSEQ_LIMIT
            || init.remote_cseq.is_some_and(|c| c >= slot::CSEQ_LIMIT)
        {
            return Err(TableError::CSeqOutOfRange);
        }
        if self.index.find(fp, &self.slab).is_some() {
            return Err(TableError::Duplicate);
        }
        let index = self.slab.alloc().ok_or(TableError::Full {
            capacity: self.capacity(),
        })?;
        // `alloc` created the slot's page, so this lookup cannot miss.
        let slot = self.slab.slot(index).ok_or(TableError::Full {
            capacity: self.capacity(),
        })?;
        let handle = DialogHandle {
            index,
            generation: slot.claim(fp, init),
        };
        // Counted before it can be found: whoever removes it decrements exactly once.
        self.live.fetch_add(1, Ordering::Relaxed);
        self.count_early(DialogState::TERMINATED, Some(init.state));
        if let Err(refused) = self.index.insert(fp, handle, &self.slab) {
            // Another thread inserted the same key between our check and now (or, never
            // with the slab's count of slots, the index had no room). Whoever wins the release
            // (we, or a remover that saw the slot through `iter`) un-counts it; it was never
            // in the index.
            if let Ok(last) = slot.release(handle.generation) {
                self.slab.free(index);
                self.live.fetch_sub(1, Ordering::Relaxed);
                self.count_early(last, None);
            }
            return Err(match refused {
                Refused::Duplicate(_) => TableError::Duplicate,
                Refused::Full => TableError::Full {
                    capacity: self.capacity(),
                },
            });
        }
        Ok(handle)
    }

    /// The live dialog with this fingerprint.
    #[inline]
    pub fn lookup_fingerprint(&self, fp: Fingerprint) -> Option<DialogHandle> {
        self.index.find(fp, &self.slab)
    }

    /// The live dialog with this key.
    #[inline]
    pub fn lookup(&self, key: &DialogKey<'_>) -> Option<DialogHandle> {
        self.lookup_fingerprint(self.fingerprinter.fingerprint(key))
    }

    /// Scans a received message and finds its dialog (request: local tag = To tag; response:
    /// local tag = From tag). The in-dialog hot path: no lock, no allocation.
    #[inline]
    pub fn lookup_message<'a>(&self, bytes: &'a [u8]) -> Result<MessageMatch<'a>, WireError> {
        let message = MessageView::parse_with(bytes, &self.limits)?;
        let dialog = self.lookup(&DialogKey::received(&message));
        Ok(MessageMatch { message, dialog })
    }

    fn slot(&self, handle: DialogHandle) -> Result<&Slot, TableError> {
        self.slab.slot(handle.index).ok_or(TableError::Stale)
    }

    /// The dialog's state.
    pub fn state(&self, handle: DialogHandle) -> Result<DialogState, TableError> {
        Ok(self.slot(handle)?.state(handle.generation)?)
    }

    /// The dialog's fingerprint.
    pub fn fingerprint(&self, handle: DialogHandle) -> Result<Fingerprint, TableError> {
        self.slot(handle)?
            .fingerprint(handle.generation)
            .ok_or(TableError::Stale)
    }

    /// Moves the dialog's state by `event` (one CAS through the transition table). An illegal
    /// event changes nothing and returns the reason.
    #[inline]
    pub fn transition(
        &self,
        handle: DialogHandle,
        event: Event,
    ) -> Result<DialogState, TableError> {
        let (before, after) = self.slot(handle)?.transition(handle.generation, event)?;
        self.count_early(before, Some(after));
        Ok(after)
    }

    /// Takes the next local CSeq for a new request in the dialog.
    pub fn next_local_cseq(&self, handle: DialogHandle) -> Result<u32, TableError> {
        Ok(self.slot(handle)?.next_local_cseq(handle.generation)?)
    }

    /// Raises the local CSeq to at least `cseq` (for an observed dialog: the caller's side).
    pub fn raise_local_cseq(&self, handle: DialogHandle, cseq: u32) -> Result<(), TableError> {
        Ok(self
            .slot(handle)?
            .raise_local_cseq(handle.generation, cseq)?)
    }

    /// Records the CSeq of a request received in the dialog; lower than the last is refused
    /// with [`TableError::CSeqOutOfOrder`] (answer 500).
    pub fn advance_remote_cseq(
        &self,
        handle: DialogHandle,
        cseq: u32,
    ) -> Result<CSeqOrder, TableError> {
        Ok(self
            .slot(handle)?
            .advance_remote_cseq(handle.generation, cseq)?)
    }

    /// `(local, remote)` CSeq; the remote one is `None` until the peer sends a request.
    pub fn cseqs(&self, handle: DialogHandle) -> Result<(u32, Option<u32>), TableError> {
        self.slot(handle)?
            .cseqs(handle.generation)
            .ok_or(TableError::Stale)
    }

    /// Marks activity at `now_ms` (caller's clock).
    pub fn touch(&self, handle: DialogHandle, now_ms: u64) -> Result<(), TableError> {
        Ok(self.slot(handle)?.touch(handle.generation, now_ms)?)
    }

    /// `(created_ms, last_activity_ms)` on the caller's clock.
    pub fn times(&self, handle: DialogHandle) -> Result<(u64, u64), TableError> {
        self.slot(handle)?
            .times(handle.generation)
            .ok_or(TableError::Stale)
    }

    /// Removes the dialog and returns its last state. The handle (and every copy of it) is
    /// stale from now on, and the slot goes back to the pool.
    pub fn remove(&self, handle: DialogHandle) -> Result<DialogState, TableError> {
        let slot = self.slot(handle)?;
        let fp = slot
            .fingerprint(handle.generation)
            .ok_or(TableError::Stale)?;
        // The release picks the one remover; only it empties the index entry, and the slot
        // goes back to the pool after that, so the entry it looks for is this dialog's.
        let last = slot.release(handle.generation)?;
        self.index.remove(fp, handle.index);
        self.slab.free(handle.index);
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.count_early(last, None);
        Ok(last)
    }

    /// Removes the dialog with this key, if live.
    pub fn remove_key(&self, key: &DialogKey<'_>) -> Result<DialogState, TableError> {
        self.remove(self.lookup(key).ok_or(TableError::Stale)?)
    }

    /// Every live dialog with its state, in slot order. Weakly consistent: dialogs inserted or
    /// removed during the walk may or may not appear.
    pub fn iter(&self) -> impl Iterator<Item = (DialogHandle, DialogState)> + '_ {
        (0..self.slab.high_water()).filter_map(move |index| {
            let slot = self.slab.slot(index)?;
            let generation = slot.generation();
            if generation % 2 == 0 {
                return None;
            }
            let state = slot.state(generation).ok()?;
            Some((DialogHandle { index, generation }, state))
        })
    }
}

#[cfg(test)]
mod tests;
