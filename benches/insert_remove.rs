//! Creating and removing a dialog while 1 000 000 others are live (steady state of a full
//! SBC). Baseline in the same run: the same churn on `RwLock<HashMap<String, _>>` with a
//! formatted key.

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;

use criterion::Criterion;
use sipdialog::state::DialogState;
use sipdialog::table::NewDialog;
use support::{calls, filled_table, Record};

const GROUP: &str = "insert_remove";
const LIVE: usize = 1_000_000;
const CHURN: usize = 65_536;

fn bench(c: &mut Criterion) {
    let ids = calls::identities(LIVE, 5);
    let churn = calls::identities(CHURN, 6);
    let mut g = c.benchmark_group(GROUP);

    let (table, _) = filled_table(&ids, 1);
    let init = NewDialog {
        state: DialogState::EARLY,
        local_cseq: 1,
        remote_cseq: None,
        now_ms: 0,
    };
    let mut next = 0;
    g.bench_function("sipdialog_1m", |b| {
        b.iter(|| {
            next = (next + 1) % CHURN;
            let h = table.insert(black_box(&churn[next].key()), &init).unwrap();
            table.remove(h).unwrap()
        })
    });
    assert_eq!(table.len(), LIVE);
    drop(table);

    let map: RwLock<HashMap<String, Record>> = RwLock::new(
        ids.iter()
            .map(|id| {
                let k = format!("{}|{}|{}", id.call_id, id.local_tag, id.remote_tag);
                (k, Record::default())
            })
            .collect(),
    );
    let mut next = 0;
    g.bench_function("baseline_string_rwlock_1m", |b| {
        b.iter(|| {
            next = (next + 1) % CHURN;
            let id = &churn[next];
            let k = format!("{}|{}|{}", id.call_id, id.local_tag, id.remote_tag);
            map.write().unwrap().insert(k.clone(), Record::default());
            map.write().unwrap().remove(black_box(&k))
        })
    });
    g.finish();
}

fn main() {
    let mut report = support::run(bench);
    report.ratio(
        "insert + remove at 1 M live dialogs",
        GROUP,
        "sipdialog_1m",
        "baseline_string_rwlock_1m",
    );
    report.print();
}
