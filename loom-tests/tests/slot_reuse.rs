//! A handle outlives its dialog: thread A keeps using it while thread B removes the dialog and
//! inserts a different one, which (capacity 1) reuses the very same slot. Every call through the
//! old handle must either act on the old dialog (it linearizes before the removal) or answer
//! `TableError::Stale`, once stale it stays stale, and the new dialog ends up exactly as B
//! created it.
#![cfg(sipdialog_loom)]

use std::fmt::Debug;

use loom::sync::Arc;
use loom::thread;
use loom_tests::{builder, key, table};
use sipdialog::id::{Fingerprint, Fingerprinter};
use sipdialog::state::{DialogState, Event};
use sipdialog::table::{CSeqOrder, DialogHandle, DialogTable, NewDialog, TableError};

const OLD: NewDialog = NewDialog {
    state: DialogState::EARLY,
    local_cseq: 10,
    remote_cseq: Some(20),
    now_ms: 100,
};

/// The new dialog differs from the old one in every field but (see [`reuse_model`]) possibly
/// the state byte; any write through the stale handle would show in one of them.
fn new_dialog(state: DialogState) -> NewDialog {
    NewDialog {
        state,
        local_cseq: 1000,
        remote_cseq: None,
        now_ms: 5000,
    }
}

fn fingerprint_of(call_id: &'static str) -> Fingerprint {
    Fingerprinter::with_key(loom_tests::FINGERPRINT_KEY).fingerprint(&key(call_id))
}

/// What thread A learnt through the old handle.
struct Observer {
    handle: DialogHandle,
    stale: bool,
    /// Whether a CSeq CAS through the old handle succeeded (see [`check_new_cseqs`]).
    cseq_written: bool,
}

impl Observer {
    /// `res` must be `Ok(old)` while the old dialog lives, `Stale` afterwards, and never
    /// anything else; once a call has answered `Stale`, every later one must too.
    fn expect<T: PartialEq + Debug>(&mut self, what: &str, res: Result<T, TableError>, old: T) {
        match res {
            Ok(v) => {
                assert!(!self.stale, "{what}: Ok({v:?}) after the handle went stale");
                assert_eq!(v, old, "{what} through the old handle saw another dialog");
            }
            Err(TableError::Stale) => self.stale = true,
            Err(e) => panic!("{what}: unexpected {e:?}"),
        }
    }

    /// `next_local_cseq` through the old handle: the old dialog's next CSeq or `Stale`.
    fn next_local_cseq(&mut self, t: &DialogTable, old_next: u32) {
        let res = t.next_local_cseq(self.handle);
        self.cseq_written |= res.is_ok();
        self.expect("next_local_cseq", res, old_next);
    }

    /// `advance_remote_cseq` through the old handle to a CSeq above the old dialog's.
    fn advance_remote_cseq(&mut self, t: &DialogTable, cseq: u32) {
        let res = t.advance_remote_cseq(self.handle, cseq);
        self.cseq_written |= res.is_ok();
        self.expect("advance_remote_cseq", res, CSeqOrder::Newer);
    }
}

/// The new dialog's CSeqs are exactly what B inserted: no CSeq change through the stale
/// handle lands on it. (`claim` writes the CSeq words with swaps, so this holds under loom's
/// model too, which orders a plain store after an earlier CAS more weakly than hardware.)
fn check_new_cseqs(table: &DialogTable, new: DialogHandle, init: &NewDialog, _obs_wrote: bool) {
    assert_eq!(
        table.cseqs(new),
        Ok((init.local_cseq, init.remote_cseq)),
        "a CSeq change through the stale handle landed on the new dialog"
    );
}

/// Runs `a` on a handle to the old dialog while B removes it and inserts a new dialog (whose
/// initial state is `new_state`) in the same slot, checks the new dialog, then hands `check`
/// what `a` returned, B's result of `remove`, the table and the new handle.
fn reuse_model<R, F, C>(new_state: DialogState, a: F, check: C)
where
    R: Send + 'static,
    F: Fn(&DialogTable, &mut Observer) -> R + Send + Sync + Copy + 'static,
    C: Fn(R, DialogState, &DialogTable, DialogHandle) + Send + Sync + 'static,
{
    builder().check(move || {
        let table = Arc::new(table(1));
        let old = table.insert(&key("old"), &OLD).unwrap();

        let t = table.clone();
        let thread_a = thread::spawn(move || {
            let mut obs = Observer {
                handle: old,
                stale: false,
                cseq_written: false,
            };
            let res = a(&t, &mut obs);
            (res, obs.cseq_written)
        });
        let t = table.clone();
        let thread_b = thread::spawn(move || {
            let last = t.remove(old).expect("only B removes the old dialog");
            let new = t
                .insert(&key("new"), &new_dialog(new_state))
                .expect("the removed dialog's slot must be free again");
            (last, new)
        });
        let (res, cseq_written) = thread_a.join().unwrap();
        let (last, new) = thread_b.join().unwrap();

        // B got the very same slot back, under a new generation.
        assert_eq!(new.index(), old.index());
        assert_ne!(new.generation(), old.generation());
        // The old dialog is gone, the new one is exactly what B inserted.
        assert_eq!(table.state(old), Err(TableError::Stale));
        assert_eq!(table.lookup(&key("old")), None);
        assert_eq!(table.lookup(&key("new")), Some(new));
        assert_eq!(table.len(), 1);
        let init = new_dialog(new_state);
        assert_eq!(table.fingerprint(new), Ok(fingerprint_of("new")));
        assert_eq!(table.times(new), Ok((init.now_ms, init.now_ms)));
        check_new_cseqs(&table, new, &init, cseq_written);
        assert_eq!(
            table.state(new),
            Ok(init.state),
            "a transition through the stale handle landed on the new dialog"
        );
        check(res, last, &table, new);
    });
}

/// `transition` and `state` through the old handle. The new dialog starts in the same state
/// byte (`Early`) as the old one, the bait for an ABA: only the generation in the lifecycle
/// word tells them apart. `Confirm` applies to the old dialog (then `remove` reports
/// `Confirmed`) or answers `Stale` (then `remove` reports `Early`), never to the new one.
#[test]
fn transition_and_state_through_stale_handle() {
    reuse_model(
        DialogState::EARLY,
        |t, obs| {
            let h = obs.handle;
            obs.expect("state", t.state(h), DialogState::EARLY);
            let confirmed = t.transition(h, Event::Confirm);
            obs.expect("transition", confirmed, DialogState::CONFIRMED);
            obs.expect("state", t.state(h), DialogState::CONFIRMED);
            confirmed.is_ok()
        },
        |confirmed, last, _, _| {
            let expected = if confirmed {
                DialogState::CONFIRMED
            } else {
                DialogState::EARLY
            };
            assert_eq!(
                last, expected,
                "remove must report the old dialog's last state"
            );
        },
    );
}

/// The CSeq counters through the old handle: `next_local_cseq` and `advance_remote_cseq` move
/// the old dialog's counters or answer `Stale`; the new dialog keeps B's `(1000, None)`.
#[test]
fn cseq_updates_through_stale_handle() {
    reuse_model(
        DialogState::EARLY,
        |t, obs| {
            obs.next_local_cseq(t, 11);
            obs.advance_remote_cseq(t, 25);
            obs.next_local_cseq(t, 12);
        },
        |(), _, _, _| {},
    );
}

/// The multi-word reads through the old handle (`fingerprint`, `times`: seqlock-style, fields
/// then a generation re-check) return the old dialog's values or `Stale`, never the new
/// dialog's fields or a mix. The new dialog is `Confirmed`, so `state` would tell too.
#[test]
fn reads_through_stale_handle() {
    reuse_model(
        DialogState::CONFIRMED,
        |t, obs| {
            let h = obs.handle;
            obs.expect("fingerprint", t.fingerprint(h), fingerprint_of("old"));
            obs.expect("times", t.times(h), (OLD.now_ms, OLD.now_ms));
            obs.expect("state", t.state(h), OLD.state);
            obs.expect("fingerprint", t.fingerprint(h), fingerprint_of("old"));
        },
        |(), last, _, _| assert_eq!(last, OLD.state),
    );
}

/// All six calls in one sequence through the old handle, against a same-state new dialog.
#[test]
fn every_call_through_stale_handle() {
    reuse_model(
        DialogState::EARLY,
        |t, obs| {
            let h = obs.handle;
            let confirmed = t.transition(h, Event::Confirm);
            obs.expect("transition", confirmed, DialogState::CONFIRMED);
            obs.next_local_cseq(t, 11);
            obs.advance_remote_cseq(t, 25);
            obs.expect("fingerprint", t.fingerprint(h), fingerprint_of("old"));
            obs.expect("times", t.times(h), (OLD.now_ms, OLD.now_ms));
            obs.expect("state", t.state(h), DialogState::CONFIRMED);
            confirmed.is_ok()
        },
        |confirmed, last, table, new| {
            let expected = if confirmed {
                DialogState::CONFIRMED
            } else {
                DialogState::EARLY
            };
            assert_eq!(last, expected);
            // The new dialog still takes events normally.
            assert_eq!(
                table.transition(new, Event::Confirm),
                Ok(DialogState::CONFIRMED)
            );
            assert_eq!(table.next_local_cseq(new), Ok(1001));
        },
    );
}

// ===== Regressions: stale handles and `cseqs` =====

/// `cseqs` through the old handle must be as stale as every other call. The CSeq words keep
/// the old generation tag from the removal until the slot is claimed again, so `Slot::cseqs`
/// must also check the lifecycle word (this model found the version that did not).
#[test]
fn cseqs_through_stale_handle_stays_stale() {
    reuse_model(
        DialogState::EARLY,
        |t, obs| {
            let h = obs.handle;
            obs.expect("state", t.state(h), OLD.state);
            obs.expect("cseqs", t.cseqs(h), (OLD.local_cseq, OLD.remote_cseq));
        },
        |(), _, _, _| {},
    );
}

/// The single-threaded form of the defect above.
#[test]
fn cseqs_after_remove_is_stale() {
    builder().check(|| {
        let table = table(1);
        let h = table.insert(&key("old"), &OLD).unwrap();
        table.remove(h).unwrap();
        assert_eq!(table.state(h), Err(TableError::Stale));
        assert_eq!(table.cseqs(h), Err(TableError::Stale), "cseqs after remove");
    });
}
