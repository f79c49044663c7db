//! Responses: copied headers, tags, Record-Route, reason phrases.

use rsip::prelude::HeadersExt;

use super::super::*;
use super::{rsip_parse, rsip_values, values, view, BYE, INVITE, INVITE_RR};
use crate::wire::HeaderName;

#[test]
fn error_responses_copy_tags_exactly() {
    let req = view(BYE);
    for (status, reason) in [
        (481, "Call/Transaction Does Not Exist"),
        (491, "Request Pending"),
        (500, "Server Internal Error"),
    ] {
        let mut out = Vec::new();
        // A To that has a tag keeps it: the given tag is ignored.
        response(
            &req,
            status,
            "",
            Some(b"other"),
            &ResponseParts::default(),
            &mut out,
        )
        .unwrap();
        let v = view(&out);
        assert_eq!(v.status_code(), Some(status));
        assert_eq!(
            v.start_line(),
            crate::wire::StartLine::Response {
                code: status,
                reason: reason.as_bytes()
            }
        );
        assert_eq!(v.from_tag(), Some(&b"1928301774"[..]));
        assert_eq!(v.to_tag(), Some(&b"a6c85cf"[..]));
        assert_eq!(v.call_id(), b"a84b4c76e66710");
        assert_eq!(v.cseq().number, 231);
        assert_eq!(v.cseq().method, b"BYE");
        assert_eq!(v.content_length(), Some(0));
        let msg = rsip_parse(&out);
        let rsip::SipMessage::Response(resp) = &msg else {
            panic!("rsip read a request")
        };
        assert_eq!(resp.status_code.code(), status);
        let to_tag = msg.to_header().unwrap().tag().unwrap().unwrap();
        assert_eq!(to_tag.to_string(), "a6c85cf");
        let from_tag = msg.from_header().unwrap().tag().unwrap().unwrap();
        assert_eq!(from_tag.to_string(), "1928301774");
    }
}

#[test]
fn response_copies_three_vias_in_order() {
    let mut out = Vec::new();
    response(
        &view(BYE),
        200,
        "OK",
        None,
        &ResponseParts::default(),
        &mut out,
    )
    .unwrap();
    let want = [
        &b"SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1"[..],
        b"SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2",
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKua",
    ];
    let v = view(&out);
    assert_eq!(values(&v, HeaderName::Via), want);
    assert_eq!(v.via_branch(), Some(&b"z9hG4bKp1"[..]));
    let rsip_vias = rsip_values(&rsip_parse(&out), "Via");
    let want: Vec<String> = want
        .iter()
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect();
    assert_eq!(rsip_vias, want);
}

#[test]
fn dialog_creating_responses_add_tag_and_record_route() {
    let req = view(INVITE_RR);
    let rr = [
        &b"<sip:p1.example.com;lr>"[..],
        b"<sip:p2.example.com;lr>",
        b"<sip:p3.example.com;lr>",
    ];
    for status in [180, 200] {
        let p = ResponseParts {
            contact: Some(b"<sip:bob@192.0.2.4:5060>"),
            content_type: Some(b"application/sdp"),
            body: if status == 200 { b"v=0\r\n" } else { b"" },
            extra_headers: &[("Allow", b"INVITE, ACK, BYE")],
        };
        let mut out = Vec::new();
        response(&req, status, "", Some(b"bobtag"), &p, &mut out).unwrap();
        let v = view(&out);
        assert_eq!(v.status_code(), Some(status));
        assert_eq!(v.to_tag(), Some(&b"bobtag"[..]));
        assert_eq!(v.from_tag(), Some(&b"1928301774"[..]));
        assert_eq!(values(&v, HeaderName::RecordRoute), rr);
        assert_eq!(v.contact(), Some(&b"<sip:bob@192.0.2.4:5060>"[..]));
        assert_eq!(v.body(), p.body);
        // Only a 100 echoes Timestamp.
        assert!(v.headers().all(|h| h.name != b"Timestamp"));
        let msg = rsip_parse(&out);
        let to_tag = msg.to_header().unwrap().tag().unwrap().unwrap();
        assert_eq!(to_tag.to_string(), "bobtag");
        assert_eq!(
            rsip_values(&msg, "Record-Route"),
            [
                "<sip:p1.example.com;lr>",
                "<sip:p2.example.com;lr>",
                "<sip:p3.example.com;lr>"
            ]
        );
        assert_eq!(msg.body(), p.body);
    }
    // A failure creates no dialog: no Record-Route, but the tag still goes on.
    let mut out = Vec::new();
    response(
        &req,
        486,
        "",
        Some(b"bobtag"),
        &ResponseParts::default(),
        &mut out,
    )
    .unwrap();
    let v = view(&out);
    assert_eq!(v.record_route(), None);
    assert_eq!(v.to_tag(), Some(&b"bobtag"[..]));
    assert!(out.starts_with(b"SIP/2.0 486 Busy Here\r\n"));
    rsip_parse(&out);
    // A 100 copies Timestamp and, without a tag given, the To as it was.
    let mut out = Vec::new();
    response(&req, 100, "", None, &ResponseParts::default(), &mut out).unwrap();
    let v = view(&out);
    assert_eq!(v.to_tag(), None);
    assert_eq!(v.record_route(), None);
    let ts: Vec<_> = v.headers().filter(|h| h.name == b"Timestamp").collect();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].value, b" 54");
    rsip_parse(&out);
}

#[test]
fn folded_values_are_unfolded() {
    let invite = view(INVITE);
    let mut out = Vec::new();
    response(&invite, 100, "", None, &ResponseParts::default(), &mut out).unwrap();
    // Every line ends in CRLF and none continues the one before.
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(out.get(i.wrapping_sub(1)), Some(&b'\r'));
            assert!(!matches!(out.get(i + 1), Some(b' ' | b'\t')));
        }
    }
    let v = view(&out);
    let to = v.headers().find(|h| h.kind == HeaderName::To).unwrap();
    assert_eq!(to.value, b" Bob <sip:bob@biloxi.example.com>");
    rsip_parse(&out);
}

#[test]
fn reason_phrases() {
    assert_eq!(reason_phrase(100), "Trying");
    assert_eq!(reason_phrase(180), "Ringing");
    assert_eq!(reason_phrase(183), "Session Progress");
    assert_eq!(reason_phrase(200), "OK");
    assert_eq!(reason_phrase(202), "Accepted");
    assert_eq!(reason_phrase(481), "Call/Transaction Does Not Exist");
    assert_eq!(reason_phrase(487), "Request Terminated");
    assert_eq!(reason_phrase(489), "Bad Event");
    assert_eq!(reason_phrase(491), "Request Pending");
    assert_eq!(reason_phrase(503), "Service Unavailable");
    assert_eq!(reason_phrase(603), "Decline");
    assert_eq!(reason_phrase(299), "Successful");
    assert_eq!(reason_phrase(699), "Global Failure");
    assert_eq!(reason_phrase(700), "");
}

#[test]
fn nul_in_a_copied_header_is_refused() {
    let req = b"OPTIONS sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP 192.0.2.1;x=a\0b\r\n\
From: <sip:alice@atlanta.example.com>;tag=1\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 1 OPTIONS\r\n\r\n";
    let mut out = b"before".to_vec();
    let e = response(
        &view(req),
        200,
        "OK",
        Some(b"t"),
        &ResponseParts::default(),
        &mut out,
    );
    assert_eq!(e, Err(BuildError::InvalidValue { header: "Via" }));
    assert_eq!(out, b"before");
}

#[test]
fn the_walk_for_copied_headers_stops_only_when_everything_is_found() {
    // Vias and Record-Routes scattered, one of each after From and To, Timestamp last: the
    // walk may stop early, but never before the last of what the response copies.
    let invite = b"INVITE sip:b@h SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\n\
Via: SIP/2.0/UDP p1;branch=z9hG4bK1\r\nTo: <sip:b@h>\r\nRecord-Route: <sip:p1;lr>\r\n\
Call-ID: c1\r\nv: SIP/2.0/UDP p2;branch=z9hG4bK2, SIP/2.0/UDP a;branch=z9hG4bK3\r\n\
CSeq: 1 INVITE\r\nRecord-Route: <sip:p2;lr>\r\nContact: <sip:a@h>\r\nTimestamp: 54\r\n\
Content-Length: 0\r\n\r\n";
    let req = view(invite);
    let contact: &[u8] = b"<sip:b@h>";
    let parts = ResponseParts {
        contact: Some(contact),
        ..ResponseParts::default()
    };
    for (status, tag, rr, timestamp) in [
        (180, Some(&b"t1"[..]), 2, false),
        (100, None, 0, true),
        (486, Some(b"t1"), 0, false),
    ] {
        let mut out = Vec::new();
        response(&req, status, "", tag, &parts, &mut out).unwrap();
        let v = view(&out);
        assert_eq!(
            values(&v, HeaderName::Via),
            values(&req, HeaderName::Via),
            "{status}"
        );
        assert_eq!(values(&v, HeaderName::RecordRoute).len(), rr, "{status}");
        assert_eq!(
            v.headers().any(|h| h.name == b"Timestamp"),
            timestamp,
            "{status}"
        );
        assert_eq!(v.from_tag(), Some(&b"1"[..]));
        assert_eq!(v.to_tag(), tag);
    }
}

#[test]
fn a_response_to_a_one_via_request_copies_what_the_scan_kept() {
    // One Via, one Record-Route line with two entries, From and To folded: read from what the
    // scan kept, the copies must be what the header lines say, with or without a Timestamp
    // (which makes the builder walk).
    for timestamp in ["", "Timestamp: 54\r\n"] {
        let invite = format!(
            "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a:5060;branch=z9hG4bK1;rport\r\n\
From:  \"A\"\r\n <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n\
Record-Route: <sip:p1;lr>,\r\n <sip:p2;lr>\r\n{timestamp}Content-Length: 0\r\n\r\n"
        );
        let req = view(invite.as_bytes());
        let mut out = Vec::new();
        let parts = ResponseParts {
            contact: Some(&b"<sip:b@h>"[..]),
            ..ResponseParts::default()
        };
        response(&req, 180, "", Some(b"t1"), &parts, &mut out).unwrap();
        let v = view(&out);
        for name in [HeaderName::Via, HeaderName::RecordRoute] {
            assert_eq!(
                values(&v, name),
                values(&req, name),
                "{name:?} {timestamp:?}"
            );
        }
        let line = |m: &crate::wire::MessageView<'_>, kind| {
            m.headers()
                .find(|h| h.kind == kind)
                .map(|h| h.value.to_vec())
                .unwrap()
        };
        assert_eq!(line(&v, HeaderName::From), b" \"A\" <sip:a@h>;tag=1");
        assert_eq!(line(&v, HeaderName::To), b" <sip:b@h>;tag=t1");
    }
}
