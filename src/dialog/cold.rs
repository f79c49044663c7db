//! The cold side table: one entry per hot slot, in pages created on first use, holding the
//! slot's current [`DialogInfo`] and the few deadlines the timers need.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use super::DialogInfo;
use crate::table::DialogHandle;

const PAGE_ENTRIES: usize = 4096;

/// Per-slot cold state. Deadlines are milliseconds on the caller's clock, 0 for none.
#[derive(Default)]
pub(crate) struct ColdEntry {
    pub info: ArcSwapOption<DialogInfo>,
    /// The deadline of the timer entry that is current for this dialog; entries carrying
    /// another deadline are stale and skipped.
    pub armed_at: AtomicU64,
    /// UAS: the ACK for our 2xx must arrive by then (64×T1).
    pub ack_deadline: AtomicU64,
    /// Our BYE must be answered by then; the dialog is dropped either way.
    pub bye_deadline: AtomicU64,
    /// The Contact of a received re-INVITE/UPDATE, installed when we answer it 2xx.
    pub pending_target: ArcSwapOption<Box<[u8]>>,
}

pub(crate) struct ColdTable {
    pages: Box<[OnceLock<Box<[ColdEntry]>>]>,
}

impl ColdTable {
    pub(crate) fn new(capacity: u32) -> ColdTable {
        let pages = (capacity as usize).div_ceil(PAGE_ENTRIES);
        ColdTable {
            pages: (0..pages).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The entry of slot `index`, creating its page when `create` is set.
    fn entry(&self, index: u32, create: bool) -> Option<&ColdEntry> {
        let index = index as usize;
        let page = self.pages.get(index / PAGE_ENTRIES)?;
        let page = if create {
            page.get_or_init(|| (0..PAGE_ENTRIES).map(|_| ColdEntry::default()).collect())
        } else {
            page.get()?
        };
        page.get(index % PAGE_ENTRIES)
    }

    /// The entry of a live dialog whose info is installed.
    pub(crate) fn get(&self, handle: DialogHandle) -> Option<(&ColdEntry, Arc<DialogInfo>)> {
        let entry = self.entry(handle.index(), false)?;
        let info = entry.info.load_full()?;
        (info.handle() == handle).then_some((entry, info))
    }

    /// The entry of a live dialog whose info is installed, when only its deadlines are
    /// wanted: checked as [`ColdTable::get`] checks it, without taking a reference to the info.
    pub(crate) fn entry_of(&self, handle: DialogHandle) -> Option<&ColdEntry> {
        let entry = self.entry(handle.index(), false)?;
        let live = entry
            .info
            .load()
            .as_ref()
            .is_some_and(|info| info.handle() == handle);
        live.then_some(entry)
    }

    /// Installs a new dialog's info, resetting the slot's deadlines.
    pub(crate) fn install(&self, info: DialogInfo) -> Option<&ColdEntry> {
        let entry = self.entry(info.handle().index(), true)?;
        entry.armed_at.store(0, Ordering::Relaxed);
        entry.ack_deadline.store(0, Ordering::Relaxed);
        entry.bye_deadline.store(0, Ordering::Relaxed);
        entry.pending_target.store(None);
        entry.info.store(Some(Arc::new(info)));
        Some(entry)
    }

    /// Drops the info of a dialog that left the table (only if it is still this dialog's).
    pub(crate) fn clear(&self, handle: DialogHandle) {
        if let Some(entry) = self.entry(handle.index(), false) {
            let current = entry.info.load();
            if current.as_ref().is_some_and(|i| i.handle() == handle) {
                drop(current);
                entry
                    .info
                    .rcu(|cur| cur.clone().filter(|i| i.handle() != handle));
                entry.pending_target.store(None);
            }
        }
    }
}
