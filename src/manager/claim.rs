//! An INVITE's final answer, claimed once.
//!
//! Whoever answers an INVITE finally (a 2xx, a refusal, the 487 of a CANCEL, the 408 of a
//! timeout) first wins [`FinalAnswer::claim`], one swap of a flag, and only the winner writes
//! a final response: a CANCEL racing the 200 on another thread can never let both leave. A
//! 1xx makes its early dialog without the claim; the lock on the dialog list orders that
//! against the claimer taking the list: a dialog added before is ended by the claimer, one
//! added after sees the claim and is ended by the thread that made it. Modelled in loom
//! (`loom-tests/tests/final_answer.rs`).

use smallvec::SmallVec;

use crate::sync::{AtomicBool, Mutex, Ordering};

/// The claim and the dialogs (one per fork) of one INVITE.
#[derive(Debug, Default)]
pub struct FinalAnswer<T> {
    claimed: AtomicBool,
    members: Mutex<SmallVec<[T; 2]>>,
}

impl<T> FinalAnswer<T> {
    /// Unclaimed, no dialog.
    pub fn new() -> FinalAnswer<T> {
        FinalAnswer {
            claimed: AtomicBool::new(false),
            members: Mutex::new(SmallVec::new()),
        }
    }

    /// Claims the final answer; `false` when it was claimed before.
    pub fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// Whether the final answer is claimed.
    pub fn is_claimed(&self) -> bool {
        self.claimed.load(Ordering::Acquire)
    }

    /// Marks the answer as given without contending for it (a response to an INVITE we
    /// sent or watched: the network decided).
    pub fn set_claimed(&self) {
        self.claimed.store(true, Ordering::Release);
    }

    /// Adds a dialog. Unless the caller holds the claim (`claimed`), refused (`false`) once
    /// the claim is taken: the caller must then end the dialog itself.
    pub fn add(&self, member: T, claimed: bool) -> bool {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if !claimed && self.claimed.load(Ordering::Acquire) {
            return false;
        }
        members.push(member);
        true
    }

    /// The first dialog added, if any is still listed.
    pub fn first(&self) -> Option<T>
    where
        T: Copy,
    {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.first().copied()
    }

    /// The dialogs added so far, taken out.
    pub fn take(&self) -> SmallVec<[T; 2]> {
        std::mem::take(&mut *self.members.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
