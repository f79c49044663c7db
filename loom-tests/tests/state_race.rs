//! Two threads race state changes on one dialog through `DialogTable::transition` and
//! `DialogTable::remove`: every change is one CAS on the slot's lifecycle word, so exactly one
//! of two conflicting changes wins, the loser gets the typed error computed from the winner's
//! state, and the final state is the winner's result.
#![cfg(sipdialog_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::{builder, key, table};
use sipdialog::state::{DialogState, Event, Flags, Phase, StateError};
use sipdialog::table::{DialogHandle, DialogTable, NewDialog, TableError};

fn init(state: DialogState) -> NewDialog {
    NewDialog {
        state,
        local_cseq: 1,
        remote_cseq: None,
        now_ms: 0,
    }
}

/// Inserts one dialog in `state` into a fresh table of capacity 1.
fn one_dialog(state: DialogState) -> (Arc<DialogTable>, DialogHandle) {
    let table = Arc::new(table(1));
    let handle = table.insert(&key("race"), &init(state)).unwrap();
    (table, handle)
}

/// Runs `event_a` and `event_b` on `handle` from two threads; returns both results.
fn race(
    table: &Arc<DialogTable>,
    handle: DialogHandle,
    event_a: Event,
    event_b: Event,
) -> (
    Result<DialogState, TableError>,
    Result<DialogState, TableError>,
) {
    let t = table.clone();
    let a = thread::spawn(move || t.transition(handle, event_a));
    let t = table.clone();
    let b = thread::spawn(move || t.transition(handle, event_b));
    (a.join().unwrap(), b.join().unwrap())
}

/// Checks "exactly one wins, the loser is refused as if it ran after the winner, the final state
/// is the winner's result" for a race of two events that exclude each other.
fn check_exclusive(
    table: &DialogTable,
    handle: DialogHandle,
    start: DialogState,
    (event_a, res_a): (Event, Result<DialogState, TableError>),
    (event_b, res_b): (Event, Result<DialogState, TableError>),
) {
    let (winner, loser_event, loser_res) = match (res_a, res_b) {
        (Ok(won), lost @ Err(_)) => {
            assert_eq!(Ok(won), start.apply(event_a).map_err(TableError::State));
            (won, event_b, lost)
        }
        (lost @ Err(_), Ok(won)) => {
            assert_eq!(Ok(won), start.apply(event_b).map_err(TableError::State));
            (won, event_a, lost)
        }
        other => panic!("exactly one of two exclusive transitions must win, got {other:?}"),
    };
    // The loser saw the winner's state: its error is what the table says for that state.
    assert_eq!(
        loser_res,
        Err(TableError::State(winner.apply(loser_event).unwrap_err())),
        "the loser's error must come from the winner's state {winner:?}"
    );
    let last = table.state(handle).unwrap();
    assert_eq!(last, winner, "final state must be the winner's result");
    assert!(DialogState::from_bits(last.bits()).is_some());
    assert_eq!(table.lookup(&key("race")), Some(handle));
    assert_eq!(table.len(), 1);
}

/// `Confirm` (UAC saw the 2xx) against `ConfirmAwaitingAck` (UAS sent it) on an early dialog:
/// both leave `Early`, so exactly one applies and the other is `Illegal` from the winner's
/// `Confirmed` state; the final state tells which one won (with or without `ACK_PENDING`).
#[test]
fn confirm_vs_confirm_awaiting_ack_on_early() {
    builder().check(|| {
        let (table, h) = one_dialog(DialogState::EARLY);
        let (a, b) = race(&table, h, Event::Confirm, Event::ConfirmAwaitingAck);
        for res in [a, b] {
            if let Err(e) = res {
                assert!(
                    matches!(
                        e,
                        TableError::State(StateError::Illegal {
                            from,
                            event: Event::Confirm | Event::ConfirmAwaitingAck,
                        }) if from.phase() == Phase::Confirmed
                    ),
                    "loser must get Illegal from Confirmed, got {e:?}"
                );
            }
        }
        check_exclusive(
            &table,
            h,
            DialogState::EARLY,
            (Event::Confirm, a),
            (Event::ConfirmAwaitingAck, b),
        );
    });
}

/// The same `Confirm` from two threads (e.g. a 2xx and its retransmission on two workers).
#[test]
fn confirm_twice_on_early() {
    builder().check(|| {
        let (table, h) = one_dialog(DialogState::EARLY);
        let (a, b) = race(&table, h, Event::Confirm, Event::Confirm);
        let illegal = Err(TableError::State(StateError::Illegal {
            from: DialogState::CONFIRMED,
            event: Event::Confirm,
        }));
        assert!(
            (a, b) == (Ok(DialogState::CONFIRMED), illegal)
                || (a, b) == (illegal, Ok(DialogState::CONFIRMED)),
            "got {a:?} / {b:?}"
        );
        check_exclusive(
            &table,
            h,
            DialogState::EARLY,
            (Event::Confirm, a),
            (Event::Confirm, b),
        );
    });
}

/// Two re-INVITEs on a confirmed dialog (glare, RFC 3261 §14.1): one starts, the other gets
/// `Glare` (answer 491), and `INVITE_PENDING` is set exactly once.
#[test]
fn begin_invite_glare_on_confirmed() {
    builder().check(|| {
        let (table, h) = one_dialog(DialogState::CONFIRMED);
        let (a, b) = race(&table, h, Event::BeginInvite, Event::BeginInvite);
        let pending = DialogState::new(Phase::Confirmed, Flags::INVITE_PENDING);
        let glare = Err(TableError::State(StateError::Glare));
        assert!(
            (a, b) == (Ok(pending), glare) || (a, b) == (glare, Ok(pending)),
            "got {a:?} / {b:?}"
        );
        check_exclusive(
            &table,
            h,
            DialogState::CONFIRMED,
            (Event::BeginInvite, a),
            (Event::BeginInvite, b),
        );
    });
}

/// A re-INVITE against a BYE on a confirmed dialog: if the BYE wins the INVITE gets
/// `ByePending`; if the INVITE wins the BYE still applies (BYE is allowed during a re-INVITE),
/// and the final state carries both flags. Whatever the order, no update is lost.
#[test]
fn begin_invite_vs_begin_bye_loses_no_update() {
    builder().check(|| {
        let (table, h) = one_dialog(DialogState::CONFIRMED);
        let (inv, bye) = race(&table, h, Event::BeginInvite, Event::BeginBye);
        let both = DialogState::new(
            Phase::Confirmed,
            Flags::INVITE_PENDING.union(Flags::BYE_PENDING),
        );
        let bye_only = DialogState::new(Phase::Confirmed, Flags::BYE_PENDING);
        let last = table.state(h).unwrap();
        match inv {
            // INVITE first, then BYE on top of it.
            Ok(s) => {
                assert_eq!(s, DialogState::new(Phase::Confirmed, Flags::INVITE_PENDING));
                assert_eq!(bye, Ok(both));
                assert_eq!(last, both);
            }
            Err(e) => {
                assert_eq!(e, TableError::State(StateError::ByePending));
                assert_eq!(bye, Ok(bye_only));
                assert_eq!(last, bye_only);
            }
        }
    });
}

/// `transition(Terminate)` against `remove`: either the terminate lands first (both succeed and
/// `remove` reports `Terminated`) or the remove does (the terminate answers `Stale` and `remove`
/// reports the state before). Either way the dialog is gone and its slot back in the pool
/// exactly once.
#[test]
fn terminate_vs_remove() {
    builder().check(|| {
        let (table, h) = one_dialog(DialogState::EARLY);
        let t = table.clone();
        let a = thread::spawn(move || t.transition(h, Event::Terminate));
        let t = table.clone();
        let b = thread::spawn(move || t.remove(h));
        let (term, removed) = (a.join().unwrap(), b.join().unwrap());
        match term {
            Ok(s) => {
                assert_eq!(s, DialogState::TERMINATED);
                assert_eq!(removed, Ok(DialogState::TERMINATED));
            }
            Err(e) => {
                assert_eq!(e, TableError::Stale);
                assert_eq!(removed, Ok(DialogState::EARLY));
            }
        }
        assert_after_removal(&table, h);
    });
}

/// Two `remove`s of one dialog: exactly one wins and frees the slot once.
#[test]
fn remove_vs_remove() {
    builder().check(|| {
        let (table, h) = one_dialog(DialogState::CONFIRMED);
        let t = table.clone();
        let a = thread::spawn(move || t.remove(h));
        let t = table.clone();
        let b = thread::spawn(move || t.remove(h));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(
            (a, b) == (Ok(DialogState::CONFIRMED), Err(TableError::Stale))
                || (a, b) == (Err(TableError::Stale), Ok(DialogState::CONFIRMED)),
            "got {a:?} / {b:?}"
        );
        assert_after_removal(&table, h);
    });
}

/// The removed dialog is gone for good, and its (only) slot was freed exactly once: one new
/// dialog fits in the capacity-1 table, a second does not.
fn assert_after_removal(table: &DialogTable, h: DialogHandle) {
    assert_eq!(table.state(h), Err(TableError::Stale));
    assert_eq!(
        table.transition(h, Event::Terminate),
        Err(TableError::Stale)
    );
    assert_eq!(table.remove(h), Err(TableError::Stale));
    assert_eq!(table.lookup(&key("race")), None);
    assert_eq!(table.len(), 0);
    let again = table
        .insert(&key("race"), &init(DialogState::EARLY))
        .expect("the slot must be back in the pool");
    assert_eq!(again.index(), h.index());
    assert_ne!(again.generation(), h.generation());
    assert_eq!(table.state(h), Err(TableError::Stale));
    assert_eq!(
        table.insert(&key("other"), &init(DialogState::EARLY)),
        Err(TableError::Full { capacity: 1 }),
        "the slot must have been freed exactly once"
    );
}
