//! Property test: random reordering, duplication and loss of the messages of many concurrent
//! calls between a caller, a callee and an observer in the middle, after which the timers must
//! leave no dialog and no INVITE record behind.

mod flows;

mod chaos {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;
    use sipdialog::build::ResponseParts;
    use sipdialog::manager::{DialogManager, ManagerError, Outbox, RequestBody, Verdict};
    use sipdialog::table::{DialogHandle, TableError};
    use sipdialog::wire::{MessageView, Method};

    use super::flows::{config, invite, run_timers, FAR};

    /// How a call goes when nothing is lost.
    #[derive(Clone, Copy, Debug)]
    enum Script {
        AliceHangsUp,
        BobHangsUp,
        Busy,
        Cancel,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Node {
        Alice,
        Bob,
        Observer,
    }

    struct Packet {
        bytes: Vec<u8>,
        to: Node,
        /// Between alice and bob: the observer in the middle sees it.
        observed: bool,
    }

    /// One network step: which of the first `WINDOW` packets goes next, how many copies of it
    /// arrive (0: lost), and how much time passes first.
    #[derive(Clone, Copy, Debug)]
    struct Step {
        pick: usize,
        copies: u8,
        dt: u64,
    }

    /// How far UDP may reorder: a packet may overtake this many sent before it.
    const WINDOW: usize = 4;

    struct Call {
        script: Script,
        call_id: String,
        from_tag: String,
        cancel_sent: bool,
        alice_bye: HashSet<DialogHandle>,
        bob_bye: HashSet<DialogHandle>,
        bob_answered: bool,
    }

    struct World {
        alice: DialogManager,
        bob: DialogManager,
        observer: DialogManager,
        outs: [Outbox; 3],
        queue: Vec<Packet>,
        calls: Vec<Call>,
        by_call_id: HashMap<String, usize>,
        now: u64,
    }

    /// Errors an application may get when it acts on a dialog that the network already ended
    /// (a BYE crossing an ACK, a CANCEL after the final response…).
    fn expected(e: &ManagerError) -> bool {
        matches!(
            e,
            ManagerError::UnknownDialog
                | ManagerError::Table(TableError::Stale | TableError::State(_))
        )
    }

    fn allow<T>(r: Result<T, ManagerError>, what: &str) {
        if let Err(e) = r {
            assert!(expected(&e), "{what}: unexpected error {e:?}");
        }
    }

    impl World {
        fn new(scripts: &[Script]) -> World {
            let mut w = World {
                alice: DialogManager::new(config("alice", "client.atlanta.example.com")).unwrap(),
                bob: DialogManager::new(config("bob", "client.biloxi.example.com")).unwrap(),
                observer: DialogManager::new(config("sbc", "sbc.example.net")).unwrap(),
                outs: [Outbox::new(), Outbox::new(), Outbox::new()],
                queue: Vec::new(),
                calls: Vec::new(),
                by_call_id: HashMap::new(),
                now: 0,
            };
            for (i, &script) in scripts.iter().enumerate() {
                let call_id = format!("c{i}@atlanta.example.com");
                let from_tag = format!("a{i}x");
                let inv = invite(&call_id, &from_tag, None);
                assert_eq!(w.alice.on_sent(&inv, 0).unwrap(), None);
                w.queue.push(Packet {
                    bytes: inv,
                    to: Node::Bob,
                    observed: true,
                });
                w.by_call_id.insert(call_id.clone(), i);
                w.calls.push(Call {
                    script,
                    call_id,
                    from_tag,
                    cancel_sent: false,
                    alice_bye: HashSet::new(),
                    bob_bye: HashSet::new(),
                    bob_answered: false,
                });
            }
            w
        }

        fn mgr(&self, node: Node) -> &DialogManager {
            match node {
                Node::Alice => &self.alice,
                Node::Bob => &self.bob,
                Node::Observer => &self.observer,
            }
        }

        /// Where a message goes: requests by their next hop, responses back along their top Via.
        fn route(bytes: &[u8], next_hop: Option<&[u8]>) -> Node {
            let view = MessageView::parse(bytes).expect("managers write valid messages");
            let target = match view.method() {
                Some(_) => next_hop.or(view.request_uri()).unwrap_or_default(),
                None => view.via_sent_by().unwrap_or_default(),
            };
            let target = String::from_utf8_lossy(target);
            if target.contains("atlanta") {
                Node::Alice
            } else if target.contains("biloxi") {
                Node::Bob
            } else {
                Node::Observer
            }
        }

        /// Moves every outbox's messages onto the network.
        fn collect(&mut self) {
            for (i, from) in [Node::Alice, Node::Bob, Node::Observer]
                .into_iter()
                .enumerate()
            {
                for m in self.outs[i].iter() {
                    let to = World::route(m.bytes, m.next_hop);
                    assert_ne!(to, from, "a message to itself");
                    self.queue.push(Packet {
                        bytes: m.bytes.to_vec(),
                        to,
                        observed: from != Node::Observer && to != Node::Observer,
                    });
                }
                self.outs[i].clear();
            }
        }

        fn timers(&mut self) {
            let now = self.now;
            for (i, node) in [Node::Alice, Node::Bob, Node::Observer]
                .into_iter()
                .enumerate()
            {
                let mut out = std::mem::take(&mut self.outs[i]);
                run_timers(self.mgr(node), &mut out, now);
                self.outs[i] = out;
            }
            self.collect();
        }

        fn deliver(&mut self, p: &Packet) {
            let now = self.now;
            if p.observed {
                if let Err(e) = self.observer.observe(&p.bytes, now) {
                    panic!("observe: {e:?}\n{}", String::from_utf8_lossy(&p.bytes));
                }
            }
            let idx = p.to as usize;
            let mut out = std::mem::take(&mut self.outs[idx]);
            let verdict = match self.mgr(p.to).on_received(&p.bytes, now, &mut out) {
                Ok(v) => v,
                Err(e) => panic!(
                    "{:?} on_received: {e:?}\n{}",
                    p.to,
                    String::from_utf8_lossy(&p.bytes)
                ),
            };
            self.outs[idx] = out;
            self.react(p, verdict);
            self.collect();
        }

        /// What the applications on top do with a verdict.
        fn react(&mut self, p: &Packet, verdict: Verdict) {
            let view = MessageView::parse(&p.bytes).unwrap();
            let call_id = String::from_utf8_lossy(view.call_id()).into_owned();
            let Some(&c) = self.by_call_id.get(&call_id) else {
                panic!("unknown Call-ID {call_id}")
            };
            let now = self.now;
            let [a_out, b_out, _] = &mut self.outs;
            let call = &mut self.calls[c];
            match (p.to, verdict) {
                (
                    Node::Alice,
                    Verdict::Provisional {
                        dialog: Some(_), ..
                    },
                ) if matches!(call.script, Script::Cancel) && !call.cancel_sent => {
                    call.cancel_sent = true;
                    allow(
                        self.alice.calls().cancel(
                            call.call_id.as_bytes(),
                            call.from_tag.as_bytes(),
                            a_out,
                        ),
                        "cancel",
                    );
                }
                (
                    Node::Alice,
                    Verdict::Confirmed {
                        dialog,
                        cseq,
                        extra,
                    },
                ) => {
                    allow(self.alice.ack(dialog, cseq, a_out), "ack");
                    let hang_up = extra || matches!(call.script, Script::AliceHangsUp);
                    if hang_up && call.alice_bye.insert(dialog) {
                        allow(
                            self.alice.request(
                                dialog,
                                Method::Bye,
                                &RequestBody::default(),
                                now,
                                a_out,
                            ),
                            "alice BYE",
                        );
                    }
                }
                (Node::Alice | Node::Bob, Verdict::Request { .. }) => {
                    let (mgr, out) = if p.to == Node::Alice {
                        (&self.alice, a_out)
                    } else {
                        (&self.bob, b_out)
                    };
                    allow(
                        mgr.respond(&p.bytes, 200, &ResponseParts::default(), now, out),
                        "respond",
                    );
                }
                (Node::Bob, Verdict::NewInvite { .. }) => {
                    call.bob_answered = true;
                    let finals: &[u16] = match call.script {
                        Script::AliceHangsUp | Script::BobHangsUp => &[100, 180, 200],
                        Script::Busy => &[100, 180, 486],
                        Script::Cancel => &[100, 180],
                    };
                    for &status in finals {
                        let r = self.bob.respond(
                            &p.bytes,
                            status,
                            &ResponseParts::default(),
                            now,
                            b_out,
                        );
                        if let Err(e) = r {
                            panic!("bob respond {status}: {e:?}");
                        }
                    }
                }
                (Node::Bob, Verdict::Ack { dialog })
                    if matches!(call.script, Script::BobHangsUp) && call.bob_bye.insert(dialog) =>
                {
                    allow(
                        self.bob
                            .request(dialog, Method::Bye, &RequestBody::default(), now, b_out),
                        "bob BYE",
                    );
                }
                _ => {}
            }
        }

        fn run(&mut self, steps: &[Step]) {
            // Lossy, reordering, duplicating phase.
            for step in steps {
                if self.queue.is_empty() {
                    break;
                }
                self.now += step.dt;
                self.timers();
                if self.queue.is_empty() {
                    break;
                }
                let p = self.queue.remove(step.pick % self.queue.len().min(WINDOW));
                for _ in 0..step.copies {
                    self.deliver(&p);
                }
            }
            // Then a reliable network, and the timers up to far in the future.
            let mut rounds = 0;
            loop {
                rounds += 1;
                assert!(rounds < 100_000, "the calls never settle");
                if !self.queue.is_empty() {
                    let p = self.queue.remove(0);
                    self.now += 1;
                    self.deliver(&p);
                    continue;
                }
                let next = [&self.alice, &self.bob, &self.observer]
                    .iter()
                    .filter_map(|m| m.next_deadline())
                    .min();
                match next {
                    Some(at) if at <= FAR => {
                        self.now = self.now.max(at);
                        self.timers();
                    }
                    _ => break,
                }
            }
            self.now = self.now.max(FAR);
            self.timers();
            assert!(self.queue.is_empty());
        }
    }

    fn script() -> impl Strategy<Value = Script> {
        prop_oneof![
            Just(Script::AliceHangsUp),
            Just(Script::BobHangsUp),
            Just(Script::Busy),
            Just(Script::Cancel),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let copies = prop_oneof![12 => Just(1u8), 3 => Just(2u8), 1 => Just(3u8), 2 => Just(0u8)];
        let dt = prop_oneof![20 => 0u64..300, 1 => 20_000u64..40_000];
        (0..WINDOW, copies, dt).prop_map(|(pick, copies, dt)| Step { pick, copies, dt })
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(64)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever UDP does to the messages of up to eight concurrent calls, once they are
        /// over and the timers have run, no dialog and no INVITE record is left anywhere.
        #[test]
        fn reordered_duplicated_lost_calls_leave_nothing_behind(
            scripts in prop::collection::vec(script(), 1..=8),
            steps in prop::collection::vec(step(), 0..160),
        ) {
            let mut world = World::new(&scripts);
            world.run(&steps);
            for (name, m) in [("alice", &world.alice), ("bob", &world.bob), ("observer", &world.observer)] {
                prop_assert_eq!(m.len(), 0, "{} holds dialogs", name);
                prop_assert_eq!(m.pending_invites(), 0, "{} holds INVITE records", name);
            }
        }
    }
}
