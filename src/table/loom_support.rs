//! Entry points for the loom models in `loom-tests/` (compiled only under
//! `--cfg sipdialog_loom`): the slab's allocator and free list, which the public table API
//! reaches only together with the index.

use super::slab::Slab;

/// The pooled slab of a table, without the index.
pub struct SlabModel(Slab);

impl SlabModel {
    /// A slab of `capacity` slots.
    pub fn new(capacity: u32) -> SlabModel {
        SlabModel(Slab::new(capacity))
    }

    /// Takes a vacant slot index (free list first, then never-used slots), `None` when full.
    pub fn alloc(&self) -> Option<u32> {
        self.0.alloc()
    }

    /// Puts a slot index back on the free list.
    pub fn free(&self, index: u32) {
        self.0.free(index)
    }
}
