//! Byte searches over the short stretches a SIP message is made of (a header line, a tag, a
//! Call-ID): sixteen bytes at a time with SSE2 compares (part of every x86-64 processor),
//! then eight at a time in plain safe code, then byte by byte. `memchr`'s vector routines win
//! on long haystacks but pay a setup on every call; here most haystacks are 10–80 bytes and
//! the searches run a dozen times per message.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` that equals the byte of `splat` (`needle × LO`). Only
/// the lowest set bit is exact (a borrow can mark bytes above a true match), which is all a
/// search for the first match needs.
#[inline(always)]
fn eq_mask(word: u64, splat: u64) -> u64 {
    let x = word ^ splat;
    x.wrapping_sub(LO) & !x & HI
}

#[inline(always)]
fn word_at(hay: &[u8], i: usize) -> Option<u64> {
    hay.get(i..i + 8)
        .and_then(|w| w.try_into().ok())
        .map(u64::from_le_bytes)
}

/// Position of the first byte of `hay` equal to one of `needles`: sixteen bytes at a time
/// where the processor has SSE2, then words for which `mask` (the same test as a combination
/// of [`eq_mask`]s) marks a match, then the last few bytes one at a time by `tail`.
#[inline(always)]
fn find_by<const N: usize>(
    hay: &[u8],
    needles: [u8; N],
    mask: impl Fn(u64) -> u64,
    tail: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    while let Some(block) = hay
        .get(i..i + 16)
        .and_then(|b| <&[u8; 16]>::try_from(b).ok())
    {
        let m = vector::matches(block, needles);
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = needles;
    while let Some(word) = word_at(hay, i) {
        let m = mask(word);
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay.get(i..)?.iter().position(|&b| tail(b)).map(|p| i + p)
}

/// The first `a` in `hay`.
#[inline]
pub(crate) fn find(a: u8, hay: &[u8]) -> Option<usize> {
    let sa = u64::from(a) * LO;
    find_by(hay, [a], |w| eq_mask(w, sa), |b| b == a)
}

/// The first `a` or `b` in `hay`.
#[inline]
pub(crate) fn find2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    let (sa, sb) = (u64::from(a) * LO, u64::from(b) * LO);
    find_by(
        hay,
        [a, b],
        |w| eq_mask(w, sa) | eq_mask(w, sb),
        |x| x == a || x == b,
    )
}

/// The first `a`, `b` or `c` in `hay`.
#[inline]
pub(crate) fn find3(a: u8, b: u8, c: u8, hay: &[u8]) -> Option<usize> {
    let (sa, sb, sc) = (u64::from(a) * LO, u64::from(b) * LO, u64::from(c) * LO);
    find_by(
        hay,
        [a, b, c],
        |w| eq_mask(w, sa) | eq_mask(w, sb) | eq_mask(w, sc),
        |x| x == a || x == b || x == c,
    )
}

/// Sixteen bytes compared at once.
#[cfg(target_arch = "x86_64")]
mod vector {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };

    /// Bit `i` set where `block[i]` is one of `needles`: one compare per needle.
    #[inline(always)]
    pub(super) fn matches<const N: usize>(block: &[u8; 16], needles: [u8; N]) -> u32 {
        // SAFETY: SSE2 is part of the x86-64 baseline: every x86-64 processor has it.
        unsafe { matches_sse2(block, needles) }
    }

    #[target_feature(enable = "sse2")]
    #[inline]
    fn matches_sse2<const N: usize>(block: &[u8; 16], needles: [u8; N]) -> u32 {
        // SAFETY: `block` is 16 readable bytes and the unaligned load reads exactly those.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        let mut hit = _mm_setzero_si128();
        for n in needles {
            hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, _mm_set1_epi8(n as i8)));
        }
        _mm_movemask_epi8(hit) as u32 & 0xffff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn same_answers_as_memchr(hay in proptest::collection::vec(any::<u8>(), 0..80),
                                  a: u8, b: u8, c: u8) {
            prop_assert_eq!(find(a, &hay), memchr::memchr(a, &hay));
            prop_assert_eq!(find2(a, b, &hay), memchr::memchr2(a, b, &hay));
            prop_assert_eq!(find3(a, b, c, &hay), memchr::memchr3(a, b, c, &hay));
        }

        #[test]
        fn finds_bytes_behind_a_borrow(prefix in proptest::collection::vec(1u8..=255, 0..16), a: u8) {
            // A match right after bytes that borrow (0x00 ^ a, a + 1…) is still found first.
            let mut hay = prefix.clone();
            hay.push(a);
            hay.extend_from_slice(&[a.wrapping_add(1), a, 0, a]);
            prop_assert_eq!(find(a, &hay), memchr::memchr(a, &hay));
        }
    }
}
