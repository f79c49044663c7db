//! The table's early-dialog count is moved by whoever wins each phase-changing CAS: a confirm
//! racing a remove of an early dialog leaves it exact (here: 0, with nothing live).
#![cfg(sipdialog_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::{builder, key, table};
use sipdialog::state::{DialogState, Event};
use sipdialog::table::NewDialog;

#[test]
fn confirm_racing_remove_keeps_the_early_count_exact() {
    builder().check(|| {
        let table = Arc::new(table(2));
        let init = NewDialog {
            state: DialogState::EARLY,
            local_cseq: 1,
            remote_cseq: None,
            now_ms: 0,
        };
        let dialog = table.insert(&key("early"), &init).unwrap();
        assert_eq!(table.early(), 1);
        let confirm = {
            let table = table.clone();
            thread::spawn(move || table.transition(dialog, Event::Confirm).is_ok())
        };
        let remove = {
            let table = table.clone();
            thread::spawn(move || table.remove(dialog).is_ok())
        };
        confirm.join().unwrap();
        assert!(remove.join().unwrap(), "the remove always wins in the end");
        assert_eq!(table.early(), 0);
        assert_eq!(table.len(), 0);
    });
}
