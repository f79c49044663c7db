//! Pooled storage for hot slots: pages of fixed-size slots allocated on first use and never
//! freed, up to a fixed capacity, with vacant slots recycled through a [`FreeList`].

use std::sync::OnceLock;

use crossbeam_utils::CachePadded;

use super::free_list::FreeList;
use super::slot::Slot;
use crate::sync::{AtomicU32, Ordering};

/// Slots per page: 4 096 × 64 bytes = 256 KiB. Loom models use tiny pages.
pub(crate) const PAGE_SLOTS: usize = if cfg!(sipdialog_loom) { 4 } else { 4096 };

pub(crate) struct Slab {
    pages: Box<[OnceLock<Box<[Slot]>>]>,
    capacity: u32,
    /// Slots below this index have been handed out at least once.
    high_water: CachePadded<AtomicU32>,
    free: FreeList,
}

fn new_page() -> Box<[Slot]> {
    (0..PAGE_SLOTS).map(|_| Slot::new()).collect()
}

impl Slab {
    pub(crate) fn new(capacity: u32) -> Slab {
        let page_count = (capacity as usize).div_ceil(PAGE_SLOTS);
        let pages: Box<[OnceLock<Box<[Slot]>>]> =
            (0..page_count).map(|_| OnceLock::new()).collect();
        // Under loom every page exists up front: `OnceLock` initialisation may block, which
        // loom's scheduler cannot see.
        if cfg!(sipdialog_loom) {
            for page in pages.iter() {
                page.get_or_init(new_page);
            }
        }
        Slab {
            pages,
            capacity,
            high_water: CachePadded::new(AtomicU32::new(0)),
            free: FreeList::new(),
        }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    #[inline]
    pub(crate) fn slot(&self, index: u32) -> Option<&Slot> {
        let index = index as usize;
        self.pages
            .get(index / PAGE_SLOTS)?
            .get()?
            .get(index % PAGE_SLOTS)
    }

    fn link(&self, index: u32) -> Option<&AtomicU32> {
        self.slot(index).map(|s| &s.next_free)
    }

    /// A vacant slot index owned by the caller until it is claimed or freed, or `None` at
    /// capacity.
    pub(crate) fn alloc(&self) -> Option<u32> {
        if let Some(index) = self.free.pop(|i| self.link(i)) {
            return Some(index);
        }
        let index = self
            .high_water
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |hw| {
                (hw < self.capacity).then_some(hw + 1)
            })
            .ok()?;
        // Creating a page is the one blocking step, once per 4 096 dialogs, never on lookups.
        self.pages
            .get(index as usize / PAGE_SLOTS)?
            .get_or_init(new_page);
        Some(index)
    }

    /// Returns a vacant slot to the pool.
    pub(crate) fn free(&self, index: u32) {
        self.free.push(index, |i| self.link(i));
    }

    /// Slots handed out at least once (live or on the free list).
    pub(crate) fn high_water(&self) -> u32 {
        self.high_water.load(Ordering::Relaxed).min(self.capacity)
    }

    /// Bytes held by allocated pages.
    pub(crate) fn page_bytes(&self) -> usize {
        let pages = self.pages.iter().filter(|p| p.get().is_some()).count();
        pages * PAGE_SLOTS * core::mem::size_of::<Slot>()
            + self.pages.len() * core::mem::size_of::<OnceLock<Box<[Slot]>>>()
    }
}
