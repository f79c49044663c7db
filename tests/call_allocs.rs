//! Heap allocations per whole call through two managers (alice = UAC, bob = UAS), counted by
//! the tracking allocator per step, after a warm-up that lets the outboxes, timer heaps and
//! the pending-INVITE map grow to their working size.
//!
//! - In-dialog (10 INFO requests and their 200s): receiving a request or a response inside a
//!   dialog (scan, match, CSeq check, activity stamp) allocates nothing, and neither do
//!   building the INFO and its 200 into a grown outbox.
//! - Setup (INVITE .. ACK) and teardown (BYE, 200) allocate on the cold path (INVITE record,
//!   dialog info, timer entries); their count per call is printed (`--nocapture`) and bounded
//!   so that a regression fails.

mod common;

use common::alloc::{allocations_during, TrackingAlloc};
use sipdialog::build::ResponseParts;
use sipdialog::manager::{DialogManager, Outbox, RequestBody, Verdict};
use sipdialog::wire::Method;

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

/// Long enough on the fake clock (100 ms per call: 300 s) that every kind of deadline has
/// come due during the warm-up, so the timer heaps and the INVITE-record map are at their
/// steady size when counting starts.
const WARM_UP_CALLS: usize = 3_000;
const MEASURED_CALLS: usize = 1_000;
const INFOS_PER_CALL: usize = 10;
/// `on_timeout` on both managers every this many calls.
const TIMER_EVERY: usize = 64;
/// Fake clock step per call: the INVITE records (kept 64×T1 = 32 s after the 2xx, at most
/// 212 s) expire within the run.
const MS_PER_CALL: u64 = 100;
/// Setup + teardown, both managers, per call on average: measured 6.05 (on each side the
/// INVITE record's map entry, its copy and the dialog's info; see the printout), plus margin.
/// The dialog index is allocated for the capacity up front, so inserting allocates nothing. The timer wheels' slots (about two more a call while each slot
/// had a `Vec`) and the wake-up list of `on_timeout` allocate nothing once warm.
const MAX_SETUP_TEARDOWN_PER_CALL: f64 = 7.0;

/// The steps of a call whose allocations are counted apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    AliceSentInvite,
    BobReceivedInvite,
    BobResponded100,
    AliceReceived100,
    BobResponded180,
    AliceReceived180,
    BobResponded200,
    AliceReceived200,
    AliceAck,
    BobReceivedAck,
    AliceRequestInfo,
    BobReceivedInfo,
    BobRespondedInfo200,
    AliceReceivedInfo200,
    AliceRequestBye,
    BobReceivedBye,
    AliceReceivedBye200,
    Timers,
}

use Step::*;

const STEPS: [Step; 18] = [
    AliceSentInvite,
    BobReceivedInvite,
    BobResponded100,
    AliceReceived100,
    BobResponded180,
    AliceReceived180,
    BobResponded200,
    AliceReceived200,
    AliceAck,
    BobReceivedAck,
    AliceRequestInfo,
    BobReceivedInfo,
    BobRespondedInfo200,
    AliceReceivedInfo200,
    AliceRequestBye,
    BobReceivedBye,
    AliceReceivedBye200,
    Timers,
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    InDialog,
    Teardown,
    Timers,
}

fn phase(step: Step) -> Phase {
    match step {
        AliceSentInvite | BobReceivedInvite | BobResponded100 | AliceReceived100
        | BobResponded180 | AliceReceived180 | BobResponded200 | AliceReceived200 | AliceAck
        | BobReceivedAck => Phase::Setup,
        AliceRequestInfo | BobReceivedInfo | BobRespondedInfo200 | AliceReceivedInfo200 => {
            Phase::InDialog
        }
        AliceRequestBye | BobReceivedBye | AliceReceivedBye200 => Phase::Teardown,
        Timers => Phase::Timers,
    }
}

/// Allocations per step, summed over the calls counted.
#[derive(Default)]
struct Tally {
    per_step: [usize; STEPS.len()],
}

impl Tally {
    /// Runs `f`, adding the allocations this thread made during it to `step`.
    fn count<T>(&mut self, step: Step, f: impl FnOnce() -> T) -> T {
        let mut result = None;
        self.per_step[step as usize] += allocations_during(|| result = Some(f()));
        result.unwrap()
    }

    fn phase(&self, p: Phase) -> usize {
        STEPS
            .iter()
            .filter(|&&s| phase(s) == p)
            .map(|&s| self.per_step[s as usize])
            .sum()
    }
}

/// The only message in `out`, copied out and cleared after (outside any count).
fn take(out: &mut Outbox) -> Vec<u8> {
    assert_eq!(out.len(), 1, "{out:?}");
    let bytes = out.iter().next().unwrap().bytes.to_vec();
    out.clear();
    bytes
}

struct Run {
    alice: DialogManager,
    bob: DialogManager,
    a_out: Outbox,
    b_out: Outbox,
    expired: Vec<sipdialog::manager::Expiry>,
    now: u64,
    calls: usize,
}

impl Run {
    /// One whole call; the INVITE bytes are made outside every count.
    fn call(&mut self, inv: &[u8], t: &mut Tally) {
        self.now += MS_PER_CALL;
        self.calls += 1;
        let now = self.now;
        let (alice, bob) = (&self.alice, &self.bob);
        let (a_out, b_out) = (&mut self.a_out, &mut self.b_out);
        let rp = ResponseParts::default();

        t.count(AliceSentInvite, || alice.on_sent(inv, now))
            .unwrap();
        let v = t.count(BobReceivedInvite, || bob.on_received(inv, now, b_out));
        assert!(matches!(v, Ok(Verdict::NewInvite { .. })), "{v:?}");
        t.count(BobResponded100, || bob.respond(inv, 100, &rp, now, b_out))
            .unwrap();
        let m = take(b_out);
        let v = t.count(AliceReceived100, || alice.on_received(&m, now, a_out));
        assert!(
            matches!(v, Ok(Verdict::Provisional { dialog: None, .. })),
            "{v:?}"
        );
        t.count(BobResponded180, || bob.respond(inv, 180, &rp, now, b_out))
            .unwrap();
        let m = take(b_out);
        let v = t.count(AliceReceived180, || alice.on_received(&m, now, a_out));
        assert!(
            matches!(
                v,
                Ok(Verdict::Provisional {
                    dialog: Some(_),
                    ..
                })
            ),
            "{v:?}"
        );
        t.count(BobResponded200, || bob.respond(inv, 200, &rp, now, b_out))
            .unwrap();
        let m = take(b_out);
        let Ok(Verdict::Confirmed {
            dialog,
            cseq,
            extra: false,
        }) = t.count(AliceReceived200, || alice.on_received(&m, now, a_out))
        else {
            panic!("200 did not confirm")
        };
        t.count(AliceAck, || alice.ack(dialog, cseq, a_out))
            .unwrap();
        let m = take(a_out);
        let v = t.count(BobReceivedAck, || bob.on_received(&m, now, b_out));
        assert!(matches!(v, Ok(Verdict::Ack { .. })), "{v:?}");

        let info_body = RequestBody {
            content_type: Some(b"application/dtmf-relay"),
            body: b"Signal=5\r\nDuration=160\r\n",
            extra_headers: &[],
        };
        for _ in 0..INFOS_PER_CALL {
            t.count(AliceRequestInfo, || {
                alice.request(dialog, Method::Info, &info_body, now, a_out)
            })
            .unwrap();
            let info = take(a_out);
            let v = t.count(BobReceivedInfo, || bob.on_received(&info, now, b_out));
            assert!(
                matches!(
                    v,
                    Ok(Verdict::Request {
                        method: Method::Info,
                        ..
                    })
                ),
                "{v:?}"
            );
            t.count(BobRespondedInfo200, || {
                bob.respond(&info, 200, &rp, now, b_out)
            })
            .unwrap();
            let m = take(b_out);
            let v = t.count(AliceReceivedInfo200, || alice.on_received(&m, now, a_out));
            assert!(
                matches!(
                    v,
                    Ok(Verdict::Response {
                        status: 200,
                        method: Method::Info,
                        ..
                    })
                ),
                "{v:?}"
            );
        }

        t.count(AliceRequestBye, || {
            alice.request(dialog, Method::Bye, &RequestBody::default(), now, a_out)
        })
        .unwrap();
        let m = take(a_out);
        let v = t.count(BobReceivedBye, || bob.on_received(&m, now, b_out));
        assert!(matches!(v, Ok(Verdict::Bye { .. })), "{v:?}");
        let m = take(b_out);
        let v = t.count(AliceReceivedBye200, || alice.on_received(&m, now, a_out));
        assert!(matches!(v, Ok(Verdict::Ended { status: 200, .. })), "{v:?}");
        assert!(a_out.is_empty() && b_out.is_empty());

        if self.calls.is_multiple_of(TIMER_EVERY) {
            let expired = &mut self.expired;
            t.count(Timers, || {
                alice.on_timeout(now, a_out, expired);
                bob.on_timeout(now, b_out, expired);
            });
            assert!(expired.is_empty() && a_out.is_empty() && b_out.is_empty());
        }
    }
}

#[test]
fn allocations_per_whole_call() {
    let (alice, bob) = common::caller_and_callee();
    let mut run = Run {
        alice,
        bob,
        a_out: Outbox::new(),
        b_out: Outbox::new(),
        expired: Vec::new(),
        now: 0,
        calls: 0,
    };
    let ids = common::identities(WARM_UP_CALLS + MEASURED_CALLS, 11);
    let invites: Vec<Vec<u8>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| common::initial_invite(&id.call_id, &id.remote_tag, i as u64))
        .collect();

    let mut warm = Tally::default();
    for inv in &invites[..WARM_UP_CALLS] {
        run.call(inv, &mut warm);
    }

    // Per call: setup + teardown of each measured call, to see the spread.
    let mut tally = Tally::default();
    let mut per_call = Vec::with_capacity(MEASURED_CALLS);
    for inv in &invites[WARM_UP_CALLS..] {
        let before = tally.phase(Phase::Setup) + tally.phase(Phase::Teardown);
        run.call(inv, &mut tally);
        per_call.push(tally.phase(Phase::Setup) + tally.phase(Phase::Teardown) - before);
    }
    per_call.sort_unstable();

    let n = MEASURED_CALLS as f64;
    println!(
        "allocations per call ({MEASURED_CALLS} calls after {WARM_UP_CALLS} warm-up, \
         {INFOS_PER_CALL} INFO + 200 each, both managers):"
    );
    for step in STEPS {
        println!(
            "  {:<22} {:>7.2}",
            format!("{step:?}"),
            tally.per_step[step as usize] as f64 / n
        );
    }
    let setup = tally.phase(Phase::Setup) as f64 / n;
    let teardown = tally.phase(Phase::Teardown) as f64 / n;
    let in_dialog = tally.phase(Phase::InDialog);
    println!("  setup (INVITE..ACK)      {setup:.2} per call");
    println!("  in-dialog (10 INFO/200)  {in_dialog} in all {MEASURED_CALLS} calls");
    println!("  teardown (BYE/200)       {teardown:.2} per call");
    println!(
        "  timers (on_timeout every {TIMER_EVERY} calls, both) {:.3} per call",
        tally.phase(Phase::Timers) as f64 / n
    );
    println!(
        "  setup+teardown per call: min {} median {} max {}",
        per_call[0],
        per_call[per_call.len() / 2],
        per_call[per_call.len() - 1]
    );

    // The same calls through two record-routing proxies: each side's dialog keeps a route set
    // of two entries, packed into the one allocation of its data, so a routed call costs what
    // a direct one does (with a list of its own, one more allocation a side and one an entry).
    let routed: Vec<Vec<u8>> = common::identities(MEASURED_CALLS, 12)
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let inv = common::initial_invite(&id.call_id, &id.remote_tag, (1 << 32) + i as u64);
            let inv = String::from_utf8(inv).unwrap().replacen(
                "Max-Forwards: 70\r\n",
                "Max-Forwards: 70\r\nRecord-Route: <sip:p2.example.net;lr>\r\n\
                 Record-Route: <sip:p1.example.com;lr>\r\n",
                1,
            );
            assert!(
                inv.contains("Record-Route"),
                "the INVITE has no Max-Forwards to follow"
            );
            inv.into_bytes()
        })
        .collect();
    let mut routed_tally = Tally::default();
    for inv in &routed {
        run.call(inv, &mut routed_tally);
    }
    let routed_setup = routed_tally.phase(Phase::Setup) as f64 / n;
    println!("  setup through two record-routing proxies {routed_setup:.2} per call");
    assert!(
        routed_setup <= setup + 0.1,
        "a routed call set up with {routed_setup:.2} allocations, a direct one {setup:.2}"
    );
    assert_eq!(routed_tally.phase(Phase::InDialog), 0);

    assert_eq!(
        tally.per_step[BobReceivedInfo as usize], 0,
        "receiving an in-dialog INFO allocated"
    );
    assert_eq!(
        tally.per_step[AliceReceivedInfo200 as usize], 0,
        "receiving the 200 to an in-dialog INFO allocated"
    );
    assert_eq!(
        in_dialog, 0,
        "the in-dialog exchange (request, receive, respond, receive) allocated"
    );
    assert!(
        setup + teardown <= MAX_SETUP_TEARDOWN_PER_CALL,
        "setup+teardown allocate {:.2} per call (bound {MAX_SETUP_TEARDOWN_PER_CALL})",
        setup + teardown
    );
    assert!(run.alice.is_empty() && run.bob.is_empty());
}
