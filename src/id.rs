//! Dialog identity: [`DialogKey`], its keyed 128-bit [`Fingerprint`], and tag generation.
//!
//! The fingerprint is PMAC-AES-128 (a 128-bit pseudorandom function) under a key drawn from
//! the OS CSPRNG for each [`Fingerprinter`], so an attacker who picks Call-IDs cannot aim them
//! at one bucket of the index (hash flooding) or forge a collision with a live dialog.

use core::fmt;
use core::hash::{BuildHasher, Hash, Hasher};

use std::cell::RefCell;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::prf::Prf;
use crate::wire::MessageView;

/// What identifies a dialog (RFC 3261 §12): Call-ID, local tag and remote tag, seen from this
/// side. A missing tag (RFC 2543 peers) is the empty slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DialogKey<'a> {
    /// The Call-ID.
    pub call_id: &'a [u8],
    /// The tag this side put in its own From (as UAC) or To (as UAS).
    pub local_tag: &'a [u8],
    /// The peer's tag.
    pub remote_tag: &'a [u8],
}

impl<'a> DialogKey<'a> {
    /// The key of the dialog a received message belongs to: for a request the local tag is the
    /// To tag and the remote tag the From tag; for a response the other way round. Position,
    /// not URI, decides, so a UA calling itself still gets two distinct dialogs.
    ///
    /// ```
    /// use sipdialog::id::DialogKey;
    /// use sipdialog::wire::MessageView;
    ///
    /// let bye = b"BYE sip:a@h SIP/2.0\r\ni: c1\r\nf: <sip:b@h>;tag=peer\r\n\
    /// t: <sip:a@h>;tag=mine\r\nCSeq: 2 BYE\r\n\r\n";
    /// let key = DialogKey::received(&MessageView::parse(bye).unwrap());
    /// assert_eq!((key.local_tag, key.remote_tag), (&b"mine"[..], &b"peer"[..]));
    /// ```
    pub fn received(view: &MessageView<'a>) -> DialogKey<'a> {
        let from = view.from_tag().unwrap_or_default();
        let to = view.to_tag().unwrap_or_default();
        let (local_tag, remote_tag) = if view.is_request() {
            (to, from)
        } else {
            (from, to)
        };
        DialogKey {
            call_id: view.call_id(),
            local_tag,
            remote_tag,
        }
    }

    /// The key of the dialog a message this side sent belongs to (the mirror of
    /// [`DialogKey::received`]).
    pub fn sent(view: &MessageView<'a>) -> DialogKey<'a> {
        let k = DialogKey::received(view);
        DialogKey {
            call_id: k.call_id,
            local_tag: k.remote_tag,
            remote_tag: k.local_tag,
        }
    }
}

/// A 128-bit keyed hash of a [`DialogKey`]. Two keys with equal fingerprints are taken to be the
/// same dialog; with a secret random key the chance of a false match is 2^-128 per pair.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// The fingerprint as two words, high first: for structures where a `u128` would align
    /// the whole entry to 16 bytes.
    pub(crate) fn to_words(self) -> [u64; 2] {
        [(self.0 >> 64) as u64, self.0 as u64]
    }

    /// The fingerprint [`Fingerprint::to_words`] made `words` of.
    pub(crate) fn from_words([high, low]: [u64; 2]) -> Fingerprint {
        Fingerprint(u128::from(high) << 64 | u128::from(low))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:032x})", self.0)
    }
}

impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed hash: fold it into one word and let `IdentityHasher` pass it on.
        state.write_u64(self.0 as u64 ^ (self.0 >> 64) as u64);
    }
}

/// Computes fingerprints under one secret key.
#[derive(Clone)]
pub struct Fingerprinter {
    prf: Prf,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter { key: <secret> }")
    }
}

impl Fingerprinter {
    /// A fingerprinter with a fresh key from the OS CSPRNG.
    pub fn random() -> Result<Fingerprinter, getrandom::Error> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key)?;
        Ok(Fingerprinter::with_key(key))
    }

    /// A fingerprinter with a given key: for nodes that must agree on fingerprints (the value
    /// does not depend on the CPU), and tests.
    pub fn with_key(key: [u8; 16]) -> Fingerprinter {
        Fingerprinter {
            prf: Prf::new(&key),
        }
    }

    /// The fingerprint of `key`. Each field is length-prefixed, so no two different keys feed
    /// the hash the same bytes.
    #[inline]
    pub fn fingerprint(&self, key: &DialogKey<'_>) -> Fingerprint {
        Fingerprint(
            self.prf
                .hash_parts(&[key.call_id, key.local_tag, key.remote_tag]),
        )
    }
}

/// A `Hasher` for [`Fingerprint`] keys: they are already uniformly distributed keyed hashes, so
/// hashing them again would only cost time.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a non-fingerprint key is hashed; fold the bytes so it still works.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Builds [`IdentityHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuildIdentityHasher;

impl BuildHasher for BuildIdentityHasher {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// Tags a thread's generator gives before it draws a fresh seed from the OS.
const TAGS_PER_SEED: u32 = 1 << 16;

/// A thread's generator for tags and Call-IDs, and the tags left before its next seed.
struct TagRng {
    rng: ChaCha12Rng,
    left: u32,
}

thread_local! {
    static TAG_RNG: RefCell<Option<TagRng>> = const { RefCell::new(None) };
}

/// Fills `out` from this thread's ChaCha12 generator, seeded (and every [`TAGS_PER_SEED`]
/// calls reseeded) from the OS CSPRNG: a `getrandom` syscall per tag cost ~370 ns, four per
/// call set up. ChaCha12 is the generator `rand`'s `ThreadRng` uses; an error is the OS's
/// failing to give a seed.
fn fill_random(out: &mut [u8]) -> Result<(), getrandom::Error> {
    TAG_RNG.with_borrow_mut(|state| {
        let state = match state {
            Some(s) if s.left > 0 => s,
            _ => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed)?;
                state.insert(TagRng {
                    rng: ChaCha12Rng::from_seed(seed),
                    left: TAGS_PER_SEED,
                })
            }
        };
        state.left -= 1;
        state.rng.fill_bytes(out);
        Ok(())
    })
}

/// The length of a generated tag.
pub const TAG_LEN: usize = 16;

/// A locally generated dialog tag: 16 hex digits carrying 64 random bits from this thread's
/// CSPRNG (ChaCha12 seeded from the OS; RFC 3261 §19.3 asks for at least 32 bits), held
/// inline with no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag([u8; TAG_LEN]);

/// Lower-case hex digits, 4 bits each. Peers and test tools find headers with plain substring
/// searches over the whole message, tags included: a tag drawn from every letter spelt `CSeq`
/// about once in a million calls, and SIPp then read the CSeq method from our To tag and
/// dropped the call. No header name can be spelt from these sixteen characters.
const TAG_ALPHABET: &[u8; 16] = b"0123456789abcdef";

impl Tag {
    /// A fresh random tag.
    ///
    /// ```
    /// let a = sipdialog::id::Tag::generate().unwrap();
    /// let b = sipdialog::id::Tag::generate().unwrap();
    /// assert_ne!(a, b);
    /// assert_eq!(a.as_str().len(), 16);
    /// ```
    pub fn generate() -> Result<Tag, getrandom::Error> {
        let mut random = [0u8; TAG_LEN / 2];
        fill_random(&mut random)?;
        let mut out = [0u8; TAG_LEN];
        for (byte, dst) in random.iter().zip(out.chunks_exact_mut(2)) {
            dst[0] = TAG_ALPHABET[usize::from(byte >> 4)];
            dst[1] = TAG_ALPHABET[usize::from(byte & 15)];
        }
        Ok(Tag(out))
    }

    /// The tag's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The tag as text (always lower-case hex digits).
    pub fn as_str(&self) -> &str {
        // The alphabet is ASCII, so this never fails; fall back to "" rather than panic.
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A Call-ID this side generated (a new call, or a B2BUA's outbound leg): two tags' worth of
/// random hex digits (128 bits), held inline with no allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId([u8; 2 * TAG_LEN]);

impl CallId {
    /// A fresh random Call-ID.
    ///
    /// ```
    /// let id = sipdialog::id::CallId::generate().unwrap();
    /// assert_eq!(id.as_str().len(), 32);
    /// assert_ne!(id, sipdialog::id::CallId::generate().unwrap());
    /// ```
    pub fn generate() -> Result<CallId, getrandom::Error> {
        let (a, b) = (Tag::generate()?, Tag::generate()?);
        let mut out = [0u8; 2 * TAG_LEN];
        out[..TAG_LEN].copy_from_slice(&a.0);
        out[TAG_LEN..].copy_from_slice(&b.0);
        Ok(CallId(out))
    }

    /// The Call-ID's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The Call-ID as text (always lower-case hex digits).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallId({})", self.as_str())
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_fields_and_keys() {
        let fp = Fingerprinter::with_key([7; 16]);
        let k = |c: &'static str, l: &'static str, r: &'static str| DialogKey {
            call_id: c.as_bytes(),
            local_tag: l.as_bytes(),
            remote_tag: r.as_bytes(),
        };
        assert_eq!(
            fp.fingerprint(&k("c", "a", "b")),
            fp.fingerprint(&k("c", "a", "b"))
        );
        assert_ne!(
            fp.fingerprint(&k("c", "a", "b")),
            fp.fingerprint(&k("c", "b", "a"))
        );
        assert_ne!(
            fp.fingerprint(&k("ca", "", "b")),
            fp.fingerprint(&k("c", "a", "b"))
        );
        let other = Fingerprinter::with_key([8; 16]);
        assert_ne!(
            fp.fingerprint(&k("c", "a", "b")),
            other.fingerprint(&k("c", "a", "b"))
        );
        let r1 = Fingerprinter::random().unwrap();
        let r2 = Fingerprinter::random().unwrap();
        assert_ne!(
            r1.fingerprint(&k("c", "a", "b")),
            r2.fingerprint(&k("c", "a", "b"))
        );
    }

    #[test]
    fn tags_are_tokens_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let t = Tag::generate().unwrap();
            assert!(t.as_bytes().iter().all(|b| TAG_ALPHABET.contains(b)));
            assert!(seen.insert(t));
        }
    }

    /// Every header name of RFC 3261 §20 and the extensions the crate reads, full form, has
    /// a letter no tag can hold, whatever the case: a peer's substring search for a header
    /// name never lands inside one of our tags or Call-IDs.
    #[test]
    fn no_header_name_can_be_spelt_in_a_tag() {
        let names = [
            "Accept",
            "Accept-Encoding",
            "Accept-Language",
            "Alert-Info",
            "Allow",
            "Authentication-Info",
            "Authorization",
            "Call-ID",
            "Call-Info",
            "Contact",
            "Content-Disposition",
            "Content-Encoding",
            "Content-Language",
            "Content-Length",
            "Content-Type",
            "CSeq",
            "Date",
            "Error-Info",
            "Event",
            "Expires",
            "From",
            "In-Reply-To",
            "Max-Forwards",
            "Min-Expires",
            "MIME-Version",
            "Organization",
            "Priority",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "Proxy-Require",
            "Record-Route",
            "Refer-To",
            "Referred-By",
            "Replaces",
            "Reply-To",
            "Require",
            "Retry-After",
            "Route",
            "RSeq",
            "RAck",
            "Server",
            "Session-Expires",
            "Subject",
            "Subscription-State",
            "Supported",
            "Timestamp",
            "To",
            "Unsupported",
            "User-Agent",
            "Via",
            "Warning",
            "WWW-Authenticate",
            "SIP",
        ];
        for name in names {
            let spelt = name
                .bytes()
                .all(|b| TAG_ALPHABET.contains(&b.to_ascii_lowercase()));
            assert!(!spelt, "{name} can be spelt from the tag alphabet");
        }
        let id = CallId::generate().unwrap();
        assert!(id.as_bytes().iter().all(|b| TAG_ALPHABET.contains(b)));
    }

    #[test]
    fn tags_stay_distinct_across_reseeds_and_threads() {
        // Past two reseeds on this thread, and on another thread seeded apart from it.
        let draw = |n: u32| (0..n).map(|_| Tag::generate().unwrap()).collect::<Vec<_>>();
        let here = draw(2 * TAGS_PER_SEED + 10);
        let there = std::thread::spawn(move || draw(1_000)).join().unwrap();
        let mut seen = std::collections::HashSet::new();
        for t in here.iter().chain(&there) {
            assert!(seen.insert(*t), "{} drawn twice", t.as_str());
        }
        TAG_RNG.with_borrow(|s| assert!(s.as_ref().unwrap().left < TAGS_PER_SEED));
    }
}
