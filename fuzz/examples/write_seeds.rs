//! Writes the hand-made seeds: `cargo run --example write_seeds`.
//!
//! - `corpus/table_ops/seed-*`: the scenarios of `sipdialog_fuzz::model::seed_scripts`,
//!   encoded in the byte format `arbitrary` decodes;
//! - `corpus/wire_parse/seed-built-*.dat`: in-dialog messages from `model::build_message` in
//!   several writing styles, and `seed-edge-*.dat`: small messages at the edges the reference
//!   extractor checks (folded quoted tag, bare CR, keepalives, addr-spec parameters, ...).
//!
//! The RFC 4475 seeds (`corpus/wire_parse/seed-<name>.dat`) are plain copies of
//! `tests/rfc4475/*.dat`.

use std::path::Path;

use sipdialog_fuzz::model::{build_message, encode, seed_scripts};

const EDGE: &[(&str, &[u8])] = &[
    (
        "keepalive-prefix",
        b"\r\n\r\nBYE sip:a@h SIP/2.0\r\ni: c1\r\nf: <sip:b@h>;tag=peer\r\nt: <sip:a@h>;tag=mine\r\nCSeq: 2 BYE\r\n\r\n",
    ),
    (
        "folded-quoted-tag",
        b"OPTIONS sip:a SIP/2.0\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a>;tag=\"a\r\n b\"\r\nTo: <sip:b>\r\n\r\n",
    ),
    (
        "bare-cr",
        b"OPTIONS sip:a SIP/2.0\r\nCall-ID: c\r\nCSeq: 1\rOPTIONS\r\nFrom: <sip:a>\r;tag=1\r\nTo: <sip:b>\r\nl: 0\r\r\n\r\n",
    ),
    (
        "addr-spec-params",
        b"SIP/2.0 180 Ringing\nCall-ID: x@y\nFrom: sip:a@b?h=v;TAG = 1 ;p=\"q;tag=no\"\nTo: \"D \\\"q\\\" <x>;tag=no\" <sip:c@d;tag=uri>; tag=2\nCSeq: 0009\n  INVITE\nContent-Length: 3\n\nabcTRAILING",
    ),
    (
        "no-blank-line",
        b"INFO sip:x SIP/2.0\r\nCall-ID: c\r\nFrom: tok en <sip:a>;tag=1\r\nTo: <sip:b>;tag=[::1]\r\nCSeq: 2147483647 INFO\r\nVia: SIP/2.0/UDP[::1]:5060;branch=a;branch=b",
    ),
    (
        "via-forms",
        b"ACK sip:x SIP/2.0\r\nv: SIP / 2.0 / TCP host.example : 5061 ; received=1.2.3.4 ; branch = z9hG4bK1, SIP/2.0/UDP b\r\nCall-ID: c\r\nFrom: <sip:a>;tag=1\r\nTo: <sip:b>;tag=2\r\nCSeq: 1 ACK\r\nMax-Forwards: 0070\r\nContact: <sip:a@h>\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\nRoute: <sip:p1;lr>\r\no: dialog\r\nr: <sip:t@h>\r\nb: <sip:r@h>\r\nReplaces: x;to-tag=a;from-tag=b\r\nSubscription-State: active\r\n\r\n",
    ),
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let tables = root.join("table_ops");
    std::fs::create_dir_all(&tables).unwrap();
    for (name, script) in seed_scripts() {
        std::fs::write(tables.join(format!("seed-{name}")), encode(&script)).unwrap();
        println!("table_ops/seed-{name} ({} ops)", script.ops.len());
    }
    let wire = root.join("wire_parse");
    std::fs::create_dir_all(&wire).unwrap();
    for (style, response) in [
        (0u16, false),
        (1023, true),
        (2 | 8 | 16, false),
        (4 | 32 | 64, true),
        (128 | 256 | 512, false),
    ] {
        let m = build_message(
            "a84b4c76e66710@pc33.atlanta.com",
            "mine",
            "peer",
            7,
            response,
            style,
        );
        std::fs::write(wire.join(format!("seed-built-{style}.dat")), m).unwrap();
        println!("wire_parse/seed-built-{style}.dat");
    }
    for (name, bytes) in EDGE {
        std::fs::write(wire.join(format!("seed-edge-{name}.dat")), bytes).unwrap();
        println!("wire_parse/seed-edge-{name}.dat");
    }
}
