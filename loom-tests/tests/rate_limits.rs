//! The security layer's atomics: a token bucket in one word (`security::Rate`) hands out no
//! more tokens than it holds, and a source's dialog count (`security::sources::SourceEntry`)
//! is never charged once the entry is retiring, nor retired while it holds a dialog.
#![cfg(sipdialog_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::builder;
use sipdialog::security::sources::{ChargeError, SourceEntry};
use sipdialog::security::Rate;

/// Three threads take from a bucket of two at the same instant: exactly two succeed.
#[test]
fn a_bucket_never_gives_more_than_it_holds() {
    builder().check(|| {
        let rate = Arc::new(Rate::new());
        let takers: Vec<_> = (0..3)
            .map(|_| {
                let rate = rate.clone();
                thread::spawn(move || rate.take(0, 10, 2))
            })
            .collect();
        let taken = takers
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(taken, 2);
        assert!(!rate.take(0, 10, 2), "empty until it refills");
    });
}

/// A charge and a retire of an idle entry race: exactly one succeeds, and a retired entry is
/// never charged.
#[test]
fn charge_and_retire_exclude_each_other() {
    builder().check(|| {
        let entry = Arc::new(SourceEntry::new(0));
        let charger = {
            let entry = entry.clone();
            thread::spawn(move || entry.charge(10))
        };
        let sweeper = {
            let entry = entry.clone();
            thread::spawn(move || entry.retire())
        };
        let charged = charger.join().unwrap();
        let retired = sweeper.join().unwrap();
        match (charged, retired) {
            (Ok(()), false) => assert_eq!(entry.active(), 1),
            (Err(ChargeError::Retired), true) => assert_eq!(entry.active(), 0),
            other => panic!("both or neither: {other:?}"),
        }
    });
}

/// Two charges against a limit of one: exactly one fits; after its release the entry can
/// retire.
#[test]
fn the_per_source_limit_holds_under_a_race() {
    builder().check(|| {
        let entry = Arc::new(SourceEntry::new(0));
        let chargers: Vec<_> = (0..2)
            .map(|_| {
                let entry = entry.clone();
                thread::spawn(move || entry.charge(1))
            })
            .collect();
        let results: Vec<_> = chargers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(results.contains(&Err(ChargeError::Full)));
        assert!(!entry.retire(), "holds a dialog");
        entry.release();
        assert!(entry.retire());
    });
}
