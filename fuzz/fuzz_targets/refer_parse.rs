//! The transfer wire formats (`sipdialog::refer`) on arbitrary bytes.
//!
//! - no parser panics: Refer-To (default limits, and a tiny `max_len`), Replaces, sipfrag,
//!   Event, Subscription-State, Refer-Sub;
//! - every refusal maps to 400, 403 or 489;
//! - the bump arena holds at most a small multiple of the input;
//! - a tighter `max_len` or a narrower scheme policy never accepts what the defaults refuse;
//! - every accepted Refer-To, Replaces and Subscription-State, written back and parsed again,
//!   gives the same fields; a Refer-To with a Replaces writes as `<uri?Replaces=...>` with no
//!   bare `;`, `@`, `&` or `%` after the `?` other than escapes.
#![no_main]

use bumpalo::Bump;
use libfuzzer_sys::fuzz_target;
use sipdialog::refer::{
    parse_refer_event, parse_refer_sub, parse_refer_to, parse_replaces, parse_sipfrag_status,
    parse_subscription_state, write_refer_to, write_replaces, write_subscription_state, ReferError,
    ReferLimits, UriScheme,
};

fn status_ok(e: &ReferError) {
    let code = e.status().0;
    assert!(matches!(code, 400 | 403 | 489), "{e:?} -> {code}");
}

fuzz_target!(|data: &[u8]| {
    let bump = Bump::new();
    let full = parse_refer_to(data, &bump, &ReferLimits::DEFAULT);
    assert!(
        bump.allocated_bytes() <= 4 * data.len() + 4096,
        "arena {} for {} input bytes",
        bump.allocated_bytes(),
        data.len()
    );
    match &full {
        Ok(to) => {
            let mut out = Vec::new();
            write_refer_to(&mut out, to.uri, to.replaces.as_ref()).expect("write accepted");
            if to.replaces.is_some() {
                let q = out.iter().position(|&b| b == b'?').expect("headers part");
                let escaped = &out[q + 1..out.len() - 1];
                assert!(!escaped
                    .iter()
                    .any(|b| matches!(b, b';' | b'@' | b'&' | b'<' | b'>')));
            }
            let again = Bump::new();
            let unbounded = ReferLimits {
                max_len: usize::MAX,
                ..ReferLimits::DEFAULT
            };
            let back = parse_refer_to(&out, &again, &unbounded).expect("reparse");
            assert_eq!(back, *to, "{out:?}");
        }
        Err(e) => status_ok(e),
    }

    // Tighter policies never accept more.
    let tiny_bump = Bump::new();
    let tiny = ReferLimits {
        max_len: 16,
        ..ReferLimits::DEFAULT
    };
    match parse_refer_to(data, &tiny_bump, &tiny) {
        Ok(to) => assert_eq!(Ok(to), full),
        Err(e) => status_ok(&e),
    }
    let sips = ReferLimits {
        allowed: &[UriScheme::Sips],
        ..ReferLimits::DEFAULT
    };
    if let Ok(to) = parse_refer_to(data, &tiny_bump, &sips) {
        assert_eq!(to.scheme, UriScheme::Sips);
        assert_eq!(Ok(to), full);
    }

    match parse_replaces(data) {
        Ok(r) => {
            let mut out = Vec::new();
            write_replaces(&mut out, &r).expect("write accepted");
            assert_eq!(parse_replaces(&out), Ok(r));
        }
        Err(e) => status_ok(&e),
    }

    match parse_sipfrag_status(data) {
        Ok(code) => assert!((100..=699).contains(&code)),
        Err(e) => status_ok(&e),
    }

    if let Err(e) = parse_refer_event(data) {
        status_ok(&e);
    }

    match parse_subscription_state(data) {
        Ok(s) => {
            let mut out = Vec::new();
            write_subscription_state(&mut out, &s).expect("write accepted");
            assert_eq!(parse_subscription_state(&out), Ok(s));
        }
        Err(e) => status_ok(&e),
    }

    if let Err(e) = parse_refer_sub(data) {
        status_ok(&e);
    }
});
