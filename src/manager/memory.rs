//! What the manager's heap holds, structure by structure: the figures an operator sizes a
//! box by, and what the `memory` bench breaks a call's bytes into.

use super::DialogManager;

/// Heap bytes a [`DialogManager`] holds, by structure, room kept for growth included. The
/// INVITE records' map is not in it: its table is `papaya`'s, which does not say how large it
/// is.
///
/// ```
/// use sipdialog::manager::{DialogManager, ManagerConfig};
///
/// let manager = DialogManager::new(ManagerConfig::default()).unwrap();
/// let memory = manager.memory();
/// assert_eq!((memory.dialog_data, memory.records), (0, 0)); // no call yet
/// assert_eq!(
///     memory.total(),
///     memory.slots
///         + memory.index
///         + memory.cold_entries
///         + memory.dialog_data
///         + memory.timers
///         + memory.records
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// The hot slots: the slab's pages, created as dialogs first need them.
    pub slots: usize,
    /// The dialog index, allocated for the capacity at start (the operating system maps its
    /// pages as entries first land in them).
    pub index: usize,
    /// The cold side entries beside the slots (a pointer to the dialog's data and its
    /// deadlines), in pages created with the slab's.
    pub cold_entries: usize,
    /// The dialogs' data: identity, URIs, targets, route sets (what
    /// [`crate::security::Policy::dialog_bytes`] bounds).
    pub dialog_data: usize,
    /// The timer wheels and heaps, their room included.
    pub timers: usize,
    /// The INVITE records: their values and their copies of the INVITE.
    pub records: usize,
}

impl MemoryUse {
    /// The sum of the parts.
    pub fn total(&self) -> usize {
        self.slots + self.index + self.cold_entries + self.dialog_data + self.timers + self.records
    }
}

impl DialogManager {
    /// The heap bytes it holds, by structure. Reads counters and walks the timer shards (a
    /// lock each, briefly): for a scrape or a bench, not for the message path.
    pub fn memory(&self) -> MemoryUse {
        MemoryUse {
            slots: self.dialogs.table.slab_bytes(),
            index: self.dialogs.table.index_bytes(),
            cold_entries: self.dialogs.cold.entry_bytes(),
            dialog_data: self.dialogs.cold.bytes(),
            timers: self.timers.bytes(),
            records: self.invite_record_bytes(),
        }
    }
}
