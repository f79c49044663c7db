//! The local CSeq word is moved by two CAS loops: `next_local_cseq` (a request we send takes
//! the next number) and `raise_local_cseq` (an observing proxy follows the caller's numbers).
//! Racing them never loses an increment, never lowers the counter, and never hands out one
//! number twice; against a concurrent remove, both see a stale handle rather than touching
//! the next dialog in the slot.
#![cfg(sipdialog_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::{builder, key, table};
use sipdialog::state::DialogState;
use sipdialog::table::{NewDialog, TableError};

fn init() -> NewDialog {
    NewDialog {
        state: DialogState::CONFIRMED,
        local_cseq: 1,
        remote_cseq: None,
        now_ms: 0,
    }
}

#[test]
fn next_and_raise_never_lose_or_repeat_a_number() {
    builder().check(|| {
        let table = Arc::new(table(1));
        let handle = table.insert(&key("cseq"), &init()).unwrap();
        let t = table.clone();
        let taker = thread::spawn(move || {
            let a = t.next_local_cseq(handle).unwrap();
            let b = t.next_local_cseq(handle).unwrap();
            (a, b)
        });
        let t = table.clone();
        let raiser = thread::spawn(move || t.raise_local_cseq(handle, 5).unwrap());
        let (a, b) = taker.join().unwrap();
        raiser.join().unwrap();
        let (last, _) = table.cseqs(handle).unwrap();
        assert!(a < b, "numbers handed out in order: {a} {b}");
        assert!(last >= 5, "the raise is never undone: {last}");
        assert!(
            last >= b,
            "the counter never goes below a number handed out"
        );
        // Either both increments came after the raise (6, 7), or before it (2, 3 then 5),
        // or straddled it (2, 6).
        assert!(
            matches!((a, b, last), (6, 7, 7) | (2, 3, 5) | (2, 6, 6)),
            "{a} {b} {last}"
        );
    });
}

#[test]
fn cseq_changes_racing_a_remove_see_a_stale_handle() {
    builder().check(|| {
        let table = Arc::new(table(1));
        let handle = table.insert(&key("cseq"), &init()).unwrap();
        let t = table.clone();
        let raiser = thread::spawn(move || t.raise_local_cseq(handle, 9));
        table.remove(handle).unwrap();
        let next = table.insert(&key("other"), &init()).unwrap();
        let raised = raiser.join().unwrap();
        assert!(matches!(raised, Ok(()) | Err(TableError::Stale)));
        // The new dialog in the slot kept its own counter.
        assert_eq!(table.cseqs(next).unwrap().0, 1);
    });
}
