//! The dialog fingerprint (PMAC-AES-128, through the AES instructions where the CPU has them)
//! on arbitrary keys and dialog keys of every length: it equals the RustCrypto `pmac` crate's
//! PMAC of the length-prefixed Call-ID, local tag and remote tag, below and past the length
//! where the parts stop being gathered into one buffer.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pmac::{Mac, Pmac};
use sipdialog::id::{DialogKey, Fingerprinter};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    key: [u8; 16],
    call_id: &'a [u8],
    local_tag: &'a [u8],
    remote_tag: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let key = DialogKey {
        call_id: input.call_id,
        local_tag: input.local_tag,
        remote_tag: input.remote_tag,
    };
    let got = Fingerprinter::with_key(input.key).fingerprint(&key).0;
    let mut mac = <Pmac<aes::Aes128> as Mac>::new_from_slice(&input.key).expect("16-byte key");
    for part in [input.call_id, input.local_tag, input.remote_tag] {
        mac.update(&(part.len() as u32).to_le_bytes());
        mac.update(part);
    }
    assert_eq!(got, u128::from_le_bytes(mac.finalize().into_bytes().into()));
});
