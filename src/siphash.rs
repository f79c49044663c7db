//! SipHash-1-3 with a 128-bit output over one contiguous buffer, word by word.
//!
//! Every fingerprint and transaction key of a call is one of these over 40–90 bytes, about
//! thirty per call. The `siphasher` crate's streaming `write` buffers its input a byte range at
//! a time, which costs about as much as the rounds themselves on inputs this short; here the
//! caller hands over the whole input and each 8-byte word goes straight into a round. The
//! output is the same function's (checked against `siphasher` in the tests below and in
//! [`crate::id`]'s).

/// The state words after keying (the constants are "somepseudorandomlygeneratedbytes").
#[inline(always)]
fn keyed(key: &[u8; 16]) -> [u64; 4] {
    let (k0, k1) = key.split_at(8);
    let k0 = u64::from_le_bytes(k0.try_into().unwrap_or_default());
    let k1 = u64::from_le_bytes(k1.try_into().unwrap_or_default());
    [
        k0 ^ 0x736f_6d65_7073_6575,
        // The 128-bit variant marks v1 with 0xee.
        k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ]
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[inline(always)]
fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    round(v);
    v[0] ^= m;
}

/// SipHash-1-3-128 under `key` of `msg`, as `siphasher`'s `Hash128::as_u128` gives it.
#[inline]
pub(crate) fn sip13_128(key: &[u8; 16], msg: &[u8]) -> u128 {
    let mut v = keyed(key);
    let mut words = msg.chunks_exact(8);
    for word in &mut words {
        compress(
            &mut v,
            u64::from_le_bytes(word.try_into().unwrap_or_default()),
        );
    }
    // The last word: the leftover bytes, little endian, and the length's low byte on top.
    let rest = words.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = msg.len() as u8;
    compress(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xee;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    let h1 = v[0] ^ v[1] ^ v[2] ^ v[3];
    v[1] ^= 0xdd;
    round(&mut v);
    round(&mut v);
    round(&mut v);
    let h2 = v[0] ^ v[1] ^ v[2] ^ v[3];
    u128::from(h1) | (u128::from(h2) << 64)
}

#[cfg(test)]
mod tests {
    use core::hash::Hasher;

    use proptest::prelude::*;
    use siphasher::sip128::{Hasher128, SipHasher13};

    use super::sip13_128;

    fn reference(key: &[u8; 16], msg: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_key(key);
        h.write(msg);
        h.finish128().as_u128()
    }

    /// Every length of the last word, and lengths past 255 (only the length's low byte is
    /// hashed).
    #[test]
    fn agrees_with_siphasher_at_every_tail_length() {
        let key: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(17).wrapping_add(3));
        let msg: Vec<u8> = (0..600u32).map(|i| (i * 31 % 256) as u8).collect();
        for len in (0..=40).chain([255, 256, 257, 600]) {
            assert_eq!(
                sip13_128(&key, &msg[..len]),
                reference(&key, &msg[..len]),
                "{len}"
            );
        }
    }

    proptest! {
        #[test]
        fn agrees_with_siphasher(key: [u8; 16], msg in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(sip13_128(&key, &msg), reference(&key, &msg));
        }
    }
}
