use rsip::prelude::HeadersExt;

use super::*;
use crate::wire::{HeaderName, MessageView, Method};

mod responses;

const VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx1";

fn routes(entries: &[&[u8]]) -> Vec<Box<[u8]>> {
    entries
        .iter()
        .map(|e| e.to_vec().into_boxed_slice())
        .collect()
}

fn dialog(route_set: &[Box<[u8]>]) -> DialogParts<'_> {
    DialogParts {
        call_id: b"a84b4c76e66710@pc33.atlanta.example.com",
        local_uri: b"\"Alice\" <sip:alice@atlanta.example.com>",
        local_tag: b"1928301774",
        remote_uri: b"<sip:bob@biloxi.example.com>",
        remote_tag: b"a6c85cf",
        remote_target: b"sip:bob@192.0.2.4:5060",
        route_set: route_set.into(),
    }
}

fn parts(method: Method, cseq: u32) -> RequestParts<'static> {
    RequestParts {
        method,
        cseq,
        via: VIA,
        max_forwards: 70,
        contact: None,
        content_type: None,
        body: b"",
        extra_headers: &[],
    }
}

/// Parses `out` with rsip, the independent check; panics with the message if it fails.
fn rsip_parse(out: &[u8]) -> rsip::SipMessage {
    rsip::SipMessage::try_from(out)
        .unwrap_or_else(|e| panic!("rsip: {e:?}\n{}", String::from_utf8_lossy(out)))
}

/// The values of every header `name` as rsip reads them, in order.
fn rsip_values(msg: &rsip::SipMessage, name: &str) -> Vec<String> {
    use rsip::prelude::HasHeaders;
    msg.headers()
        .iter()
        .filter_map(|h| {
            let line = h.to_string();
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
        .collect()
}

fn view(out: &[u8]) -> MessageView<'_> {
    MessageView::parse(out)
        .unwrap_or_else(|e| panic!("wire: {e:?}\n{}", String::from_utf8_lossy(out)))
}

fn values<'a>(v: &MessageView<'a>, name: HeaderName) -> Vec<&'a [u8]> {
    v.values(name).collect()
}

/// Checks the dialog identity of a request built from [`dialog`], with both parsers.
fn assert_identity(out: &[u8], method: Method, cseq: u32) {
    let v = view(out);
    assert_eq!(v.method(), Some(method));
    assert_eq!(v.call_id(), b"a84b4c76e66710@pc33.atlanta.example.com");
    assert_eq!(v.from_tag(), Some(&b"1928301774"[..]));
    assert_eq!(v.to_tag(), Some(&b"a6c85cf"[..]));
    assert_eq!(v.cseq().number, cseq);
    assert_eq!(v.cseq().method, method.as_str().unwrap().as_bytes());
    assert_eq!(v.via_branch(), Some(&b"z9hG4bKx1"[..]));
    assert_eq!(v.max_forwards(), Some(70));
    assert_eq!(v.content_length(), Some(v.body().len() as u32));
    let msg = rsip_parse(out);
    let rsip::SipMessage::Request(req) = &msg else {
        panic!("rsip read a response")
    };
    assert_eq!(req.method.to_string(), method.as_str().unwrap());
    assert_eq!(
        msg.call_id_header().unwrap().to_string(),
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com"
    );
    let from_tag = msg.from_header().unwrap().tag().unwrap().unwrap();
    assert_eq!(from_tag.to_string(), "1928301774");
    let to_tag = msg.to_header().unwrap().tag().unwrap().unwrap();
    assert_eq!(to_tag.to_string(), "a6c85cf");
    assert_eq!(
        rsip_values(&msg, "CSeq"),
        [format!("{cseq} {}", method.as_str().unwrap())]
    );
}

fn request_uri(out: &[u8]) -> (Vec<u8>, String) {
    let wire = view(out).request_uri().unwrap().to_vec();
    let rsip::SipMessage::Request(req) = rsip_parse(out) else {
        panic!("rsip read a response")
    };
    (wire, req.uri.to_string())
}

#[test]
fn empty_route_set_targets_remote_target() {
    let mut out = Vec::new();
    let p = RequestParts {
        contact: Some(b"<sip:alice@192.0.2.1:5060>"),
        content_type: Some(b"application/sdp"),
        body: b"v=0\r\n",
        extra_headers: &[("Supported", b"timer"), ("X-Call", b"1")],
        ..parts(Method::Invite, 7)
    };
    request(&dialog(&[]), &p, &mut out).unwrap();
    assert_identity(&out, Method::Invite, 7);
    let text = std::str::from_utf8(&out).unwrap();
    assert_eq!(
        text,
        "INVITE sip:bob@192.0.2.4:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx1\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
         Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
         CSeq: 7 INVITE\r\n\
         Contact: <sip:alice@192.0.2.1:5060>\r\n\
         Supported: timer\r\n\
         X-Call: 1\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 5\r\n\r\nv=0\r\n"
    );
    assert_eq!(view(&out).body(), b"v=0\r\n");
    assert_eq!(rsip_parse(&out).body(), b"v=0\r\n");
    assert_eq!(request_uri(&out).1, "sip:bob@192.0.2.4:5060");
}

#[test]
fn loose_routing_keeps_target_and_all_routes() {
    let rs = routes(&[
        b"<sip:p1.example.com;LR>",
        b"\"p2\" <sip:p2.example.com;lr>",
    ]);
    let mut out = b"previous".to_vec();
    request(&dialog(&rs), &parts(Method::Bye, 2), &mut out).unwrap();
    let out = out.strip_prefix(b"previous").unwrap();
    assert_identity(out, Method::Bye, 2);
    let (wire_uri, rsip_uri) = request_uri(out);
    assert_eq!(wire_uri, b"sip:bob@192.0.2.4:5060");
    assert_eq!(rsip_uri, "sip:bob@192.0.2.4:5060");
    assert_eq!(
        values(&view(out), HeaderName::Route),
        [
            &b"<sip:p1.example.com;LR>"[..],
            b"\"p2\" <sip:p2.example.com;lr>"
        ]
    );
    let rsip_routes = rsip_values(&rsip_parse(out), "Route");
    assert_eq!(rsip_routes.len(), 2);
    assert!(rsip_routes[0].contains("sip:p1.example.com;LR"));
    assert!(rsip_routes[1].contains("sip:p2.example.com;lr"));
}

#[test]
fn strict_routing_moves_target_to_last_route() {
    let rs = routes(&[
        b"<sip:p1.example.com;transport=udp;method=INVITE?subject=x>",
        b"<sip:p2.example.com;lr>",
    ]);
    let mut out = Vec::new();
    request(&dialog(&rs), &parts(Method::Info, 3), &mut out).unwrap();
    assert_identity(&out, Method::Info, 3);
    let (wire_uri, rsip_uri) = request_uri(&out);
    assert_eq!(wire_uri, b"sip:p1.example.com;transport=udp");
    // rsip writes the transport value upper case.
    assert!(rsip_uri.eq_ignore_ascii_case("sip:p1.example.com;transport=udp"));
    assert_eq!(
        values(&view(&out), HeaderName::Route),
        [&b"<sip:p2.example.com;lr>"[..], b"<sip:bob@192.0.2.4:5060>"]
    );
    let rsip_routes = rsip_values(&rsip_parse(&out), "Route");
    assert_eq!(
        rsip_routes,
        ["<sip:p2.example.com;lr>", "<sip:bob@192.0.2.4:5060>"]
    );
}

#[test]
fn lr_is_a_uri_parameter_not_a_user_or_header() {
    // A user named `lr;x` and a `?lr` header do not make a loose router.
    for first in [
        &b"<sip:lr;x@p1.example.com>"[..],
        b"<sip:p1.example.com?lr=1>",
    ] {
        let rs = routes(&[first]);
        let mut out = Vec::new();
        request(&dialog(&rs), &parts(Method::Options, 4), &mut out).unwrap();
        assert_identity(&out, Method::Options, 4);
        let uri = view(&out).request_uri().unwrap().to_vec();
        assert!(uri.starts_with(b"sip:"), "{uri:?}");
        assert_ne!(uri, b"sip:bob@192.0.2.4:5060");
        assert_eq!(
            values(&view(&out), HeaderName::Route),
            [&b"<sip:bob@192.0.2.4:5060>"[..]]
        );
    }
    let rs = routes(&[b"<sip:p1.example.com;transport=tcp;lr=on>"]);
    let mut out = Vec::new();
    request(&dialog(&rs), &parts(Method::Options, 4), &mut out).unwrap();
    assert_eq!(
        view(&out).request_uri(),
        Some(&b"sip:bob@192.0.2.4:5060"[..])
    );
}

#[test]
fn ack_for_2xx_uses_invite_cseq() {
    let rs = routes(&[b"<sip:p1.example.com;lr>"]);
    let mut out = Vec::new();
    ack_for_2xx(&dialog(&rs), 314_159, VIA, &mut out).unwrap();
    assert_identity(&out, Method::Ack, 314_159);
    let v = view(&out);
    assert_eq!(v.cseq().method, b"ACK");
    assert_eq!(v.body(), b"");
    assert_eq!(v.content_length(), Some(0));
    assert_eq!(v.route(), Some(&b"<sip:p1.example.com;lr>"[..]));
    assert_eq!(v.request_uri(), Some(&b"sip:bob@192.0.2.4:5060"[..]));
}

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKtop\r\n\
Via: SIP/2.0/TCP p0.example.com;branch=z9hG4bKsecond\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example.com;lr>\r\n\
To: Bob\r\n <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

#[test]
fn cancel_copies_top_via_routes_and_untagged_to() {
    let invite = view(INVITE);
    let mut out = Vec::new();
    cancel(&invite, &mut out).unwrap();
    let text = std::str::from_utf8(&out).unwrap();
    assert_eq!(
        text,
        "CANCEL sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKtop\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:p1.example.com;lr>\r\n\
         Route: <sip:p2.example.com;lr>\r\n\
         Route: <sip:p3.example.com;lr>\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         Call-ID: a84b4c76e66710\r\n\
         CSeq: 314159 CANCEL\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let v = view(&out);
    assert_eq!(v.method(), Some(Method::Cancel));
    assert_eq!(v.request_uri(), invite.request_uri());
    assert_eq!(v.via_branch(), Some(&b"z9hG4bKtop"[..]));
    assert_eq!(values(&v, HeaderName::Via).len(), 1);
    assert_eq!(v.to_tag(), None);
    assert_eq!(v.from_tag(), invite.from_tag());
    assert_eq!(v.cseq().number, 314_159);
    assert_eq!(v.body(), b"");
    let msg = rsip_parse(&out);
    assert_eq!(rsip_values(&msg, "Via").len(), 1);
    assert_eq!(msg.to_header().unwrap().tag().unwrap(), None);
    assert_eq!(rsip_values(&msg, "CSeq"), ["314159 CANCEL"]);
    assert_eq!(rsip_values(&msg, "Route").len(), 3);
}

#[test]
fn cancel_refuses_what_is_not_an_invite() {
    let bye = b"BYE sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Call-ID: x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCSeq: 2 BYE\r\n\r\n";
    let mut out = b"keep".to_vec();
    assert_eq!(
        cancel(&view(bye), &mut out),
        Err(BuildError::CancelNotInvite)
    );
    let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Call-ID: x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCSeq: 1 INVITE\r\n\r\n";
    assert_eq!(
        cancel(&view(ok), &mut out),
        Err(BuildError::CancelNotInvite)
    );
    let no_via = b"INVITE sip:b@c SIP/2.0\r\n\
Call-ID: x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 INVITE\r\n\r\n";
    assert_eq!(
        cancel(&view(no_via), &mut out),
        Err(BuildError::MissingHeader { header: "Via" })
    );
    assert_eq!(out, b"keep");
}

const BYE: &[u8] = b"BYE sip:bob@192.0.2.4 SIP/2.0\r\n\
v: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2 , SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKua\r\n\
f: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
t: <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
i: a84b4c76e66710\r\n\
CSeq: 231 BYE\r\n\
Max-Forwards: 68\r\n\
Content-Length: 0\r\n\r\n";

const INVITE_RR: &[u8] = b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKua\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Max-Forwards: 69\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
From: <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
Record-Route: <sip:p3.example.com;lr>\r\n\
Timestamp: 54\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.1:5060>\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn injection_is_refused_and_out_is_untouched() {
    let rs = routes(&[]);
    let d = dialog(&rs);
    let bad: &[&[u8]] = &[b"x\r\nBYE: 1", b"x\ny", b"x\ry", b"x\0y"];
    let mut out = b"earlier message".to_vec();
    for value in bad {
        let p = RequestParts {
            via: value,
            ..parts(Method::Bye, 2)
        };
        let e = request(&d, &p, &mut out);
        assert_eq!(e, Err(BuildError::InvalidValue { header: "Via" }));
        let p = RequestParts {
            contact: Some(value),
            ..parts(Method::Bye, 2)
        };
        let e = request(&d, &p, &mut out);
        assert_eq!(e, Err(BuildError::InvalidValue { header: "Contact" }));
        let extra: &[(&str, &[u8])] = &[("Subject", b"ok"), ("X-Evil", value)];
        let p = RequestParts {
            extra_headers: extra,
            ..parts(Method::Bye, 2)
        };
        let e = request(&d, &p, &mut out);
        assert_eq!(e, Err(BuildError::InvalidExtraHeader { index: 1 }));
        let bad_dialog = DialogParts {
            call_id: value,
            ..d
        };
        let e = request(&bad_dialog, &parts(Method::Bye, 2), &mut out);
        assert_eq!(e, Err(BuildError::InvalidValue { header: "Call-ID" }));
        let rp = ResponseParts {
            contact: Some(value),
            ..ResponseParts::default()
        };
        let e = response(&view(BYE), 200, "OK", None, &rp, &mut out);
        assert_eq!(e, Err(BuildError::InvalidValue { header: "Contact" }));
    }
    for reason in ["OK\r\nX: 1", "O\nK", "O\rK", "O\0K"] {
        let e = response(
            &view(BYE),
            200,
            reason,
            None,
            &ResponseParts::default(),
            &mut out,
        );
        assert_eq!(
            e,
            Err(BuildError::InvalidValue {
                header: "Reason-Phrase"
            })
        );
    }
    // Header names: not a token, or one the builder owns.
    for name in [
        "X Evil",
        "X-Evil:",
        "",
        "Content-Length",
        "l",
        "call-id",
        "Route",
    ] {
        let extra: &[(&str, &[u8])] = &[(name, b"1")];
        let p = RequestParts {
            extra_headers: extra,
            ..parts(Method::Bye, 2)
        };
        let e = request(&d, &p, &mut out);
        assert_eq!(
            e,
            Err(BuildError::InvalidExtraHeader { index: 0 }),
            "{name}"
        );
    }
    let bad_tag = DialogParts {
        remote_tag: b"a;b",
        ..d
    };
    let e = request(&bad_tag, &parts(Method::Bye, 2), &mut out);
    assert_eq!(e, Err(BuildError::InvalidValue { header: "To" }));
    let e = response(
        &view(INVITE_RR),
        180,
        "",
        Some(b"x\r\n"),
        &ResponseParts::default(),
        &mut out,
    );
    assert_eq!(e, Err(BuildError::InvalidValue { header: "To" }));
    let bad_target = DialogParts {
        remote_target: b"sip:bob@host SIP/2.0\r\n",
        ..d
    };
    let e = request(&bad_target, &parts(Method::Bye, 2), &mut out);
    assert_eq!(
        e,
        Err(BuildError::InvalidValue {
            header: "Request-URI"
        })
    );
    let bad_route = routes(&[b"sip:p1.example.com;lr"]);
    let e = request(&dialog(&bad_route), &parts(Method::Bye, 2), &mut out);
    assert_eq!(e, Err(BuildError::InvalidValue { header: "Route" }));
    assert_eq!(out, b"earlier message");
}

#[test]
fn refused_requests_and_responses() {
    let rs = routes(&[]);
    let d = dialog(&rs);
    let mut out = b"x".to_vec();
    for m in [Method::Extension, Method::Cancel] {
        assert_eq!(
            request(&d, &parts(m, 1), &mut out),
            Err(BuildError::UnsupportedMethod(m))
        );
    }
    let untagged = DialogParts {
        remote_tag: b"",
        ..d
    };
    for m in [
        Method::Bye,
        Method::Ack,
        Method::Update,
        Method::Info,
        Method::Options,
        Method::Refer,
        Method::Notify,
        Method::Prack,
    ] {
        assert_eq!(
            request(&untagged, &parts(m, 1), &mut out),
            Err(BuildError::MissingRemoteTag),
            "{m:?}"
        );
    }
    let body = RequestParts {
        body: b"hello",
        ..parts(Method::Message, 1)
    };
    assert_eq!(
        request(&d, &body, &mut out),
        Err(BuildError::BodyWithoutContentType)
    );
    for m in [Method::Invite, Method::Update] {
        assert_eq!(
            request(&d, &parts(m, 1), &mut out),
            Err(BuildError::MissingContact)
        );
    }
    let none = ResponseParts::default();
    for status in [0, 99, 700, 1000] {
        assert_eq!(
            response(&view(BYE), status, "X", None, &none, &mut out),
            Err(BuildError::InvalidStatus(status))
        );
    }
    let ack = b"ACK sip:bob@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Call-ID: x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCSeq: 1 ACK\r\n\r\n";
    assert_eq!(
        response(&view(ack), 200, "OK", None, &none, &mut out),
        Err(BuildError::ResponseToAck)
    );
    let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Call-ID: x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCSeq: 1 BYE\r\n\r\n";
    assert_eq!(
        response(&view(ok), 200, "OK", None, &none, &mut out),
        Err(BuildError::NotARequest)
    );
    assert_eq!(
        response(&view(INVITE_RR), 200, "OK", Some(b"t"), &none, &mut out),
        Err(BuildError::MissingContact)
    );
    assert_eq!(out, b"x");
    assert_eq!(
        BuildError::MissingContact.status(),
        (500, "Server Internal Error")
    );
}

#[test]
fn out_of_dialog_message_has_untagged_to() {
    let rs = routes(&[]);
    let d = DialogParts {
        remote_tag: b"",
        ..dialog(&rs)
    };
    let p = RequestParts {
        content_type: Some(b"text/plain"),
        body: b"hello",
        ..parts(Method::Message, 1)
    };
    let mut out = Vec::new();
    request(&d, &p, &mut out).unwrap();
    let v = view(&out);
    assert_eq!(v.to_tag(), None);
    assert_eq!(v.body(), b"hello");
    let msg = rsip_parse(&out);
    assert_eq!(msg.to_header().unwrap().tag().unwrap(), None);
}

/// A received request's view, stamped or not, carries the Via a fresh scan and decode of
/// the bytes it views would give: the stamped fields come from where they were written.
#[test]
fn received_views_carry_the_via_a_fresh_decode_gives() {
    let vias: [&[u8]; 8] = [
        b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa",
        b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf",
        b"SIP/2.0/UDP 192.0.2.1:5077;rport;branch=z9hG4bKg",
        b"SIP/2.0/UDP 10.0.0.7;rport;branch=z9hG4bKb;ttl=4",
        b"SIP/2.0/UDP 10.0.0.7:5070;Received=1.2.3.4;BRANCH=z9hG4bKc;rport=99",
        b"SIP/2.0/UDP [2001:db8::1]:5060 ; branch = z9hG4bKd , SIP/2.0/UDP p:5060;branch=z9hG4bKp",
        b"SIP / 2.0 / UDP host.example.com;branch=z9hG4bKe;rport",
        b"SIP/2.0/UDP 192.0.2.1:5060",
    ];
    let sources: [std::net::SocketAddr; 3] = [
        "192.0.2.1:5060".parse().unwrap(),
        "203.0.113.9:40000".parse().unwrap(),
        "[2001:db8::9]:5062".parse().unwrap(),
    ];
    let mut compared = 0;
    for via in vias {
        let mut bytes = b"OPTIONS sip:b@192.0.2.4 SIP/2.0\r\nv: ".to_vec();
        bytes.extend_from_slice(via);
        bytes.extend_from_slice(
            b"\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: r1\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n",
        );
        for source in sources {
            let mut received = MessageView::parse(&bytes).unwrap();
            let mut out = Vec::new();
            as_received(&mut received, source, &mut out);
            let viewed = received.as_bytes().to_vec();
            let mut fresh = MessageView::parse(&viewed).unwrap().with_decoded_via();
            // Answers go where the stamped Via says, read without reading it again.
            let reply = received.reply_to(source);
            let top = fresh.top_via().unwrap().unwrap();
            if top.response_destination().is_some() || reply.is_some() {
                assert_eq!(
                    reply,
                    top.response_destination(),
                    "{}",
                    String::from_utf8_lossy(via)
                );
                fresh.set_reply_port(reply.unwrap().port());
            }
            let shown = format!("{received:?}");
            assert_eq!(
                shown,
                format!("{fresh:?}"),
                "{}",
                String::from_utf8_lossy(via)
            );
            let top = fresh.top_via().unwrap().unwrap();
            if viewed != bytes {
                assert_eq!(top.received, Some(source.ip().to_string().as_bytes()));
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 24);
}
