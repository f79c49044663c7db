//! A lock-free stack of vacant slot indices (Treiber stack).
//!
//! The links live in the slots (`Slot::next_free`), so pushing and popping never allocate.
//! The head packs a 32-bit push counter with the index, so a pop that read `head = A, next = B`
//! cannot succeed after another thread popped A and B and pushed A back (ABA): the counter no
//! longer matches. Slots are never freed, so reading a link of a slot that was popped in the
//! meantime is safe; it just makes the CAS fail.

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU32, AtomicU64, Ordering};

const NIL: u32 = u32::MAX;

/// Vacant slot indices.
pub(crate) struct FreeList {
    head: CachePadded<AtomicU64>,
}

const fn pack(stamp: u32, index: u32) -> u64 {
    (stamp as u64) << 32 | index as u64
}

impl FreeList {
    pub(crate) fn new() -> FreeList {
        FreeList {
            head: CachePadded::new(AtomicU64::new(pack(0, NIL))),
        }
    }

    /// Pushes `index`; `link` gives the `next_free` field of a slot.
    pub(crate) fn push<'s>(&self, index: u32, link: impl Fn(u32) -> Option<&'s AtomicU32>) {
        let Some(next) = link(index) else { return };
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            next.store(head as u32, Ordering::Relaxed);
            let stamp = ((head >> 32) as u32).wrapping_add(1);
            // Release: the slot's vacant state and its link happen before the pop that sees it.
            match self.head.compare_exchange_weak(
                head,
                pack(stamp, index),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Pops an index, or `None` when empty.
    pub(crate) fn pop<'s>(&self, link: impl Fn(u32) -> Option<&'s AtomicU32>) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            let index = head as u32;
            if index == NIL {
                return None;
            }
            let next = link(index)?.load(Ordering::Relaxed);
            let stamp = ((head >> 32) as u32).wrapping_add(1);
            match self.head.compare_exchange_weak(
                head,
                pack(stamp, next),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(index),
                Err(actual) => head = actual,
            }
        }
    }
}
