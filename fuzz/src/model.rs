//! Inputs of the `table_ops` target: dialog keys from a small alphabet, the operations, and the
//! raw in-dialog messages built for `DialogTable::lookup_message`.

use arbitrary::Arbitrary;
use sipdialog::state::DialogState;

/// Call-IDs the keys are drawn from (all valid `word ["@" word]`).
pub const CALL_IDS: [&str; 4] = ["a84b4c76e66710@pc33.atlanta.com", "c1", "C1", "x.y!z@[::1]"];
/// Tags the keys are drawn from; `""` is "no tag" (RFC 2543 peers).
pub const TAGS: [&str; 4] = ["", "1928301774", "a6c85cf", "A6C85CF"];

/// A dialog key as indices into [`CALL_IDS`] and [`TAGS`].
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySel {
    /// Index into [`CALL_IDS`].
    pub call: u8,
    /// Index into [`TAGS`].
    pub local: u8,
    /// Index into [`TAGS`].
    pub remote: u8,
}

impl KeySel {
    /// The Call-ID.
    pub fn call_id(self) -> &'static str {
        CALL_IDS[usize::from(self.call) % CALL_IDS.len()]
    }
    /// The local tag.
    pub fn local_tag(self) -> &'static str {
        TAGS[usize::from(self.local) % TAGS.len()]
    }
    /// The remote tag.
    pub fn remote_tag(self) -> &'static str {
        TAGS[usize::from(self.remote) % TAGS.len()]
    }
    /// The key with its indices reduced, so that equal keys compare equal.
    pub fn normal(self) -> (&'static str, &'static str, &'static str) {
        (self.call_id(), self.local_tag(), self.remote_tag())
    }
}

/// A CSeq value: mostly small, sometimes at the 2^31 edge, sometimes anything.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CSeqSel {
    /// 0..=255.
    Small(u8),
    /// 2^31 - 1 - n.
    NearTop(u8),
    /// Any u32 (values of 2^31 and more are outside what a SIP message can carry).
    Any(u32),
}

impl CSeqSel {
    /// The value.
    pub fn value(self) -> u32 {
        match self {
            CSeqSel::Small(n) => u32::from(n),
            CSeqSel::NearTop(n) => (1u32 << 31) - 1 - u32::from(n),
            CSeqSel::Any(n) => n,
        }
    }
}

/// A valid dialog state from a byte (all 3 phases x 8 flag sets).
pub fn state_from(b: u8) -> DialogState {
    let valid: Vec<DialogState> = (0..=255u8).filter_map(DialogState::from_bits).collect();
    valid[usize::from(b) % valid.len()]
}

/// One operation on the table. Handles are chosen by index among all handles ever returned
/// (live and stale).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `insert(key, NewDialog)`.
    Insert {
        /// Key.
        key: KeySel,
        /// Initial state (see [`state_from`]).
        state: u8,
        /// Initial local CSeq.
        local_cseq: CSeqSel,
        /// Initial remote CSeq.
        remote_cseq: Option<CSeqSel>,
        /// Clock.
        now_ms: u16,
    },
    /// `lookup(key)` and `lookup_fingerprint`.
    Lookup {
        /// Key.
        key: KeySel,
    },
    /// `lookup_message` on a request or response built for the key.
    LookupMessage {
        /// Key.
        key: KeySel,
        /// How the message is written (see [`build_message`]).
        style: u16,
        /// Its CSeq.
        cseq: u16,
        /// A response rather than a request.
        response: bool,
    },
    /// `remove(handle)`.
    Remove {
        /// Handle index.
        handle: u8,
    },
    /// `remove_key(key)`.
    RemoveKey {
        /// Key.
        key: KeySel,
    },
    /// `transition(handle, event)`.
    Transition {
        /// Handle index.
        handle: u8,
        /// Event index into [`Event::ALL`].
        event: u8,
    },
    /// `next_local_cseq(handle)`.
    NextLocalCSeq {
        /// Handle index.
        handle: u8,
    },
    /// `advance_remote_cseq(handle, cseq)`.
    AdvanceRemoteCSeq {
        /// Handle index.
        handle: u8,
        /// The peer's CSeq.
        cseq: CSeqSel,
    },
    /// `touch(handle, now)`.
    Touch {
        /// Handle index.
        handle: u8,
        /// Clock.
        now_ms: u16,
    },
    /// `state`, `cseqs`, `fingerprint`, `times` of a handle.
    Inspect {
        /// Handle index.
        handle: u8,
    },
    /// `iter()` against the model.
    Iter,
}

/// The whole input of one `table_ops` run.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Table capacity, reduced to 0..=8.
    pub capacity: u8,
    /// Fingerprint key.
    pub key: [u8; 16],
    /// The operations.
    pub ops: Vec<Op>,
}

/// Builds an in-dialog message that a peer would send to (request) or answer (response) the
/// dialog `(call_id, local_tag, remote_tag)`: a request carries the remote tag in From and the
/// local tag in To; a response the other way round. An empty tag is left out.
///
/// `style` bits vary the writing without changing the identity:
/// 1 compact names, 2 quoted display names holding `;tag=` `<` `>` `,` and an escaped quote,
/// 4 addr-spec form (no `<>`), 8 `TAG = v` with LWS, 16 folded To and CSeq, 32 LF-only line
/// ends, 64 keepalive CRLFs first, 128 a URI parameter `;tag=` inside `<>`, 256 Content-Length
/// with a body and trailing octets, 512 lower-case names.
pub fn build_message(
    call_id: &str,
    local_tag: &str,
    remote_tag: &str,
    cseq: u32,
    response: bool,
    style: u16,
) -> Vec<u8> {
    let bit = |b: u16| style & b != 0;
    let eol = if bit(32) { "\n" } else { "\r\n" };
    let name = |full: &str, compact: &str| -> String {
        let n = if bit(1) && !compact.is_empty() {
            compact
        } else {
            full
        };
        if bit(512) {
            n.to_ascii_lowercase()
        } else {
            n.to_string()
        }
    };
    let addr = |user: &str, tag: &str| -> String {
        let mut v = String::new();
        let uri_param = if bit(128) { ";tag=uri-not-header" } else { "" };
        if bit(4) && !bit(128) {
            v.push_str(&format!("sip:{user}@example.com"));
        } else {
            if bit(2) {
                v.push_str("\"Mr \\\"X\\\" ;tag=no <sip:no@no>, \" ");
            }
            v.push_str(&format!("<sip:{user}@example.com{uri_param}>"));
        }
        if !tag.is_empty() {
            if bit(8) {
                v.push_str(&format!(" ; TAG = {tag}"));
            } else {
                v.push_str(&format!(";tag={tag}"));
            }
        }
        if bit(16) {
            v.push_str(&format!(" ;x=1{eol}  ;y"));
        }
        v
    };
    let (from_tag, to_tag) = if response {
        (local_tag, remote_tag)
    } else {
        (remote_tag, local_tag)
    };
    let mut m = String::new();
    if bit(64) {
        m.push_str("\r\n\r\n");
    }
    if response {
        m.push_str(&format!("SIP/2.0 200 OK{eol}"));
    } else {
        m.push_str(&format!("INFO sip:me@example.com SIP/2.0{eol}"));
    }
    m.push_str(&format!(
        "{}: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds{eol}",
        name("Via", "v")
    ));
    m.push_str(&format!("{}: {call_id}{eol}", name("Call-ID", "i")));
    m.push_str(&format!(
        "{}: {}{eol}",
        name("From", "f"),
        addr("peer", from_tag)
    ));
    m.push_str(&format!("{}: {}{eol}", name("To", "t"), addr("me", to_tag)));
    if bit(16) {
        m.push_str(&format!("{}: {cseq}{eol} INFO{eol}", name("CSeq", "")));
    } else {
        m.push_str(&format!("{}: {cseq} INFO{eol}", name("CSeq", "")));
    }
    if bit(256) {
        m.push_str(&format!(
            "{}: 4{eol}{eol}bodyINFO sip:x SIP/2.0{eol}Call-ID: other{eol}",
            name("Content-Length", "l")
        ));
    } else {
        m.push_str(eol);
    }
    m.into_bytes()
}

/// Writes a [`Script`] in the byte format `arbitrary` 1.x reads it from (little-endian
/// integers, a `u32` variant tag scaled onto the variants, a `bool` before each element of the
/// trailing `Vec`), so that seed files can be written from readable scenarios.
pub fn encode(script: &Script) -> Vec<u8> {
    fn tag(out: &mut Vec<u8>, index: u64, count: u64) {
        let t = (index << 32).div_ceil(count);
        out.extend_from_slice(&(t as u32).to_le_bytes());
    }
    fn key(out: &mut Vec<u8>, k: &KeySel) {
        out.extend_from_slice(&[k.call, k.local, k.remote]);
    }
    fn cseq(out: &mut Vec<u8>, c: &CSeqSel) {
        match c {
            CSeqSel::Small(n) => {
                tag(out, 0, 3);
                out.push(*n);
            }
            CSeqSel::NearTop(n) => {
                tag(out, 1, 3);
                out.push(*n);
            }
            CSeqSel::Any(n) => {
                tag(out, 2, 3);
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    let mut out = vec![script.capacity];
    out.extend_from_slice(&script.key);
    for op in &script.ops {
        out.push(1);
        match op {
            Op::Insert {
                key: k,
                state,
                local_cseq,
                remote_cseq,
                now_ms,
            } => {
                tag(&mut out, 0, 11);
                key(&mut out, k);
                out.push(*state);
                cseq(&mut out, local_cseq);
                match remote_cseq {
                    None => out.push(0),
                    Some(c) => {
                        out.push(1);
                        cseq(&mut out, c);
                    }
                }
                out.extend_from_slice(&now_ms.to_le_bytes());
            }
            Op::Lookup { key: k } => {
                tag(&mut out, 1, 11);
                key(&mut out, k);
            }
            Op::LookupMessage {
                key: k,
                style,
                cseq,
                response,
            } => {
                tag(&mut out, 2, 11);
                key(&mut out, k);
                out.extend_from_slice(&style.to_le_bytes());
                out.extend_from_slice(&cseq.to_le_bytes());
                out.push(u8::from(*response));
            }
            Op::Remove { handle } => {
                tag(&mut out, 3, 11);
                out.push(*handle);
            }
            Op::RemoveKey { key: k } => {
                tag(&mut out, 4, 11);
                key(&mut out, k);
            }
            Op::Transition { handle, event } => {
                tag(&mut out, 5, 11);
                out.extend_from_slice(&[*handle, *event]);
            }
            Op::NextLocalCSeq { handle } => {
                tag(&mut out, 6, 11);
                out.push(*handle);
            }
            Op::AdvanceRemoteCSeq { handle, cseq: c } => {
                tag(&mut out, 7, 11);
                out.push(*handle);
                cseq(&mut out, c);
            }
            Op::Touch { handle, now_ms } => {
                tag(&mut out, 8, 11);
                out.push(*handle);
                out.extend_from_slice(&now_ms.to_le_bytes());
            }
            Op::Inspect { handle } => {
                tag(&mut out, 9, 11);
                out.push(*handle);
            }
            Op::Iter => tag(&mut out, 10, 11),
        }
    }
    out.push(0);
    out
}

/// Hand-written scenarios for the `table_ops` seed corpus.
pub fn seed_scripts() -> Vec<(&'static str, Script)> {
    let k = |call, local, remote| KeySel {
        call,
        local,
        remote,
    };
    let ins = |key, state, local: u8, remote: Option<u8>| Op::Insert {
        key,
        state,
        local_cseq: CSeqSel::Small(local),
        remote_cseq: remote.map(CSeqSel::Small),
        now_ms: 10,
    };
    let key16 = [7u8; 16];
    let mut out = Vec::new();

    // Fill a table of 8, hit Full, free a slot, reuse it, and use the stale handle.
    let mut ops: Vec<Op> = (0..8)
        .map(|i| ins(k(i % 4, i / 4 + 1, 1), 0, 1, None))
        .collect();
    ops.push(ins(k(0, 3, 3), 0, 1, None));
    ops.push(ins(k(0, 1, 1), 0, 1, None));
    ops.push(Op::Remove { handle: 2 });
    ops.push(ins(k(0, 3, 3), 1, 5, Some(4)));
    for handle in [2, 8] {
        ops.push(Op::Inspect { handle });
        ops.push(Op::Transition { handle, event: 0 });
        ops.push(Op::NextLocalCSeq { handle });
        ops.push(Op::AdvanceRemoteCSeq {
            handle,
            cseq: CSeqSel::Small(9),
        });
        ops.push(Op::Touch { handle, now_ms: 99 });
    }
    ops.push(Op::Iter);
    out.push((
        "fill-full-reuse",
        Script {
            capacity: 8,
            key: key16,
            ops,
        },
    ));

    // A call: early, 2xx awaiting ACK, ACK, re-INVITE with glare, BYE, terminate, remove.
    let mut ops = vec![ins(k(0, 1, 2), 0, 1, None)];
    for event in [1, 2, 3, 3, 4, 5, 3, 5, 6, 0] {
        ops.push(Op::Transition { handle: 0, event });
        ops.push(Op::Inspect { handle: 0 });
    }
    ops.push(Op::Remove { handle: 0 });
    ops.push(Op::Remove { handle: 0 });
    ops.push(Op::Inspect { handle: 0 });
    ops.push(Op::Iter);
    out.push((
        "call-flow",
        Script {
            capacity: 4,
            key: key16,
            ops,
        },
    ));

    // CSeq rules: local at the 2^31 edge, remote retransmission and out of order.
    let ops = vec![
        Op::Insert {
            key: k(1, 0, 1),
            state: 1,
            local_cseq: CSeqSel::NearTop(1),
            remote_cseq: None,
            now_ms: 0,
        },
        Op::NextLocalCSeq { handle: 0 },
        Op::NextLocalCSeq { handle: 0 },
        Op::NextLocalCSeq { handle: 0 },
        Op::AdvanceRemoteCSeq {
            handle: 0,
            cseq: CSeqSel::Small(5),
        },
        Op::AdvanceRemoteCSeq {
            handle: 0,
            cseq: CSeqSel::Small(5),
        },
        Op::AdvanceRemoteCSeq {
            handle: 0,
            cseq: CSeqSel::Small(4),
        },
        Op::AdvanceRemoteCSeq {
            handle: 0,
            cseq: CSeqSel::NearTop(0),
        },
        Op::Inspect { handle: 0 },
    ];
    out.push((
        "cseq-edges",
        Script {
            capacity: 2,
            key: key16,
            ops,
        },
    ));

    // Raw in-dialog messages in every writing style, for present and absent keys.
    let mut ops = vec![ins(k(0, 1, 2), 0, 1, None), ins(k(3, 0, 3), 1, 1, Some(1))];
    for (i, style) in [0u16, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1023]
        .into_iter()
        .enumerate()
    {
        ops.push(Op::LookupMessage {
            key: k(0, 1, 2),
            style,
            cseq: 2,
            response: i % 2 == 0,
        });
        ops.push(Op::LookupMessage {
            key: k(3, 0, 3),
            style,
            cseq: 3,
            response: i % 2 == 1,
        });
        ops.push(Op::LookupMessage {
            key: k(2, 1, 2),
            style,
            cseq: 4,
            response: false,
        });
    }
    ops.push(Op::RemoveKey { key: k(0, 1, 2) });
    ops.push(Op::LookupMessage {
        key: k(0, 1, 2),
        style: 0,
        cseq: 5,
        response: false,
    });
    out.push((
        "messages",
        Script {
            capacity: 8,
            key: [0; 16],
            ops,
        },
    ));

    // Duplicates, a zero-capacity table, remove_key of an absent key.
    let ops = vec![
        ins(k(0, 0, 0), 0, 0, None),
        Op::Lookup { key: k(0, 0, 0) },
        Op::RemoveKey { key: k(0, 0, 0) },
        Op::Iter,
    ];
    out.push((
        "zero-capacity",
        Script {
            capacity: 0,
            key: key16,
            ops,
        },
    ));
    let ops = vec![
        ins(k(1, 2, 3), 0, 0, None),
        ins(k(1, 2, 3), 0, 0, None),
        ins(k(2, 2, 3), 0, 0, None),
        Op::Lookup { key: k(1, 2, 3) },
        Op::Lookup { key: k(2, 2, 3) },
        Op::RemoveKey { key: k(1, 2, 3) },
        ins(k(1, 2, 3), 0, 0, None),
        Op::Remove { handle: 0 },
        Op::Inspect { handle: 0 },
        Op::Iter,
    ];
    out.push((
        "duplicates",
        Script {
            capacity: 3,
            key: key16,
            ops,
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;

    /// `encode` writes what `arbitrary` reads back as the same script.
    #[test]
    fn seeds_round_trip() {
        for (name, script) in seed_scripts() {
            let bytes = encode(&script);
            let back = Script::arbitrary_take_rest(arbitrary::Unstructured::new(&bytes)).unwrap();
            assert_eq!(back, script, "{name}");
        }
    }

    /// Every style of built message reads back, through the reference, as the key it was built for.
    #[test]
    fn built_messages_carry_their_key() {
        for style in 0..1024u16 {
            for response in [false, true] {
                for (l, r) in [("", "t1"), ("t2", ""), ("a", "b")] {
                    let m = build_message("c@h", l, r, 7, response, style);
                    let (_, id) = reference::extract(&m)
                        .unwrap_or_else(|p| panic!("{p:?}: {}", m.escape_ascii()));
                    let (from, to) = (
                        id.from_tag.unwrap_or_default(),
                        id.to_tag.unwrap_or_default(),
                    );
                    let (local, remote) = if response { (from, to) } else { (to, from) };
                    assert_eq!(
                        (&local[..], &remote[..]),
                        (l.as_bytes(), r.as_bytes()),
                        "{}",
                        m.escape_ascii()
                    );
                    assert_eq!(id.call_id, b"c@h");
                    assert!(
                        id.lenient.is_empty(),
                        "{:?}: {}",
                        id.lenient,
                        m.escape_ascii()
                    );
                }
            }
        }
    }
}
