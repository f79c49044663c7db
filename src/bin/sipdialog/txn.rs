//! The little of RFC 3261 §17 a UDP endpoint needs around the dialog layer: a cache of the
//! responses we sent, so a retransmitted request is answered again without reaching the
//! manager; and the requests and 2xx responses we retransmit until they are answered (or
//! ACKed), T1 doubling to T2, given up at 64×T1.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Mutex;

use sipdialog::wire::MessageView;

/// Keys for transactions and cached responses: a keyed hash of the parts that name them.
#[derive(Clone, Default)]
pub struct KeyHasher(RandomState);

impl KeyHasher {
    fn key(&self, parts: &[&[u8]]) -> u64 {
        let mut h = self.0.build_hasher();
        for part in parts {
            h.write(part);
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// The server transaction a request (or our response to it) belongs to: top Via branch
    /// and CSeq method (a CANCEL shares its INVITE's branch); without a branch (RFC 2543
    /// peers), Call-ID, From tag and CSeq.
    pub fn server(&self, view: &MessageView<'_>) -> u64 {
        self.server_of(view, view.cseq().method)
    }

    /// The server transaction of the INVITE a CANCEL cancels (same branch, §9.2).
    pub fn cancelled_invite(&self, cancel: &MessageView<'_>) -> u64 {
        self.server_of(cancel, b"INVITE")
    }

    fn server_of(&self, view: &MessageView<'_>, method: &[u8]) -> u64 {
        let cseq = view.cseq();
        match view.via_branch() {
            Some(branch) => self.key(&[b"s", branch, method]),
            None => self.key(&[
                b"s",
                view.call_id(),
                view.from_tag().unwrap_or_default(),
                &cseq.number.to_le_bytes(),
                method,
            ]),
        }
    }

    /// The client transaction of a request we sent (or a response to it): the top Via branch,
    /// which the manager makes unique per request.
    pub fn client(&self, view: &MessageView<'_>) -> Option<u64> {
        let branch = view.via_branch()?;
        Some(self.key(&[b"c", branch, view.cseq().method]))
    }

    /// A non-2xx final response to an INVITE waiting for its ACK, which belongs to the INVITE
    /// transaction and so carries the same branch (§17.2.1).
    pub fn failure_awaiting_ack(&self, view: &MessageView<'_>) -> u64 {
        self.server_of(view, b"ACK")
    }

    /// A 2xx to an INVITE waiting for its ACK: the ACK carries the same Call-ID and CSeq
    /// number (and a different branch, §17.1.1.3).
    pub fn awaiting_ack(&self, view: &MessageView<'_>) -> u64 {
        self.key(&[b"a", view.call_id(), &view.cseq().number.to_le_bytes()])
    }
}

/// The last response we sent for each recent server transaction, in a ring of fixed size:
/// memory stays bounded whatever the call rate, and buffers are reused once it has wrapped.
pub struct ResponseCache {
    slots: Vec<CachedResponse>,
    index: HashMap<u64, usize>,
    next: usize,
}

struct CachedResponse {
    key: u64,
    status: u16,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl ResponseCache {
    /// A cache holding the last `capacity` transactions' responses.
    pub fn new(capacity: usize) -> ResponseCache {
        ResponseCache {
            slots: Vec::with_capacity(capacity.max(1)),
            index: HashMap::with_capacity(capacity.max(1)),
            next: 0,
        }
    }

    /// Records the response `bytes` (status `status`) of transaction `key`, sent to `to`.
    pub fn put(&mut self, key: u64, status: u16, to: SocketAddr, bytes: &[u8]) {
        if let Some(&i) = self.index.get(&key) {
            let slot = &mut self.slots[i];
            slot.status = status;
            slot.to = to;
            slot.bytes.clear();
            slot.bytes.extend_from_slice(bytes);
            return;
        }
        let i = if self.slots.len() < self.slots.capacity() {
            self.slots.push(CachedResponse {
                key,
                status,
                to,
                bytes: bytes.to_vec(),
            });
            self.slots.len() - 1
        } else {
            let i = self.next;
            self.next = (i + 1) % self.slots.len();
            let slot = &mut self.slots[i];
            self.index.remove(&slot.key);
            slot.key = key;
            slot.status = status;
            slot.to = to;
            slot.bytes.clear();
            slot.bytes.extend_from_slice(bytes);
            i
        };
        self.index.insert(key, i);
    }

    /// The last response of transaction `key`: (status, where it went, bytes).
    pub fn get(&self, key: u64) -> Option<(u16, SocketAddr, &[u8])> {
        let slot = &self.slots[*self.index.get(&key)?];
        Some((slot.status, slot.to, &slot.bytes))
    }
}

/// What is being retransmitted until an answer (or the ACK) takes it out.
pub struct Retransmission {
    /// The message.
    pub bytes: Vec<u8>,
    /// Where it goes.
    pub to: SocketAddr,
    /// A provisional response came (INVITE): stop resending, keep waiting for the final one.
    pub quiet: bool,
}

/// Retransmissions in flight, shared by the workers: the answer to a message one worker sent
/// may reach another. Sharded mutexes: taken once per message sent or answered, never on the
/// in-dialog path of the library.
pub struct Retransmissions {
    shards: Box<[Mutex<HashMap<u64, Retransmission>>]>,
}

const SHARDS: usize = 16;

impl Retransmissions {
    /// An empty set.
    pub fn new() -> Retransmissions {
        Retransmissions {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Retransmission>> {
        let shard = &self.shards[(key as usize) % SHARDS];
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts retransmitting `bytes` to `to` under `key`.
    pub fn insert(&self, key: u64, to: SocketAddr, bytes: &[u8]) {
        self.shard(key).insert(
            key,
            Retransmission {
                bytes: bytes.to_vec(),
                to,
                quiet: false,
            },
        );
    }

    /// Whether `key` is still in flight: sent, neither answered nor given up.
    pub fn contains(&self, key: u64) -> bool {
        self.shard(key).contains_key(&key)
    }

    /// Stops for good: the final answer (or the ACK) came. `true` if it was in flight.
    pub fn remove(&self, key: u64) -> bool {
        self.shard(key).remove(&key).is_some()
    }

    /// Stops for good and hands back what was in flight (the INVITE a non-2xx answers, to
    /// build its ACK from).
    pub fn take(&self, key: u64) -> Option<Retransmission> {
        self.shard(key).remove(&key)
    }

    /// Stops resending but keeps the entry (a 1xx to our INVITE).
    pub fn quieten(&self, key: u64) {
        if let Some(r) = self.shard(key).get_mut(&key) {
            r.quiet = true;
        }
    }

    /// Calls `send` with the message if it is still in flight and not quiet; `false` once it
    /// is gone (answered, or given up).
    pub fn resend(&self, key: u64, send: impl FnOnce(&[u8], SocketAddr)) -> bool {
        match self.shard(key).get(&key) {
            Some(r) if !r.quiet => {
                send(&r.bytes, r.to);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }
}

fn raw<'a>(view: &MessageView<'a>, kind: sipdialog::wire::HeaderName) -> Option<&'a [u8]> {
    view.headers()
        .find(|h| h.kind == kind)
        .map(|h| h.value.trim_ascii())
}

/// The ACK for a non-2xx final response to our INVITE (RFC 3261 §17.1.1.3): part of the
/// INVITE transaction, so the INVITE's Request-URI, top Via (same branch), Route, From,
/// Call-ID and CSeq number, with the response's To (and its tag).
pub fn ack_for_non_2xx(invite: &MessageView<'_>, response: &MessageView<'_>) -> Option<Vec<u8>> {
    use sipdialog::wire::HeaderName;
    let uri = invite.request_uri()?;
    let mut ack = Vec::with_capacity(512);
    ack.extend_from_slice(b"ACK ");
    ack.extend_from_slice(uri);
    ack.extend_from_slice(b" SIP/2.0\r\n");
    let mut line = |name: &str, value: &[u8]| {
        ack.extend_from_slice(name.as_bytes());
        ack.extend_from_slice(b": ");
        ack.extend_from_slice(value);
        ack.extend_from_slice(b"\r\n");
    };
    let top_via = invite.headers().find(|h| h.kind == HeaderName::Via)?;
    line(
        "Via",
        top_via.value.split(|&b| b == b',').next()?.trim_ascii(),
    );
    for route in invite.headers().filter(|h| h.kind == HeaderName::Route) {
        line("Route", route.value.trim_ascii());
    }
    line("From", raw(invite, HeaderName::From)?);
    line("To", raw(response, HeaderName::To)?);
    line("Call-ID", invite.call_id());
    let cseq = format!("{} ACK", invite.cseq().number);
    line("CSeq", cseq.as_bytes());
    line("Max-Forwards", b"70");
    line("Content-Length", b"0");
    ack.extend_from_slice(b"\r\n");
    Some(ack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_cache_keeps_the_newest_and_reuses_slots() {
        let to: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut cache = ResponseCache::new(2);
        cache.put(1, 100, to, b"one");
        cache.put(2, 200, to, b"two");
        cache.put(1, 180, to, b"one again");
        assert_eq!(cache.get(1).map(|c| c.0), Some(180));
        cache.put(3, 200, to, b"three"); // evicts the oldest slot (key 1)
        assert!(cache.get(1).is_none());
        assert_eq!(cache.get(2).map(|c| c.2), Some(&b"two"[..]));
        assert_eq!(cache.get(3).map(|c| c.2), Some(&b"three"[..]));
    }

    #[test]
    fn ack_for_a_failure_reuses_the_invite_transaction() {
        let invite = b"INVITE sip:bob@127.0.0.1:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\nRoute: <sip:127.0.0.1:5080;lr>\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:bob@c>\r\nCall-ID: x1\r\nCSeq: 4 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let busy = b"SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKabc\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:bob@c>;tag=9\r\nCall-ID: x1\r\nCSeq: 4 INVITE\r\n\
Content-Length: 0\r\n\r\n";
        let invite = MessageView::parse(invite).unwrap();
        let busy = MessageView::parse(busy).unwrap();
        let ack = ack_for_non_2xx(&invite, &busy).unwrap();
        let ack = MessageView::parse(&ack).unwrap();
        assert_eq!(ack.request_uri(), Some(&b"sip:bob@127.0.0.1:5070"[..]));
        assert_eq!(ack.via_branch(), Some(&b"z9hG4bKabc"[..]));
        assert_eq!(ack.to_tag(), Some(&b"9"[..]));
        assert_eq!(ack.cseq().number, 4);
        assert_eq!(ack.cseq().method, b"ACK");
        assert_eq!(ack.route(), Some(&b"<sip:127.0.0.1:5080;lr>"[..]));
    }

    #[test]
    fn retransmissions_stop_when_answered() {
        let to: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let r = Retransmissions::new();
        r.insert(7, to, b"BYE");
        let mut sent = 0;
        assert!(r.resend(7, |_, _| sent += 1));
        r.quieten(7);
        assert!(r.resend(7, |_, _| sent += 1));
        assert_eq!(sent, 1);
        assert!(r.remove(7));
        assert!(!r.resend(7, |_, _| sent += 1));
        assert_eq!(r.len(), 0);
    }
}
