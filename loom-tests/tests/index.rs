//! The dialog index's protocol: inserts of one fingerprint take turns on their home chunk's
//! insert bit, an insert that passes a full chunk counts itself there before it lands, and a
//! removal empties its entry in place and takes the counts back. Loom's index has two entries
//! a chunk, so the models below fill a chunk and overflow it with three dialogs.
#![cfg(sipdialog_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::builder;
use sipdialog::id::Fingerprint;
use sipdialog::table::loom_support::IndexModel;
use sipdialog::table::DialogHandle;

/// Room for four dialogs: four chunks of two entries.
fn model() -> Arc<IndexModel> {
    Arc::new(IndexModel::new(4))
}

/// A model whose chunk 0 is full: dialogs `a` and `b` live there, and `c` has the same home.
fn home_chunk_filled() -> (
    Arc<IndexModel>,
    [Fingerprint; 3],
    DialogHandle,
    DialogHandle,
) {
    let m = model();
    let [a, b, c] = [1, 2, 3].map(|tag| IndexModel::fingerprint(0, tag));
    let ha = m.insert(a).unwrap();
    let hb = m.insert(b).unwrap();
    (m, [a, b, c], ha, hb)
}

/// Two workers insert the same fingerprint, homed in a chunk two other dialogs fill: exactly
/// one lands (past the full chunk), the other is handed the winner, and removing everything
/// leaves the index as it started.
#[test]
fn one_of_two_racing_inserts_lands_past_a_full_chunk() {
    builder().check(|| {
        let (m, [a, b, c], ha, hb) = home_chunk_filled();
        let spawn = || {
            let m = m.clone();
            thread::spawn(move || m.insert(c))
        };
        let (x, y) = (spawn(), spawn());
        let (x, y) = (x.join().unwrap(), y.join().unwrap());
        let winner = match (x, y) {
            (Ok(w), Err(found)) | (Err(found), Ok(w)) => {
                assert_eq!(found, w, "the loser is handed the winner");
                w
            }
            other => panic!("exactly one insert lands, got {other:?}"),
        };
        assert_eq!(m.find(c), Some(winner));
        assert_eq!((m.find(a), m.find(b)), (Some(ha), Some(hb)));
        assert!(m.remove(c, winner) && m.remove(a, ha) && m.remove(b, hb));
        assert_eq!(m.find(c), None);
        assert!(
            m.is_clean(),
            "an entry or an overflow count was left behind"
        );
    });
}

/// An insert that finds its home chunk full races the removal of an entry in that chunk and a
/// lookup: whichever entry it takes, the lookup after both finds it, the dialog removed is
/// never found, and the counts go back to zero.
#[test]
fn an_overflowing_insert_racing_a_removal_stays_findable() {
    builder().check(|| {
        let (m, [a, b, c], ha, hb) = home_chunk_filled();
        let inserter = {
            let m = m.clone();
            thread::spawn(move || m.insert(c).unwrap())
        };
        let remover = {
            let m = m.clone();
            thread::spawn(move || {
                assert!(m.remove(a, ha));
                // Mid-race a lookup of the other dialog of the chunk still finds it.
                assert_eq!(m.find(b), Some(hb));
            })
        };
        let hc = inserter.join().unwrap();
        remover.join().unwrap();
        assert_eq!(m.find(c), Some(hc));
        assert_eq!((m.find(a), m.find(b)), (None, Some(hb)));
        assert!(m.remove(b, hb) && m.remove(c, hc));
        assert!(
            m.is_clean(),
            "an entry or an overflow count was left behind"
        );
    });
}

/// A new dialog with the fingerprint of one being removed: the insert either sees the old one
/// still live (and is refused with it) or lands, and afterwards the index names the new one
/// or none, never the old.
#[test]
fn an_insert_racing_the_removal_of_its_key() {
    builder().check(|| {
        let m = model();
        let c = IndexModel::fingerprint(1, 3);
        let old = m.insert(c).unwrap();
        let remover = {
            let m = m.clone();
            thread::spawn(move || assert!(m.remove(c, old)))
        };
        let inserter = {
            let m = m.clone();
            thread::spawn(move || m.insert(c))
        };
        remover.join().unwrap();
        match inserter.join().unwrap() {
            Ok(new) => {
                assert_ne!(new, old);
                assert_eq!(m.find(c), Some(new));
                assert!(m.remove(c, new));
            }
            Err(found) => {
                assert_eq!(found, old, "refused only by the old dialog");
                assert_eq!(m.find(c), None);
            }
        }
        assert!(
            m.is_clean(),
            "an entry or an overflow count was left behind"
        );
    });
}
