//! Where the LFs of a message are, found 64 bytes at a time.
//!
//! The header iterator asks for the end of every line. Searching each line separately costs a
//! search's set-up per line and a word-at-a-time loop over its bytes; here one pass over a
//! 64-byte window turns every LF in it into one bit of a mask, and each later question about
//! that window is a shift and a trailing-zero count. Windows are made only as the iterator
//! reaches them, so a message's body is not searched.

/// Bytes covered by one mask.
const WINDOW: usize = 64;

/// The LF positions of one 64-byte window of a buffer, made as lines reach it.
#[derive(Clone, Debug)]
pub(crate) struct LineEnds {
    /// Where the current window starts.
    base: usize,
    /// Bit `i` set: `buf[base + i]` is an LF.
    mask: u64,
}

impl LineEnds {
    /// No window yet: the first question makes one.
    pub(crate) fn new() -> LineEnds {
        LineEnds {
            base: usize::MAX,
            mask: 0,
        }
    }

    /// The first LF at or after `from` in `buf`; `buf` must be the same buffer every call.
    #[inline(always)]
    pub(crate) fn next_lf(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        if from < self.base || from >= self.base.saturating_add(WINDOW) {
            // Windows sit at multiples of 64, so none overlaps another and each byte is
            // compared once however the lines fall.
            self.load(buf, from & !(WINDOW - 1));
        }
        loop {
            let below = from.saturating_sub(self.base);
            let m = match below {
                0 => self.mask,
                _ => self.mask & (u64::MAX << below),
            };
            if m != 0 {
                return Some(self.base + m.trailing_zeros() as usize);
            }
            let next = self.base + WINDOW;
            if next >= buf.len() {
                return None;
            }
            self.load(buf, next);
        }
    }

    /// The physical line of `buf` from `from`: (its end, a CR before the LF left out; the start
    /// of the next line). Without an LF the line runs to the end of `buf`.
    #[inline(always)]
    pub(crate) fn line(&mut self, buf: &[u8], from: usize) -> (usize, usize) {
        let (end, next) = match self.next_lf(buf, from) {
            Some(i) => (i, i + 1),
            None => (buf.len(), buf.len()),
        };
        match end > from && buf[end - 1] == b'\r' {
            true => (end - 1, next),
            false => (end, next),
        }
    }

    /// Makes the window that starts at `at` (its bytes past the buffer's end count as not LF).
    #[inline(never)]
    fn load(&mut self, buf: &[u8], at: usize) {
        self.base = at;
        self.mask = match buf.get(at..at + WINDOW) {
            Some(window) => lf_mask(window.try_into().unwrap_or(&[0; WINDOW])),
            None if at >= buf.len() => 0,
            // The last window: the buffer's last 64 bytes, shifted to start at `at` (zeros
            // shift in past the end), rather than a copy into a padded window.
            None if buf.len() >= WINDOW => {
                let last = buf.len() - WINDOW;
                let window = &buf[last..];
                lf_mask(window.try_into().unwrap_or(&[0; WINDOW])) >> (at - last)
            }
            None => {
                let mut padded = [0u8; WINDOW];
                let rest = buf.get(at..).unwrap_or_default();
                padded[..rest.len()].copy_from_slice(rest);
                lf_mask(&padded)
            }
        };
    }
}

/// Bit `i` set where `window[i]` is an LF: four 16-byte compares.
#[cfg(target_arch = "x86_64")]
#[inline]
fn lf_mask(window: &[u8; WINDOW]) -> u64 {
    // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 CPU has it.
    unsafe { lf_mask_sse2(window) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn lf_mask_sse2(window: &[u8; WINDOW]) -> u64 {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let lf = _mm_set1_epi8(b'\n' as i8);
    let mut mask = 0u64;
    for (k, chunk) in window.chunks_exact(16).enumerate() {
        // SAFETY: `chunk` is 16 readable bytes (`chunks_exact(16)`) and the unaligned load
        // reads exactly those.
        let v = unsafe { _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>()) };
        let bits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, lf)) as u32 & 0xffff;
        mask |= u64::from(bits) << (16 * k);
    }
    mask
}

/// Bit `i` set where `window[i]` is an LF, a byte at a time: the fallback where SSE2 is not
/// there, and the reference the SSE2 version is tested against.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn lf_mask_portable(window: &[u8; WINDOW]) -> u64 {
    window
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | (u64::from(b == b'\n') << i))
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn lf_mask(window: &[u8; WINDOW]) -> u64 {
    lf_mask_portable(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn finds_every_lf_as_a_search_does(
            buf in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300),
            starts in proptest::collection::vec(0usize..320, 1..12),
        ) {
            let mut ends = LineEnds::new();
            // In order, as the header iterator asks, and then at random places.
            let mut sorted = starts.clone();
            sorted.sort_unstable();
            for from in sorted.into_iter().chain(starts) {
                let want = buf.get(from..).and_then(|rest| memchr::memchr(b'\n', rest)).map(|i| from + i);
                prop_assert_eq!(ends.next_lf(&buf, from), want, "from {}", from);
            }
        }
    }

    proptest! {
        #[test]
        fn the_vector_mask_is_the_byte_by_byte_one(
            bytes in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 64),
        ) {
            let window: [u8; WINDOW] = bytes.try_into().unwrap();
            prop_assert_eq!(lf_mask(&window), lf_mask_portable(&window));
        }
    }

    #[test]
    fn windows_and_the_end_of_the_buffer() {
        let mut buf = vec![b'a'; 200];
        buf[63] = b'\n';
        buf[64] = b'\n';
        buf[199] = b'\n';
        let mut ends = LineEnds::new();
        assert_eq!(ends.next_lf(&buf, 0), Some(63));
        assert_eq!(ends.next_lf(&buf, 64), Some(64));
        assert_eq!(ends.next_lf(&buf, 65), Some(199));
        assert_eq!(ends.next_lf(&buf, 200), None);
        assert_eq!(LineEnds::new().next_lf(&buf[..199], 65), None);
    }
}
