//! The one place atomics come from: `std` normally, `loom` under `--cfg sipdialog_loom`, so the
//! loom models in `loom-tests/` check the same code that ships. The cfg is namespaced so that
//! dependencies never see loom switched on.

#[cfg(sipdialog_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(sipdialog_loom)]
pub(crate) use loom::sync::Mutex;
#[cfg(not(sipdialog_loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(sipdialog_loom))]
pub(crate) use std::sync::Mutex;
