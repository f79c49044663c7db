//! Fixed-bucket histograms, sharded like the counters: each shard holds one `AtomicU64` per
//! bucket and the sum in microseconds. An observation is a binary search over a dozen
//! constants and two relaxed `fetch_add`s: no lock (prometheus-client's own `Histogram`
//! takes a mutex per observation, so it is not used on the hot path).

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of `sipdialog_setup_duration_seconds`, in milliseconds (0.1 s … 60 s).
pub const SETUP_BOUNDS_MS: [u64; 12] = [
    100, 250, 500, 1_000, 2_000, 3_000, 5_000, 8_000, 13_000, 20_000, 30_000, 60_000,
];

/// Upper bounds of `sipdialog_dialog_duration_seconds`, in milliseconds (1 s … 2 h).
pub const DURATION_BOUNDS_MS: [u64; 11] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
    7_200_000,
];

/// Buckets of the setup histogram: one per bound and `+Inf`.
pub(super) const SETUP_BUCKETS: usize = SETUP_BOUNDS_MS.len() + 1;
/// Buckets of the duration histogram: one per bound and `+Inf`.
pub(super) const DURATION_BUCKETS: usize = DURATION_BOUNDS_MS.len() + 1;

/// One shard's part of a histogram with `N` buckets (the last is `+Inf`).
#[derive(Debug)]
pub(super) struct HistogramShard<const N: usize> {
    /// Observations per bucket, not cumulative: bucket `i` counts `bounds[i-1] < v <= bounds[i]`.
    buckets: [AtomicU64; N],
    /// Sum of all observations in microseconds (wraps after 584 000 years of talk time).
    sum_micros: AtomicU64,
}

impl<const N: usize> HistogramShard<N> {
    pub(super) const fn new() -> Self {
        HistogramShard {
            buckets: [const { AtomicU64::new(0) }; N],
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts `ms` in the first bucket whose bound is `>= ms` (Prometheus `le` is inclusive).
    #[inline]
    pub(super) fn observe(&self, bounds_ms: &[u64], ms: u64) {
        let index = bounds_ms.partition_point(|&bound| bound < ms);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(ms.saturating_mul(1_000), Ordering::Relaxed);
    }

    /// Adds this shard's counts into `into` (same length) and returns its sum.
    pub(super) fn add_to(&self, into: &mut [u64]) -> u64 {
        for (total, bucket) in into.iter_mut().zip(self.buckets.iter()) {
            *total = total.wrapping_add(bucket.load(Ordering::Relaxed));
        }
        self.sum_micros.load(Ordering::Relaxed)
    }
}

/// A histogram summed over all shards at one moment (read at scrape; allocates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    bounds_ms: &'static [u64],
    /// Per-bucket counts, not cumulative; one more than `bounds_ms` (`+Inf`).
    counts: Vec<u64>,
    sum_micros: u64,
}

impl HistogramSnapshot {
    pub(super) fn new(bounds_ms: &'static [u64]) -> Self {
        HistogramSnapshot {
            bounds_ms,
            counts: vec![0; bounds_ms.len() + 1],
            sum_micros: 0,
        }
    }

    pub(super) fn add_shard<const N: usize>(&mut self, shard: &HistogramShard<N>) {
        let sum = shard.add_to(&mut self.counts);
        self.sum_micros = self.sum_micros.wrapping_add(sum);
    }

    /// Number of observations (the `_count` sample, equal to the `+Inf` bucket).
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |acc, c| acc.wrapping_add(*c))
    }

    /// Sum of all observations in microseconds.
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// Sum of all observations in seconds (the `_sum` sample).
    pub fn sum_seconds(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }

    /// The upper bounds in seconds, without `+Inf`.
    pub fn bounds_seconds(&self) -> impl Iterator<Item = f64> + '_ {
        self.bounds_ms.iter().map(|&ms| ms as f64 / 1e3)
    }

    /// `(upper bound in seconds, observations in this bucket alone)`, `+Inf` last as
    /// `f64::INFINITY`: the shape prometheus-client's encoder takes (it accumulates).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds_seconds()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }

    /// `(upper bound in seconds, observations <= bound)`, `+Inf` last: the `_bucket` samples.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut running = 0u64;
        self.buckets()
            .into_iter()
            .map(|(bound, count)| {
                running = running.wrapping_add(count);
                (bound, running)
            })
            .collect()
    }
}
