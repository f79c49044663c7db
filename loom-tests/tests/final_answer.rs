//! An INVITE's final answer is claimed once (`manager::claim::FinalAnswer`): a CANCEL and a
//! 200 racing on two threads never both answer, and no early dialog made while the CANCEL
//! wins is left behind.
#![cfg(sipdialog_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::builder;
use sipdialog::manager::claim::FinalAnswer;

/// The 200 claims, then adds its dialog; the CANCEL claims, then takes the dialogs to end
/// them. Exactly one claim wins; the 200's dialog exists only if the 200 won, and a CANCEL
/// that won took every dialog added before it.
#[test]
fn the_200_and_the_cancel_never_both_win() {
    builder().check(|| {
        let answer = Arc::new(FinalAnswer::<u32>::new());
        let ok = {
            let answer = answer.clone();
            thread::spawn(move || answer.claim() && answer.add(200, true))
        };
        let cancel = {
            let answer = answer.clone();
            thread::spawn(move || answer.claim().then(|| answer.take()))
        };
        let ok = ok.join().unwrap();
        let cancelled = cancel.join().unwrap();
        assert!(ok != cancelled.is_some(), "exactly one final answer");
        if let Some(taken) = cancelled {
            assert!(taken.is_empty(), "the 200 added nothing");
        }
        let left = answer.take();
        assert_eq!(left.len(), usize::from(ok), "the 200's dialog, if it won");
    });
}

/// A 180 makes its early dialog without the claim while a CANCEL claims and takes the
/// dialogs: the early dialog is ended exactly once, by the CANCEL (added before it took) or by
/// the 180's thread (refused after the claim).
#[test]
fn an_early_dialog_racing_a_cancel_is_ended_exactly_once() {
    builder().check(|| {
        let answer = Arc::new(FinalAnswer::<u32>::new());
        let ringing = {
            let answer = answer.clone();
            thread::spawn(move || answer.add(180, false))
        };
        let cancel = {
            let answer = answer.clone();
            thread::spawn(move || {
                assert!(answer.claim());
                answer.take()
            })
        };
        let added = ringing.join().unwrap();
        let taken = cancel.join().unwrap();
        let ended_by_cancel = taken.contains(&180);
        let ended_by_ringing = !added;
        assert!(
            ended_by_cancel != ended_by_ringing,
            "ended once: by the CANCEL {ended_by_cancel}, by the 180 {ended_by_ringing}"
        );
        assert!(answer.take().is_empty(), "nothing left behind");
    });
}
