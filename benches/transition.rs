//! A state transition on a resolved handle: one CAS through the transition table, with the
//! generation check. Uncontended, and with a second thread working the same table. Baselines
//! in the same run: a bare `AtomicU8` CAS (the floor) and a `Mutex<u8>` update (the ordinary
//! way).

mod support;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

use criterion::Criterion;
use sipdialog::state::{DialogState, Event};
use support::{calls, filled_table};

const GROUP: &str = "transition";

/// Alternates re-INVITE start and end, so every iteration is one legal transition.
fn toggle(flip: &mut bool) -> Event {
    *flip = !*flip;
    if *flip {
        Event::BeginInvite
    } else {
        Event::EndInvite
    }
}

fn bench(c: &mut Criterion) {
    let ids = calls::identities(1_000, 1);
    let (table, handles) = filled_table(&ids, 0);
    let handle = handles[0];
    let mut g = c.benchmark_group(GROUP);

    let mut flip = false;
    g.bench_function("table_uncontended", |b| {
        b.iter(|| table.transition(black_box(handle), toggle(&mut flip)))
    });

    // A second thread routes in-dialog requests and moves states of other dialogs meanwhile.
    let stop = AtomicBool::new(false);
    let messages: Vec<Vec<u8>> = ids[1..]
        .iter()
        .map(|id| calls::in_dialog_request(id, "INFO", 2))
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut flip = false;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let m = table.lookup_message(&messages[i % messages.len()]).unwrap();
                let _ = table.transition(m.dialog.unwrap(), toggle(&mut flip));
                i += 1;
            }
        });
        let mut flip = false;
        g.bench_function("table_second_thread", |b| {
            b.iter(|| table.transition(black_box(handle), toggle(&mut flip)))
        });
        stop.store(true, Ordering::Relaxed);
    });

    let byte = AtomicU8::new(DialogState::CONFIRMED.bits());
    let mut flip = false;
    g.bench_function("baseline_atomic_u8_cas", |b| {
        b.iter(|| {
            let (from, to) = if toggle(&mut flip) == Event::BeginInvite {
                (1, 5)
            } else {
                (5, 1)
            };
            black_box(&byte).compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
        })
    });

    let locked = Mutex::new(DialogState::CONFIRMED);
    let mut flip = false;
    g.bench_function("baseline_mutex", |b| {
        b.iter(|| {
            let mut s = black_box(&locked).lock().unwrap();
            *s = s.apply(toggle(&mut flip)).unwrap();
        })
    });
    g.finish();
}

fn main() {
    let mut report = support::run(bench);
    report.median("transition, uncontended", GROUP, "table_uncontended");
    report.median(
        "transition, second thread on the table",
        GROUP,
        "table_second_thread",
    );
    report.ratio(
        "vs bare AtomicU8 CAS",
        GROUP,
        "table_uncontended",
        "baseline_atomic_u8_cas",
    );
    report.ratio("vs Mutex<u8>", GROUP, "table_uncontended", "baseline_mutex");
    report.print();
}
