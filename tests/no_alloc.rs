//! The in-dialog hot path — scan, fingerprint, index lookup, slot check, state CAS, CSeq
//! check, activity touch — performs no heap allocation. Proven with a counting allocator.

mod common;

use common::alloc::{allocations_during, TrackingAlloc};
use sipdialog::state::{DialogState, Event};
use sipdialog::table::{CSeqOrder, DialogTable, NewDialog};

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

#[test]
fn counter_sees_allocations() {
    // The proof below is only worth something if the counter can see an allocation.
    let n = allocations_during(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert_eq!(n, 1);
}

#[test]
fn in_dialog_path_allocates_nothing() {
    const DIALOGS: usize = 10_000;
    let table = DialogTable::with_capacity(DIALOGS as u32).unwrap();
    let ids = common::identities(DIALOGS, 7);
    let handles: Vec<_> = ids
        .iter()
        .map(|id| {
            let init = NewDialog {
                state: DialogState::CONFIRMED,
                local_cseq: 1,
                remote_cseq: Some(1),
                now_ms: 0,
            };
            table.insert(&id.key(), &init).unwrap()
        })
        .collect();
    let messages: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| common::in_dialog_request(id, "INFO", 2))
        .collect();
    let stray = common::in_dialog_request(&common::identities(1, 99)[0], "BYE", 9);

    // Warm up once: the index's per-thread reclamation state is set up on first use.
    assert!(table.lookup_message(&messages[0]).unwrap().dialog.is_some());

    let mut found = 0;
    let allocations = allocations_during(|| {
        for (i, bytes) in messages.iter().enumerate() {
            let m = table.lookup_message(bytes).unwrap();
            let handle = m.dialog.unwrap();
            assert_eq!(handle, handles[i]);
            table.transition(handle, Event::BeginInvite).unwrap();
            table.transition(handle, Event::EndInvite).unwrap();
            let order = table
                .advance_remote_cseq(handle, m.message.cseq().number)
                .unwrap();
            assert_eq!(order, CSeqOrder::Newer);
            table.touch(handle, i as u64).unwrap();
            found += 1;
        }
        assert!(table.lookup_message(&stray).unwrap().dialog.is_none());
    });
    assert_eq!(found, DIALOGS);
    assert_eq!(allocations, 0, "allocations on the in-dialog path");
}
