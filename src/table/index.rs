//! The index from a dialog's fingerprint to its slot: an open-addressed table of atomic words,
//! seven to a 64-byte chunk, allocated once for the table's capacity.
//!
//! ```text
//!  chunk     control  u64  entries that live past this chunk (32) | insert bit (1)
//!            entry×7  u64  fingerprint tag (32) | slot index + 1 (32); 0 = empty
//! ```
//!
//! A lookup reads its home chunk (one cache line), checks the entries whose tag matches against
//! the slot's fingerprint and generation, and goes on to the next chunk only while the control
//! word counts entries that overflowed past this one. It takes no lock and writes nothing.
//! An entry never moves and removal empties it in place, so there are no tombstones: an insert
//! that had to go past full chunks adds one to each of their counts first, and the removal of
//! its entry takes them back off.
//!
//! Two inserts of one fingerprint must not both land, so inserts whose fingerprint has the same
//! home take turns on that chunk's insert bit: the duplicate check and the publication happen
//! under it. Only inserts wait on it (once per dialog setup); lookups and removals never do.
//! The entry points to the slot, whose generation and fingerprint decide whether it is live,
//! so an entry whose dialog was just released is never taken for a live one.
//! Modelled in loom (`loom-tests/tests/index.rs`, `insert_remove.rs`).

use super::slab::Slab;
use super::DialogHandle;
use crate::id::Fingerprint;
use crate::sync::{AtomicU64, Ordering};

/// Entries per chunk: seven fill a cache line beside the control word. Loom models use two,
/// so a few dialogs overflow a chunk.
pub(crate) const ENTRIES: usize = if cfg!(sipdialog_loom) { 2 } else { 7 };

/// Dialogs per chunk at full capacity, at most (the chunk count is rounded up to a power of
/// two, so between half and all of this): 4 of 7 keeps most lookups in their home chunk.
const FILL: usize = if cfg!(sipdialog_loom) { 1 } else { 4 };

const INSERTING: u64 = 1;
const OVERFLOW: u64 = 1 << 32;

#[repr(C, align(64))]
pub(crate) struct Chunk {
    control: AtomicU64,
    entries: [AtomicU64; ENTRIES],
}

const _: () = assert!(core::mem::size_of::<Chunk>() == 64 || cfg!(sipdialog_loom));

/// Why [`Index::insert`] did not publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A live dialog has the fingerprint already.
    Duplicate(DialogHandle),
    /// No entry is empty.
    Full,
}

pub(crate) struct Index {
    chunks: Box<[Chunk]>,
    mask: usize,
}

const fn entry(tag: u32, index: u32) -> u64 {
    (tag as u64) << 32 | (index as u64 + 1)
}

const fn tag_of(fp: Fingerprint) -> u32 {
    (fp.0 >> 96) as u32
}

/// The live dialog in slot `index`, if its fingerprint is `fp`.
#[inline]
fn live(slab: &Slab, index: u32, fp: Fingerprint) -> Option<DialogHandle> {
    let slot = slab.slot(index)?;
    let generation = slot.generation();
    (generation % 2 == 1 && slot.fingerprint(generation) == Some(fp))
        .then_some(DialogHandle { index, generation })
}

impl Index {
    /// An index for `capacity` dialogs.
    pub(crate) fn new(capacity: u32) -> Index {
        let chunks = (capacity as usize)
            .div_ceil(FILL)
            .next_power_of_two()
            .max(2);
        Index {
            chunks: zeroed_chunks(chunks),
            mask: chunks - 1,
        }
    }

    /// Bytes of the chunk array.
    pub(crate) fn bytes(&self) -> usize {
        self.chunks.len() * core::mem::size_of::<Chunk>()
    }

    fn home(&self, fp: Fingerprint) -> usize {
        // The low bits for the chunk, the high ones for the tag: independent bits of the key.
        fp.0 as usize & self.mask
    }

    /// Walks `fp`'s probe chain: the entries of its home chunk, then of each next chunk while
    /// the one before counts entries that overflowed past it. Returns what `visit` first
    /// returns of an entry (told the entry's chunk).
    #[inline]
    fn probe<T>(
        &self,
        fp: Fingerprint,
        mut visit: impl FnMut(usize, &AtomicU64) -> Option<T>,
    ) -> Option<T> {
        let mut at = self.home(fp);
        for _ in 0..self.chunks.len() {
            let chunk = &self.chunks[at];
            for e in &chunk.entries {
                if let Some(found) = visit(at, e) {
                    return Some(found);
                }
            }
            if chunk.control.load(Ordering::Acquire) < OVERFLOW {
                return None;
            }
            at = (at + 1) & self.mask;
        }
        None
    }

    /// The first live dialog `fp` names.
    #[inline]
    pub(crate) fn find(&self, fp: Fingerprint, slab: &Slab) -> Option<DialogHandle> {
        let tag = tag_of(fp);
        self.probe(fp, |_, e| {
            let word = e.load(Ordering::Acquire);
            if word != 0 && (word >> 32) as u32 == tag {
                live(slab, (word as u32).wrapping_sub(1), fp)
            } else {
                None
            }
        })
    }

    /// Publishes `handle` under `fp`, unless a live dialog has `fp` already: then that one is
    /// returned and nothing changes. The caller claimed the slot before.
    pub(crate) fn insert(
        &self,
        fp: Fingerprint,
        handle: DialogHandle,
        slab: &Slab,
    ) -> Result<(), Refused> {
        let home = &self.chunks[self.home(fp)].control;
        let mut spins = 0u32;
        while home.fetch_or(INSERTING, Ordering::Acquire) & INSERTING != 0 {
            while home.load(Ordering::Relaxed) & INSERTING != 0 {
                // The holder only checks and writes a few words, unless it was descheduled
                // midway: then give it the core.
                spins += 1;
                if spins.is_multiple_of(64) {
                    crate::sync::yield_now();
                } else {
                    crate::sync::spin();
                }
            }
        }
        let result = match self.find(fp, slab) {
            Some(found) => Err(Refused::Duplicate(found)),
            None => self.publish(fp, handle),
        };
        home.fetch_and(!INSERTING, Ordering::Release);
        result
    }

    fn publish(&self, fp: Fingerprint, handle: DialogHandle) -> Result<(), Refused> {
        let word = entry(tag_of(fp), handle.index);
        let home = self.home(fp);
        let mut at = home;
        // The slab holds fewer dialogs than the index has entries, so an empty one exists; a
        // whole lap without one is refused rather than looped on.
        for _ in 0..self.chunks.len() {
            let chunk = &self.chunks[at];
            for e in &chunk.entries {
                if e.load(Ordering::Relaxed) == 0
                    && e.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok(());
                }
            }
            // Counted before the entry lands beyond, so a lookup never stops short of it.
            chunk.control.fetch_add(OVERFLOW, Ordering::AcqRel);
            at = (at + 1) & self.mask;
        }
        for chunk in self.chunks.iter() {
            chunk.control.fetch_sub(OVERFLOW, Ordering::AcqRel);
        }
        Err(Refused::Full)
    }

    /// Empties the entry of slot `index` under `fp`. Only the caller that released the slot
    /// calls this, before the slot goes back to the free list, so the entry is unique. A slot
    /// that was never published (an insert that lost to a duplicate, released by a remover
    /// that found it through `iter`) has no entry, and the probe ends where a lookup's would.
    pub(crate) fn remove(&self, fp: Fingerprint, index: u32) {
        let word = entry(tag_of(fp), index);
        let emptied = self.probe(fp, |at, e| {
            (e.load(Ordering::Relaxed) == word
                && e.compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok())
            .then_some(at)
        });
        // Then the chunks it had to pass let lookups stop earlier again.
        if let Some(at) = emptied {
            let mut passed = self.home(fp);
            while passed != at {
                self.chunks[passed]
                    .control
                    .fetch_sub(OVERFLOW, Ordering::AcqRel);
                passed = (passed + 1) & self.mask;
            }
        }
    }
}

impl Index {
    /// Every entry empty and every control word zero: what removing every dialog leaves.
    #[cfg(any(test, sipdialog_loom))]
    pub(crate) fn is_clean(&self) -> bool {
        self.chunks.iter().all(|c| {
            c.control.load(Ordering::Relaxed) == 0
                && c.entries.iter().all(|e| e.load(Ordering::Relaxed) == 0)
        })
    }
}

impl Chunk {
    #[cfg(sipdialog_loom)]
    fn new() -> Chunk {
        Chunk {
            control: AtomicU64::new(0),
            entries: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[cfg(sipdialog_loom)]
fn zeroed_chunks(count: usize) -> Box<[Chunk]> {
    (0..count).map(|_| Chunk::new()).collect()
}

/// Zeroed memory straight from the allocator, so the pages of a large index are only mapped
/// when an entry first lands in them: an idle endpoint for a million dialogs keeps its 16 MiB
/// index unmapped.
#[cfg(not(sipdialog_loom))]
fn zeroed_chunks(count: usize) -> Box<[Chunk]> {
    let layout = std::alloc::Layout::array::<Chunk>(count).expect("index size fits memory");
    // SAFETY: `count` ≥ 2, so the layout is not zero-sized. All-zero bytes are a valid `Chunk`
    // (`AtomicU64` has the in-memory representation of `u64`). The pointer comes from the
    // global allocator with the layout `Box<[Chunk]>` of `count` elements frees it with.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<Chunk>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(core::ptr::slice_from_raw_parts_mut(ptr, count))
    }
}

#[cfg(all(test, not(sipdialog_loom)))]
mod tests {
    use super::*;
    use crate::state::DialogState;
    use crate::table::NewDialog;

    const INIT: NewDialog = NewDialog {
        state: DialogState::EARLY,
        local_cseq: 1,
        remote_cseq: None,
        now_ms: 0,
    };

    /// Fingerprints whose home is chunk 0 (no low bits set), each with a tag of its own.
    fn homed_at_zero(n: u32) -> Vec<Fingerprint> {
        (1..=n)
            .map(|i| Fingerprint(u128::from(i) << 96 | u128::from(i) << 40))
            .collect()
    }

    fn claim(slab: &Slab, fp: Fingerprint) -> DialogHandle {
        let index = slab.alloc().unwrap();
        let generation = slab.slot(index).unwrap().claim(fp, &INIT);
        DialogHandle { index, generation }
    }

    fn control(index: &Index, at: usize) -> u64 {
        index.chunks[at].control.load(Ordering::Relaxed)
    }

    #[test]
    fn a_million_dialogs_take_sixteen_mebibytes() {
        let index = Index::new(1 << 20);
        assert_eq!(index.chunks.len(), 1 << 18);
        assert_eq!(index.bytes(), 16 << 20);
    }

    #[test]
    fn overflow_past_a_full_chunk_is_counted_and_given_back() {
        let slab = Slab::new(64);
        let index = Index::new(64);
        let fps = homed_at_zero(ENTRIES as u32 * 2 + 1);
        let handles: Vec<_> = fps.iter().map(|&fp| claim(&slab, fp)).collect();
        for (&fp, &h) in fps.iter().zip(&handles) {
            assert_eq!(index.insert(fp, h, &slab), Ok(()));
        }
        // Two chunks full, the last entry in the third: both passed chunks count it and the
        // seven that live in the second.
        assert_eq!(control(&index, 0) >> 32, ENTRIES as u64 + 1);
        assert_eq!(control(&index, 1) >> 32, 1);
        for (&fp, &h) in fps.iter().zip(&handles) {
            assert_eq!(index.find(fp, &slab), Some(h));
        }
        // The same fingerprint again is refused with the live dialog.
        let again = claim(&slab, fps[2 * ENTRIES]);
        assert_eq!(
            index.insert(fps[2 * ENTRIES], again, &slab),
            Err(Refused::Duplicate(handles[2 * ENTRIES]))
        );
        for (&fp, &h) in fps.iter().zip(&handles) {
            slab.slot(h.index).unwrap().release(h.generation).unwrap();
            assert_eq!(index.find(fp, &slab), None, "a released slot is not found");
            index.remove(fp, h.index);
        }
        assert!(index.is_clean());
    }

    /// Random inserts and removals of fingerprints crowded into a few home chunks (and a few
    /// tags, so tags collide too) against a map: every lookup agrees with the map, every
    /// insert of a live fingerprint is refused with its dialog, and emptying the index leaves
    /// no entry and no overflow count behind.
    #[test]
    fn crowded_chunks_agree_with_a_map() {
        use proptest::prelude::*;
        use std::collections::HashMap;
        // (insert?, home chunk 0..3, tag 0..4, discriminator 0..4)
        let ops = proptest::collection::vec((any::<bool>(), 0..3u64, 0..4u32, 0..4u64), 1..200);
        proptest!(|(ops in ops)| {
            let slab = Slab::new(64);
            let index = Index::new(64); // 16 chunks: homes 0..3 overflow into their neighbours
            let mut model: HashMap<Fingerprint, DialogHandle> = HashMap::new();
            for (insert, home, tag, disc) in ops {
                let fp = Fingerprint(u128::from(tag) << 96 | u128::from(disc) << 64 | u128::from(home));
                if insert {
                    if model.len() == 48 && !model.contains_key(&fp) {
                        continue;
                    }
                    let h = claim(&slab, fp);
                    match (index.insert(fp, h, &slab), model.get(&fp)) {
                        (Ok(()), None) => { model.insert(fp, h); }
                        (Err(Refused::Duplicate(found)), Some(&live)) => {
                            prop_assert_eq!(found, live);
                            slab.slot(h.index).unwrap().release(h.generation).unwrap();
                            slab.free(h.index);
                        }
                        (got, expected) => prop_assert!(false, "insert {:?}, map {:?}", got, expected),
                    }
                } else if let Some(h) = model.remove(&fp) {
                    slab.slot(h.index).unwrap().release(h.generation).unwrap();
                    index.remove(fp, h.index);
                    slab.free(h.index);
                }
                for (&fp, &h) in &model {
                    prop_assert_eq!(index.find(fp, &slab), Some(h));
                }
                prop_assert_eq!(index.find(fp, &slab), model.get(&fp).copied());
            }
            for (fp, h) in model.drain() {
                slab.slot(h.index).unwrap().release(h.generation).unwrap();
                index.remove(fp, h.index);
                slab.free(h.index);
            }
            prop_assert!(index.is_clean());
        });
    }

    /// More dialogs than entries (a slab larger than the index was made for): the one too
    /// many is refused after one lap, and the lap's overflow counts are taken back.
    #[test]
    fn a_full_index_refuses_and_leaves_no_count() {
        let slab = Slab::new(32);
        let index = Index::new(4); // two chunks: 14 entries
        let fps: Vec<_> = (1..=2 * ENTRIES as u128 + 1)
            .map(|i| Fingerprint(i << 96 | i << 64 | (i % 2)))
            .collect();
        let handles: Vec<_> = fps.iter().map(|&fp| claim(&slab, fp)).collect();
        for (&fp, &h) in fps.iter().zip(&handles).take(2 * ENTRIES) {
            assert_eq!(index.insert(fp, h, &slab), Ok(()));
        }
        let (&last_fp, &last) = (fps.last().unwrap(), handles.last().unwrap());
        let counts = (control(&index, 0), control(&index, 1));
        assert_eq!(index.insert(last_fp, last, &slab), Err(Refused::Full));
        assert_eq!((control(&index, 0), control(&index, 1)), counts);
        for (&fp, &h) in fps.iter().zip(&handles).take(2 * ENTRIES) {
            assert_eq!(index.find(fp, &slab), Some(h));
            slab.slot(h.index).unwrap().release(h.generation).unwrap();
            index.remove(fp, h.index);
        }
        assert!(index.is_clean());
    }

    #[test]
    fn a_matching_tag_on_another_fingerprint_is_not_a_match() {
        let slab = Slab::new(8);
        let index = Index::new(8);
        let fp = Fingerprint(7 << 96 | 3);
        let same_tag = Fingerprint(7 << 96 | 1 << 64 | 3);
        let h = claim(&slab, fp);
        index.insert(fp, h, &slab).unwrap();
        assert_eq!(index.find(same_tag, &slab), None);
        let h2 = claim(&slab, same_tag);
        assert_eq!(index.insert(same_tag, h2, &slab), Ok(()));
        assert_eq!(index.find(same_tag, &slab), Some(h2));
        assert_eq!(index.find(fp, &slab), Some(h));
    }
}
