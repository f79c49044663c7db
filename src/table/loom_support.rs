//! Entry points for the loom models in `loom-tests/` (compiled only under
//! `--cfg sipdialog_loom`): the slab's allocator and free list, which the public table API
//! reaches only together with the index, and the index with fingerprints the model chooses
//! (so that several share a home chunk).

use super::index::{Index, Refused};
use super::slab::Slab;
use super::DialogHandle;
use crate::id::Fingerprint;
use crate::state::DialogState;
use crate::table::NewDialog;

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

/// A slab and its index, driven with raw fingerprints as the table drives them.
pub struct IndexModel {
    slab: Slab,
    index: Index,
}

const INIT: NewDialog = NewDialog {
    state: DialogState::EARLY,
    local_cseq: 1,
    remote_cseq: None,
    now_ms: 0,
};

impl IndexModel {
    /// Room for `capacity` dialogs (loom's index: two entries a chunk, a chunk a dialog).
    pub fn new(capacity: u32) -> IndexModel {
        IndexModel {
            slab: Slab::new(capacity),
            index: Index::new(capacity),
        }
    }

    /// A fingerprint whose home is chunk `home`, with tag `tag`.
    pub fn fingerprint(home: u64, tag: u32) -> Fingerprint {
        Fingerprint(u128::from(tag) << 96 | u128::from(home))
    }

    /// Takes a slot for `fp` and publishes it, as `DialogTable::insert` does; a live dialog
    /// with `fp` already is returned as the error, and the slot goes back.
    pub fn insert(&self, fp: Fingerprint) -> Result<DialogHandle, DialogHandle> {
        let index = self.slab.alloc().expect("the model sizes the slab");
        let slot = self.slab.slot(index).expect("allocated");
        let handle = DialogHandle {
            index,
            generation: slot.claim(fp, &INIT),
        };
        match self.index.insert(fp, handle, &self.slab) {
            Ok(()) => Ok(handle),
            Err(refused) => {
                slot.release(handle.generation).expect("never published");
                self.slab.free(index);
                match refused {
                    Refused::Duplicate(found) => Err(found),
                    Refused::Full => panic!("the model sizes the index"),
                }
            }
        }
    }

    /// The live dialog `fp` names.
    pub fn find(&self, fp: Fingerprint) -> Option<DialogHandle> {
        self.index.find(fp, &self.slab)
    }

    /// Ends the dialog, as `DialogTable::remove` does; `false` for a stale handle.
    pub fn remove(&self, fp: Fingerprint, handle: DialogHandle) -> bool {
        let slot = self.slab.slot(handle.index).expect("allocated");
        if slot.release(handle.generation).is_err() {
            return false;
        }
        self.index.remove(fp, handle.index);
        self.slab.free(handle.index);
        true
    }

    /// Whether every entry is empty and no chunk counts an overflow (or an insert in progress).
    pub fn is_clean(&self) -> bool {
        self.index.is_clean()
    }
}
