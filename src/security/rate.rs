//! A token bucket in one atomic word (GCRA, the generic cell rate algorithm): the word holds
//! the theoretical arrival time of the next event; taking a token is one CAS that pushes it
//! one interval further, refused when that would put it more than a burst ahead of now.

use crate::sync::{AtomicU64, Ordering};

/// A lock-free rate limiter. Time is passed in (milliseconds on the caller's clock) and kept
/// in microseconds, so rates up to a million a second keep their precision.
#[derive(Debug, Default)]
pub struct Rate {
    /// Theoretical arrival time, in microseconds.
    tat: AtomicU64,
}

impl Rate {
    /// A full bucket.
    pub fn new() -> Rate {
        Rate::default()
    }

    /// Takes one token at `now_ms` for at most `per_second` a second with bursts of up to
    /// `burst` (at least one). `per_second` 0 means no limit. `false` when the bucket is empty.
    ///
    /// ```
    /// use sipdialog::security::Rate;
    ///
    /// let rate = Rate::new();
    /// assert!(rate.take(0, 10, 2) && rate.take(0, 10, 2)); // a burst of two
    /// assert!(!rate.take(0, 10, 2));
    /// assert!(rate.take(100, 10, 2)); // one more every 100 ms
    /// ```
    #[inline]
    pub fn take(&self, now_ms: u64, per_second: u32, burst: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let now = now_ms.saturating_mul(1_000);
        let interval = (1_000_000 / u64::from(per_second)).max(1);
        let limit = now.saturating_add(interval.saturating_mul(u64::from(burst.max(1))));
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(interval);
            if next > limit {
                return false;
            }
            // Relaxed: the word guards nothing but itself.
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(all(test, not(sipdialog_loom)))]
mod tests {
    use super::*;

    #[test]
    fn sustained_rate_and_burst() {
        let rate = Rate::new();
        let taken = (0..1_000).filter(|_| rate.take(0, 50, 10)).count();
        assert_eq!(taken, 10, "a burst, then nothing at the same instant");
        // Over ten seconds at one attempt a millisecond: the burst plus 50 a second.
        let taken = (1..=10_000).filter(|&ms| rate.take(ms, 50, 10)).count();
        assert_eq!(taken, 500);
        assert!(
            (0..100).all(|_| Rate::new().take(0, 0, 0)),
            "0 a second: no limit"
        );
    }

    #[test]
    fn an_idle_bucket_refills_only_to_its_burst() {
        let rate = Rate::new();
        assert!(rate.take(0, 1_000, 5));
        let taken = (0..100).filter(|_| rate.take(60_000, 1_000, 5)).count();
        assert_eq!(taken, 5);
    }
}
