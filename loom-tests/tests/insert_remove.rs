//! Racing inserts and removes: two inserts of one key leave exactly one dialog and no leaked
//! slot, and the live count stays between 0 and the capacity.
#![cfg(sipdialog_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::{builder, key, table};
use sipdialog::state::DialogState;
use sipdialog::table::{NewDialog, TableError};

const INIT: NewDialog = NewDialog {
    state: DialogState::EARLY,
    local_cseq: 1,
    remote_cseq: None,
    now_ms: 0,
};

/// Two workers handle the same dialog-creating message (e.g. a retransmitted 1xx): each looks
/// the key up and inserts it if absent. Exactly one insert wins; the other worker either finds
/// the winner's dialog or gets `Duplicate`, and a loser that had already taken a slot gives it
/// back, so the capacity-2 table still takes exactly one more dialog.
///
/// The index's words are loom atomics too, so loom also explores the schedules where both
/// workers pass the lookup before either publishes (`tests/index.rs` models the index alone).
#[test]
fn duplicate_insert_race() {
    builder().check(|| {
        let table = Arc::new(table(2));
        let spawn_worker = || {
            let t = table.clone();
            thread::spawn(move || match t.lookup(&key("k")) {
                Some(found) => Err(Ok(found)),
                None => t.insert(&key("k"), &INIT).map_err(Err),
            })
        };
        let (a, b) = (spawn_worker(), spawn_worker());
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        let (winner, loser) = match (a, b) {
            (Ok(h), other) | (other, Ok(h)) => (h, other),
            other => panic!("one insert must win, got {other:?}"),
        };
        match loser {
            Err(Ok(found)) => assert_eq!(found, winner, "lookup found another dialog"),
            Err(Err(TableError::Duplicate)) => {}
            other => panic!("the loser must find the winner or get Duplicate, got {other:?}"),
        }
        assert_eq!(table.lookup(&key("k")), Some(winner));
        assert_eq!(table.state(winner), Ok(DialogState::EARLY));
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.iter().count(),
            1,
            "the loser's slot must not look live"
        );
        let other = table
            .insert(&key("other"), &INIT)
            .expect("the loser's slot leaked");
        assert_ne!(other.index(), winner.index());
        assert_eq!(
            table.insert(&key("third"), &INIT),
            Err(TableError::Full { capacity: 2 })
        );
        assert_eq!(table.remove(winner), Ok(DialogState::EARLY));
        assert_eq!(table.lookup(&key("k")), None);
    });
}

// ===== Regression: the live count =====

/// A remover that finds a brand-new dialog the moment it is published must not drive `len()`
/// below zero: `insert` counts the dialog before publishing it (this model found the earlier
/// order, which published first and let `live` wrap to `usize::MAX`).
#[test]
fn len_stays_within_capacity_during_insert_remove_race() {
    builder().check(|| {
        let table = Arc::new(table(1));
        let t = table.clone();
        let inserter = thread::spawn(move || {
            t.insert(&key("k"), &INIT).unwrap();
            assert!(t.len() <= 1, "len() = {} seen by the inserter", t.len());
        });
        let t = table.clone();
        let remover = thread::spawn(move || {
            if let Some(h) = t.lookup(&key("k")) {
                t.remove(h).unwrap();
                assert!(t.len() <= 1, "len() = {} right after remove", t.len());
            }
        });
        inserter.join().unwrap();
        remover.join().unwrap();
        assert!(table.len() <= 1);
    });
}
