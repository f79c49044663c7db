//! A client and a server transaction layer talking through a network that loses, duplicates,
//! delays and reorders datagrams: whatever the network does, each request reaches the
//! server's transaction user at most once, the client's transaction user hears at most one
//! final answer (a 2xx to an INVITE may come again until it is ACKed) and only one the server
//! sent, a network that loses nothing delivers the answer, and both layers end empty.
//!
//! Where datagrams are lost, their one-way delays vary by less than T1: RFC 3261's 64×T1
//! windows (Timers F and J, B and H/L) absorb retransmissions only under that assumption. A
//! retransmission sent just before the client's Timer F and delayed a second longer than the
//! copy that opened the server transaction reaches the server after Timer J, as a new request,
//! in every conforming stack. Where nothing is lost, delays go up to 6×T1.

use std::net::SocketAddr;

use proptest::prelude::*;
use sipdialog::txn::{
    Expired, Received, Request, TimedOut, Transactions, Transmits, Transport, TxnConfig, TxnId,
};
use sipdialog::wire::{MessageView, Method};

const CLIENT: &str = "192.0.2.1:5060";
const SERVER: &str = "192.0.2.4:5060";

/// What the network does to one datagram.
#[derive(Clone, Copy, Debug)]
struct Fate {
    lost: bool,
    duplicated: bool,
    delay_ms: u64,
}

fn fate() -> impl Strategy<Value = Fate> {
    (
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.2),
        // Less than T1 (500 ms) of jitter: see the module's comment.
        0u64..500,
    )
        .prop_map(|(lost, duplicated, delay_ms)| Fate {
            lost,
            duplicated,
            delay_ms,
        })
}

/// One exchange: the request's method, whether the server sends a provisional first, and the
/// final status.
#[derive(Clone, Copy, Debug)]
struct Exchange {
    invite: bool,
    provisional: bool,
    status: u16,
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![200u16, 486, 503]),
    )
        .prop_map(|(invite, provisional, status)| Exchange {
            invite,
            provisional,
            status,
        })
}

fn method(invite: bool) -> &'static str {
    if invite {
        "INVITE"
    } else {
        "BYE"
    }
}

fn request(method: &str, branch: &str) -> Vec<u8> {
    format!(
        "{method} sip:b@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP {CLIENT};branch={branch}\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: p1\r\nCSeq: 1 {}\r\n\
Content-Length: 0\r\n\r\n",
        if method == "ACK" { "ACK" } else { method }
    )
    .into_bytes()
}

fn response(status: u16, method: &str, branch: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP {CLIENT};branch={branch}\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: p1\r\nCSeq: 1 {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A datagram in flight.
struct Flight {
    at: u64,
    to_server: bool,
    bytes: Vec<u8>,
}

struct World {
    client: Transactions,
    server: Transactions,
    flights: Vec<Flight>,
    fates: Vec<Fate>,
    next_fate: usize,
    now: u64,
    // What each side's transaction user saw.
    server_new: usize,
    server_answered: Option<u16>,
    server_txn: Option<TxnId>,
    client_finals: Vec<u16>,
    client_expired: Vec<Expired>,
    server_expired: Vec<Expired>,
}

impl World {
    /// Puts what a layer wrote on the network, each datagram meeting its fate.
    fn send(&mut self, out: &mut Transmits, to_server: bool) {
        for t in out.iter() {
            let fate = if self.fates.is_empty() {
                Fate {
                    lost: false,
                    duplicated: false,
                    delay_ms: 1,
                }
            } else {
                let f = self.fates[self.next_fate % self.fates.len()];
                self.next_fate += 1;
                f
            };
            let copies = if fate.lost {
                0
            } else if fate.duplicated {
                2
            } else {
                1
            };
            for copy in 0..copies {
                self.flights.push(Flight {
                    at: self.now + fate.delay_ms + copy * 7,
                    to_server,
                    bytes: t.bytes.to_vec(),
                });
            }
        }
        out.clear();
    }
}

fn simulate(exchange: Exchange, fates: Vec<Fate>) -> World {
    let config = TxnConfig::default();
    let mut world = World {
        client: Transactions::with_secret(config, [1; 16]).expect("valid config"),
        server: Transactions::with_secret(config, [2; 16]).expect("valid config"),
        flights: Vec::new(),
        fates,
        next_fate: 0,
        now: 0,
        server_new: 0,
        server_answered: None,
        server_txn: None,
        client_finals: Vec::new(),
        client_expired: Vec::new(),
        server_expired: Vec::new(),
    };
    let client_addr: SocketAddr = CLIENT.parse().unwrap();
    let server_addr: SocketAddr = SERVER.parse().unwrap();
    let name = method(exchange.invite);
    let branch = "z9hG4bKprop1";
    let req = request(name, branch);
    let mut out = Transmits::new();
    world
        .client
        .request(
            Request {
                bytes: &req,
                method: Method::from_bytes(name.as_bytes()),
                method_token: name.as_bytes(),
                branch: branch.as_bytes(),
                to: server_addr,
                transport: Transport::Unreliable,
            },
            0,
            &mut out,
        )
        .unwrap();
    world.send(&mut out, true);
    let mut acks_sent = 0;
    // Bounded: every transaction ends within max_pending_ms; stop well after.
    for _ in 0..100_000 {
        let next_flight = world.flights.iter().map(|f| f.at).min();
        let next = [
            next_flight,
            world.client.next_deadline(),
            world.server.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        world.now = world.now.max(next);
        let now = world.now;
        // Deliver every datagram due.
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut world.flights)
            .into_iter()
            .partition(|f| f.at <= now);
        world.flights = later;
        for flight in due {
            let view = MessageView::parse(&flight.bytes).unwrap();
            if flight.to_server {
                let got = world
                    .server
                    .on_request(&view, client_addr, Transport::Unreliable, now, &mut out)
                    .unwrap();
                world.send(&mut out, false);
                if let Received::New(txn) = got {
                    world.server_new += 1;
                    world.server_txn = Some(txn);
                    // The transaction user answers at once.
                    if exchange.provisional {
                        let p = response(180, name, branch);
                        world.server.respond(txn, 180, &p, now, &mut out).unwrap();
                    }
                    let f = response(exchange.status, name, branch);
                    world
                        .server
                        .respond(txn, exchange.status, &f, now, &mut out)
                        .unwrap();
                    world.server_answered = Some(exchange.status);
                    world.send(&mut out, false);
                }
            } else {
                let got = world.client.on_response(&view, now, &mut out);
                world.send(&mut out, true);
                let final_status = match got {
                    Received::Response { status, .. } if status >= 200 => {
                        world.client_finals.push(status);
                        Some(status)
                    }
                    // A 2xx after its transaction ended: still the dialog's to ACK.
                    Received::Stray2xx => view.status_code(),
                    _ => None,
                };
                if exchange.invite && final_status.is_some_and(|s| (200..300).contains(&s)) {
                    // The dialog ACKs every 2xx, on a branch of its own.
                    acks_sent += 1;
                    world.flights.push(Flight {
                        at: now + 1,
                        to_server: true,
                        bytes: request("ACK", &format!("z9hG4bKack{acks_sent}")),
                    });
                }
            }
        }
        let mut expired = Vec::new();
        world.client.on_timeout(now, &mut out, &mut expired);
        world.client_expired.append(&mut expired);
        world.send(&mut out, true);
        world.server.on_timeout(now, &mut out, &mut expired);
        world.server_expired.append(&mut expired);
        world.send(&mut out, false);
    }
    world
}

fn check(exchange: Exchange, world: &World) {
    assert!(
        world.server_new <= 1,
        "the request reached the server's user twice"
    );
    let finals = &world.client_finals;
    let twoxx_invite = exchange.invite && (200..300).contains(&exchange.status);
    if !twoxx_invite {
        assert!(finals.len() <= 1, "more than one final answer: {finals:?}");
    }
    for status in finals {
        assert_eq!(
            Some(*status),
            world.server_answered,
            "an answer nobody sent"
        );
    }
    if !finals.is_empty() {
        assert!(
            !world
                .client_expired
                .iter()
                .any(|e| e.reason == TimedOut::NoResponse),
            "timed out after the answer came"
        );
    }
    assert!(world.client.is_empty() && world.client.bytes() == 0);
    assert!(world.server.is_empty() && world.server.bytes() == 0);
    assert!(world.flights.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_network_keeps_the_transaction_promises(
        exchange in exchange(),
        fates in prop::collection::vec(fate(), 1..64),
    ) {
        let world = simulate(exchange, fates);
        check(exchange, &world);
    }

    #[test]
    fn a_network_that_loses_nothing_delivers_the_answer(
        exchange in exchange(),
        delays in prop::collection::vec(0u64..3_000, 1..32),
    ) {
        let fates = delays
            .into_iter()
            .map(|delay_ms| Fate { lost: false, duplicated: delay_ms % 3 == 0, delay_ms })
            .collect();
        let world = simulate(exchange, fates);
        check(exchange, &world);
        prop_assert_eq!(world.server_new, 1);
        prop_assert_eq!(world.client_finals.first().copied(), Some(exchange.status));
        prop_assert!(world.client_expired.is_empty());
        // Every server transaction ended quietly: the ACK came for each final answer.
        prop_assert!(world.server_expired.is_empty(), "{:?}", world.server_expired);
    }
}
