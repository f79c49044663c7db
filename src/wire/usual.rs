//! Straight-line readers for the shapes of From/To and Via that nearly every UA writes. Each
//! answers `None` for anything else — folds, quotes, escapes, white space where the grammar
//! allows it, IPv6 references, any error — and the careful reader of `value` decides those.
//! Where one answers, it answers as the careful reader does: the tests below drive both with
//! values built from the pieces that decide the shape, and the `wire_parse` fuzz target
//! checks the scanner as a whole against an independent extractor.

use super::header::{host_run, is_token, token_run};
use super::swar;
use super::value::{lws_prefix, ViaValue};

/// The tag of `<uri>`, `<uri>;tag=token` and the same after a quoted display name without
/// escapes (`Ok` of `value::tag_param`).
#[inline]
pub(super) fn tag_param(value: &[u8]) -> Option<Option<&[u8]>> {
    let mut at = lws_prefix(value);
    if value.get(at) == Some(&b'"') {
        let quoted = value.get(at + 1..)?;
        let close = swar::find3(b'"', b'\\', b'\r', quoted)?;
        if quoted[close] != b'"' {
            return None;
        }
        at += close + 2;
        at += lws_prefix(value.get(at..)?);
    }
    if value.get(at) != Some(&b'<') {
        return None;
    }
    let uri = value.get(at + 1..)?;
    let close = swar::find2(b'>', b'\r', uri)?;
    if uri[close] != b'>' {
        return None;
    }
    match &uri[close + 1..] {
        [] => Some(None),
        [b';', b't', b'a', b'g', b'=', tag @ ..] if is_token(tag) => Some(Some(tag)),
        _ => None,
    }
}

/// A CSeq written `number SP method`, after at most one SP, with at most ten digits (`Ok` of
/// `value::cseq`).
#[inline]
pub(super) fn cseq(value: &[u8]) -> Option<(u64, &[u8])> {
    let value = value.strip_prefix(b" ").unwrap_or(value);
    let digits = value
        .iter()
        .take(11)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=10).contains(&digits) || value.get(digits) != Some(&b' ') {
        return None;
    }
    let method = &value[digits + 1..];
    if !is_token(method) {
        return None;
    }
    let number = value[..digits]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some((number, method))
}

/// The top Via element written as `SIP/2.0/TRANSPORT host[:port](;name[=token])*`, followed
/// by the end of the value or a comma (`Ok` of `value::via`). Quoted or IPv6 parameter values
/// are left to the careful reader.
#[inline]
pub(super) fn via(value: &[u8]) -> Option<ViaValue<'_>> {
    let run = |from: usize, class: fn(&[u8]) -> usize| from + value.get(from..).map_or(0, class);
    let at = lws_prefix(value);
    if value.get(at..at + 8) != Some(b"SIP/2.0/") {
        return None;
    }
    let transport_end = run(at + 8, token_run);
    if transport_end == at + 8 || value.get(transport_end) != Some(&b' ') {
        return None;
    }
    let host_start = transport_end + 1;
    let mut at = run(host_start, host_run);
    if at == host_start {
        return None;
    }
    if value.get(at) == Some(&b':') {
        let port_end = run(at + 1, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        });
        if port_end == at + 1 {
            return None;
        }
        at = port_end;
    }
    let mut via = ViaValue {
        sent_by: &value[host_start..at],
        branch: None,
        received: None,
        rport: None,
        end: at,
    };
    loop {
        match value.get(at) {
            Some(b';') => {}
            None | Some(b',') => return Some(via),
            Some(_) => return None,
        }
        let name_start = at + 1;
        let name_end = run(name_start, token_run);
        if name_end == name_start {
            return None;
        }
        let name = &value[name_start..name_end];
        at = name_end;
        let param = match value.get(at) {
            Some(b'=') => {
                let value_end = run(at + 1, token_run);
                if value_end == at + 1 {
                    return None;
                }
                let param = &value[at + 1..value_end];
                at = value_end;
                Some(param)
            }
            _ => None,
        };
        via.end = at;
        // As the careful reader: each of these at most once, received valued.
        match name.len() {
            6 if name.eq_ignore_ascii_case(b"branch") => match param {
                Some(v) if via.branch.is_none() => via.branch = Some(v),
                _ => return None,
            },
            8 if name.eq_ignore_ascii_case(b"received") => match param {
                Some(v) if via.received.is_none() => via.received = Some(v),
                _ => return None,
            },
            5 if name.eq_ignore_ascii_case(b"rport") => {
                if via.rport.is_some() {
                    return None;
                }
                via.rport = Some(param);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::value::{careful_cseq, careful_tag_param, careful_via, CSeqValue};
    use super::*;
    use proptest::prelude::*;

    const TAG_PIECES: &[&[u8]] = &[
        b"\"", b"<", b">", b";tag=", b";TAG=", b"tag", b" ", b"\t", b"\r\n ", b"\r", b"\\", b",",
        b";", b"=", b"sip:a@b", b"Alice", b"x1",
    ];

    const CSEQ_PIECES: &[&[u8]] = &[
        b" ",
        b"\t",
        b"\r\n ",
        b"0",
        b"1",
        b"42",
        b"99999999999",
        b"2147483648",
        b"INVITE",
        b"BYE",
        b"X-Y",
        b"@",
        b",",
    ];

    const VIA_PIECES: &[&[u8]] = &[
        b"SIP/2.0/UDP ",
        b"SIP/2.0/",
        b"UDP",
        b" ",
        b"\r\n ",
        b"192.0.2.1",
        b"h-1.example",
        b"[::1]",
        b":",
        b"5060",
        b";",
        b"=",
        b",",
        b"\"q\"",
        b"branch",
        b"BRANCH",
        b"received",
        b"rport",
        b"z9hG4bK1",
        b"x",
        b"[",
        b"]",
        b"\t",
    ];

    const VIA_SENT_BY: &[&[u8]] = &[
        b"192.0.2.1",
        b"h-1.example:5060",
        b"[::1]:5060",
        b"h :5060",
        b"",
        b"h:",
        b" h",
        b"h\r\n :1",
    ];

    const VIA_TAILS: &[&[u8]] = &[b"", b",SIP/2.0/UDP x", b" ", b"\r\n ", b"junk", b";"];

    const VIA_NAMES: &[&[u8]] = &[b"branch", b"BRANCH", b"received", b"rport", b"x", b"", b" "];

    const VIA_VALUES: &[&[u8]] = &[
        b"z9hG4bK1",
        b"192.0.2.1",
        b"5060",
        b"\"q\"",
        b"",
        b"[::1]",
        b"a b",
        b"a,b",
        b" ",
    ];

    fn lossy(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_usual_tag_reader_agrees_with_the_careful_one(
            head in proptest::collection::vec(proptest::sample::select(TAG_PIECES), 0..4),
            uri in proptest::collection::vec(proptest::sample::select(TAG_PIECES), 0..3),
            tail in proptest::collection::vec(proptest::sample::select(TAG_PIECES), 0..4),
            angles in 0u8..4,
        ) {
            // Mostly `head <uri> tail`, so that many cases reach the end of the fast reader.
            let (open, close): (&[u8], &[u8]) = match angles {
                0 => (b"", b""),
                1 => (b"<", b""),
                _ => (b"<", b">"),
            };
            let value = [head.concat(), open.to_vec(), uri.concat(), close.to_vec(), tail.concat()].concat();
            if let Some(fast) = tag_param(&value) {
                prop_assert_eq!(Ok(fast), careful_tag_param(&value), "{}", lossy(&value));
            }
        }

        #[test]
        fn the_usual_cseq_reader_agrees_with_the_careful_one(
            pieces in proptest::collection::vec(proptest::sample::select(CSEQ_PIECES), 0..6),
        ) {
            let value = pieces.concat();
            if let Some((number, method)) = cseq(&value) {
                match careful_cseq(&value) {
                    CSeqValue::Ok(n, m) => prop_assert_eq!((n, m), (number, method), "{}", lossy(&value)),
                    _ => prop_assert!(false, "careful refused {}", lossy(&value)),
                }
            }
        }

        #[test]
        fn the_usual_via_reader_agrees_with_the_careful_one(
            sent_by in prop_oneof![
                4 => Just(b"192.0.2.1".to_vec()),
                4 => proptest::sample::select(VIA_SENT_BY).prop_map(<[u8]>::to_vec),
                1 => proptest::collection::vec(proptest::sample::select(VIA_PIECES), 0..3)
                    .prop_map(|p| p.concat()),
            ],
            params in proptest::collection::vec(
                (
                    prop_oneof![
                        3 => proptest::sample::select(&VIA_NAMES[..4]),
                        1 => proptest::sample::select(VIA_NAMES),
                    ],
                    proptest::option::of(prop_oneof![
                        3 => proptest::sample::select(&VIA_VALUES[..3]),
                        1 => proptest::sample::select(VIA_VALUES),
                    ]),
                ),
                0..5,
            ),
            tail in prop_oneof![3 => Just(&b""[..]), 1 => proptest::sample::select(VIA_TAILS)],
            usual_start in proptest::bool::weighted(0.9),
        ) {
            let mut value = if usual_start { b"SIP/2.0/UDP ".to_vec() } else { Vec::new() };
            value.extend(sent_by);
            for (name, param) in params {
                value.push(b';');
                value.extend_from_slice(name);
                if let Some(p) = param {
                    value.push(b'=');
                    value.extend_from_slice(p);
                }
            }
            value.extend_from_slice(tail);
            if let Some(fast) = via(&value) {
                prop_assert_eq!(Ok(fast), careful_via(&value), "{}", lossy(&value));
            }
        }
    }

    #[test]
    fn the_usual_shapes_take_the_fast_readers() {
        for (v, want) in [
            (&b" <sip:a@b>;tag=1x"[..], Some(&b"1x"[..])),
            (b" \"Alice\" <sip:a@b>;tag=9", Some(b"9")),
            (b"<sip:a@b>", None),
        ] {
            assert_eq!(tag_param(v), Some(want));
            assert_eq!(careful_tag_param(v), Ok(want));
        }
        for other in [
            &b"sip:a@b;tag=1"[..],
            b"<sip:a@b>;tag=1 ",
            b"<sip:a@b>;q=1;tag=2",
        ] {
            assert_eq!(tag_param(other), None);
        }
        assert_eq!(cseq(b" 314159 INVITE"), Some((314159, &b"INVITE"[..])));
        assert_eq!(cseq(b"1 BYE"), Some((1, &b"BYE"[..])));
        for v in [
            &b" SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK1"[..],
            b"SIP/2.0/TCP h.example;received=192.0.2.9;rport=5070;branch=z9hG4bK2,SIP/2.0/UDP x",
            b"SIP/2.0/UDP 192.0.2.1",
        ] {
            let fast = via(v).expect("a usual Via");
            assert_eq!(Ok(fast), careful_via(v));
        }
        for other in [
            &b"SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1"[..],
            b"SIP/2.0/UDP h ;branch=z9hG4bK1",
            b"SIP/2.0/UDP h;branch=\"q\"",
            b"SIP/2.0/UDP h;branch=1;branch=2",
        ] {
            assert_eq!(via(other), None);
        }
    }
}
