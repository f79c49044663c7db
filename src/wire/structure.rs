//! Where the line ends and colons of a header block are, found 64 bytes at a time: the
//! structural pass of the scanner. A [`Window`] holds a bit mask of one byte value over 64
//! bytes of the buffer (bit `i` for byte `base + i`), so finding the next LF or colon is a
//! shift and a trailing-zero count, and one window serves the two or three lines it covers.
//! The scanner keeps one window per byte value, each moving forward only.
//!
//! On x86_64 the masks come from SSE2 compares (part of the architecture's baseline); anywhere
//! else, or built with `--cfg sipdialog_swar`, from exact SWAR compares in plain safe code.
//! Both give the same masks (tested), so the choice is a matter of speed only.

/// Where one byte value (LF or `:`) is in 64 bytes of a buffer, from `base`, as a bit mask.
/// Bytes past the end of the buffer never match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    base: usize,
    mask: u64,
    needle: u8,
}

impl Window {
    /// A window for `needle` over nothing: the first search loads one.
    pub(crate) const fn new(needle: u8) -> Window {
        Window {
            base: usize::MAX,
            mask: 0,
            needle,
        }
    }

    fn load(&mut self, buf: &[u8], base: usize) {
        self.base = base;
        self.mask = match buf.get(base..base + 64) {
            Some(chunk) => mask(chunk.try_into().unwrap_or(&[0; 64]), self.needle),
            // The last 64 bytes, with the bits before `base` shifted out (past the end of the
            // buffer there are no bits); a buffer under 64 bytes is copied out, zero-padded.
            None => match buf.len().checked_sub(64) {
                Some(last) => match buf[last..].try_into() {
                    Ok(chunk) => mask(chunk, self.needle) >> (base - last),
                    Err(_) => 0,
                },
                None => {
                    let mut padded = [0u8; 64];
                    let tail = buf.get(base..).unwrap_or_default();
                    padded[..tail.len()].copy_from_slice(tail);
                    // Zero padding: the scanner's needles are not zero.
                    mask(&padded, self.needle)
                }
            },
        };
    }

    /// The first needle at or after `from`, past this window: loads the windows it needs.
    #[cold]
    #[inline(never)]
    fn find_further(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        let mut at = from;
        while at < buf.len() {
            if at < self.base || at - self.base >= 64 {
                self.load(buf, at);
            }
            let mask = self.mask >> (at - self.base);
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at = self.base + 64;
        }
        None
    }

    /// The first needle of `buf` at or after `from`. Searches from positions that only grow
    /// (as a scan's do) load each stretch of the buffer once.
    #[inline(always)]
    pub(crate) fn find(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        let offset = from.wrapping_sub(self.base);
        if offset < 64 {
            // Bits past the end of the buffer are clear: what is found is in the buffer.
            let mask = self.mask >> offset;
            if mask != 0 {
                return Some(from + mask.trailing_zeros() as usize);
            }
        }
        self.find_further(buf, from)
    }
}

/// The mask of the bytes of `chunk` equal to `needle`.
#[inline]
fn mask(chunk: &[u8; 64], needle: u8) -> u64 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2", not(sipdialog_swar)))]
    {
        // SAFETY: `mask_sse2` needs SSE2, which this build enables (the cfg above), as every
        // x86_64 target does by default.
        unsafe { mask_sse2(chunk, needle) }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2", not(sipdialog_swar))))]
    {
        mask_swar(chunk, needle)
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn mask_sse2(chunk: &[u8; 64], needle: u8) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let splat = _mm_set1_epi8(needle as i8);
    let at = chunk.as_ptr().cast::<__m128i>();
    // SAFETY: `chunk` is 64 readable bytes, so are the four 16-byte loads at 0, 16, 32 and
    // 48 (`at.add(i)` steps 16 bytes), and `loadu` has no alignment requirement.
    let [a, b, c, d] = unsafe {
        [
            _mm_loadu_si128(at),
            _mm_loadu_si128(at.add(1)),
            _mm_loadu_si128(at.add(2)),
            _mm_loadu_si128(at.add(3)),
        ]
    };
    // Written out rather than looped: a debug build (the tests' endpoint) runs this a
    // thousand times for a 61 KB datagram.
    let bits = |v: __m128i| u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, splat)) as u16);
    bits(a) | bits(b) << 16 | bits(c) << 32 | bits(d) << 48
}

/// One bit per byte of `word` that equals the byte splatted in `splat`, bit `i` for byte `i`.
/// Exact (no borrow crosses bytes): the high bit of `(y & 0x7f) + 0x7f | y` is set exactly
/// when a byte of `y` is not zero.
#[inline(always)]
fn eq_bits(word: u64, splat: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let y = word ^ splat;
    let zero_high = !(((y & LOW7) + LOW7) | y | LOW7);
    // Bit 8i+7 → bit i: the multiplier's bytes place each at a distinct bit of the top byte.
    ((zero_high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "sse2",
        not(sipdialog_swar),
        not(test)
    ),
    allow(dead_code)
)]
fn mask_swar(chunk: &[u8; 64], needle: u8) -> u64 {
    let splat = u64::from(needle) * 0x0101_0101_0101_0101;
    let mut out = 0u64;
    for (i, part) in chunk.chunks_exact(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(part);
        out |= eq_bits(u64::from_le_bytes(bytes), splat) << (8 * i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(chunk: &[u8; 64], needle: u8) -> u64 {
        chunk
            .iter()
            .enumerate()
            .filter(|&(_, &x)| x == needle)
            .fold(0u64, |m, (i, _)| m | 1 << i)
    }

    proptest! {
        #[test]
        fn masks_mark_exactly_the_lfs_and_colons(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b':'), Just(0x0b), Just(0x3b), Just(0x8a), any::<u8>()],
                64,
            )
        ) {
            let chunk: [u8; 64] = bytes.try_into().unwrap();
            for needle in [b'\n', b':'] {
                prop_assert_eq!(mask(&chunk, needle), naive(&chunk, needle));
                prop_assert_eq!(mask_swar(&chunk, needle), naive(&chunk, needle));
            }
        }

        #[test]
        fn finds_as_a_byte_search_does(
            buf in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b':'), any::<u8>()], 0..300),
            starts in proptest::collection::vec(0usize..320, 1..12),
        ) {
            // One window reused across searches that go back and forth, as the scanner's do.
            let (mut lf, mut colon) = (Window::new(b'\n'), Window::new(b':'));
            for from in starts {
                let find = |b: u8| buf.get(from..).and_then(|r| memchr::memchr(b, r)).map(|i| from + i);
                prop_assert_eq!(lf.find(&buf, from), find(b'\n'));
                prop_assert_eq!(colon.find(&buf, from), find(b':'));
            }
        }
    }
}
