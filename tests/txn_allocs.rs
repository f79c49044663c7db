//! Heap allocations per in-dialog transaction through the transaction layer, both sides (our
//! INFO out and its 200 in; a peer's INFO in, a retransmission of it, and our 200 out), after
//! a warm-up that lets the tables, the timer heap and the spare buffers reach their working
//! size: none.

mod common;

use common::alloc::{allocations_during, TrackingAlloc};
use sipdialog::txn::{Received, Request, Transactions, Transmits, Transport, TxnConfig};
use sipdialog::wire::{MessageView, Method};

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

/// 10 ms of fake clock per exchange: the 32 s a finished transaction lingers (Timer J) holds
/// 3 200 of them, so the warm-up runs several times that.
const WARM_UP: usize = 20_000;
const MEASURED: usize = 5_000;
const MS_PER_EXCHANGE: u64 = 10;
const TIMERS_EVERY: usize = 64;

fn message(first_line: &str, branch: &str, via_host: &str) -> Vec<u8> {
    format!(
        "{first_line}\r\nVia: SIP/2.0/UDP {via_host}:5060;branch={branch}\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: alloc-1\r\nCSeq: 5 INFO\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn an_in_dialog_transaction_allocates_nothing_either_way() {
    let mut txns = Transactions::with_secret(TxnConfig::default(), [3; 16]).expect("valid config");
    let peer = "192.0.2.9:5060".parse().unwrap();
    let mut out = Transmits::new();
    let mut expired = Vec::with_capacity(64);
    // Distinct branches, written before counting (the messages are input, not our work).
    let total = WARM_UP + MEASURED;
    let ours: Vec<(Vec<u8>, Vec<u8>, String)> = (0..total)
        .map(|i| {
            let branch = format!("z9hG4bKout{i:08}");
            (
                message("INFO sip:b@192.0.2.9 SIP/2.0", &branch, "192.0.2.1"),
                message("SIP/2.0 200 OK", &branch, "192.0.2.1"),
                branch,
            )
        })
        .collect();
    let theirs: Vec<(Vec<u8>, Vec<u8>)> = (0..total)
        .map(|i| {
            let branch = format!("z9hG4bKin{i:08}");
            (
                message("INFO sip:a@192.0.2.1 SIP/2.0", &branch, "192.0.2.9"),
                message("SIP/2.0 200 OK", &branch, "192.0.2.9"),
            )
        })
        .collect();

    let mut exchange = |i: usize, txns: &mut Transactions, out: &mut Transmits| {
        let now = i as u64 * MS_PER_EXCHANGE;
        let (info, ok, branch) = &ours[i];
        let sent = txns
            .request(
                Request {
                    bytes: info,
                    method: Method::Info,
                    method_token: b"INFO",
                    branch: branch.as_bytes(),
                    to: peer,
                    transport: Transport::Unreliable,
                },
                now,
                out,
            )
            .unwrap();
        let answer = txns.on_response(&MessageView::parse(ok).unwrap(), now + 1, out);
        assert_eq!(
            answer,
            Received::Response {
                txn: sent,
                status: 200
            }
        );

        let (info, ok) = &theirs[i];
        let view = MessageView::parse(info).unwrap();
        let got = txns
            .on_request(&view, peer, Transport::Unreliable, now + 2, out)
            .unwrap();
        let Received::New(txn) = got else {
            panic!("{got:?}")
        };
        txns.respond(txn, 200, ok, now + 3, out).unwrap();
        let again = txns.on_request(&view, peer, Transport::Unreliable, now + 4, out);
        assert_eq!(again, Ok(Received::Absorbed));
        if i.is_multiple_of(TIMERS_EVERY) {
            txns.on_timeout(now + 5, out, &mut expired);
            assert!(expired.is_empty(), "{expired:?}");
        }
        out.clear();
    };

    for i in 0..WARM_UP {
        exchange(i, &mut txns, &mut out);
    }
    let allocations = allocations_during(|| {
        for i in WARM_UP..total {
            exchange(i, &mut txns, &mut out);
        }
    });
    println!(
        "{MEASURED} exchanges (2 transactions, 5 messages each): {allocations} allocations; \
         {} transactions held, {} bytes",
        txns.len(),
        txns.bytes()
    );
    assert_eq!(allocations, 0);
}
