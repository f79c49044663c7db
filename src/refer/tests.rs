//! The transfer wire formats against the RFC examples and the ways peers get them wrong.

use bumpalo::Bump;

use super::*;

const LIMITS: ReferLimits = ReferLimits::DEFAULT;

fn refer_to<'b>(value: &'b [u8], bump: &'b Bump) -> Result<ReferTo<'b>, ReferError> {
    parse_refer_to(value, bump, &LIMITS)
}

fn written(uri: &[u8], r: Option<&Replaces<'_>>) -> Vec<u8> {
    let mut out = Vec::new();
    write_refer_to(&mut out, uri, r).unwrap();
    out
}

#[test]
fn refer_to_round_trip_with_replaces() {
    let bump = Bump::new();
    let cases = [
        Replaces {
            call_id: b"a84b4c76e66710@pc33.atlanta.example.com",
            to_tag: b"314159-ab.c",
            from_tag: b"1928301774",
            early_only: false,
        },
        Replaces {
            call_id: b"x<y>\"z\"{}[]?:/\\%25",
            to_tag: b"a.b-c_d!e%f*g+h`i'j~k",
            from_tag: b"z",
            early_only: true,
        },
    ];
    for uri in [
        &b"sip:bob@biloxi.example.com"[..],
        b"sips:carol@chicago.example.com;transport=tls;maddr=[2001:db8::1]",
        b"sip:192.0.2.4:5061",
    ] {
        for r in &cases {
            let out = written(uri, Some(r));
            let back = refer_to(&out, &bump).unwrap();
            assert_eq!(back.uri, uri);
            assert_eq!(back.replaces.as_ref(), Some(r));
            // The header form round-trips too.
            let mut header = Vec::new();
            write_replaces(&mut header, r).unwrap();
            assert_eq!(parse_replaces(&header).as_ref(), Ok(r));
        }
        let plain = written(uri, None);
        let back = refer_to(&plain, &bump).unwrap();
        assert_eq!((back.uri, back.replaces), (uri, None));
    }
}

#[test]
fn refer_to_escapes_what_would_split_the_uri() {
    let r = Replaces {
        call_id: b"c@h",
        to_tag: b"t",
        from_tag: b"f",
        early_only: false,
    };
    let out = written(b"sip:b@h", Some(&r));
    let headers = &out[out.iter().position(|&b| b == b'?').unwrap() + 1..out.len() - 1];
    assert_eq!(headers, b"Replaces=c%40h%3Bto-tag%3Dt%3Bfrom-tag%3Df");
    for b in [b';', b'@', b'&', b'?', b'<', b'>', b'"'] {
        assert!(!headers[b"Replaces=".len()..].contains(&b));
    }
}

#[test]
fn rfc5589_attended_transfer_example() {
    let bump = Bump::new();
    // RFC 5589 §7, F6 REFER (the RFC folds it over two lines; written here as sent).
    let value = b"<sips:transfertarget@chicago.example.com?Replaces=090459243588173445%3Bto-tag%3D7553452%3Bfrom-tag%3D31431>";
    let to = refer_to(value, &bump).unwrap();
    assert_eq!(to.uri, b"sips:transfertarget@chicago.example.com");
    assert_eq!(to.scheme, UriScheme::Sips);
    let r = to.replaces.unwrap();
    assert_eq!(r.call_id, b"090459243588173445");
    assert_eq!(
        (r.to_tag, r.from_tag, r.early_only),
        (&b"7553452"[..], &b"31431"[..], false)
    );
    // The writer produces it byte for byte.
    assert_eq!(written(to.uri, Some(&r)), value);
}

#[test]
fn refer_to_forms_and_header_params() {
    let bump = Bump::new();
    for value in [
        &b"sip:bob@biloxi.example.com"[..],
        b"  <sip:bob@biloxi.example.com>  ",
        b"\"Bob, the \\\"B\\\"\" <sip:bob@biloxi.example.com>;x=1 ; y ;z=\"a,b\"",
        b"Bob Smith <sip:bob@biloxi.example.com>;method=INVITE",
        b"SIP:bob@biloxi.example.com ;p=v",
        b"<sip:bob@biloxi.example.com>\r\n ;folded=1",
    ] {
        let to = refer_to(value, &bump).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(to.uri.to_ascii_lowercase(), b"sip:bob@biloxi.example.com");
        assert_eq!((to.scheme, to.replaces), (UriScheme::Sip, None));
    }
    let to = refer_to(b"<tel:+1-201-555-0123;phone-context=example.com>", &bump).unwrap();
    assert_eq!(to.scheme, UriScheme::Tel);
    // URI parameters stay, other URI headers go, and the user part may hold `;`.
    let to = refer_to(b"<sip:alice;day=tue@h;lr?Subject=x&Priority=urgent>", &bump).unwrap();
    assert_eq!(to.uri, b"sip:alice;day=tue@h;lr");
    assert_eq!(to.replaces, None);
}

#[test]
fn refer_to_mixed_case_escapes() {
    let bump = Bump::new();
    let value =
        b"<sip:b@h?Subject=a%2fb&rEpLaCeS=abc%40Host%3bTO-TAG%3d7%3BfRoM-tAg%3D8%3bEarly-Only>";
    let r = refer_to(value, &bump).unwrap().replaces.unwrap();
    assert_eq!(r.call_id, b"abc@Host");
    assert_eq!(
        (r.to_tag, r.from_tag, r.early_only),
        (&b"7"[..], &b"8"[..], true)
    );
    // An escaped header name is still Replaces.
    let r = refer_to(b"<sip:b@h?Re%70laces=c%3Bto-tag%3D1%3Bfrom-tag%3D2>", &bump).unwrap();
    assert_eq!(r.replaces.unwrap().call_id, b"c");
    // Unescaped `;` `=` `@` after `?` (a common peer mistake) still read unambiguously.
    let r = refer_to(b"<sip:b@h?Replaces=c@d;to-tag=1;from-tag=2>", &bump).unwrap();
    assert_eq!(r.replaces.unwrap().call_id, b"c@d");
}

#[test]
fn refer_to_malformed_escapes() {
    let bump = Bump::new();
    for value in [
        &b"<sip:b@h?Replaces=c%3Bto-tag%3D1%3Bfrom-tag%3D2%4>"[..],
        b"<sip:b@h?Replaces=c%ZZ%3Bto-tag%3D1%3Bfrom-tag%3D2>",
        b"<sip:b@h?Replaces=c%3Bto-tag%3D1%3Bfrom-tag%3D2%>",
        b"<sip:b%G0@h>",
        b"<sip:b@h?Subject=%4>",
    ] {
        let err = refer_to(value, &bump).unwrap_err();
        assert_eq!(err, ReferError::BadEscape, "{value:?}");
        assert_eq!(err.status(), (400, "Bad Request"));
    }
}

#[test]
fn refer_to_two_replaces() {
    let bump = Bump::new();
    let one = "c%3Bto-tag%3D1%3Bfrom-tag%3D2";
    for value in [
        format!("<sip:b@h?Replaces={one}&Replaces={one}>"),
        format!("<sip:b@h?Replaces={one}&x=y&REPLACES={one}>"),
        format!("<sip:b@h?Replaces={one}&Re%70laces=junk>"),
    ] {
        let err = refer_to(value.as_bytes(), &bump).unwrap_err();
        assert_eq!(err, ReferError::DuplicateReplaces, "{value}");
        assert_eq!(err.status().0, 400);
    }
}

#[test]
fn replaces_missing_and_duplicate_params() {
    assert_eq!(
        parse_replaces(b"c@h;from-tag=2"),
        Err(ReferError::MissingParam { param: "to-tag" })
    );
    assert_eq!(
        parse_replaces(b"c@h;to-tag=1"),
        Err(ReferError::MissingParam { param: "from-tag" })
    );
    assert_eq!(
        parse_replaces(b"c@h;to-tag=1;from-tag=2;From-Tag=3"),
        Err(ReferError::DuplicateParam { param: "from-tag" })
    );
    assert_eq!(
        parse_replaces(b"c;to-tag=1;from-tag=2;early-only;early-only"),
        Err(ReferError::DuplicateParam {
            param: "early-only"
        })
    );
    // Through a Refer-To, the same errors.
    let bump = Bump::new();
    let err = refer_to(b"<sip:b@h?Replaces=c%3Bfrom-tag%3D2>", &bump).unwrap_err();
    assert_eq!(err, ReferError::MissingParam { param: "to-tag" });
    assert_eq!(err.status().0, 400);
}

#[test]
fn replaces_early_only_lws_and_generic_params() {
    let r = parse_replaces(
        b" 12345@192.168.118.3 ;\r\n to-tag = 12345 ; from-tag=54321;foo=\"b;r\";early-only ",
    )
    .unwrap();
    assert_eq!(r.call_id, b"12345@192.168.118.3");
    assert_eq!(
        (r.to_tag, r.from_tag, r.early_only),
        (&b"12345"[..], &b"54321"[..], true)
    );
    let r = parse_replaces(b"425928@bobster.example.org;to-tag=7743;from-tag=6472").unwrap();
    assert!(!r.early_only);
}

#[test]
fn replaces_malformed() {
    for bad in [
        &b""[..],
        b";to-tag=1;from-tag=2",
        b"a@b@c;to-tag=1;from-tag=2",
        b"@b;to-tag=1;from-tag=2",
        b"c;to-tag=;from-tag=2",
        b"c;to-tag=\"1\";from-tag=2",
        b"c;to-tag=1;from-tag=2;early-only=yes",
        b"c;to-tag=1;from-tag=2,d",
        b"c;to-tag=1;from-tag=2;",
        b"c d;to-tag=1;from-tag=2",
        b"c;to-tag=1\r;from-tag=2",
    ] {
        assert_eq!(
            parse_replaces(bad),
            Err(ReferError::Malformed { what: "Replaces" }),
            "{bad:?}"
        );
    }
}

#[test]
fn refer_to_scheme_policy() {
    let bump = Bump::new();
    for value in [
        &b"<http://example.com/x>"[..],
        b"mailto:bob@example.com",
        b"<im:bob@h>",
    ] {
        let err = refer_to(value, &bump).unwrap_err();
        assert_eq!(err, ReferError::SchemeNotAllowed, "{value:?}");
        assert_eq!(err.status(), (403, "Forbidden"));
    }
    let sips_only = ReferLimits {
        allowed: &[UriScheme::Sips],
        ..ReferLimits::DEFAULT
    };
    assert_eq!(
        parse_refer_to(b"<sip:b@h>", &bump, &sips_only),
        Err(ReferError::SchemeNotAllowed)
    );
    assert!(parse_refer_to(b"<sips:b@h>", &bump, &sips_only).is_ok());
}

#[test]
fn refer_to_too_long() {
    let bump = Bump::new();
    let long = format!("<sip:{}@h>", "a".repeat(3000));
    let err = refer_to(long.as_bytes(), &bump).unwrap_err();
    assert_eq!(err, ReferError::TooLong { max: 2048 });
    assert_eq!(err.status(), (400, "Bad Request"));
    let tiny = ReferLimits {
        max_len: 8,
        ..ReferLimits::DEFAULT
    };
    assert!(parse_refer_to(b"<sip:h>", &bump, &tiny).is_ok());
    assert!(parse_refer_to(b"<sip:hh>", &bump, &tiny).is_ok());
    assert_eq!(
        parse_refer_to(b"<sip:hhh>", &bump, &tiny),
        Err(ReferError::TooLong { max: 8 })
    );
}

#[test]
fn refer_to_list_of_two() {
    let bump = Bump::new();
    for value in [
        &b"<sip:a@h>, <sip:b@h>"[..],
        b"sip:a@h,sip:b@h",
        b"\"A\" <sip:a@h>;p=1 , sip:b@h",
        b"<sip:a@h>,",
    ] {
        let err = refer_to(value, &bump).unwrap_err();
        assert_eq!(err, ReferError::MultipleTargets, "{value:?}");
        assert_eq!(err.status().0, 400);
    }
    // A comma inside the brackets belongs to the URI (RFC 3261 user-unreserved).
    assert!(refer_to(b"<sip:a,b@h>", &bump).is_ok());
}

#[test]
fn refer_to_malformed() {
    let bump = Bump::new();
    for value in [
        &b""[..],
        b"   ",
        b"<sip:b@h",
        b"<>",
        b"<sip:>",
        b"<sip:@h>",
        b"<sip:b@>",
        b"<sip:b@h/x>",
        b"< sip:b@h>",
        b"<sip:b@h?>",
        b"<sip:b@h?Replaces>",
        b"<sip:b@h?=x>",
        b"<sip:b@h?a=1&&b=2>",
        b"<tel:+1234?Replaces=c%3Bto-tag%3D1%3Bfrom-tag%3D2>",
        b"<tel:>",
        b"\"unterminated <sip:b@h>",
        b"<sip:b@h> junk",
        b"<sip:b@h>;",
        b"sip:b@h sip:c@h",
        b"<1sip:b@h>",
        b"<sip:b\x00@h>",
        b"<sip:b@h>\r",
        b"<sip:b@h\r\n>",
        "<sip:b\u{e9}@h>".as_bytes(),
    ] {
        let err = refer_to(value, &bump).expect_err(&format!("{value:?}"));
        assert_eq!(err.status().0, 400, "{value:?}: {err:?}");
    }
}

#[test]
fn write_refer_to_refuses_bad_values() {
    let r = Replaces {
        call_id: b"c",
        to_tag: b"1",
        from_tag: b"2",
        early_only: false,
    };
    let mut out = b"keep".to_vec();
    for uri in [
        &b""[..],
        b"sip:b@h?Subject=x",
        b"sip:b@h\r\nX: y",
        b"sip:b@h>",
        b"sip:<b@h",
        b"sip:b h",
        b"sip:b@h\x00",
        b"sip:b%4@h",
    ] {
        let err = write_refer_to(&mut out, uri, Some(&r)).unwrap_err();
        assert!(matches!(err, ReferError::InvalidValue { .. }), "{uri:?}");
        assert_eq!(err.status().0, 500);
    }
    for bad in [
        Replaces {
            call_id: b"c;d",
            ..r
        },
        Replaces { call_id: b"", ..r },
        Replaces {
            to_tag: b"1\r\n",
            ..r
        },
        Replaces {
            from_tag: b"a b",
            ..r
        },
        Replaces { from_tag: b"", ..r },
    ] {
        assert!(write_refer_to(&mut out, b"sip:b@h", Some(&bad)).is_err());
        assert!(write_replaces(&mut out, &bad).is_err());
    }
    assert_eq!(out, b"keep");
}

#[test]
fn sipfrag_status_lines() {
    assert_eq!(parse_sipfrag_status(b"SIP/2.0 200 OK\r\n"), Ok(200));
    assert_eq!(parse_sipfrag_status(b"SIP/2.0 100 Trying"), Ok(100));
    assert_eq!(parse_sipfrag_status(b"sip/2.0 603 Declined"), Ok(603));
    assert_eq!(parse_sipfrag_status(b"SIP/2.0 180 \r\n"), Ok(180));
    assert_eq!(parse_sipfrag_status(b"SIP/2.0 487\r\n"), Ok(487));
    assert_eq!(
        parse_sipfrag_status(
            b"SIP/2.0 200 OK\r\nContact: <sip:dan@w.example>\r\nCSeq: 1 INVITE\r\n\r\n"
        ),
        Ok(200)
    );
    assert_eq!(
        parse_sipfrag_status(b"SIP/2.0 503 Service \tUnavailable\nX: y"),
        Ok(503)
    );
    let mut out = Vec::new();
    write_sipfrag(&mut out, 100, "Trying").unwrap();
    assert_eq!(out, b"SIP/2.0 100 Trying\r\n");
    assert_eq!(parse_sipfrag_status(&out), Ok(100));
}

#[test]
fn sipfrag_malformed() {
    for bad in [
        &b""[..],
        b"SIP/2.0 99 x",
        b"SIP/2.0 099 x",
        b"SIP/2.0 700 x",
        b"SIP/2.0 2000 x",
        b"SIP/2.0  200 OK",
        b"SIP/2.0 200OK",
        b"SIP/2.0 200 OK\rX",
        b"SIP/2.0 200 O\x00K\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"SIP/3.0 200 OK\r\n",
        b"INVITE sip:b@h SIP/2.0\r\n",
        b"SIP/2.0",
        b"SIP/2.0 2",
        b" SIP/2.0 200 OK",
    ] {
        let err = parse_sipfrag_status(bad).unwrap_err();
        assert_eq!(
            err,
            ReferError::Malformed {
                what: "message/sipfrag"
            },
            "{bad:?}"
        );
        assert_eq!(err.status().0, 400);
    }
    let mut out = b"keep".to_vec();
    assert!(write_sipfrag(&mut out, 99, "x").is_err());
    assert!(write_sipfrag(&mut out, 700, "x").is_err());
    assert!(write_sipfrag(&mut out, 200, "OK\r\nX: y").is_err());
    assert!(write_sipfrag(&mut out, 200, "O\0K").is_err());
    assert_eq!(out, b"keep");
}

#[test]
fn refer_event() {
    assert_eq!(
        parse_refer_event(b"refer;id=93809824"),
        Ok(Some(93_809_824))
    );
    assert_eq!(parse_refer_event(b"refer"), Ok(None));
    assert_eq!(parse_refer_event(b" refer ; ID = 7 ;x=y"), Ok(Some(7)));
    for other in [&b"presence"[..], b"refer.foo", b"Refer", b"presence;id=1"] {
        let err = parse_refer_event(other).unwrap_err();
        assert_eq!(err, ReferError::BadEvent, "{other:?}");
        assert_eq!(err.status(), (489, "Bad Event"));
    }
    assert_eq!(
        parse_refer_event(b"refer;id=1;id=2"),
        Err(ReferError::DuplicateParam { param: "id" })
    );
    for bad in [
        &b""[..],
        b";id=1",
        b"refer;id",
        b"refer;id=abc",
        b"refer;id=4294967296",
        b"refer;id=\"1\"",
        b"refer, presence",
        b"refer x",
    ] {
        let err = parse_refer_event(bad).unwrap_err();
        assert_eq!(err.status().0, 400, "{bad:?}: {err:?}");
    }
}

#[test]
fn subscription_state() {
    use SubscriptionState::*;
    assert_eq!(
        parse_subscription_state(b"active;expires=60"),
        Ok(Active { expires: Some(60) })
    );
    assert_eq!(
        parse_subscription_state(b"terminated;reason=noresource"),
        Ok(Terminated {
            reason: Some(b"noresource")
        })
    );
    assert_eq!(
        parse_subscription_state(b"PENDING ; expires = 99999999999 ;retry-after=5"),
        Ok(Pending {
            expires: Some(u32::MAX)
        })
    );
    assert_eq!(
        parse_subscription_state(b"terminated"),
        Ok(Terminated { reason: None })
    );
    for s in [
        Active { expires: None },
        Active { expires: Some(0) },
        Pending {
            expires: Some(3600),
        },
        Terminated {
            reason: Some(b"timeout"),
        },
        Terminated { reason: None },
    ] {
        let mut out = Vec::new();
        write_subscription_state(&mut out, &s).unwrap();
        assert_eq!(parse_subscription_state(&out), Ok(s));
    }
    for bad in [
        &b""[..],
        b"waiting",
        b"active;expires=",
        b"active;expires=-1",
        b"terminated;reason=\"x\"",
        b"active;expires=1;expires=2",
        b"active,pending",
    ] {
        assert_eq!(
            parse_subscription_state(bad).unwrap_err().status().0,
            400,
            "{bad:?}"
        );
    }
    let mut out = Vec::new();
    let bad = Terminated {
        reason: Some(b"no\r\nX: y"),
    };
    assert!(write_subscription_state(&mut out, &bad).is_err());
    assert!(out.is_empty());
}

#[test]
fn refer_sub() {
    assert_eq!(parse_refer_sub(b"false"), Ok(false));
    assert_eq!(parse_refer_sub(b"TRUE"), Ok(true));
    assert_eq!(parse_refer_sub(b" true ;x=1"), Ok(true));
    for bad in [&b"maybe"[..], b"", b"true,false", b"true;", b"yes"] {
        let err = parse_refer_sub(bad).unwrap_err();
        assert_eq!(err, ReferError::Malformed { what: "Refer-Sub" }, "{bad:?}");
        assert_eq!(err.status().0, 400);
    }
}

#[test]
fn bump_use_is_bounded_and_lazy() {
    // No escape, no arena use: the Replaces is borrowed from the value.
    let bump = Bump::new();
    let to = refer_to(b"<sip:b@h?Replaces=c;to-tag=1;from-tag=2>", &bump).unwrap();
    assert!(to.replaces.is_some());
    assert_eq!(bump.allocated_bytes(), 0);
    let value = written(
        b"sip:b@h",
        Some(&Replaces {
            call_id: b"c@h",
            to_tag: b"1",
            from_tag: b"2",
            early_only: false,
        }),
    );
    refer_to(&value, &bump).unwrap();
    assert!(bump.allocated_bytes() <= 4 * value.len() + 4096);
}
