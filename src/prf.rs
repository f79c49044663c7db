//! PMAC with AES-128: the keyed 128-bit hash behind every fingerprint and transaction key.
//!
//! Each is a hash of 40–90 bytes, about two dozen a call. PMAC (Black and Rogaway; the
//! RustCrypto `pmac` crate computes the same function, and the tests check it) is a
//! pseudorandom function as long as AES is a pseudorandom permutation, so under a secret key an
//! attacker can neither aim keys at one bucket nor forge a collision: what SipHash-1-3-128 gave
//! before, in about a third of the instructions. Its blocks are independent, so their AES rounds
//! overlap in the pipeline. With AES-NI (detected at run time) the blocks go through the AES
//! instructions; without it through the `aes` crate, whose result is the same, so nodes that
//! share a key agree whatever their CPUs.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128Enc;

/// One 16-byte block.
type Block = [u8; 16];

/// Bytes of key parts gathered on the stack before hashing them in one pass: a dialog key with
/// a 64-byte Call-ID and two 32-byte tags fits (the buffer is zeroed for every key, so a bigger
/// one costs on every key). A multiple of the block size.
const GATHER: usize = 160;

/// A PMAC-AES-128 key, expanded.
#[derive(Clone)]
pub(crate) struct Prf {
    /// For CPUs without AES-NI, and for the streaming path's blocks.
    cipher: Aes128Enc,
    /// AES-NI's round keys, when the CPU has it.
    round_keys: Option<ni::RoundKeys>,
    /// `L(j) = L·x^j` in GF(2^128), `L = E(0)`: the offset of block `i` is the XOR of
    /// `L(ntz(k))` for `k` in `1..=i` (the Gray-code sequence).
    l: [Block; 64],
    /// `L·x^-1`, XORed into a final block that is full instead of padding it.
    l_inv: Block,
}

impl Prf {
    /// The function under `key`.
    pub(crate) fn new(key: &[u8; 16]) -> Prf {
        let cipher = Aes128Enc::new(GenericArray::from_slice(key));
        let mut zero = GenericArray::default();
        cipher.encrypt_block(&mut zero);
        let l0 = u128::from_be_bytes(zero.into());
        let mut l = [[0u8; 16]; 64];
        let mut lj = l0;
        for slot in &mut l {
            *slot = lj.to_be_bytes();
            lj = double(lj);
        }
        let l_inv = (l0 >> 1) ^ if l0 & 1 == 1 { 1 << 127 | 0x43 } else { 0 };
        Prf {
            cipher,
            round_keys: ni::round_keys(key),
            l,
            l_inv: l_inv.to_be_bytes(),
        }
    }

    /// PMAC of `parts`, each prefixed with its length (u32, little endian), so no two
    /// different part lists feed it the same bytes. Parts that fit are gathered into one
    /// buffer and hashed in one pass; longer ones stream block by block to the same value.
    #[inline]
    pub(crate) fn hash_parts(&self, parts: &[&[u8]]) -> u128 {
        let total: usize = parts.iter().map(|p| 4 + p.len()).sum();
        if total > GATHER {
            let mut stream = self.stream();
            for part in parts {
                stream.write(&(part.len() as u32).to_le_bytes());
                stream.write(part);
            }
            return stream.finish();
        }
        let mut buf = [0u8; GATHER];
        let mut at = 0;
        for part in parts {
            buf[at..at + 4].copy_from_slice(&(part.len() as u32).to_le_bytes());
            buf[at + 4..at + 4 + part.len()].copy_from_slice(part);
            at += 4 + part.len();
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(keys) = &self.round_keys {
            return keys.mac_gathered(self, &mut buf, at);
        }
        let mut stream = self.stream();
        stream.write(&buf[..at]);
        stream.finish()
    }

    /// A PMAC computed over pieces written one after another.
    pub(crate) fn stream(&self) -> Stream<'_> {
        Stream {
            prf: self,
            sigma: [0; 16],
            offset: [0; 16],
            block: [0; 16],
            fill: 0,
            blocks: 0,
        }
    }

    /// AES-128 of one block.
    fn encrypt(&self, block: Block) -> Block {
        let mut b = GenericArray::from(block);
        self.cipher.encrypt_block(&mut b);
        b.into()
    }
}

/// Multiplication by x in GF(2^128) (PMAC's `dbl`, big endian).
fn double(x: u128) -> u128 {
    (x << 1) ^ if x >> 127 == 1 { 0x87 } else { 0 }
}

fn xor(a: Block, b: &Block) -> Block {
    (u128::from_ne_bytes(a) ^ u128::from_ne_bytes(*b)).to_ne_bytes()
}

/// The final block: a full one XORed with `L·x^-1`, a short one padded with 0x80 and zeros.
fn last_block(prf: &Prf, rest: &[u8]) -> Block {
    let mut last = [0u8; 16];
    last[..rest.len()].copy_from_slice(rest);
    if rest.len() == 16 {
        xor(last, &prf.l_inv)
    } else {
        last[rest.len()] = 0x80;
        last
    }
}

/// A PMAC over pieces: for keys too long to gather in one buffer first.
pub(crate) struct Stream<'a> {
    prf: &'a Prf,
    sigma: Block,
    offset: Block,
    /// Bytes not yet hashed; a full block waits until more bytes show it is not the last.
    block: Block,
    fill: usize,
    blocks: u64,
}

impl Stream<'_> {
    /// Appends `bytes`.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.fill == 16 {
                self.blocks += 1;
                self.offset = xor(
                    self.offset,
                    &self.prf.l[self.blocks.trailing_zeros() as usize],
                );
                let out = self.prf.encrypt(xor(self.block, &self.offset));
                self.sigma = xor(self.sigma, &out);
                self.fill = 0;
            }
            let n = (16 - self.fill).min(bytes.len());
            self.block[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            bytes = &bytes[n..];
        }
    }

    /// The PMAC of everything written.
    pub(crate) fn finish(self) -> u128 {
        let last = last_block(self.prf, &self.block[..self.fill]);
        u128::from_le_bytes(self.prf.encrypt(xor(self.sigma, &last)))
    }
}

/// The AES-NI path (x86-64 only).
#[cfg(target_arch = "x86_64")]
mod ni {
    use core::arch::x86_64::{
        __m128i, _mm_aesenc_si128, _mm_aesenclast_si128, _mm_aeskeygenassist_si128,
        _mm_loadu_si128, _mm_setzero_si128, _mm_shuffle_epi32, _mm_slli_si128, _mm_storeu_si128,
        _mm_xor_si128,
    };

    use super::{Block, Prf, GATHER};

    /// AES-128 round keys, made only by [`round_keys`] on a CPU with AES-NI (the field is
    /// private to this module): holding them proves the CPU has it.
    #[derive(Clone)]
    pub(super) struct RoundKeys([Block; 11]);

    /// The round keys of `key`, if the CPU has AES-NI.
    pub(super) fn round_keys(key: &[u8; 16]) -> Option<RoundKeys> {
        if !std::arch::is_x86_feature_detected!("aes") {
            return None;
        }
        // SAFETY: the CPU has AES-NI (checked above), which `expand` requires.
        Some(RoundKeys(unsafe { expand(key) }))
    }

    impl RoundKeys {
        /// The round keys themselves, for the key-schedule test.
        #[cfg(test)]
        pub(super) fn keys(&self) -> &[Block; 11] {
            &self.0
        }

        /// PMAC of `buf[..len]` with the AES instructions; `buf` is zero past `len`.
        #[inline]
        pub(super) fn mac_gathered(&self, prf: &Prf, buf: &mut [u8; GATHER], len: usize) -> u128 {
            // SAFETY: `RoundKeys` exist only where `round_keys` found AES-NI on this CPU.
            unsafe { mac_aes(prf, &self.0, buf, len) }
        }
    }

    fn load(block: &Block) -> __m128i {
        // SAFETY: an unaligned load of the 16 bytes `block` refers to.
        unsafe { _mm_loadu_si128(block.as_ptr().cast()) }
    }

    fn store(v: __m128i) -> Block {
        let mut out = [0u8; 16];
        // SAFETY: an unaligned store into the 16 bytes of `out`.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), v) };
        out
    }

    /// AES-128 key expansion (FIPS 197 §5.2) with `aeskeygenassist`.
    #[target_feature(enable = "aes")]
    unsafe fn expand(key: &[u8; 16]) -> [Block; 11] {
        let mut out = [[0u8; 16]; 11];
        let mut k = load(key);
        out[0] = store(k);
        macro_rules! round {
            ($i:expr, $rcon:expr) => {
                let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
                k = _mm_xor_si128(k, t);
                out[$i] = store(k);
            };
        }
        round!(1, 0x01);
        round!(2, 0x02);
        round!(3, 0x04);
        round!(4, 0x08);
        round!(5, 0x10);
        round!(6, 0x20);
        round!(7, 0x40);
        round!(8, 0x80);
        round!(9, 0x1b);
        round!(10, 0x36);
        out
    }

    /// PMAC over `buf[..len]` (zero past `len`): every block but the last encrypted under its
    /// offset and summed, the sum with the last block encrypted once more. The blocks' rounds
    /// do not depend on each other, so they overlap.
    #[target_feature(enable = "aes")]
    unsafe fn mac_aes(prf: &Prf, keys: &[Block; 11], buf: &mut [u8; GATHER], len: usize) -> u128 {
        let k: [__m128i; 11] = core::array::from_fn(|i| load(&keys[i]));
        macro_rules! encrypt {
            ($b:expr) => {{
                let mut b = _mm_xor_si128($b, k[0]);
                b = _mm_aesenc_si128(b, k[1]);
                b = _mm_aesenc_si128(b, k[2]);
                b = _mm_aesenc_si128(b, k[3]);
                b = _mm_aesenc_si128(b, k[4]);
                b = _mm_aesenc_si128(b, k[5]);
                b = _mm_aesenc_si128(b, k[6]);
                b = _mm_aesenc_si128(b, k[7]);
                b = _mm_aesenc_si128(b, k[8]);
                b = _mm_aesenc_si128(b, k[9]);
                _mm_aesenclast_si128(b, k[10])
            }};
        }
        let len = len.min(GATHER);
        // Every block but the last (an empty message has one, empty, last block).
        let before_last = len.saturating_sub(1) / 16;
        let (blocks, rest) = buf.as_chunks_mut::<16>();
        let mut sigma = _mm_setzero_si128();
        let mut offset = _mm_setzero_si128();
        for (i, block) in blocks.iter().enumerate().take(before_last) {
            offset = _mm_xor_si128(offset, load(&prf.l[(i + 1).trailing_zeros() as usize]));
            sigma = _mm_xor_si128(sigma, encrypt!(_mm_xor_si128(load(block), offset)));
        }
        debug_assert!(rest.is_empty());
        // `before_last` is at most (GATHER - 1) / 16, the last block's index.
        let last = &mut blocks[before_last.min(GATHER / 16 - 1)];
        let last = if len > 0 && len.is_multiple_of(16) {
            _mm_xor_si128(load(last), load(&prf.l_inv))
        } else {
            last[len % 16] = 0x80;
            load(last)
        };
        u128::from_le_bytes(store(encrypt!(_mm_xor_si128(sigma, last))))
    }
}

/// No AES-NI path off x86-64: every block goes through the `aes` crate (its constant-time
/// software AES, or the CPU's AES instructions where that crate uses them).
#[cfg(not(target_arch = "x86_64"))]
mod ni {
    /// Never made off x86-64.
    #[derive(Clone)]
    pub(super) enum RoundKeys {}

    pub(super) fn round_keys(_key: &[u8; 16]) -> Option<RoundKeys> {
        None
    }
}

#[cfg(test)]
mod tests {
    use pmac::{Mac, Pmac};
    use proptest::prelude::*;

    use super::{Prf, GATHER};

    /// The `pmac` crate's PMAC-AES-128 of the length-prefixed parts.
    fn reference(key: &[u8; 16], parts: &[&[u8]]) -> u128 {
        let mut mac = <Pmac<aes::Aes128> as Mac>::new_from_slice(key).unwrap();
        for part in parts {
            mac.update(&(part.len() as u32).to_le_bytes());
            mac.update(part);
        }
        u128::from_le_bytes(mac.finalize().into_bytes().into())
    }

    /// Whatever the CPU, the block-by-block path: what a node without AES-NI computes.
    fn streamed(prf: &Prf, parts: &[&[u8]]) -> u128 {
        let mut s = prf.stream();
        for part in parts {
            s.write(&(part.len() as u32).to_le_bytes());
            s.write(part);
        }
        s.finish()
    }

    #[test]
    fn the_aes_instructions_are_used_where_the_cpu_has_them() {
        let prf = Prf::new(&[9; 16]);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            prf.round_keys.is_some(),
            std::arch::is_x86_feature_detected!("aes")
        );
        #[cfg(not(target_arch = "x86_64"))]
        assert!(prf.round_keys.is_none());
    }

    /// Every length from empty to well past the gather buffer, split in two parts at several
    /// places: block boundaries, a full last block, the switch to streaming.
    #[test]
    fn agrees_with_the_pmac_crate_at_every_length() {
        let key: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(29).wrapping_add(5));
        let prf = Prf::new(&key);
        let msg: Vec<u8> = (0..2 * GATHER as u32)
            .map(|i| (i * 13 % 253) as u8)
            .collect();
        for len in 0..=msg.len() {
            for cut in [0, len / 3, len] {
                let parts: [&[u8]; 2] = [&msg[..cut], &msg[cut..len]];
                let want = reference(&key, &parts);
                assert_eq!(prf.hash_parts(&parts), want, "len {len} cut {cut}");
                assert_eq!(streamed(&prf, &parts), want, "len {len} cut {cut}");
            }
        }
    }

    /// The round keys `aeskeygenassist` expands are FIPS 197's (Appendix A.1: the key and its
    /// last round key).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn aes_ni_round_keys_are_fips_197s() {
        if !std::arch::is_x86_feature_detected!("aes") {
            // No AES-NI, no round keys to check: `the_aes_instructions_are_used…` covers it.
            return;
        }
        let key = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let keys = super::ni::round_keys(&key).expect("the CPU has AES-NI");
        assert_eq!(keys.keys()[0], key);
        assert_eq!(
            keys.keys()[10],
            [
                0xd0, 0x14, 0xf9, 0xa8, 0xc9, 0xee, 0x25, 0x89, 0xe1, 0x3f, 0x0c, 0xc8, 0xb6, 0x63,
                0x0c, 0xa6
            ]
        );
    }

    proptest! {
        #[test]
        fn agrees_with_the_pmac_crate(
            key: [u8; 16],
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..5),
        ) {
            let prf = Prf::new(&key);
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let want = reference(&key, &parts);
            prop_assert_eq!(prf.hash_parts(&parts), want);
            prop_assert_eq!(streamed(&prf, &parts), want);
        }
    }
}
