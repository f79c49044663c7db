use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::id::Fingerprinter;
use crate::state::Phase;

fn table(cap: u32) -> DialogTable {
    DialogTable::with_fingerprinter(cap, Fingerprinter::with_key([1; 16]))
}

fn key(call_id: &str) -> DialogKey<'_> {
    DialogKey {
        call_id: call_id.as_bytes(),
        local_tag: b"L",
        remote_tag: b"R",
    }
}

const INIT: NewDialog = NewDialog {
    state: DialogState::EARLY,
    local_cseq: 1,
    remote_cseq: None,
    now_ms: 10,
};

#[test]
fn insert_lookup_remove_and_reuse() {
    let t = table(2);
    let a = t.insert(&key("a"), &INIT).unwrap();
    let b = t.insert(&key("b"), &INIT).unwrap();
    assert_eq!(t.insert(&key("a"), &INIT), Err(TableError::Duplicate));
    let full = t.insert(&key("c"), &INIT).unwrap_err();
    assert_eq!(full, TableError::Full { capacity: 2 });
    assert_eq!(full.status().0, 503);
    assert_eq!(
        (t.lookup(&key("a")), t.lookup(&key("b"))),
        (Some(a), Some(b))
    );
    assert_eq!(t.len(), 2);

    assert_eq!(t.remove(a), Ok(DialogState::EARLY));
    assert_eq!(t.remove(a), Err(TableError::Stale));
    assert_eq!(t.lookup(&key("a")), None);
    // The freed slot is reused, under a new generation; the old handle stays stale.
    let c = t.insert(&key("c"), &INIT).unwrap();
    assert_eq!(c.index(), a.index());
    assert_ne!(c.generation(), a.generation());
    assert_eq!(t.state(a), Err(TableError::Stale));
    assert_eq!(t.transition(a, Event::Terminate), Err(TableError::Stale));
    assert_eq!(t.next_local_cseq(a), Err(TableError::Stale));
    assert_eq!(t.advance_remote_cseq(a, 5), Err(TableError::Stale));
    assert_eq!(t.touch(a, 99), Err(TableError::Stale));
    assert_eq!(t.state(c), Ok(DialogState::EARLY));
    assert_eq!(t.cseqs(c), Ok((1, None)));
    assert_eq!(t.times(c), Ok((10, 10)));
    assert_eq!(t.remove_key(&key("b")), Ok(DialogState::EARLY));
    assert_eq!(t.remove(c), Ok(DialogState::EARLY));
    assert!(t.is_empty());
    assert_eq!(t.iter().count(), 0);
}

#[test]
fn transitions_and_cseq_rules() {
    let t = table(4);
    let h = t.insert(&key("x"), &INIT).unwrap();
    assert_eq!(
        t.transition(h, Event::ConfirmAwaitingAck).unwrap().phase(),
        Phase::Confirmed
    );
    let before = t.state(h).unwrap();
    assert!(matches!(
        t.transition(h, Event::EndInvite),
        Err(TableError::State(StateError::Illegal { .. }))
    ));
    assert_eq!(
        t.state(h).unwrap(),
        before,
        "a refused event changes nothing"
    );
    assert_eq!(t.next_local_cseq(h), Ok(2));
    assert_eq!(t.next_local_cseq(h), Ok(3));
    assert_eq!(t.advance_remote_cseq(h, 10), Ok(CSeqOrder::Newer));
    assert_eq!(t.advance_remote_cseq(h, 10), Ok(CSeqOrder::Same));
    assert_eq!(t.advance_remote_cseq(h, 25), Ok(CSeqOrder::Newer));
    let err = t.advance_remote_cseq(h, 24).unwrap_err();
    assert_eq!(err, TableError::CSeqOutOfOrder { last: 25 });
    assert_eq!(err.status().0, 500);
    assert_eq!(t.cseqs(h), Ok((3, Some(25))));
    t.touch(h, 50).unwrap();
    t.touch(h, 40).unwrap();
    assert_eq!(t.times(h), Ok((10, 50)));
    let last = NewDialog {
        local_cseq: (1 << 31) - 1,
        ..INIT
    };
    let g = t.insert(&key("y"), &last).unwrap();
    assert_eq!(t.next_local_cseq(g), Err(TableError::CSeqExhausted));
    for bad in [1 << 31, u32::MAX] {
        let too_big = NewDialog {
            local_cseq: bad,
            ..INIT
        };
        assert_eq!(
            t.insert(&key("z"), &too_big),
            Err(TableError::CSeqOutOfRange)
        );
        let too_big = NewDialog {
            remote_cseq: Some(bad),
            ..INIT
        };
        assert_eq!(
            t.insert(&key("z"), &too_big),
            Err(TableError::CSeqOutOfRange)
        );
        assert_eq!(
            t.advance_remote_cseq(h, bad),
            Err(TableError::CSeqOutOfRange)
        );
    }
    assert_eq!(
        t.cseqs(h),
        Ok((3, Some(25))),
        "refused CSeqs change nothing"
    );
}

const BYE_FROM_PEER: &[u8] = b"BYE sip:me@h SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\n\
Call-ID: self-call\r\nFrom: <sip:me@h>;tag=B\r\nTo: <sip:me@h>;tag=A\r\nCSeq: 2 BYE\r\n\r\n";

#[test]
fn a_ua_calling_itself_keeps_two_dialogs_apart() {
    let t = table(4);
    let uac_side = DialogKey {
        call_id: b"self-call",
        local_tag: b"A",
        remote_tag: b"B",
    };
    let uas_side = DialogKey {
        call_id: b"self-call",
        local_tag: b"B",
        remote_tag: b"A",
    };
    let a = t.insert(&uac_side, &INIT).unwrap();
    let b = t.insert(&uas_side, &INIT).unwrap();
    assert_ne!(a, b);
    // The BYE was sent by the B side (From tag B): it belongs to the A side's dialog.
    let m = t.lookup_message(BYE_FROM_PEER).unwrap();
    assert_eq!(m.dialog, Some(a));
    let response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\n\
Call-ID: self-call\r\nFrom: <sip:me@h>;tag=B\r\nTo: <sip:me@h>;tag=A\r\nCSeq: 2 BYE\r\n\r\n";
    assert_eq!(t.lookup_message(response).unwrap().dialog, Some(b));
    assert!(t.lookup_message(b"garbage").is_err());
}

#[test]
fn iteration_sees_live_dialogs_only() {
    let t = table(100);
    let handles: Vec<_> = (0..50)
        .map(|i| t.insert(&key(&i.to_string()), &INIT).unwrap())
        .collect();
    for h in handles.iter().step_by(2) {
        t.remove(*h).unwrap();
    }
    let live: Vec<_> = t.iter().map(|(h, _)| h).collect();
    assert_eq!(
        live,
        handles
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .collect::<Vec<_>>()
    );
}

#[test]
fn threads_racing_inserts_removes_and_transitions_leave_nothing() {
    let t = table(64);
    std::thread::scope(|s| {
        for thread in 0..4 {
            let t = &t;
            s.spawn(move || {
                for i in 0..5_000 {
                    let id = format!("{}", i % 97);
                    let k = key(&id);
                    match t.insert(&k, &INIT) {
                        Ok(h) => {
                            let _ = t.transition(h, Event::Confirm);
                            let _ = t.remove(h);
                        }
                        Err(TableError::Duplicate | TableError::Full { .. }) => {
                            if let Some(h) = t.lookup(&k) {
                                // Racing another thread's remove is fine; a stale handle is not an error here.
                                let _ = t.transition(h, Event::Terminate);
                                let _ = t.remove(h);
                            }
                        }
                        Err(e) => panic!("thread {thread}: {e}"),
                    }
                }
            });
        }
    });
    assert_eq!(t.len(), 0);
    assert_eq!(
        t.early(),
        0,
        "every early dialog's phase change counted once"
    );
    assert_eq!(t.iter().count(), 0);
    // Every slot came back: the table can be filled to capacity again.
    for i in 0..64 {
        t.insert(&key(&format!("refill{i}")), &INIT).unwrap();
    }
    assert!(matches!(
        t.insert(&key("one more"), &INIT),
        Err(TableError::Full { .. })
    ));
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u8),
    Remove(u8),
    Transition(u8, u8),
    RemoveStale(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u8>().prop_map(|k| Op::Insert(k % 24)),
        any::<u8>().prop_map(|k| Op::Remove(k % 24)),
        (any::<u8>(), 0u8..7).prop_map(|(k, e)| Op::Transition(k % 24, e)),
        any::<u8>().prop_map(|k| Op::RemoveStale(k % 24)),
    ]
}

proptest! {
    /// Random operations agree with a plain `HashMap` model, and stale handles never act.
    #[test]
    fn agrees_with_a_hashmap_model(ops in proptest::collection::vec(op(), 1..200)) {
        let t = table(16);
        let mut model: HashMap<u8, (DialogHandle, DialogState)> = HashMap::new();
        let mut stale: Vec<DialogHandle> = Vec::new();
        for op in ops {
            match op {
                Op::Insert(k) => {
                    let name = k.to_string();
                    let got = t.insert(&key(&name), &INIT);
                    if model.contains_key(&k) {
                        prop_assert_eq!(got, Err(TableError::Duplicate));
                    } else if model.len() == 16 {
                        prop_assert_eq!(got, Err(TableError::Full { capacity: 16 }));
                    } else {
                        model.insert(k, (got.unwrap(), INIT.state));
                    }
                }
                Op::Remove(k) => {
                    let name = k.to_string();
                    match model.remove(&k) {
                        Some((h, s)) => {
                            prop_assert_eq!(t.remove(h), Ok(s));
                            stale.push(h);
                        }
                        None => prop_assert_eq!(t.remove_key(&key(&name)), Err(TableError::Stale)),
                    }
                }
                Op::Transition(k, e) => {
                    if let Some((h, s)) = model.get_mut(&k) {
                        let want = s.apply(Event::ALL[e as usize]);
                        prop_assert_eq!(t.transition(*h, Event::ALL[e as usize]), want.map_err(TableError::State));
                        if let Ok(n) = want { *s = n; }
                    }
                }
                Op::RemoveStale(i) => {
                    if let Some(h) = stale.get(i as usize % stale.len().max(1)) {
                        prop_assert_eq!(t.state(*h), Err(TableError::Stale));
                        prop_assert_eq!(t.transition(*h, Event::Terminate), Err(TableError::Stale));
                        prop_assert_eq!(t.remove(*h), Err(TableError::Stale));
                    }
                }
            }
            prop_assert_eq!(t.len(), model.len());
            let early = model.values().filter(|(_, s)| s.phase() == crate::state::Phase::Early).count();
            prop_assert_eq!(t.early(), early);
            for (k, (h, s)) in &model {
                prop_assert_eq!(t.lookup(&key(&k.to_string())), Some(*h));
                prop_assert_eq!(t.state(*h), Ok(*s));
            }
        }
        let mut live: Vec<_> = t.iter().collect();
        let mut want: Vec<_> = model.values().copied().collect();
        live.sort_by_key(|(h, _)| h.index());
        want.sort_by_key(|(h, _)| h.index());
        prop_assert_eq!(live, want);
    }
}
