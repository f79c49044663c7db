//! The hot slot: everything the in-dialog path reads, in one 64-byte cache line.
//!
//! ```text
//!  lifecycle   u64  generation (32) | state byte (8)   odd generation = live, even = vacant
//!  fp_lo/hi    u64  128-bit keyed fingerprint of the dialog key
//!  local_cseq  u64  generation (32) | CSeq (32)        tagged so a stale handle's CAS fails
//!  remote_cseq u64  generation (32) | CSeq (32)        NO_CSEQ until the peer sends a request
//!  created_ms  u64  caller's clock, at insert
//!  active_ms   u64  caller's clock, last touch
//!  next_free   u32  free-list link while vacant
//! ```
//!
//! Only the thread that took a vacant slot off the free list writes its identity fields, and it
//! publishes them with a Release store of the lifecycle word; everyone else reads the lifecycle
//! word with Acquire first and checks the generation of their handle against it. Every change
//! to the state or the CSeq counters is a CAS whose expected value carries the generation, so
//! a stale handle can never change a reused slot.

use crate::id::Fingerprint;
use crate::state::{DialogState, Event, StateError};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Remote CSeq before the peer has sent a request in the dialog (real values are < 2^31).
pub(crate) const NO_CSEQ: u32 = u32::MAX;

/// CSeq numbers are below 2^31 (RFC 3261 §8.1.1.5); larger values never enter a slot.
pub(crate) const CSEQ_LIMIT: u32 = 1 << 31;

/// Why a slot refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotError {
    Stale,
    State(StateError),
    CSeqOutOfOrder { last: u32 },
    CSeqExhausted,
    CSeqOutOfRange,
}

/// How a remote CSeq compares with the last one seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CSeqOrder {
    /// Higher than every earlier one (or the first): a new request.
    Newer,
    /// Equal to the last one: a retransmission, or the ACK/CANCEL of that INVITE.
    Same,
}

/// What a new dialog starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewDialog {
    /// Its first state (early or confirmed).
    pub state: DialogState,
    /// The CSeq of the last request this side sent in it.
    pub local_cseq: u32,
    /// The CSeq of the last request the peer sent in it, if any yet.
    pub remote_cseq: Option<u32>,
    /// The caller's clock, in milliseconds.
    pub now_ms: u64,
}

#[repr(C, align(64))]
pub(crate) struct Slot {
    lifecycle: AtomicU64,
    fp_lo: AtomicU64,
    fp_hi: AtomicU64,
    local_cseq: AtomicU64,
    remote_cseq: AtomicU64,
    created_ms: AtomicU64,
    active_ms: AtomicU64,
    pub(crate) next_free: AtomicU32,
}

const _: () = assert!(core::mem::size_of::<Slot>() <= 64 || cfg!(sipdialog_loom));

const fn pack(generation: u32, low: u32) -> u64 {
    (generation as u64) << 32 | low as u64
}

const fn generation_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn state_of(word: u64) -> DialogState {
    // Only `claim` and `transition` write the low byte, always from a valid state.
    DialogState::from_bits(word as u8).unwrap_or(DialogState::TERMINATED)
}

impl Slot {
    pub(crate) fn new() -> Slot {
        Slot {
            lifecycle: AtomicU64::new(0),
            fp_lo: AtomicU64::new(0),
            fp_hi: AtomicU64::new(0),
            local_cseq: AtomicU64::new(0),
            remote_cseq: AtomicU64::new(0),
            created_ms: AtomicU64::new(0),
            active_ms: AtomicU64::new(0),
            next_free: AtomicU32::new(u32::MAX),
        }
    }

    /// Makes a vacant slot live. Only the owner of the vacant slot (the thread that allocated
    /// it) may call this. Returns the new, odd generation.
    pub(crate) fn claim(&self, fp: Fingerprint, init: &NewDialog) -> u32 {
        let generation = generation_of(self.lifecycle.load(Ordering::Relaxed)).wrapping_add(1);
        debug_assert!(generation % 2 == 1, "claimed a live slot");
        // Seqlock write side: a reader that sees any field written below also sees, after its
        // Acquire fence, the release of the previous generation (which happened before the
        // free-list pop that handed this slot to us), and so rejects its stale handle.
        crate::sync::fence(Ordering::Release);
        self.fp_lo.store(fp.0 as u64, Ordering::Relaxed);
        self.fp_hi.store((fp.0 >> 64) as u64, Ordering::Relaxed);
        // Swaps, not stores: a read-modify-write is ordered after any CAS a stale handle made
        // on the old word, which keeps the loom model exact (a plain store is too, on real
        // hardware; loom 0.7 models it more weakly).
        self.local_cseq
            .swap(pack(generation, init.local_cseq), Ordering::Relaxed);
        self.remote_cseq.swap(
            pack(generation, init.remote_cseq.unwrap_or(NO_CSEQ)),
            Ordering::Relaxed,
        );
        self.created_ms.store(init.now_ms, Ordering::Relaxed);
        self.active_ms.store(init.now_ms, Ordering::Relaxed);
        self.lifecycle.store(
            pack(generation, u32::from(init.state.bits())),
            Ordering::Release,
        );
        generation
    }

    /// The current generation (odd = live).
    pub(crate) fn generation(&self) -> u32 {
        generation_of(self.lifecycle.load(Ordering::Acquire))
    }

    /// The state, if the slot still holds generation `generation`.
    pub(crate) fn state(&self, generation: u32) -> Result<DialogState, SlotError> {
        let word = self.lifecycle.load(Ordering::Acquire);
        if generation_of(word) != generation {
            return Err(SlotError::Stale);
        }
        Ok(state_of(word))
    }

    /// The fingerprint, if the slot still holds generation `generation` before and after the
    /// read (a reuse in between would make the two halves disagree).
    pub(crate) fn fingerprint(&self, generation: u32) -> Option<Fingerprint> {
        if self.generation() != generation {
            return None;
        }
        let lo = self.fp_lo.load(Ordering::Relaxed);
        let hi = self.fp_hi.load(Ordering::Relaxed);
        // Order the field reads before the re-check of the generation (seqlock read side).
        crate::sync::fence(Ordering::Acquire);
        (self.generation() == generation)
            .then_some(Fingerprint(u128::from(hi) << 64 | u128::from(lo)))
    }

    /// Applies `event` by CAS through the transition table; the state before and after.
    #[inline]
    pub(crate) fn transition(
        &self,
        generation: u32,
        event: Event,
    ) -> Result<(DialogState, DialogState), SlotError> {
        let mut word = self.lifecycle.load(Ordering::Acquire);
        loop {
            if generation_of(word) != generation {
                return Err(SlotError::Stale);
            }
            let next = state_of(word).apply(event).map_err(SlotError::State)?;
            match self.lifecycle.compare_exchange_weak(
                word,
                pack(generation, u32::from(next.bits())),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok((state_of(word), next)),
                Err(actual) => word = actual,
            }
        }
    }

    /// Ends generation `generation`: exactly one caller wins and gets the final state, and that
    /// caller must put the slot back on the free list.
    pub(crate) fn release(&self, generation: u32) -> Result<DialogState, SlotError> {
        let mut word = self.lifecycle.load(Ordering::Acquire);
        loop {
            if generation_of(word) != generation {
                return Err(SlotError::Stale);
            }
            match self.lifecycle.compare_exchange_weak(
                word,
                pack(generation.wrapping_add(1), 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(state_of(word)),
                Err(actual) => word = actual,
            }
        }
    }

    /// Takes the next local CSeq (RFC 3261 §12.2.1.1: one higher for each new request).
    pub(crate) fn next_local_cseq(&self, generation: u32) -> Result<u32, SlotError> {
        let mut word = self.local_cseq.load(Ordering::Acquire);
        loop {
            if generation_of(word) != generation || self.generation() != generation {
                return Err(SlotError::Stale);
            }
            let next = (word as u32).wrapping_add(1);
            if next >= CSEQ_LIMIT {
                return Err(SlotError::CSeqExhausted);
            }
            match self.local_cseq.compare_exchange_weak(
                word,
                pack(generation, next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(next),
                Err(actual) => word = actual,
            }
        }
    }

    /// Raises the local CSeq to at least `cseq` (an observing proxy follows the caller's
    /// requests this way); a lower value leaves it as it is.
    pub(crate) fn raise_local_cseq(&self, generation: u32, cseq: u32) -> Result<(), SlotError> {
        if cseq >= CSEQ_LIMIT {
            return Err(SlotError::CSeqOutOfRange);
        }
        let mut word = self.local_cseq.load(Ordering::Acquire);
        loop {
            if generation_of(word) != generation || self.generation() != generation {
                return Err(SlotError::Stale);
            }
            if word as u32 >= cseq {
                return Ok(());
            }
            match self.local_cseq.compare_exchange_weak(
                word,
                pack(generation, cseq),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => word = actual,
            }
        }
    }

    /// Records the CSeq of a request the peer sent (RFC 3261 §12.2.2): lower than the last one
    /// is refused, equal is a retransmission, higher (gaps allowed) moves the counter.
    pub(crate) fn advance_remote_cseq(
        &self,
        generation: u32,
        cseq: u32,
    ) -> Result<CSeqOrder, SlotError> {
        if cseq >= CSEQ_LIMIT {
            return Err(SlotError::CSeqOutOfRange);
        }
        let mut word = self.remote_cseq.load(Ordering::Acquire);
        loop {
            if generation_of(word) != generation || self.generation() != generation {
                return Err(SlotError::Stale);
            }
            let last = word as u32;
            if last != NO_CSEQ && cseq == last {
                return Ok(CSeqOrder::Same);
            }
            if last != NO_CSEQ && cseq < last {
                return Err(SlotError::CSeqOutOfOrder { last });
            }
            match self.remote_cseq.compare_exchange_weak(
                word,
                pack(generation, cseq),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(CSeqOrder::Newer),
                Err(actual) => word = actual,
            }
        }
    }

    /// The local and remote CSeq of generation `generation`.
    pub(crate) fn cseqs(&self, generation: u32) -> Option<(u32, Option<u32>)> {
        let local = self.local_cseq.load(Ordering::Acquire);
        let remote = self.remote_cseq.load(Ordering::Acquire);
        // The tags keep the old generation after release, until the next claim: the
        // lifecycle word is what says whether the dialog still lives.
        if generation_of(local) != generation
            || generation_of(remote) != generation
            || self.generation() != generation
        {
            return None;
        }
        let remote = remote as u32;
        Some((local as u32, (remote != NO_CSEQ).then_some(remote)))
    }

    /// Moves the activity time forward. A touch through a stale handle can at most keep a
    /// reused slot's dialog from looking idle a little longer; expiry re-checks the lifecycle.
    pub(crate) fn touch(&self, generation: u32, now_ms: u64) -> Result<(), SlotError> {
        if self.generation() != generation {
            return Err(SlotError::Stale);
        }
        self.active_ms.fetch_max(now_ms, Ordering::Relaxed);
        Ok(())
    }

    /// `(created_ms, active_ms)` of generation `generation`.
    pub(crate) fn times(&self, generation: u32) -> Option<(u64, u64)> {
        if self.generation() != generation {
            return None;
        }
        let times = (
            self.created_ms.load(Ordering::Relaxed),
            self.active_ms.load(Ordering::Relaxed),
        );
        crate::sync::fence(Ordering::Acquire);
        (self.generation() == generation).then_some(times)
    }
}
