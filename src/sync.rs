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

/// One turn of a spin-wait: a pause hint to the CPU, a yield to loom's scheduler.
#[inline]
pub(crate) fn spin() {
    #[cfg(sipdialog_loom)]
    loom::thread::yield_now();
    #[cfg(not(sipdialog_loom))]
    core::hint::spin_loop();
}

/// Gives the core to another thread (loom: to another modelled thread).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(sipdialog_loom)]
    loom::thread::yield_now();
    #[cfg(not(sipdialog_loom))]
    std::thread::yield_now();
}

/// Removed entries of a papaya map a thread gathers before it reclaims them. Each batch costs
/// a process-wide barrier (the `membarrier` system call: an interrupt on every core running
/// one of our threads, a trap to the hypervisor on a VM). At seize's default of 32, with a few
/// entries removed per call, that was one barrier every few calls: 4.6 % of a two-thread
/// `calls` bench's samples were in the kernel sending them, 1.3 % at 128 (0.4 % at 512, which
/// looked slower on one thread: bigger batches are colder when freed). A batch holds up to
/// this many removed entries, and what their values own, per thread and map past removal.
pub(crate) const RETIRE_BATCH: usize = 128;

/// The collector every papaya map of the crate is built with ([`RETIRE_BATCH`]).
pub(crate) fn collector() -> seize::Collector {
    seize::Collector::new().batch_size(RETIRE_BATCH)
}

/// An empty papaya map with the default hasher on the crate's [`collector`].
pub(crate) fn map<K: core::hash::Hash + Eq, V>() -> papaya::HashMap<K, V> {
    papaya::HashMap::builder().collector(collector()).build()
}
