//! Why the library packs the generation and the state byte into one lifecycle word.
//!
//! A self-contained model of the naive design (not library code): a slot with a state
//! `AtomicU8` next to a separate generation `AtomicU32`. Thread A holds a handle to generation
//! 1 and, like a stale handle's `transition`, checks the generation, then CASes the state byte
//! `EARLY -> CONFIRMED`. Thread B ends that dialog and releases the slot (generation 2), reuses
//! it for a new dialog (generation 3) and sets the same state byte, `EARLY`. If A is preempted
//! between its check and its CAS, the CAS finds `EARLY` and lands on the new dialog. Loom must
//! find that interleaving, so the model is expected to panic.
//!
//! The same model with generation and state in one `AtomicU64`, as `table::slot` does it,
//! passes.
#![cfg(sipdialog_loom)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use loom::sync::Arc;
use loom::thread;
use loom_tests::builder;

const EARLY: u8 = 0;
const CONFIRMED: u8 = 1;
const TERMINATED: u8 = 2;

const OLD_GEN: u32 = 1;
const NEW_GEN: u32 = 3;

const ABA_MESSAGE: &str = "the stale handle's CAS landed on the new dialog";

struct NaiveSlot {
    generation: AtomicU32,
    state: AtomicU8,
}

fn naive_model() {
    let slot = Arc::new(NaiveSlot {
        generation: AtomicU32::new(OLD_GEN),
        state: AtomicU8::new(EARLY),
    });

    // A: `transition(handle{gen 1}, Confirm)` in the naive design.
    let s = slot.clone();
    let a = thread::spawn(move || {
        if s.generation.load(Acquire) != OLD_GEN {
            return false; // stale
        }
        s.state
            .compare_exchange(EARLY, CONFIRMED, AcqRel, Acquire)
            .is_ok()
    });

    // B: terminate and release the old dialog, then reuse the slot for a new early one.
    let s = slot.clone();
    let b = thread::spawn(move || {
        s.state.store(TERMINATED, Release);
        s.generation.store(OLD_GEN + 1, Release);
        s.generation.store(NEW_GEN, Release);
        s.state.store(EARLY, Release);
    });

    a.join().unwrap();
    b.join().unwrap();
    // Nobody holds a handle to the new dialog, so it must still be exactly as B created it.
    assert_eq!(slot.generation.load(Acquire), NEW_GEN);
    assert_eq!(slot.state.load(Acquire), EARLY, "{ABA_MESSAGE}");
}

/// Loom finds the interleaving where A's CAS lands on the new dialog: the model panics.
#[test]
fn bare_state_byte_is_aba_prone() {
    let result = catch_unwind(AssertUnwindSafe(|| builder().check(naive_model)));
    let payload = result.expect_err("loom should have found the ABA interleaving");
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains(ABA_MESSAGE),
        "the model failed, but not on the ABA assertion: {message:?}"
    );
}

const fn pack(generation: u32, state: u8) -> u64 {
    (generation as u64) << 32 | state as u64
}

/// The library's design in miniature: one word, so A's CAS expects generation 1 *and* `EARLY`
/// together and cannot succeed on generation 3.
#[test]
fn packed_lifecycle_word_is_not() {
    builder().check(|| {
        let word = Arc::new(AtomicU64::new(pack(OLD_GEN, EARLY)));

        let w = word.clone();
        let a = thread::spawn(move || {
            let current = w.load(Acquire);
            if current >> 32 != u64::from(OLD_GEN) || current as u8 != EARLY {
                return false;
            }
            w.compare_exchange(current, pack(OLD_GEN, CONFIRMED), AcqRel, Acquire)
                .is_ok()
        });

        let w = word.clone();
        let b = thread::spawn(move || {
            // Terminate (a CAS in the library; B is the only other writer here, so a swap
            // shows the same thing), release, reuse.
            let before = w.swap(pack(OLD_GEN, TERMINATED), AcqRel);
            w.store(pack(OLD_GEN + 1, 0), Release);
            w.store(pack(NEW_GEN, EARLY), Release);
            before
        });

        let confirmed = a.join().unwrap();
        let before_terminate = b.join().unwrap();
        // A's CAS either hit the old dialog (B's terminate saw it) or failed.
        assert_eq!(
            confirmed,
            before_terminate == pack(OLD_GEN, CONFIRMED),
            "A's CAS must land on the old dialog or nowhere"
        );
        assert_eq!(word.load(Acquire), pack(NEW_GEN, EARLY), "{ABA_MESSAGE}");
    });
}
