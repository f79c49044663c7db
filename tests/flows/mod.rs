//! Shared pieces of the `tests/flow_*.rs` call-flow tests: user agents and observing proxies
//! wired back to back, hand-written RFC 3665 messages, a few header readers, and setting up and
//! hanging up a call.
//!
//! The network is the test: whatever one side writes into its [`Outbox`] is taken out and fed
//! to the other side's `on_received`, after every proxy on the path has observed it (and, as a
//! real proxy would, pushed its Via, popped its Route and, on the INVITE, added its
//! Record-Route).

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use sipdialog::build::ResponseParts;
use sipdialog::manager::{
    DialogManager, Expiry, ManagerConfig, Observation, Outbox, RequestBody, Verdict,
};
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{HeaderName, MessageView, Method};

/// RFC 3261 T1.
pub const T1: u64 = 500;
/// 64×T1: the ACK wait, the lifetime of INVITE transactions after the first 2xx.
pub const T64: u64 = 64 * T1;
/// Past every timer a manager can arm with the default configuration (idle: 2 h).
pub const FAR: u64 = 24 * 3600 * 1000;

/// Alice's SDP offer (RFC 3665 §3.1 F1).
pub const SDP_ALICE: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// The offer of a re-INVITE (new address, RFC 3665 §3.7 style).
pub const SDP_REOFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 client.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.201\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// A user agent: its manager and the outbox the manager writes into.
pub struct Ua {
    pub mgr: DialogManager,
    pub out: Outbox,
    /// The URI of the Contact the manager puts in what it builds.
    pub contact_uri: String,
}

/// A manager configuration for `user` at `host`.
pub fn config(user: &str, host: &str) -> ManagerConfig {
    ManagerConfig {
        capacity: 1024,
        policy: sipdialog::security::Policy {
            max_invite_records: 1024,
            ..Default::default()
        },
        t1_ms: T1,
        via: format!("SIP/2.0/UDP {host}:5060").into_bytes().into(),
        contact: format!("<sip:{user}@{host}>").into_bytes().into(),
        ..ManagerConfig::default()
    }
}

impl Ua {
    pub fn new(user: &str, host: &str) -> Ua {
        Ua {
            mgr: DialogManager::new(config(user, host)).expect("manager"),
            out: Outbox::new(),
            contact_uri: format!("sip:{user}@{host}"),
        }
    }

    /// Alice at `client.atlanta.example.com`, as in RFC 3665.
    pub fn alice() -> Ua {
        Ua::new("alice", "client.atlanta.example.com")
    }

    /// Bob at `client.biloxi.example.com`, as in RFC 3665.
    pub fn bob() -> Ua {
        Ua::new("bob", "client.biloxi.example.com")
    }

    /// Takes every message out of the outbox.
    pub fn drain(&mut self) -> Vec<Sent> {
        let sent = self
            .out
            .iter()
            .map(|m| Sent {
                bytes: m.bytes.to_vec(),
                next_hop: m.next_hop.map(|h| String::from_utf8_lossy(h).into_owned()),
                dialog: m.dialog,
            })
            .collect();
        self.out.clear();
        sent
    }

    /// The one message in the outbox, left there (to look at before delivering it).
    pub fn peek_one(&self) -> Sent {
        assert_eq!(self.out.len(), 1, "expected one message in the outbox");
        let m = self.out.iter().next().expect("one message");
        Sent {
            bytes: m.bytes.to_vec(),
            next_hop: m.next_hop.map(|h| String::from_utf8_lossy(h).into_owned()),
            dialog: m.dialog,
        }
    }

    /// Runs the timers up to `at` (until no wake-up is left) and returns what expired.
    pub fn run_timers(&mut self, at: u64) -> Vec<Expiry> {
        run_timers(&self.mgr, &mut self.out, at)
    }

    /// No dialog left; after every timer has run, no INVITE transaction record either, and
    /// nothing expired or was sent on the way.
    pub fn assert_clean(&mut self, who: &str) {
        assert_clean(who, &self.mgr, &mut self.out);
    }
}

/// Runs a manager's timers up to `at`.
pub fn run_timers(mgr: &DialogManager, out: &mut Outbox, at: u64) -> Vec<Expiry> {
    let mut expired = Vec::new();
    while mgr.on_timeout(at, out, &mut expired) > 0 {}
    expired
}

/// See [`Ua::assert_clean`].
pub fn assert_clean(who: &str, mgr: &DialogManager, out: &mut Outbox) {
    assert_eq!(mgr.len(), 0, "{who}: dialogs left");
    assert!(out.is_empty(), "{who}: unsent messages left");
    let expired = run_timers(mgr, out, FAR);
    assert!(
        expired.is_empty(),
        "{who}: expiries after the call ended: {expired:?}"
    );
    assert!(
        out.is_empty(),
        "{who}: timers sent something after the call ended"
    );
    assert_eq!(mgr.pending_invites(), 0, "{who}: INVITE records left");
    assert_eq!(mgr.len(), 0, "{who}: dialogs left after the timers");
}

/// A message taken out of an outbox.
#[derive(Clone, Debug)]
pub struct Sent {
    pub bytes: Vec<u8>,
    pub next_hop: Option<String>,
    pub dialog: Option<DialogHandle>,
}

/// A message carried to its destination.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// As the sender wrote it.
    pub sent: Vec<u8>,
    /// As the receiver got it (after the proxies on the path).
    pub bytes: Vec<u8>,
    /// What each proxy on the path made of it, in path order.
    pub seen: Vec<Observation>,
    /// The receiver's verdict; `None` when a proxy absorbed the message (100 Trying).
    pub verdict: Option<Verdict>,
}

/// Carries `bytes` over `path` to `to`.
pub fn deliver_msg(bytes: &[u8], path: &[&Proxy], to: &mut Ua, now: u64) -> Delivered {
    let mut msg = bytes.to_vec();
    let mut seen = Vec::new();
    for proxy in path {
        let (observation, forwarded) = proxy.forward(&msg, now);
        seen.push(observation);
        match forwarded {
            Some(next) => msg = next,
            None => {
                return Delivered {
                    sent: bytes.to_vec(),
                    bytes: msg,
                    seen,
                    verdict: None,
                }
            }
        }
    }
    let verdict = match to.mgr.on_received(&msg, now, &mut to.out) {
        Ok(v) => v,
        Err(e) => panic!(
            "on_received failed ({e}) for:\n{}",
            String::from_utf8_lossy(&msg)
        ),
    };
    Delivered {
        sent: bytes.to_vec(),
        bytes: msg,
        seen,
        verdict: Some(verdict),
    }
}

/// Carries every message of `from`'s outbox, in order, over `path` to `to`.
pub fn deliver(from: &mut Ua, path: &[&Proxy], to: &mut Ua, now: u64) -> Vec<Delivered> {
    from.drain()
        .iter()
        .map(|m| deliver_msg(&m.bytes, path, to, now))
        .collect()
}

/// [`deliver`] for an outbox holding exactly one message.
pub fn deliver_one(from: &mut Ua, path: &[&Proxy], to: &mut Ua, now: u64) -> Delivered {
    let mut all = deliver(from, path, to, now);
    assert_eq!(all.len(), 1, "expected one message, got {}", all.len());
    all.remove(0)
}

/// A stateless-looking, dialog-stateful proxy: a manager in `observe` mode plus what a proxy
/// does to the bytes (RFC 3261 §16.6: push Via, pop own Route, Record-Route the INVITE; §16.7:
/// pop own Via from responses, absorb 100 Trying).
pub struct Proxy {
    pub host: &'static str,
    pub mgr: DialogManager,
    pub out: Outbox,
}

impl Proxy {
    pub fn new(host: &'static str) -> Proxy {
        Proxy {
            host,
            mgr: DialogManager::new(config("proxy", host)).expect("manager"),
            out: Outbox::new(),
        }
    }

    /// Its Record-Route / Route entry (loose routing).
    pub fn route(&self) -> String {
        format!("<sip:{};lr>", self.host)
    }

    /// The URI inside [`Proxy::route`] (what a next hop resolves).
    pub fn uri(&self) -> String {
        format!("sip:{};lr", self.host)
    }

    /// Observes one message and returns it as forwarded (`None`: absorbed).
    pub fn forward(&self, msg: &[u8], now: u64) -> (Observation, Option<Vec<u8>>) {
        let observation = match self.mgr.observe(msg, now) {
            Ok(o) => o,
            Err(e) => panic!(
                "observe failed ({e}) for:\n{}",
                String::from_utf8_lossy(msg)
            ),
        };
        let view = MessageView::parse(msg).expect("valid message");
        let (head, body) = split(msg);
        let mut lines: Vec<String> = head.split("\r\n").map(str::to_owned).collect();
        match view.method() {
            Some(method) => {
                // Loose routing (§16.4): a Route naming us is ours to pop; any other top Route
                // means the sender built its route set in the wrong order.
                if let Some(top) = view.values(HeaderName::Route).next() {
                    let top = String::from_utf8_lossy(top);
                    assert_eq!(
                        top,
                        self.route(),
                        "{} reached {} with another proxy's Route on top",
                        method.as_str().unwrap_or("?"),
                        self.host
                    );
                    pop_first_value(&mut lines, "Route");
                }
                if method == Method::Invite && view.to_tag().is_none() {
                    lines.insert(1, format!("Record-Route: {}", self.route()));
                }
                lines.insert(1, format!("Via: {}", self.via(&view, method)));
            }
            None => {
                if view.status_code() == Some(100) {
                    return (observation, None);
                }
                let top = view
                    .via_sent_by()
                    .map(|s| String::from_utf8_lossy(s).into_owned());
                assert_eq!(
                    top.as_deref(),
                    Some(&*format!("{}:5060", self.host)),
                    "a response reached {} whose top Via is not its own",
                    self.host
                );
                pop_first_value(&mut lines, "Via");
            }
        }
        let mut out = lines.join("\r\n").into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        (observation, Some(out))
    }

    /// Our Via: one branch per transaction (a CANCEL shares its INVITE's, §16.10).
    fn via(&self, view: &MessageView<'_>, method: Method) -> String {
        let method = if method == Method::Cancel {
            Method::Invite
        } else {
            method
        };
        let mut h = DefaultHasher::new();
        (
            view.call_id(),
            view.cseq().number,
            method.as_str(),
            self.host,
        )
            .hash(&mut h);
        format!(
            "SIP/2.0/UDP {}:5060;branch=z9hG4bK{:016x}",
            self.host,
            h.finish()
        )
    }

    /// See [`Ua::assert_clean`].
    pub fn assert_clean(&mut self, who: &str) {
        assert_clean(who, &self.mgr, &mut self.out);
    }
}

/// The header block (start line included, final CRLFCRLF excluded) and the body.
fn split(msg: &[u8]) -> (&str, &[u8]) {
    let end = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header block ends");
    let head = std::str::from_utf8(&msg[..end]).expect("ASCII headers");
    (head, &msg[end + 4..])
}

/// Removes the first value of the first `name` header (the whole line when it has one).
fn pop_first_value(lines: &mut Vec<String>, name: &str) {
    let Some(i) = lines
        .iter()
        .skip(1)
        .position(|l| header_name(l) == Some(name))
    else {
        return;
    };
    let i = i + 1;
    let value = lines[i]
        .split_once(':')
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    match value.split_once(',') {
        Some((_, rest)) => lines[i] = format!("{name}: {}", rest.trim()),
        None => {
            lines.remove(i);
        }
    }
}

fn header_name(line: &str) -> Option<&str> {
    let (name, _) = line.split_once(':')?;
    let name = name.trim();
    ["Via", "Route", "Record-Route"]
        .into_iter()
        .find(|n| n.eq_ignore_ascii_case(name))
}

/// An INVITE from Alice (RFC 3665 §3.1 F1, with an optional pre-loaded Route as in §3.8 F1).
pub fn invite(call_id: &str, from_tag: &str, route: Option<&str>) -> Vec<u8> {
    invite_to(
        "sip:bob@biloxi.example.com",
        "Bob <sip:bob@biloxi.example.com>",
        call_id,
        from_tag,
        route,
    )
}

/// An INVITE from Alice to `to` at `request_uri`.
pub fn invite_to(
    request_uri: &str,
    to: &str,
    call_id: &str,
    from_tag: &str,
    route: Option<&str>,
) -> Vec<u8> {
    let route = route.map(|r| format!("Route: {r}\r\n")).unwrap_or_default();
    format!(
        "INVITE {request_uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9{branch:016x}\r\n\
         Max-Forwards: 70\r\n\
         {route}\
         From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@client.atlanta.example.com>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{SDP_ALICE}",
        branch = {
            let mut h = DefaultHasher::new();
            call_id.hash(&mut h);
            h.finish()
        },
        len = SDP_ALICE.len(),
    )
    .into_bytes()
}

/// The start line.
pub fn start_line(msg: &[u8]) -> String {
    let (head, _) = split(msg);
    head.split("\r\n").next().unwrap_or_default().to_owned()
}

/// The Request-URI of a request.
pub fn request_uri(msg: &[u8]) -> String {
    let view = MessageView::parse(msg).expect("valid message");
    String::from_utf8_lossy(view.request_uri().expect("a request")).into_owned()
}

/// Every value of `name`, in order.
pub fn values(msg: &[u8], name: HeaderName) -> Vec<String> {
    let view = MessageView::parse(msg).expect("valid message");
    view.values(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The raw value of the one header `name` (full form), trimmed.
pub fn header(msg: &[u8], name: &str) -> String {
    let (head, _) = split(msg);
    let found: Vec<&str> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect();
    assert_eq!(found.len(), 1, "expected one {name} header");
    found[0].to_owned()
}

/// (Call-ID, From tag, To tag, CSeq number, CSeq method) of a message.
pub fn ids(msg: &[u8]) -> (String, String, Option<String>, u32, String) {
    let view = MessageView::parse(msg).expect("valid message");
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        s(view.call_id()),
        s(view.from_tag().unwrap_or_default()),
        view.to_tag().map(s),
        view.cseq().number,
        s(view.cseq().method),
    )
}

/// The Call-ID of RFC 3665 §3.1.
pub const CALL: &str = "3848276298220188511@atlanta.example.com";
/// Alice's From tag.
pub const ATAG: &str = "9fxced76sl";

/// No Contact override, no body, no extra headers.
pub fn no_parts() -> ResponseParts<'static> {
    ResponseParts::default()
}

/// The phase of a live dialog.
pub fn phase(ua: &Ua, d: DialogHandle) -> Phase {
    ua.mgr.state(d).expect("live dialog").phase()
}

/// Sets up a call alice → bob over `path` (bob answers 180 then 200, alice ACKs) and returns
/// (alice's dialog, bob's dialog, the INVITE as bob got it). The steps, and what the proxies
/// observe, are checked in detail by the §3.1/§3.2 tests; here only the verdicts.
pub fn establish(
    alice: &mut Ua,
    bob: &mut Ua,
    path: &[&Proxy],
    call_id: &str,
    t: u64,
) -> (DialogHandle, DialogHandle, Vec<u8>) {
    let back: Vec<&Proxy> = path.iter().rev().copied().collect();
    let route = path.first().map(|p| p.route());
    let inv = invite(call_id, ATAG, route.as_deref());
    assert_eq!(alice.mgr.on_sent(&inv, t).unwrap(), None);
    let got = deliver_msg(&inv, path, bob, t);
    assert!(
        matches!(got.verdict, Some(Verdict::NewInvite { .. })),
        "{:?}",
        got.verdict
    );
    let inv_at_bob = got.bytes;
    let b_d = bob
        .mgr
        .respond(&inv_at_bob, 180, &no_parts(), t + 1, &mut bob.out)
        .unwrap()
        .expect("180 creates bob's early dialog");
    let ringing = deliver_one(bob, &back, alice, t + 1);
    let Some(Verdict::Provisional {
        dialog: Some(a_d),
        status: 180,
    }) = ringing.verdict
    else {
        panic!("180: {:?}", ringing.verdict)
    };
    assert_eq!(
        bob.mgr
            .respond(&inv_at_bob, 200, &no_parts(), t + 2, &mut bob.out)
            .unwrap(),
        Some(b_d)
    );
    let ok = deliver_one(bob, &back, alice, t + 2);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Confirmed {
            dialog: a_d,
            cseq: 1,
            extra: false
        })
    );
    alice.mgr.ack(a_d, 1, &mut alice.out).unwrap();
    let ack = deliver_one(alice, path, bob, t + 3);
    assert_eq!(ack.verdict, Some(Verdict::Ack { dialog: b_d }));
    assert_eq!(
        (phase(alice, a_d), phase(bob, b_d)),
        (Phase::Confirmed, Phase::Confirmed)
    );
    (a_d, b_d, inv_at_bob)
}

/// Alice hangs up a call set up by [`establish`].
pub fn hang_up(
    alice: &mut Ua,
    bob: &mut Ua,
    path: &[&Proxy],
    a_d: DialogHandle,
    b_d: DialogHandle,
    t: u64,
) {
    let back: Vec<&Proxy> = path.iter().rev().copied().collect();
    alice
        .mgr
        .request(a_d, Method::Bye, &RequestBody::default(), t, &mut alice.out)
        .unwrap();
    let bye = deliver_one(alice, path, bob, t);
    assert_eq!(bye.verdict, Some(Verdict::Bye { dialog: b_d }));
    let ok = deliver_one(bob, &back, alice, t + 1);
    assert_eq!(
        ok.verdict,
        Some(Verdict::Ended {
            dialog: a_d,
            status: 200
        })
    );
}
