//! Byte searches over the short stretches a SIP message is made of (a header line, a tag, a
//! Call-ID), eight bytes at a time in plain safe code. `memchr`'s vector routines win on long
//! haystacks but pay a setup on every call; here most haystacks are 10–80 bytes and the
//! searches run a dozen times per message.

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

/// Position of the first byte of `hay` for which `mask` (a combination of [`eq_mask`]s)
/// marks a match; `tail` decides the last few bytes one at a time.
#[inline(always)]
fn find_by(hay: &[u8], mask: impl Fn(u64) -> u64, tail: impl Fn(u8) -> bool) -> Option<usize> {
    let mut i = 0;
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
    find_by(hay, |w| eq_mask(w, sa), |b| b == a)
}

/// The first `a` or `b` in `hay`.
#[inline]
pub(crate) fn find2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    let (sa, sb) = (u64::from(a) * LO, u64::from(b) * LO);
    find_by(
        hay,
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
        |w| eq_mask(w, sa) | eq_mask(w, sb) | eq_mask(w, sc),
        |x| x == a || x == b || x == c,
    )
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
