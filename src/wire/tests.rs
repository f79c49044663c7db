use super::*;

fn msg(headers: &str) -> Vec<u8> {
    format!("INVITE sip:bob@b.example SIP/2.0\r\n{headers}\r\n").into_bytes()
}

const BASE: &str = "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n\
Call-ID: c1\r\nFrom: <sip:a@a.example>;tag=f1\r\nTo: <sip:b@b.example>\r\nCSeq: 1 INVITE\r\n";

#[test]
fn minimal_request() {
    let m = msg(BASE);
    let v = MessageView::parse(&m).unwrap();
    assert_eq!(v.method(), Some(Method::Invite));
    assert_eq!(v.request_uri(), Some(&b"sip:bob@b.example"[..]));
    assert_eq!(v.call_id(), b"c1");
    assert_eq!((v.from_tag(), v.to_tag()), (Some(&b"f1"[..]), None));
    assert_eq!(v.via_sent_by(), Some(&b"a.example"[..]));
    assert_eq!(v.content_length(), None);
    assert_eq!(v.body(), b"");
}

#[test]
fn body_framing() {
    let m = msg(&format!("{BASE}Content-Length:    4\r\n"));
    let mut with_body = m.clone();
    with_body.extend_from_slice(b"abcdTRAILING");
    let v = MessageView::parse(&with_body).unwrap();
    assert_eq!(v.body(), b"abcd");
    assert!(v.as_bytes().ends_with(b"\r\n\r\nabcd"));
    assert_eq!(
        MessageView::parse(&m).unwrap_err(),
        WireError::ContentLengthExceedsMessage
    );
    let m = msg(&format!("{BASE}l: -1\r\n"));
    assert_eq!(
        MessageView::parse(&m).unwrap_err(),
        WireError::InvalidContentLength
    );
    let m = msg(&format!("{BASE}l: 0\r\nContent-Length: 0\r\n"));
    assert_eq!(
        MessageView::parse(&m).unwrap_err(),
        WireError::DuplicateHeader(HeaderName::ContentLength)
    );
}

#[test]
fn identity_errors() {
    for (name, line) in [
        (HeaderName::CallId, "i: c2\r\n"),
        (HeaderName::From, "f: <sip:x@y>\r\n"),
        (HeaderName::To, "t: <sip:x@y>\r\n"),
        (HeaderName::CSeq, "CSEQ: 1 INVITE\r\n"),
    ] {
        let m = msg(&format!("{BASE}{line}"));
        assert_eq!(
            MessageView::parse(&m).unwrap_err(),
            WireError::DuplicateHeader(name)
        );
        let without: String = BASE
            .lines()
            .filter(|l| HeaderName::classify(l.split(':').next().unwrap().as_bytes()) != name)
            .map(|l| format!("{l}\r\n"))
            .collect();
        let m = msg(&without);
        assert_eq!(
            MessageView::parse(&m).unwrap_err(),
            WireError::MissingHeader(name)
        );
    }
    let m = msg(&BASE.replace("CSeq: 1 INVITE", "CSeq: 2147483648 INVITE"));
    assert_eq!(
        MessageView::parse(&m).unwrap_err(),
        WireError::CSeqOutOfRange
    );
    let m = msg(&BASE.replace("CSeq: 1 INVITE", "CSeq: 2147483647 INVITE"));
    assert_eq!(MessageView::parse(&m).unwrap().cseq().number, 2_147_483_647);
    let m = msg(&BASE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"));
    assert_eq!(
        MessageView::parse(&m).unwrap_err(),
        WireError::CSeqMethodMismatch
    );
    assert_eq!(WireError::CSeqMethodMismatch.status().0, 400);
    let m = msg(&BASE.replace("Call-ID: c1", "Call-ID: c 1"));
    assert_eq!(
        MessageView::parse(&m).unwrap_err(),
        WireError::MalformedHeader(HeaderName::CallId)
    );
}

#[test]
fn compact_forms_and_cold_headers() {
    let m = msg(
        "v: SIP/2.0/TCP h:5061;branch=z9hG4bKx, SIP/2.0/UDP other\r\ni: c9\r\n\
         f: sip:a@a;tag=A\r\nt: sip:b@b;tag=B\r\nCSeq: 5 INVITE\r\nm: <sip:a@10.0.0.1>\r\n\
         r: <sip:carol@c>\r\nb: <sip:a@a>\r\no: refer;id=5\r\nReplaces: x;to-tag=1;from-tag=2\r\n\
         Subscription-State: active;expires=60\r\nRoute: <sip:r1;lr>\r\nRoute: <sip:r2;lr>\r\n",
    );
    let v = MessageView::parse(&m).unwrap();
    assert_eq!(v.via_sent_by(), Some(&b"h:5061"[..]));
    assert_eq!(v.via_branch(), Some(&b"z9hG4bKx"[..]));
    assert_eq!(v.contact(), Some(&b"<sip:a@10.0.0.1>"[..]));
    assert_eq!(v.refer_to(), Some(&b"<sip:carol@c>"[..]));
    assert_eq!(v.referred_by(), Some(&b"<sip:a@a>"[..]));
    assert_eq!(v.event(), Some(&b"refer;id=5"[..]));
    assert_eq!(v.replaces(), Some(&b"x;to-tag=1;from-tag=2"[..]));
    assert_eq!(v.subscription_state(), Some(&b"active;expires=60"[..]));
    assert_eq!(v.route(), Some(&b"<sip:r1;lr>"[..]));
    assert_eq!(v.values(HeaderName::Route).count(), 2);
    assert_eq!(v.values(HeaderName::Via).count(), 2);
    assert_eq!(v.headers().count(), 13);
}

#[test]
fn top_via_is_decoded_on_demand() {
    let m = msg(&BASE.replace(
        "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1",
        "Via: SIP/2.0 a.example",
    ));
    let v = MessageView::parse(&m).unwrap();
    assert_eq!(
        v.top_via(),
        Err(WireError::MalformedHeader(HeaderName::Via))
    );
    assert_eq!(v.via_branch(), None);
    let m = msg(&BASE.replace("Via: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\n", ""));
    assert_eq!(MessageView::parse(&m).unwrap().top_via(), Ok(None));
}

#[test]
fn responses() {
    let m = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\ni: c\r\n\
f: <sip:a@a>;tag=1\r\nt: <sip:b@b>;tag=2\r\nCSeq: 7 INVITE\r\n\r\n";
    let v = MessageView::parse(m).unwrap();
    assert_eq!(v.status_code(), Some(180));
    assert_eq!(v.method(), None);
    assert_eq!(v.cseq().method, b"INVITE");
}

#[test]
fn keepalives_before_the_start_line_are_skipped() {
    let mut m = b"\r\n\r\n".to_vec();
    m.extend_from_slice(&msg(BASE));
    let v = MessageView::parse(&m).unwrap();
    assert!(v.as_bytes().starts_with(b"INVITE "));
    assert_eq!(v.call_id(), b"c1");
}

#[test]
fn rfc3261_strictness_where_other_parsers_could_disagree() {
    let bad = [
        // A bare CR is not white space.
        BASE.replace("CSeq: 1 INVITE", "CSeq: 1\rINVITE"),
        BASE.replace("To: <sip:b@b.example>", "To: <sip:b@b.example>\r;tag=x"),
        format!("{BASE}l: 0\r\r\n"),
        // tag-param is a token.
        BASE.replace(";tag=f1", ";tag=\"f1\""),
        BASE.replace(";tag=f1", ";tag=[::1]"),
        // A URI with `,` or `?` must be in `<>`.
        BASE.replace("To: <sip:b@b.example>", "To: sip:b@b.example?x=1;tag=2"),
        BASE.replace(
            "To: <sip:b@b.example>",
            "To: sip:b@b.example, sip:c@c.example",
        ),
        // Call-ID = word ["@" word].
        BASE.replace("Call-ID: c1", "Call-ID: c1@a@b"),
        BASE.replace("Call-ID: c1", "Call-ID: c;1"),
        BASE.replace("Call-ID: c1", "Call-ID: @b"),
    ];
    for headers in &bad {
        let m = msg(headers);
        assert_eq!(
            MessageView::parse(&m).unwrap_err().status().0,
            400,
            "{headers:?}"
        );
    }
    let folded = BASE.replace("CSeq: 1 INVITE", "CSeq: 1\r\n INVITE");
    assert_eq!(MessageView::parse(&msg(&folded)).unwrap().cseq().number, 1);
    let m = b" INVITE sip:a@b SIP/2.0\r\n\r\n";
    assert_eq!(
        MessageView::parse(m).unwrap_err(),
        WireError::MalformedStartLine
    );
    let m = b"SIP/2.0 200\r\n\r\n";
    assert_eq!(
        MessageView::parse(m).unwrap_err(),
        WireError::MalformedStartLine
    );
    for via in [
        "SIP/2.0/UDP[::1]",
        "SIP/2.0/UDP a_b",
        "SIP/2.0/UDP [zz]",
        "SIP/2.0/UDP a;branch=1;branch=2",
        "SIP/2.0/UDP a;branch=\"x\"",
        "SIP/2.0/UDP a;branch=z9]K",
    ] {
        let m = msg(&BASE.replace("SIP/2.0/UDP a.example;branch=z9hG4bK1", via));
        let v = MessageView::parse(&m).unwrap();
        assert_eq!(
            v.top_via(),
            Err(WireError::MalformedHeader(HeaderName::Via)),
            "{via}"
        );
    }
}

#[test]
fn limits_and_garbage() {
    assert_eq!(MessageView::parse(b"").unwrap_err(), WireError::Empty);
    assert_eq!(
        MessageView::parse(b"\r\n\r\n").unwrap_err(),
        WireError::Empty
    );
    let m = msg(BASE);
    let tight = ScanLimits {
        max_message: m.len() - 1,
        ..ScanLimits::DEFAULT
    };
    assert!(matches!(
        MessageView::parse_with(&m, &tight),
        Err(WireError::MessageTooLarge { .. })
    ));
    let few = ScanLimits {
        max_headers: 3,
        ..ScanLimits::DEFAULT
    };
    assert_eq!(
        MessageView::parse_with(&m, &few).unwrap_err(),
        WireError::TooManyHeaders { max: 3 }
    );
    assert_eq!(WireError::TooManyHeaders { max: 3 }.status().0, 513);
    // Every prefix of a valid message either parses or fails cleanly.
    for i in 0..m.len() {
        let _ = MessageView::parse(&m[..i]);
    }
}

#[test]
fn route_tallies_count_lines_bytes_and_commas_in_the_one_scan() {
    let msg = b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Record-Route: <sip:p1;lr>, <sip:p2;lr>\r\nCall-ID: c\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nRecord-Route: <sip:p3;lr>\r\nRoute: <sip:r1;lr>\r\nCSeq: 1 INVITE\r\n\r\n";
    let view = MessageView::parse(msg).unwrap();
    let rr = view.route_tally(HeaderName::RecordRoute);
    assert_eq!((rr.lines, rr.commas), (2, 1));
    assert_eq!(
        rr.bytes as usize,
        " <sip:p1;lr>, <sip:p2;lr>".len() + " <sip:p3;lr>".len()
    );
    assert_eq!(view.route_tally(HeaderName::Route).lines, 1);
    assert_eq!(view.route_tally(HeaderName::Via), Default::default());
}

#[test]
fn route_values_read_without_a_walk_equal_the_walk() {
    let walked = |view: &MessageView<'_>, name: HeaderName| -> Vec<Vec<u8>> {
        view.headers()
            .filter(|h| h.kind == name)
            .flat_map(|h| ValueList::new(h.value))
            .map(<[u8]>::to_vec)
            .collect()
    };
    let base = "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nCall-ID: c\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 INVITE\r\n";
    for routes in [
        "",
        "Record-Route: <sip:p1;lr>\r\n",
        "Record-Route: <sip:p1;lr>, \"a,b\" <sip:p2;lr>\r\nRoute: <sip:r1>\r\n",
        "Record-Route: <sip:p1;lr>\r\n\t, <sip:p2;lr>\r\nRoute: <sip:r1>\r\nRoute: <sip:r2>\r\n",
        "Record-Route: <sip:p1;lr>\r\nRoute: <sip:r1>\r\nRecord-Route: <sip:p3;lr>\r\n",
    ] {
        let msg = format!("{base}{routes}\r\n");
        let view = MessageView::parse(msg.as_bytes()).unwrap();
        for name in [HeaderName::RecordRoute, HeaderName::Route] {
            let values: Vec<Vec<u8>> = view.values(name).map(<[u8]>::to_vec).collect();
            assert_eq!(values, walked(&view, name), "{routes:?} {name:?}");
        }
    }
    let one = MessageView::parse(
        format!("{base}Record-Route: <sip:p1;lr>,<sip:p2;lr>\r\n\r\n").as_bytes(),
    )
    .unwrap()
    .values(HeaderName::RecordRoute)
    .count();
    assert_eq!(one, 2);
}

proptest::proptest! {
    /// The one-walk split of a sent-by answers as the two walks each (the last `]`, then the
    /// last `:` after it) did.
    #[test]
    fn sent_by_splits_as_the_separate_walks_did(
        sent_by in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just(b'['), proptest::strategy::Just(b']'),
                proptest::strategy::Just(b':'), proptest::strategy::Just(b'1'),
                proptest::strategy::Just(b'a'), proptest::strategy::Just(b' ')],
            0..10),
    ) {
        let via = Via { sent_by: &sent_by, branch: None, received: None, rport: None };
        let close = sent_by.iter().rposition(|&b| b == b']');
        let host = match close {
            Some(close) => &sent_by[..close],
            None => match sent_by.iter().rposition(|&b| b == b':') {
                Some(colon) => &sent_by[..colon],
                None => &sent_by[..],
            },
        };
        let host = value::trim_lws(host.strip_prefix(b"[").unwrap_or(host));
        let after_host = close.map_or(&sent_by[..], |c| &sent_by[c + 1..]);
        let port = after_host
            .iter()
            .rposition(|&b| b == b':')
            .and_then(|colon| value::decimal(&after_host[colon + 1..]))
            .and_then(|p| u16::try_from(p).ok());
        proptest::prop_assert_eq!(via.host(), host);
        proptest::prop_assert_eq!(via.port(), port);
    }
}
