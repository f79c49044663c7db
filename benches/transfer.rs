//! The cost of a call transfer's signalling on an established dialog, through two managers as
//! raw bytes: alice (transferor) REFERs bob (transferee), bob answers 202, then reports 100
//! and 200 in two NOTIFYs (`message/sipfrag`), each answered 200 by alice — six messages on
//! the wire, every one built by one manager and received by the other, the implicit
//! subscription created and ended each time.
//!
//! Baseline in the same run: one in-dialog INFO and its 200 on the same kind of dialog (two
//! messages, no subscription). The dialog is set up outside the timed loop; the fake clock
//! moves one second per transfer, so the per-dialog REFER rate limit (4/s) never bites.
//!
//! Also checked: the hot slot of the dialog table is still 64 bytes (transfers live in a side
//! table), and after the benches no subscription is left and both managers end empty.

mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use sipdialog::build::ResponseParts;
use sipdialog::manager::{
    DialogManager, ManagerConfig, Outbox, RequestBody, TransferProgress, Verdict,
};
use sipdialog::table::{DialogHandle, HOT_SLOT_BYTES};
use sipdialog::wire::Method;

const GROUP: &str = "transfer";
const TRANSFER: &str = "refer_202_notify_100_200";
const INFO: &str = "info_200";
/// Messages on the wire per transfer exchange and per INFO exchange.
const TRANSFER_MESSAGES: f64 = 6.0;
const INFO_MESSAGES: f64 = 2.0;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
To: <sip:bob@biloxi.example.com>\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@198.51.100.7:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n\
Supported: replaces, timer\r\n\
Content-Length: 0\r\n\r\n";

/// Two managers with one confirmed dialog between them, and their outboxes.
struct Call {
    alice: DialogManager,
    bob: DialogManager,
    a_d: DialogHandle,
    b_d: DialogHandle,
    a_out: Outbox,
    b_out: Outbox,
    clock: u64,
}

/// The only message in `out`.
fn only(out: &Outbox) -> &[u8] {
    let mut it = out.iter();
    match (it.next(), it.next()) {
        (Some(m), None) => m.bytes,
        _ => panic!("expected one message in the outbox, found {}", out.len()),
    }
}

fn managers() -> (DialogManager, DialogManager) {
    let config = |user: &str, host: &str| ManagerConfig {
        capacity: 64,
        via: format!("SIP/2.0/UDP {host}").into_bytes().into(),
        contact: format!("<sip:{user}@{host}>").into_bytes().into(),
        ..ManagerConfig::default()
    };
    (
        DialogManager::new(config("alice", "198.51.100.7:5060")).expect("OS randomness"),
        DialogManager::new(config("bob", "192.0.2.20:5060")).expect("OS randomness"),
    )
}

/// Alice calls bob; bob answers 200, alice ACKs.
fn establish() -> Call {
    let (alice, bob) = managers();
    let (mut a_out, mut b_out) = (Outbox::new(), Outbox::new());
    alice.on_sent(INVITE, 0).unwrap();
    let Verdict::NewInvite { .. } = bob.on_received(INVITE, 0, &mut b_out).unwrap() else {
        panic!("INVITE not new")
    };
    let b_d = bob
        .respond(INVITE, 200, &ResponseParts::default(), 1, &mut b_out)
        .unwrap()
        .expect("bob's dialog");
    let Verdict::Confirmed { dialog: a_d, .. } =
        alice.on_received(only(&b_out), 1, &mut a_out).unwrap()
    else {
        panic!("200 did not confirm")
    };
    b_out.clear();
    alice.ack(a_d, 1, &mut a_out).unwrap();
    let Verdict::Ack { .. } = bob.on_received(only(&a_out), 2, &mut b_out).unwrap() else {
        panic!("ACK not matched")
    };
    a_out.clear();
    Call {
        alice,
        bob,
        a_d,
        b_d,
        a_out,
        b_out,
        clock: 1_000,
    }
}

/// One transfer exchange: REFER, 202, NOTIFY 100, 200, NOTIFY 200, 200.
fn transfer(c: &mut Call) {
    c.clock += 1_000;
    let now = c.clock;
    let id = c
        .alice
        .transfers()
        .refer(
            c.a_d,
            b"sip:carol@chicago.example.com",
            None,
            Some(b"<sip:alice@atlanta.example.com>"),
            now,
            &mut c.a_out,
        )
        .unwrap();
    let Verdict::Refer {
        subscribed: true, ..
    } = c
        .bob
        .on_received(only(&c.a_out), now, &mut c.b_out)
        .unwrap()
    else {
        panic!("REFER not accepted")
    };
    c.a_out.clear();
    let Verdict::Response { status: 202, .. } = c
        .alice
        .on_received(only(&c.b_out), now, &mut c.a_out)
        .unwrap()
    else {
        panic!("no 202")
    };
    c.b_out.clear();
    for (status, progress) in [
        (100, TransferProgress::Trying),
        (200, TransferProgress::Succeeded),
    ] {
        c.bob
            .transfers()
            .notify(c.b_d, id, status, now, &mut c.b_out)
            .unwrap();
        let Verdict::Notify { progress: p, .. } = c
            .alice
            .on_received(only(&c.b_out), now, &mut c.a_out)
            .unwrap()
        else {
            panic!("NOTIFY not matched")
        };
        assert_eq!(p, progress);
        c.b_out.clear();
        let Verdict::Response {
            status: 200,
            method: Method::Notify,
            ..
        } = c
            .bob
            .on_received(only(&c.a_out), now, &mut c.b_out)
            .unwrap()
        else {
            panic!("no 200 to the NOTIFY")
        };
        c.a_out.clear();
    }
}

/// One INFO and its 200.
fn info(c: &mut Call) {
    c.clock += 1;
    let now = c.clock;
    let dtmf = RequestBody {
        content_type: Some(b"application/dtmf-relay"),
        body: b"Signal=5\r\nDuration=160\r\n",
        extra_headers: &[],
    };
    c.alice
        .request(c.a_d, Method::Info, &dtmf, now, &mut c.a_out)
        .unwrap();
    let Verdict::Request {
        method: Method::Info,
        ..
    } = c
        .bob
        .on_received(only(&c.a_out), now, &mut c.b_out)
        .unwrap()
    else {
        panic!("INFO not matched")
    };
    c.bob
        .respond(
            only(&c.a_out),
            200,
            &ResponseParts::default(),
            now,
            &mut c.b_out,
        )
        .unwrap();
    c.a_out.clear();
    let Verdict::Response { status: 200, .. } = c
        .alice
        .on_received(only(&c.b_out), now, &mut c.a_out)
        .unwrap()
    else {
        panic!("no 200 to the INFO")
    };
    c.b_out.clear();
}

/// Nothing left: no subscription, and once alice hangs up, no dialog.
fn check_drained(mut c: Call) {
    assert_eq!(
        (
            c.alice.transfers().subscriptions(c.a_d),
            c.bob.transfers().subscriptions(c.b_d)
        ),
        (0, 0),
        "subscriptions left after the transfers (alice, bob)"
    );
    c.alice
        .request(
            c.a_d,
            Method::Bye,
            &RequestBody::default(),
            c.clock + 1,
            &mut c.a_out,
        )
        .unwrap();
    let Verdict::Bye { .. } = c
        .bob
        .on_received(only(&c.a_out), c.clock + 1, &mut c.b_out)
        .unwrap()
    else {
        panic!("BYE not matched")
    };
    let Verdict::Ended { status: 200, .. } = c
        .alice
        .on_received(only(&c.b_out), c.clock + 2, &mut Outbox::new())
        .unwrap()
    else {
        panic!("200 to BYE did not end the dialog")
    };
    assert_eq!((c.alice.len(), c.bob.len()), (0, 0), "dialogs left");
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    let mut call = establish();
    g.bench_function(BenchmarkId::new(TRANSFER, "1_thread"), |b| {
        b.iter(|| transfer(black_box(&mut call)))
    });
    check_drained(call);
    let mut call = establish();
    g.bench_function(BenchmarkId::new(INFO, "1_thread"), |b| {
        b.iter(|| info(black_box(&mut call)))
    });
    check_drained(call);
    g.finish();
}

fn main() {
    println!("hot slot: {HOT_SLOT_BYTES} bytes");
    assert_eq!(
        HOT_SLOT_BYTES, 64,
        "the hot slot grew: transfers belong in the side table"
    );
    let mut report = support::run(bench);
    let transfer_id = format!("{TRANSFER}/1_thread");
    let info_id = format!("{INFO}/1_thread");
    report.median(
        "one transfer exchange (REFER, 202, NOTIFY 100, 200, NOTIFY 200, 200)",
        GROUP,
        &transfer_id,
    );
    report.median("one INFO/200 exchange (baseline)", GROUP, &info_id);
    report.print();
    match (
        report.median_ns(GROUP, &transfer_id),
        report.median_ns(GROUP, &info_id),
    ) {
        (Some(t), Some(i)) => {
            println!(
                "transfer / INFO: {:.2}x per exchange ({} vs {} messages); per message {:.0} ns vs {:.0} ns ({:.2}x)",
                t / i,
                TRANSFER_MESSAGES,
                INFO_MESSAGES,
                t / TRANSFER_MESSAGES,
                i / INFO_MESSAGES,
                (t / TRANSFER_MESSAGES) / (i / INFO_MESSAGES)
            );
        }
        _ => println!("transfer / INFO: not measured in this run (filtered out?)"),
    }
    println!("hot slot: {HOT_SLOT_BYTES} bytes (asserted 64)");
}
