//! A sequence of operations on a small `DialogTable`, mirrored in a `HashMap` model.
//!
//! After every operation the table must agree with the model: `len`, lookups (by key, by
//! fingerprint, by raw message), states moved with `DialogState::apply`, `Full` at capacity,
//! `Duplicate` for a live key, `Stale` for every handle whose dialog was removed, the CSeq
//! rules (local CSeq one higher each time and below 2^31; remote CSeq never lower), and in the
//! end `iter()` lists exactly the model's dialogs in slot order.
#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use sipdialog::id::{DialogKey, Fingerprinter};
use sipdialog::state::{DialogState, Event};
use sipdialog::table::{CSeqOrder, DialogHandle, DialogTable, NewDialog, TableError};
use sipdialog_fuzz::model::{build_message, state_from, CSeqSel, KeySel, Op, Script};

type Key = (&'static str, &'static str, &'static str);

#[derive(Clone, Debug)]
struct Dialog {
    handle: DialogHandle,
    state: DialogState,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    created_ms: u64,
    active_ms: u64,
}

#[derive(Default)]
struct Model {
    dialogs: HashMap<Key, Dialog>,
    /// Every handle ever returned, with its key, in order.
    handles: Vec<(DialogHandle, Key)>,
    issued: HashSet<DialogHandle>,
}

impl Model {
    fn pick(&self, i: u8) -> Option<(DialogHandle, Key)> {
        if self.handles.is_empty() {
            None
        } else {
            Some(self.handles[usize::from(i) % self.handles.len()])
        }
    }

    /// The live dialog a handle refers to, if it is still live.
    fn live(&mut self, handle: DialogHandle, key: Key) -> Option<&mut Dialog> {
        self.dialogs.get_mut(&key).filter(|d| d.handle == handle)
    }
}

/// A CSeq for the table, anywhere in `u32` (values of 2^31 and more must be refused).
fn cseq_value(sel: CSeqSel) -> u32 {
    sel.value()
}

/// CSeq numbers are below 2^31; the table refuses larger ones with `CSeqOutOfRange`.
const CSEQ_LIMIT: u32 = 1 << 31;

fn dialog_key(k: Key) -> DialogKey<'static> {
    DialogKey {
        call_id: k.0.as_bytes(),
        local_tag: k.1.as_bytes(),
        remote_tag: k.2.as_bytes(),
    }
}

fn check_error(e: &TableError) {
    let (code, reason) = e.status();
    assert!(matches!(code, 481 | 491 | 500 | 503), "{e:?} -> {code}");
    assert!(!reason.is_empty());
    let _ = e.to_string();
}

fn check_iter(table: &DialogTable, model: &Model) {
    let listed: Vec<(DialogHandle, DialogState)> = table.iter().collect();
    for pair in listed.windows(2) {
        assert!(
            pair[0].0.index() < pair[1].0.index(),
            "iter not in slot order: {listed:?}"
        );
    }
    let got: HashSet<(DialogHandle, u8)> = listed.iter().map(|(h, s)| (*h, s.bits())).collect();
    let want: HashSet<(DialogHandle, u8)> = model
        .dialogs
        .values()
        .map(|d| (d.handle, d.state.bits()))
        .collect();
    assert_eq!(got, want, "iter() differs from the model");
    assert_eq!(listed.len(), model.dialogs.len());
}

fn run(script: Script) {
    let capacity = u32::from(script.capacity % 9);
    let fingerprinter = Fingerprinter::with_key(script.key);
    let table = DialogTable::with_fingerprinter(capacity, fingerprinter.clone());
    assert_eq!(table.capacity(), capacity);
    let mut model = Model::default();

    for op in script.ops.into_iter().take(256) {
        match op {
            Op::Insert {
                key,
                state,
                local_cseq,
                remote_cseq,
                now_ms,
            } => {
                let k = key.normal();
                let init = NewDialog {
                    state: state_from(state),
                    local_cseq: cseq_value(local_cseq),
                    remote_cseq: remote_cseq.map(cseq_value),
                    now_ms: u64::from(now_ms),
                };
                let got = table.insert(&dialog_key(k), &init);
                let duplicate = model.dialogs.contains_key(&k);
                let full = model.dialogs.len() as u32 >= capacity;
                let out_of_range = init.local_cseq >= CSEQ_LIMIT
                    || init.remote_cseq.is_some_and(|c| c >= CSEQ_LIMIT);
                if out_of_range {
                    assert_eq!(got, Err(TableError::CSeqOutOfRange), "insert {init:?}");
                    continue;
                }
                match got {
                    Ok(handle) => {
                        assert!(!duplicate && !full, "insert succeeded: {handle:?}");
                        assert!(handle.index() < capacity);
                        assert_eq!(handle.generation() % 2, 1, "live generation is odd");
                        assert!(
                            model.issued.insert(handle),
                            "handle {handle:?} issued twice"
                        );
                        assert!(
                            model
                                .dialogs
                                .values()
                                .all(|d| d.handle.index() != handle.index()),
                            "slot {} given to two live dialogs",
                            handle.index()
                        );
                        model.handles.push((handle, k));
                        model.dialogs.insert(
                            k,
                            Dialog {
                                handle,
                                state: init.state,
                                local_cseq: init.local_cseq,
                                remote_cseq: init.remote_cseq,
                                created_ms: init.now_ms,
                                active_ms: init.now_ms,
                            },
                        );
                    }
                    Err(TableError::Duplicate) => assert!(duplicate, "spurious Duplicate"),
                    Err(TableError::Full { capacity: c }) => {
                        assert_eq!(c, capacity);
                        assert!(
                            full && !duplicate,
                            "Full with {} of {capacity}",
                            model.dialogs.len()
                        );
                    }
                    Err(e) => panic!("insert: {e:?}"),
                }
            }
            Op::Lookup { key } => {
                let k = key.normal();
                let want = model.dialogs.get(&k).map(|d| d.handle);
                assert_eq!(table.lookup(&dialog_key(k)), want, "lookup {k:?}");
                let fp = fingerprinter.fingerprint(&dialog_key(k));
                assert_eq!(table.fingerprinter().fingerprint(&dialog_key(k)), fp);
                assert_eq!(table.lookup_fingerprint(fp), want);
            }
            Op::LookupMessage {
                key,
                style,
                cseq,
                response,
            } => lookup_message(&table, &model, key, style, cseq, response),
            Op::Remove { handle } => {
                let Some((h, k)) = model.pick(handle) else {
                    continue;
                };
                let want = model.live(h, k).map(|d| d.state);
                match (table.remove(h), want) {
                    (Ok(s), Some(w)) => {
                        assert_eq!(s, w);
                        model.dialogs.remove(&k);
                    }
                    (Err(TableError::Stale), None) => {}
                    (got, want) => panic!("remove {h:?}: {got:?}, model {want:?}"),
                }
            }
            Op::RemoveKey { key } => {
                let k = key.normal();
                let want = model.dialogs.get(&k).map(|d| d.state);
                match (table.remove_key(&dialog_key(k)), want) {
                    (Ok(s), Some(w)) => {
                        assert_eq!(s, w);
                        model.dialogs.remove(&k);
                    }
                    (Err(TableError::Stale), None) => {}
                    (got, want) => panic!("remove_key {k:?}: {got:?}, model {want:?}"),
                }
            }
            Op::Transition { handle, event } => {
                let Some((h, k)) = model.pick(handle) else {
                    continue;
                };
                let event = Event::ALL[usize::from(event) % Event::ALL.len()];
                let got = table.transition(h, event);
                match model.live(h, k) {
                    None => assert_eq!(got, Err(TableError::Stale), "transition through {h:?}"),
                    Some(d) => match d.state.apply(event) {
                        Ok(next) => {
                            assert_eq!(got, Ok(next), "{:?} + {event:?}", d.state);
                            d.state = next;
                        }
                        Err(e) => {
                            assert_eq!(got, Err(TableError::State(e)), "{:?} + {event:?}", d.state)
                        }
                    },
                }
            }
            Op::NextLocalCSeq { handle } => {
                let Some((h, k)) = model.pick(handle) else {
                    continue;
                };
                let got = table.next_local_cseq(h);
                match model.live(h, k) {
                    None => assert_eq!(got, Err(TableError::Stale)),
                    Some(d) => {
                        let next = u64::from(d.local_cseq) + 1;
                        if next >= 1 << 31 {
                            assert_eq!(
                                got,
                                Err(TableError::CSeqExhausted),
                                "after {}",
                                d.local_cseq
                            );
                        } else {
                            assert_eq!(got, Ok(next as u32), "after {}", d.local_cseq);
                            d.local_cseq = next as u32;
                        }
                    }
                }
            }
            Op::AdvanceRemoteCSeq { handle, cseq } => {
                let Some((h, k)) = model.pick(handle) else {
                    continue;
                };
                let c = cseq_value(cseq);
                let got = table.advance_remote_cseq(h, c);
                match model.live(h, k) {
                    None if c >= CSEQ_LIMIT => assert_eq!(got, Err(TableError::CSeqOutOfRange)),
                    None => assert_eq!(got, Err(TableError::Stale)),
                    Some(_) if c >= CSEQ_LIMIT => {
                        assert_eq!(got, Err(TableError::CSeqOutOfRange))
                    }
                    Some(d) => match d.remote_cseq {
                        Some(last) if c == last => assert_eq!(got, Ok(CSeqOrder::Same)),
                        Some(last) if c < last => {
                            assert_eq!(got, Err(TableError::CSeqOutOfOrder { last }))
                        }
                        _ => {
                            assert_eq!(got, Ok(CSeqOrder::Newer), "{c} after {:?}", d.remote_cseq);
                            d.remote_cseq = Some(c);
                        }
                    },
                }
            }
            Op::Touch { handle, now_ms } => {
                let Some((h, k)) = model.pick(handle) else {
                    continue;
                };
                let got = table.touch(h, u64::from(now_ms));
                match model.live(h, k) {
                    None => assert_eq!(got, Err(TableError::Stale)),
                    Some(d) => {
                        assert_eq!(got, Ok(()));
                        d.active_ms = d.active_ms.max(u64::from(now_ms));
                    }
                }
            }
            Op::Inspect { handle } => {
                let Some((h, k)) = model.pick(handle) else {
                    continue;
                };
                let fp = fingerprinter.fingerprint(&dialog_key(k));
                match model.live(h, k) {
                    None => {
                        assert_eq!(table.state(h), Err(TableError::Stale));
                        assert_eq!(
                            table.cseqs(h),
                            Err(TableError::Stale),
                            "cseqs after removal"
                        );
                        assert_eq!(table.fingerprint(h), Err(TableError::Stale));
                        assert_eq!(table.times(h), Err(TableError::Stale));
                    }
                    Some(d) => {
                        assert_eq!(table.state(h), Ok(d.state));
                        assert_eq!(table.cseqs(h), Ok((d.local_cseq, d.remote_cseq)), "cseqs");
                        assert_eq!(table.fingerprint(h), Ok(fp));
                        assert_eq!(table.times(h), Ok((d.created_ms, d.active_ms)));
                    }
                }
            }
            Op::Iter => check_iter(&table, &model),
        }
        assert_eq!(table.len(), model.dialogs.len(), "len");
        assert_eq!(table.is_empty(), model.dialogs.is_empty());
    }
    // Stale handles stay stale, live ones answer.
    for &(h, k) in &model.handles {
        let live = model.dialogs.get(&k).is_some_and(|d| d.handle == h);
        match table.state(h) {
            Ok(_) => assert!(live, "{h:?} answers after removal"),
            Err(e) => {
                check_error(&e);
                assert!(!live && e == TableError::Stale, "{h:?}: {e:?}");
            }
        }
    }
    check_iter(&table, &model);
}

fn lookup_message(
    table: &DialogTable,
    model: &Model,
    key: KeySel,
    style: u16,
    cseq: u16,
    response: bool,
) {
    let k = key.normal();
    let msg = build_message(k.0, k.1, k.2, u32::from(cseq), response, style);
    let found = match table.lookup_message(&msg) {
        Ok(m) => m,
        Err(e) => panic!("lookup_message refused ({e:?}) {}", msg.escape_ascii()),
    };
    let want = model.dialogs.get(&k).map(|d| d.handle);
    assert_eq!(
        found.dialog,
        want,
        "lookup_message {k:?}: {}",
        msg.escape_ascii()
    );
    let view = found.message;
    assert_eq!(view.call_id(), k.0.as_bytes());
    assert_eq!(view.cseq().number, u32::from(cseq));
    assert_eq!(view.is_request(), !response);
    let received = DialogKey::received(&view);
    assert_eq!(received, dialog_key(k), "{}", msg.escape_ascii());
}

fuzz_target!(|script: Script| run(script));
