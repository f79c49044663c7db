//! The cold side table: one entry per hot slot, in pages created on first use, holding the
//! slot's current [`DialogInfo`] and the few deadlines the timers need, and counting the bytes
//! the dialogs' data holds (what [`crate::security::Policy::dialog_bytes`] bounds).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwapAny, ArcSwapOption};
use crossbeam_utils::CachePadded;
use triomphe::ThinArc;

use super::{DialogInfo, InfoHead};
use crate::table::DialogHandle;

const PAGE_ENTRIES: usize = 4096;

/// Per-slot cold state. Deadlines are milliseconds on the caller's clock, 0 for none.
#[derive(Default)]
pub(crate) struct ColdEntry {
    pub info: ArcSwapAny<Option<ThinArc<InfoHead, u8>>>,
    /// The generation of the slot's dialog whose info is installed, plus one (0: none): what
    /// [`ColdTable::entry_of`] checks, with one atomic load where loading the info through
    /// `arc-swap` costs a full barrier.
    owner: AtomicU64,
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
    /// Bytes of the infos and proposed targets the entries hold: every one is counted when it
    /// goes into an entry and given back when it leaves it.
    bytes: CachePadded<AtomicUsize>,
}

impl ColdTable {
    pub(crate) fn new(capacity: u32) -> ColdTable {
        let pages = (capacity as usize).div_ceil(PAGE_ENTRIES);
        ColdTable {
            pages: (0..pages).map(|_| OnceLock::new()).collect(),
            bytes: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Bytes the dialogs' infos and proposed targets hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Heap bytes of the entries themselves: the pages created so far, whole, and the list
    /// of pages (the infos they point to are [`ColdTable::bytes`]).
    pub(crate) fn entry_bytes(&self) -> usize {
        let created = self.pages.iter().filter(|p| p.get().is_some()).count();
        created * PAGE_ENTRIES * std::mem::size_of::<ColdEntry>()
            + self.pages.len() * std::mem::size_of::<OnceLock<Box<[ColdEntry]>>>()
    }

    /// Counts what went into an entry and what came out of it.
    fn account(&self, added: usize, removed: usize) {
        if added >= removed {
            self.bytes.fetch_add(added - removed, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(removed - added, Ordering::Relaxed);
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
    pub(crate) fn get(&self, handle: DialogHandle) -> Option<(&ColdEntry, DialogInfo)> {
        let entry = self.entry(handle.index(), false)?;
        let info = DialogInfo(entry.info.load_full()?);
        (info.handle() == handle).then_some((entry, info))
    }

    /// The entry of a live dialog whose info is installed, when only its deadlines are
    /// wanted: checked as [`ColdTable::get`] checks it, without taking a reference to the info.
    pub(crate) fn entry_of(&self, handle: DialogHandle) -> Option<&ColdEntry> {
        let entry = self.entry(handle.index(), false)?;
        (entry.owner.load(Ordering::Acquire) == owner_of(handle)).then_some(entry)
    }

    /// Installs a new dialog's info, resetting the slot's deadlines.
    pub(crate) fn install(&self, info: DialogInfo) -> Option<&ColdEntry> {
        let entry = self.entry(info.handle().index(), true)?;
        entry.armed_at.store(0, Ordering::Relaxed);
        entry.ack_deadline.store(0, Ordering::Relaxed);
        entry.bye_deadline.store(0, Ordering::Relaxed);
        self.drop_pending_target(entry);
        let owner = owner_of(info.handle());
        let added = info.cost();
        // Whatever an earlier dialog of the slot left in the entry goes now.
        let old = entry.info.swap(Some(info.0));
        self.account(added, old.map_or(0, |old| DialogInfo(old).cost()));
        entry.owner.store(owner, Ordering::Release);
        Some(entry)
    }

    /// Puts `new` in place of `current`, a live dialog's info, unless it is larger and the
    /// dialogs' data would then pass `budget` bytes, or the entry no longer holds `current`
    /// (the dialog ended, or another change came first): `false` when it was not put.
    pub(crate) fn replace(
        &self,
        entry: &ColdEntry,
        current: &DialogInfo,
        new: DialogInfo,
        budget: usize,
    ) -> bool {
        let added = new.cost();
        if added > current.cost() && self.bytes() + (added - current.cost()) > budget {
            return false;
        }
        // Only in place of `current`: a dialog that ended meanwhile (its info cleared) must
        // not get an info back into an entry nobody owns, where it would stay counted.
        let expected = Some(current.0.clone());
        let previous = entry.info.compare_and_swap(&expected, Some(new.0));
        let swapped = match (&*previous, &expected) {
            (Some(was), Some(current)) => was.ptr() == current.ptr(),
            _ => false,
        };
        if swapped {
            self.account(added, current.cost());
        }
        swapped
    }

    /// Keeps `target` as the entry's proposed target (none: drops the one it had), unless the
    /// dialogs' data would then pass `budget` bytes: `false` when it was not kept.
    pub(crate) fn propose(&self, entry: &ColdEntry, target: Option<&[u8]>, budget: usize) -> bool {
        let added = target.map_or(0, target_cost);
        if added > 0 && self.bytes() + added > budget {
            self.drop_pending_target(entry);
            return false;
        }
        let old = entry
            .pending_target
            .swap(target.map(|t| Arc::new(Box::from(t))));
        self.account(added, old.map_or(0, |t| target_cost(&t)));
        true
    }

    /// Takes the entry's proposed target out.
    pub(crate) fn take_proposed(&self, entry: &ColdEntry) -> Option<Arc<Box<[u8]>>> {
        let old = entry.pending_target.swap(None);
        self.account(0, old.as_ref().map_or(0, |t| target_cost(t)));
        old
    }

    /// Empties the entry's proposed target. Nearly always empty already: a load costs a few
    /// instructions where a store makes `arc-swap` visit every thread's list of reads.
    #[inline]
    fn drop_pending_target(&self, entry: &ColdEntry) {
        if entry.pending_target.load().is_some() {
            self.take_proposed(entry);
        }
    }

    /// Drops the info of a dialog leaving the table. Call it before the table gives the slot
    /// back: the swap below takes whatever info the entry holds. A stale handle's clear (its
    /// slot since given to another dialog) does nothing.
    pub(crate) fn clear(&self, handle: DialogHandle) {
        if let Some(entry) = self.entry(handle.index(), false) {
            // Only this dialog's: a newer one may hold the slot already.
            let ours = entry
                .owner
                .compare_exchange(owner_of(handle), 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
            if ours {
                // The caller clears before the slot goes back to the pool, so no later dialog
                // can have installed its info here yet: one swap, no read-compare-swap loop.
                let old = entry.info.swap(None);
                self.account(0, old.map_or(0, |i| DialogInfo(i).cost()));
                self.drop_pending_target(entry);
            }
        }
    }
}

/// What [`ColdEntry::owner`] holds while `handle`'s info is installed.
fn owner_of(handle: DialogHandle) -> u64 {
    u64::from(handle.generation()) + 1
}

/// What a proposed target holds: its bytes, the box's `Arc` (two counts and the box's
/// pointer and length).
fn target_cost(target: &[u8]) -> usize {
    target.len() + 4 * std::mem::size_of::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::RouteSet;
    use crate::dialog::{InfoParts, Role};
    use crate::id::DialogKey;
    use crate::security::{Charge, SourceKey};
    use crate::state::DialogState;
    use crate::table::{DialogTable, NewDialog};

    /// A new early dialog's hot-slot values.
    fn early() -> NewDialog {
        NewDialog {
            state: DialogState::EARLY,
            local_cseq: 1,
            remote_cseq: None,
            now_ms: 0,
        }
    }

    fn info(handle: DialogHandle) -> DialogInfo {
        DialogInfo::new(handle, &info_parts(), RouteSet::default())
    }

    fn info_parts() -> InfoParts<'static> {
        InfoParts {
            role: Role::Uas,
            secure: false,
            invite_cseq: 1,
            invite: None,
            call_id: b"c",
            local_tag: b"l",
            remote_tag: b"r",
            local_uri: b"<sip:a@b>",
            remote_uri: b"<sip:c@d>",
            remote_target: b"sip:c@192.0.2.1",
            local_target: b"sip:a@192.0.2.2",
            peer: None,
            charge: None,
        }
    }

    /// A slot's entry answers for the dialog installed in it, and for no earlier or later
    /// dialog of the same slot.
    #[test]
    fn an_entry_answers_for_its_own_dialog_only() {
        let table = DialogTable::with_capacity(1).unwrap();
        let cold = ColdTable::new(1);
        let init = early();
        let key = |tag: &'static [u8]| DialogKey {
            call_id: b"c",
            local_tag: tag,
            remote_tag: b"r",
        };
        let old = table.insert(&key(b"1"), &init).unwrap();
        assert!(cold.entry_of(old).is_none(), "nothing installed yet");
        cold.install(info(old)).unwrap();
        assert!(cold.entry_of(old).is_some());
        table.remove(old).unwrap();
        let new = table.insert(&key(b"2"), &init).unwrap();
        assert_eq!(new.index(), old.index());
        cold.install(info(new)).unwrap();
        // The old dialog's late clear leaves the new one alone.
        cold.clear(old);
        assert!(cold.entry_of(old).is_none());
        assert!(cold.entry_of(new).is_some());
        assert!(cold.get(new).is_some());
        cold.clear(new);
        assert!(cold.entry_of(new).is_none());
        assert!(cold.get(new).is_none());
    }

    /// What an info holds comes back as it went in, the INVITE's fingerprint (kept as two
    /// words) with both halves, and every byte field at its place in the shared block.
    #[test]
    fn an_info_gives_back_what_it_was_made_of() {
        let table = DialogTable::with_capacity(1).unwrap();
        let init = early();
        let handle = table
            .insert(
                &DialogKey {
                    call_id: b"c",
                    local_tag: b"l",
                    remote_tag: b"r",
                },
                &init,
            )
            .unwrap();
        let fingerprint = crate::id::Fingerprint(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let parts = InfoParts {
            invite: Some(fingerprint),
            invite_cseq: 7,
            secure: true,
            local_uri: b"<sip:a@b>;tag=l",
            ..info_parts()
        };
        let routes: [&[u8]; 2] = [b"<sip:p1;lr>", b"<sip:p2;lr>"];
        let made = DialogInfo::new(handle, &parts, RouteSet::from(&routes[..]));
        let copy = made.clone();
        drop(made);
        assert_eq!(copy.invite(), Some(fingerprint));
        assert_eq!(
            (copy.handle(), copy.invite_cseq(), copy.secure()),
            (handle, 7, true)
        );
        let p = copy.parts();
        assert_eq!(p.call_id, b"c");
        assert_eq!((p.local_tag, p.remote_tag), (&b"l"[..], &b"r"[..]));
        assert_eq!(p.local_uri, b"<sip:a@b>", "the tag is left out of the URI");
        assert_eq!(p.remote_uri, b"<sip:c@d>");
        assert_eq!(p.remote_target, b"sip:c@192.0.2.1");
        assert_eq!(copy.local_target(), b"sip:a@192.0.2.2");
        assert_eq!(p.route_set.iter().collect::<Vec<_>>(), routes);
        let none = DialogInfo::new(handle, &info_parts(), RouteSet::default());
        assert_eq!(
            (none.invite(), none.charge(), none.peer()),
            (None, None, None)
        );
        // Where a dialog's per-source count was charged comes back whole, both halves of an
        // IPv6 /64 key included.
        let v6: std::net::IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let peer = std::net::SocketAddr::new(v6, 5070);
        for charge in [
            Charge::Overflow,
            Charge::Source(SourceKey::of(v6)),
            Charge::Source(SourceKey::of([192, 0, 2, 1].into())),
        ] {
            let parts = InfoParts {
                charge: Some(charge),
                peer: Some(peer),
                ..info_parts()
            };
            let info = DialogInfo::new(handle, &parts, RouteSet::default());
            assert_eq!((info.charge(), info.peer()), (Some(charge), Some(peer)));
        }
    }

    /// A refresh that comes after its dialog's end puts nothing back: the entry stays empty
    /// and the dialogs' data is counted at 0.
    #[test]
    fn a_refresh_after_the_end_puts_nothing_back() {
        let table = DialogTable::with_capacity(1).unwrap();
        let cold = ColdTable::new(1);
        let init = early();
        let key = DialogKey {
            call_id: b"c",
            local_tag: b"l",
            remote_tag: b"r",
        };
        let handle = table.insert(&key, &init).unwrap();
        cold.install(info(handle)).unwrap();
        let (entry, current) = cold.get(handle).unwrap();
        assert!(cold.replace(entry, &current, info(handle), usize::MAX));
        let (entry, current) = cold.get(handle).unwrap();
        cold.clear(handle);
        assert_eq!(cold.bytes(), 0);
        assert!(!cold.replace(entry, &current, info(handle), usize::MAX));
        assert!(entry.info.load().is_none());
        assert_eq!(cold.bytes(), 0);
    }

    /// Two threads making and ending dialogs in one slot, so that every dialog takes the slot
    /// the other thread's last dialog left: a dialog's info is there until the dialog ends
    /// (the end of the one before it never takes it), and the count of the dialogs' data
    /// comes back to 0.
    #[test]
    fn ending_a_dialog_never_takes_the_info_of_the_slots_next_dialog() {
        use std::time::{Duration, Instant};
        let dialogs = crate::dialog::live::Dialogs::new(1).unwrap();
        let init = early();
        let deadline = Instant::now() + Duration::from_secs(3);
        let missing = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for thread in 0..2u8 {
                let (dialogs, init, missing) = (&dialogs, &init, &missing);
                s.spawn(move || {
                    let mut made = 0;
                    let mut tag = 0u32;
                    while made < 400_000 && Instant::now() < deadline {
                        tag += 1;
                        let local = [thread, tag as u8, (tag >> 8) as u8, (tag >> 16) as u8];
                        let key = DialogKey {
                            call_id: b"c",
                            local_tag: &local,
                            remote_tag: b"r",
                        };
                        let Ok(handle) = dialogs.table.insert(&key, init) else {
                            continue; // the other thread's dialog holds the slot
                        };
                        dialogs.cold.install(info(handle)).unwrap();
                        for _ in 0..4 {
                            if dialogs.cold.get(handle).is_none() {
                                missing.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        assert!(dialogs.remove(handle).is_some());
                        made += 1;
                    }
                    assert!(made > 100, "thread {thread} made {made} dialogs");
                });
            }
        });
        assert_eq!(
            missing.load(Ordering::Relaxed),
            0,
            "a live dialog lost its info"
        );
        assert_eq!(dialogs.cold.bytes(), 0);
    }

    /// The head of a dialog's cold data (what it keeps besides its bytes) is 112 bytes, paid
    /// once per established call: 128 while the route set was a list of its own.
    #[test]
    fn an_info_head_is_112_bytes() {
        assert_eq!(std::mem::size_of::<super::super::InfoHead>(), 112);
    }
}
