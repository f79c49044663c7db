//! Requests and responses inside a dialog that do not go to plan (RFC 3261 §12.2): 481 for an
//! unknown dialog (tags copied; a stray ACK gets nothing), 500 for a CSeq out of order, a 481
//! or 408 response ending the dialog, and dialog identification from each side when a UA
//! calls itself (§12).

mod flows;

use flows::{
    deliver, deliver_msg, deliver_one, establish, hang_up, header, ids, invite_to, no_parts, phase,
    start_line, Ua, ATAG, CALL,
};
use sipdialog::manager::{RequestBody, Verdict};
use sipdialog::state::Phase;
use sipdialog::wire::Method;

/// §12.2.2: a request with a To tag that matches no dialog gets 481, its From and To (tags
/// included) copied (§8.2.6.2); an ACK that matches nothing gets no response at all (§17).
#[test]
fn in_dialog_request_for_unknown_dialog_gets_481_with_its_tags() {
    let mut bob = Ua::bob();
    let info = "INFO sip:bob@client.biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bKnashds7\r\n\
        Max-Forwards: 70\r\n\
        From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
        Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
        CSeq: 7 INFO\r\n\
        Content-Length: 0\r\n\r\n";
    let got = deliver_msg(info.as_bytes(), &[], &mut bob, 0);
    assert_eq!(
        got.verdict,
        Some(Verdict::Rejected {
            status: 481,
            dialog: None
        })
    );
    let reply = bob.drain().remove(0);
    assert!(start_line(&reply.bytes).starts_with("SIP/2.0 481 "));
    assert_eq!(reply.next_hop, None);
    assert_eq!(
        header(&reply.bytes, "From"),
        "Alice <sip:alice@atlanta.example.com>;tag=1928301774"
    );
    assert_eq!(
        header(&reply.bytes, "To"),
        "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"
    );
    assert_eq!(
        header(&reply.bytes, "Call-ID"),
        "a84b4c76e66710@pc33.atlanta.example.com"
    );
    assert_eq!(header(&reply.bytes, "CSeq"), "7 INFO");
    assert_eq!(
        header(&reply.bytes, "Via"),
        "SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bKnashds7"
    );

    let ack = info
        .replace("INFO sip", "ACK sip")
        .replace("7 INFO", "7 ACK");
    let got = deliver_msg(ack.as_bytes(), &[], &mut bob, 1);
    assert_eq!(got.verdict, Some(Verdict::Stray));
    assert!(bob.out.is_empty(), "an ACK is never answered");
    bob.assert_clean("bob");
}

/// §12.2.2: a request whose CSeq is lower than the last one from the peer is out of order and
/// gets 500; the dialog lives on (§12.2.1.2: only 481/408 end it). Same CSeq again is a
/// retransmission.
#[test]
fn in_dialog_request_with_lower_cseq_gets_500_and_the_dialog_lives_on() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    let dtmf = RequestBody {
        content_type: Some(b"application/dtmf-relay"),
        body: b"Signal=5\r\nDuration=160\r\n",
        extra_headers: &[],
    };
    let info_cseq = alice
        .mgr
        .request(a_d, Method::Info, &dtmf, 100, &mut alice.out)
        .unwrap();
    let options_cseq = alice
        .mgr
        .request(
            a_d,
            Method::Options,
            &RequestBody::default(),
            101,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!((info_cseq, options_cseq), (2, 3));
    let sent = alice.drain();
    let (info, options) = (&sent[0].bytes, &sent[1].bytes);

    // UDP reorders: the OPTIONS arrives first.
    let got = deliver_msg(options, &[], &mut bob, 110);
    assert_eq!(
        got.verdict,
        Some(Verdict::Request {
            dialog: b_d,
            method: Method::Options
        })
    );
    bob.mgr
        .respond(options, 200, &no_parts(), 110, &mut bob.out)
        .unwrap();
    assert_eq!(
        deliver_msg(options, &[], &mut bob, 111).verdict,
        Some(Verdict::Retransmission)
    );
    let got = deliver_msg(info, &[], &mut bob, 112);
    assert_eq!(
        got.verdict,
        Some(Verdict::Rejected {
            status: 500,
            dialog: Some(b_d)
        })
    );
    let answers = deliver(&mut bob, &[], &mut alice, 113);
    assert_eq!(answers.len(), 2);
    assert_eq!(
        answers[0].verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 200,
            method: Method::Options,
            cseq: 3
        })
    );
    assert!(start_line(&answers[1].bytes).starts_with("SIP/2.0 500 "));
    assert_eq!(header(&answers[1].bytes, "CSeq"), "2 INFO");
    assert_eq!(
        answers[1].verdict,
        Some(Verdict::Response {
            dialog: a_d,
            status: 500,
            method: Method::Info,
            cseq: 2
        })
    );
    assert_eq!(
        (phase(&alice, a_d), phase(&bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed)
    );

    hang_up(&mut alice, &mut bob, &[], a_d, b_d, 200);
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// §12.2.1.2: a 481 to a request inside a dialog ends the dialog. Bob lost the call (restart);
/// alice's INFO gets bob's automatic 481 and alice's dialog ends.
#[test]
fn response_481_to_info_ends_the_dialog() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    assert!(bob
        .mgr
        .terminate(b_d, sipdialog::metrics::TerminationReason::Error, 1));
    alice
        .mgr
        .request(
            a_d,
            Method::Info,
            &RequestBody::default(),
            100,
            &mut alice.out,
        )
        .unwrap();
    let info = deliver_one(&mut alice, &[], &mut bob, 100);
    assert_eq!(
        info.verdict,
        Some(Verdict::Rejected {
            status: 481,
            dialog: None
        })
    );
    let reply = bob.peek_one();
    assert_eq!(
        header(&reply.bytes, "To"),
        header(&info.bytes, "To"),
        "tags copied"
    );
    assert_eq!(header(&reply.bytes, "From"), header(&info.bytes, "From"));
    let got = deliver_one(&mut bob, &[], &mut alice, 101);
    assert_eq!(
        got.verdict,
        Some(Verdict::Ended {
            dialog: a_d,
            status: 481
        })
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// §12.2.1.2: a 408 to a request inside a dialog ends it too.
#[test]
fn response_408_to_options_ends_the_dialog() {
    let (mut alice, mut bob) = (Ua::alice(), Ua::bob());
    let (a_d, b_d, _) = establish(&mut alice, &mut bob, &[], CALL, 0);
    bob.mgr
        .request(
            b_d,
            Method::Options,
            &RequestBody::default(),
            100,
            &mut bob.out,
        )
        .unwrap();
    let options = deliver_one(&mut bob, &[], &mut alice, 100);
    assert_eq!(
        options.verdict,
        Some(Verdict::Request {
            dialog: a_d,
            method: Method::Options
        })
    );
    alice
        .mgr
        .respond(&options.bytes, 408, &no_parts(), 101, &mut alice.out)
        .unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 101).verdict,
        Some(Verdict::Ended {
            dialog: b_d,
            status: 408
        })
    );
    // Alice answered 408 herself; she ends her side with BYE... which bob no longer knows.
    alice
        .mgr
        .request(
            a_d,
            Method::Bye,
            &RequestBody::default(),
            102,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!(
        deliver_one(&mut alice, &[], &mut bob, 102).verdict,
        Some(Verdict::Rejected {
            status: 481,
            dialog: None
        })
    );
    assert_eq!(
        deliver_one(&mut bob, &[], &mut alice, 103).verdict,
        Some(Verdict::Ended {
            dialog: a_d,
            status: 481
        })
    );
    alice.assert_clean("alice");
    bob.assert_clean("bob");
}

/// RFC 3261 §12 (dialog ID = Call-ID + local tag + remote tag, seen from each side): a UA
/// that calls itself holds two distinct dialogs, a UAC and a UAS one, and every in-dialog
/// request finds the right one.
#[test]
fn ua_calling_itself_holds_two_dialogs() {
    let mut alice = Ua::alice();
    let inv = invite_to(
        "sip:alice@client.atlanta.example.com",
        "Alice <sip:alice@atlanta.example.com>",
        CALL,
        ATAG,
        None,
    );
    alice.mgr.on_sent(&inv, 0).unwrap();
    let loop_once = |ua: &mut Ua, now: u64| -> Vec<Option<Verdict>> {
        ua.drain()
            .iter()
            .map(|m| deliver_msg(&m.bytes, &[], ua, now).verdict)
            .collect()
    };
    let got = deliver_msg(&inv, &[], &mut alice, 0);
    let Some(Verdict::NewInvite { to_tag, .. }) = got.verdict else {
        panic!("INVITE to myself: {:?}", got.verdict)
    };
    let uas = alice
        .mgr
        .respond(&inv, 180, &no_parts(), 1, &mut alice.out)
        .unwrap()
        .unwrap();
    let [Some(Verdict::Provisional {
        dialog: Some(uac),
        status: 180,
    })] = loop_once(&mut alice, 1)[..]
    else {
        panic!("180 to myself")
    };
    assert_ne!(uac, uas);
    assert_eq!(alice.mgr.len(), 2);
    alice
        .mgr
        .respond(&inv, 200, &no_parts(), 2, &mut alice.out)
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 2),
        [Some(Verdict::Confirmed {
            dialog: uac,
            cseq: 1,
            extra: false
        })]
    );
    let (uac_info, uas_info) = (alice.mgr.info(uac).unwrap(), alice.mgr.info(uas).unwrap());
    assert_eq!(uac_info.local_tag(), ATAG.as_bytes());
    assert_eq!(uac_info.remote_tag(), to_tag.as_str().as_bytes());
    assert_eq!(uas_info.local_tag(), to_tag.as_str().as_bytes());
    assert_eq!(uas_info.remote_tag(), ATAG.as_bytes());

    alice.mgr.ack(uac, 1, &mut alice.out).unwrap();
    assert_eq!(
        loop_once(&mut alice, 3),
        [Some(Verdict::Ack { dialog: uas })]
    );
    // A request from the UAS side finds the UAC dialog, and its response the UAS dialog.
    let cseq = alice
        .mgr
        .request(
            uas,
            Method::Info,
            &RequestBody::default(),
            4,
            &mut alice.out,
        )
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 4),
        [Some(Verdict::Request {
            dialog: uac,
            method: Method::Info
        })]
    );
    let info = {
        let mut out = sipdialog::manager::Outbox::new();
        alice
            .mgr
            .request(uas, Method::Info, &RequestBody::default(), 5, &mut out)
            .unwrap();
        let bytes = out.iter().next().unwrap().bytes.to_vec();
        bytes
    };
    assert_eq!(ids(&info).3, cseq + 1);
    assert_eq!(
        deliver_msg(&info, &[], &mut alice, 5).verdict,
        Some(Verdict::Request {
            dialog: uac,
            method: Method::Info
        })
    );
    alice
        .mgr
        .respond(&info, 200, &no_parts(), 5, &mut alice.out)
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 5),
        [Some(Verdict::Response {
            dialog: uas,
            status: 200,
            method: Method::Info,
            cseq: cseq + 1
        })]
    );
    // The UAC hangs up: its BYE ends the UAS dialog, the 200 the UAC one.
    alice
        .mgr
        .request(uac, Method::Bye, &RequestBody::default(), 6, &mut alice.out)
        .unwrap();
    assert_eq!(
        loop_once(&mut alice, 6),
        [Some(Verdict::Bye { dialog: uas })]
    );
    assert_eq!(
        loop_once(&mut alice, 7),
        [Some(Verdict::Ended {
            dialog: uac,
            status: 200
        })]
    );
    alice.assert_clean("alice");
}
