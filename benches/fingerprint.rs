//! The keyed hash of a dialog key (what every lookup, transaction key and INVITE record pays,
//! about two dozen times a call): `Fingerprinter::fingerprint` (PMAC-AES-128, AES-NI when the
//! CPU has it) against, in the same run, the same function through the RustCrypto `pmac` crate
//! (one keyed state reset after each key, the `aes` crate's block calls one at a time) and
//! SipHash-1-3-128 (the `siphasher` crate), which the fingerprint was before, over the same
//! length-prefixed bytes.
//!
//! Instructions: `valgrind --tool=callgrind --toggle-collect='*fingerprint_pmac*' <this bench>
//! --bench --profile-time 5 fingerprint/pmac_aes/sipdialog` (divide by its calls).

mod support;

use std::hash::Hasher;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use pmac::{Mac, Pmac};
use sipdialog::id::{DialogKey, Fingerprinter};
use siphasher::sip128::{Hasher128, SipHasher13};
use support::calls;

const GROUP: &str = "fingerprint";
const KEY: [u8; 16] = [0x5a; 16];

#[inline(never)]
fn fingerprint_pmac(fp: &Fingerprinter, key: &DialogKey<'_>) -> u128 {
    fp.fingerprint(key).0
}

fn parts<'a>(key: &DialogKey<'a>) -> [&'a [u8]; 3] {
    [key.call_id, key.local_tag, key.remote_tag]
}

fn pmac_crate(mac: &mut Pmac<aes::Aes128>, key: &DialogKey<'_>) -> u128 {
    for part in parts(key) {
        mac.update(&(part.len() as u32).to_le_bytes());
        mac.update(part);
    }
    u128::from_le_bytes(mac.finalize_reset().into_bytes().into())
}

fn siphash(key: &DialogKey<'_>) -> u128 {
    let mut h = SipHasher13::new_with_key(&KEY);
    for part in parts(key) {
        h.write(&(part.len() as u32).to_le_bytes());
        h.write(part);
    }
    h.finish128().as_u128()
}

fn bench(c: &mut Criterion) {
    let id = &calls::identities(1, 7)[0];
    let key = id.key();
    let bytes: usize = parts(&key).iter().map(|p| 4 + p.len()).sum();
    println!("dialog key: {bytes} bytes, length prefixes included");
    let fp = Fingerprinter::with_key(KEY);
    let mut mac = <Pmac<aes::Aes128> as Mac>::new_from_slice(&KEY).expect("a 16-byte key");
    assert_eq!(fingerprint_pmac(&fp, &key), pmac_crate(&mut mac, &key));
    let mut g = c.benchmark_group(GROUP);
    g.bench_function(BenchmarkId::new("pmac_aes", "sipdialog"), |b| {
        b.iter(|| fingerprint_pmac(&fp, black_box(&key)))
    });
    g.bench_function(BenchmarkId::new("pmac_aes", "pmac_crate"), |b| {
        b.iter(|| pmac_crate(&mut mac, black_box(&key)))
    });
    g.bench_function(BenchmarkId::new("siphash13_128", "siphasher"), |b| {
        b.iter(|| siphash(black_box(&key)))
    });
    g.finish();
}

fn main() {
    let mut report = support::run(bench);
    report.ratio(
        "fingerprint against the pmac crate",
        GROUP,
        "pmac_aes/sipdialog",
        "pmac_aes/pmac_crate",
    );
    report.ratio(
        "fingerprint against SipHash-1-3-128",
        GROUP,
        "pmac_aes/sipdialog",
        "siphash13_128/siphasher",
    );
    report.print();
}
