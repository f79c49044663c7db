//! The slab allocator (a Treiber stack of vacant slot indices with a 32-bit ABA stamp in its
//! head, then never-used slots) under concurrent alloc/free: no index is handed out twice while
//! held, none is lost, and the pop-pop-push ABA interleaving cannot corrupt the list.
//!
//! Who holds which index is tracked with `std` atomics: loom runs one thread at a time, so they
//! record the real order of events without adding interleavings of their own.
#![cfg(sipdialog_loom)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use loom::sync::Arc;
use loom::thread;
use loom_tests::builder;
use sipdialog::table::loom_support::SlabModel;

/// A slab plus, per index, whether some thread holds it right now.
struct Model {
    slab: SlabModel,
    held: Vec<AtomicBool>,
}

impl Model {
    fn new(capacity: u32) -> Arc<Model> {
        Arc::new(Model {
            slab: SlabModel::new(capacity),
            held: (0..capacity).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// Allocates and takes ownership of the index; panics if it is already held elsewhere.
    fn alloc(&self) -> Option<u32> {
        let index = self.slab.alloc()?;
        let flag = self
            .held
            .get(index as usize)
            .unwrap_or_else(|| panic!("alloc returned {index}, beyond the capacity"));
        assert!(
            !flag.swap(true, SeqCst),
            "index {index} handed out while another thread holds it"
        );
        Some(index)
    }

    /// Gives up ownership of the index and frees it.
    fn free(&self, index: u32) {
        assert!(
            self.held[index as usize].swap(false, SeqCst),
            "freeing {index}, which is not held"
        );
        self.slab.free(index);
    }

    /// After every thread has finished, with `held` indices still held: the rest come out of
    /// the allocator exactly once each, then it is empty.
    fn drain(&self, held: &[u32]) {
        let capacity = self.held.len();
        let mut got: Vec<u32> = held.to_vec();
        for _ in held.len()..capacity {
            let index = self
                .alloc()
                .expect("an index was lost: fewer than `capacity` allocs succeed");
            got.push(index);
        }
        assert_eq!(
            self.slab.alloc(),
            None,
            "more than `capacity` allocs succeed (an index is on the list twice)"
        );
        got.sort_unstable();
        assert_eq!(got, (0..capacity as u32).collect::<Vec<_>>());
    }
}

/// Capacity 3 with two indices already on the free list and one never used: three threads
/// take indices at once, two of them giving theirs back and taking again, exercising the
/// free-list pop, the push, and the never-used path (`high_water`) together. What they still
/// hold at the end plus what is left in the allocator is exactly the three indices.
#[test]
fn concurrent_alloc_free_three_threads() {
    builder().check(|| {
        let model = Model::new(3);
        let a = model.alloc().unwrap();
        let b = model.alloc().unwrap();
        model.free(a);
        model.free(b);

        let mut threads: Vec<_> = (0..2)
            .map(|_| {
                let m = model.clone();
                thread::spawn(move || {
                    let first = m.alloc()?;
                    m.free(first);
                    m.alloc()
                })
            })
            .collect();
        let m = model.clone();
        threads.push(thread::spawn(move || m.alloc()));
        let held: Vec<u32> = threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        model.drain(&held);
    });
}

/// Capacity 2, both indices on the free list, two threads taking and returning them in
/// different patterns; the free list is the only path.
#[test]
fn concurrent_alloc_free_free_list_only() {
    builder().check(|| {
        let model = Model::new(2);
        let a = model.alloc().unwrap();
        let b = model.alloc().unwrap();
        model.free(b);
        model.free(a);

        let m = model.clone();
        let t1 = thread::spawn(move || {
            // `None` is possible: T2 may hold both.
            if let Some(x) = m.alloc() {
                m.free(x);
            }
        });
        let m = model.clone();
        let t2 = thread::spawn(move || {
            let x = m.alloc();
            let y = m.alloc();
            for index in [y, x].into_iter().flatten() {
                m.free(index);
            }
        });
        t1.join().unwrap();
        t2.join().unwrap();
        model.drain(&[]);
    });
}

/// The ABA interleaving: the list is `A -> B`. T1 starts a pop and reads `head = A`,
/// `next = B`; T2 pops A, pops B and pushes A back (list `A`, B held by T2). T1's CAS must now
/// fail (the stamp moved on) even though the head index is A again: if it succeeded the head
/// would become B, which T2 holds, and B would be handed out twice or the list would cycle.
/// Loom reaches this interleaving with two preemptions.
#[test]
fn aba_pop_pop_push() {
    builder().check(|| {
        let model = Model::new(2);
        let a = model.alloc().unwrap();
        let b = model.alloc().unwrap();
        model.free(b);
        model.free(a); // list: a -> b

        let m = model.clone();
        let t1 = thread::spawn(move || m.alloc());
        let m = model.clone();
        let t2 = thread::spawn(move || {
            let first = m.alloc();
            let second = m.alloc();
            // Give the first back, keep the second.
            match (first, second) {
                (Some(x), Some(y)) => {
                    m.free(x);
                    Some(y)
                }
                (Some(x), None) | (None, Some(x)) => Some(x),
                (None, None) => None,
            }
        });
        // T1 may find the list empty (T2 holding both) and get `None`; that is no error.
        let held: Vec<u32> = [t1.join().unwrap(), t2.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        model.drain(&held);
    });
}
