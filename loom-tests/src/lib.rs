//! Loom models of the atomic protocols of `sipdialog`; see `tests/`.
//!
//! Run them with
//!
//! ```text
//! RUSTFLAGS="--cfg sipdialog_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test -p loom-tests --release
//! ```
//!
//! Without `--cfg sipdialog_loom` this crate and its tests compile to (almost) nothing. The
//! helpers below are shared by the models in `tests/`.

#[cfg(sipdialog_loom)]
mod helpers {
    use sipdialog::id::{DialogKey, Fingerprinter};
    use sipdialog::table::DialogTable;

    /// The preemption bound used when `LOOM_MAX_PREEMPTIONS` is not set.
    pub const DEFAULT_PREEMPTIONS: usize = 3;

    /// A loom model builder. `Builder::new()` reads the `LOOM_*` environment variables
    /// (`LOOM_MAX_PREEMPTIONS` becomes `preemption_bound`); when that one is unset the bound
    /// defaults to [`DEFAULT_PREEMPTIONS`] instead of loom's unbounded search.
    pub fn builder() -> loom::model::Builder {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
        }
        builder
    }

    /// The fixed fingerprint key of the models' tables (no OS randomness inside a model).
    pub const FINGERPRINT_KEY: [u8; 16] = [7; 16];

    /// A table of `capacity` dialogs with the fixed fingerprint key. Its index is small enough
    /// never to resize.
    pub fn table(capacity: u32) -> DialogTable {
        DialogTable::with_fingerprinter(capacity, Fingerprinter::with_key(FINGERPRINT_KEY))
    }

    /// A dialog key distinguished by its Call-ID.
    pub fn key(call_id: &'static str) -> DialogKey<'static> {
        DialogKey {
            call_id: call_id.as_bytes(),
            local_tag: b"local",
            remote_tag: b"remote",
        }
    }
}

#[cfg(sipdialog_loom)]
pub use helpers::*;
