//! The little of RFC 3261 §17 a UDP endpoint needs around the dialog layer: a cache of the
//! responses we sent, so a retransmitted request is answered again without reaching the
//! manager; and the requests and final INVITE responses we retransmit until they are
//! answered (or ACKed), T1 doubling to T2, given up at 64×T1. Both hold what outside input
//! makes them hold, so both have a count cap, a byte budget, and an age limit (a transaction
//! is over after 64×T1).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sipdialog::wire::{HeaderName, MessageView};

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
    /// and CSeq method (a CANCEL has its own, §9.2); without a branch (RFC 2543 peers),
    /// Call-ID, From tag and CSeq.
    pub fn server(&self, view: &MessageView<'_>) -> u64 {
        self.server_of(view, view.cseq().method)
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

/// How much a table may hold.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Entries at most.
    pub count: usize,
    /// Bytes of messages at most.
    pub bytes: usize,
    /// Entries older than this (milliseconds) are gone: their transaction is over.
    pub max_age_ms: u64,
}

/// The last response we sent for each recent server transaction, oldest first: entries leave
/// when the count or the bytes are over budget or when they are older than the transaction
/// can be, so a flood costs at most the budget and is forgotten 64×T1 later.
pub struct ResponseCache {
    budget: Budget,
    entries: VecDeque<CachedResponse>,
    /// Key → sequence number of its newest entry.
    index: HashMap<u64, u64>,
    /// Sequence number of `entries[0]`.
    first_seq: u64,
    bytes: usize,
    /// Buffers of evicted entries, for the next ones (a few, small ones only).
    spare: Vec<Vec<u8>>,
}

struct CachedResponse {
    key: u64,
    status: u16,
    to: SocketAddr,
    at_ms: u64,
    bytes: Vec<u8>,
}

/// Spare buffers kept, and the largest kept: steady traffic allocates nothing, a flood of
/// large responses leaves nothing behind.
const SPARE_BUFFERS: usize = 256;
const SPARE_CAPACITY: usize = 4_096;

impl ResponseCache {
    /// An empty cache within `budget`.
    pub fn new(budget: Budget) -> ResponseCache {
        ResponseCache {
            budget,
            entries: VecDeque::new(),
            index: HashMap::new(),
            first_seq: 0,
            bytes: 0,
            spare: Vec::new(),
        }
    }

    /// Records the response `bytes` (status `status`) of transaction `key`, sent to `to` at
    /// `now_ms`. A response larger than the whole budget is not kept.
    pub fn put(&mut self, key: u64, status: u16, to: SocketAddr, bytes: &[u8], now_ms: u64) {
        if bytes.len() > self.budget.bytes || self.budget.count == 0 {
            return;
        }
        self.expire(now_ms);
        while self.entries.len() >= self.budget.count
            || self.bytes + bytes.len() > self.budget.bytes
        {
            self.pop_oldest();
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.extend_from_slice(bytes);
        self.bytes += buf.len();
        let seq = self.first_seq + self.entries.len() as u64;
        self.entries.push_back(CachedResponse {
            key,
            status,
            to,
            at_ms: now_ms,
            bytes: buf,
        });
        self.index.insert(key, seq);
    }

    /// The last response of transaction `key`: (status, where it went, bytes).
    pub fn get(&self, key: u64) -> Option<(u16, SocketAddr, &[u8])> {
        let seq = *self.index.get(&key)?;
        let entry = self.entries.get((seq - self.first_seq) as usize)?;
        Some((entry.status, entry.to, &entry.bytes))
    }

    /// Drops the entries older than the budget's age.
    pub fn expire(&mut self, now_ms: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.at_ms + self.budget.max_age_ms <= now_ms)
        {
            self.pop_oldest();
        }
        // After a burst, give the tables' capacity back too.
        if self.entries.capacity() > 64 && self.entries.len() < self.entries.capacity() / 4 {
            self.entries.shrink_to(self.entries.len() * 2);
            self.index.shrink_to(self.entries.len() * 2);
        }
    }

    fn pop_oldest(&mut self) {
        let Some(mut entry) = self.entries.pop_front() else {
            return;
        };
        if self.index.get(&entry.key) == Some(&self.first_seq) {
            self.index.remove(&entry.key);
        }
        self.first_seq += 1;
        self.bytes -= entry.bytes.len();
        if self.spare.len() < SPARE_BUFFERS && entry.bytes.capacity() <= SPARE_CAPACITY {
            entry.bytes.clear();
            self.spare.push(entry.bytes);
        }
    }

    /// Entries and bytes held.
    pub fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
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
/// in-dialog path of the library. Within a count cap and a byte budget; every entry goes when
/// it is answered or given up (64×T1).
pub struct Retransmissions {
    shards: Box<[Mutex<HashMap<u64, Retransmission>>]>,
    budget: Budget,
    count: AtomicUsize,
    bytes: AtomicUsize,
}

const SHARDS: usize = 16;

impl Retransmissions {
    /// An empty set within `budget` (its age limit is the caller's give-up time).
    pub fn new(budget: Budget) -> Retransmissions {
        Retransmissions {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            budget,
            count: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Retransmission>> {
        let shard = &self.shards[(key as usize) % SHARDS];
        shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts retransmitting `bytes` to `to` under `key`; `false` when that would exceed the
    /// budget (the message then goes once).
    pub fn insert(&self, key: u64, to: SocketAddr, bytes: &[u8]) -> bool {
        let mut shard = self.shard(key);
        if let Some(old) = shard.remove(&key) {
            self.forget(&old);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.budget.count {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if self.bytes.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len() > self.budget.bytes {
            self.bytes.fetch_sub(bytes.len(), Ordering::Relaxed);
            self.count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let entry = Retransmission {
            bytes: bytes.to_vec(),
            to,
            quiet: false,
        };
        shard.insert(key, entry);
        true
    }

    fn forget(&self, entry: &Retransmission) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(entry.bytes.len(), Ordering::Relaxed);
    }

    /// Whether `key` is still in flight: sent, neither answered nor given up.
    pub fn contains(&self, key: u64) -> bool {
        self.shard(key).contains_key(&key)
    }

    /// Stops for good: the final answer (or the ACK) came. `true` if it was in flight.
    pub fn remove(&self, key: u64) -> bool {
        self.take(key).is_some()
    }

    /// Stops for good and hands back what was in flight (the INVITE a non-2xx answers, to
    /// build its ACK from).
    pub fn take(&self, key: u64) -> Option<Retransmission> {
        let mut shard = self.shard(key);
        let entry = shard.remove(&key)?;
        // After a burst, give the capacity back.
        if shard.capacity() > 256 && shard.len() < shard.capacity() / 4 {
            let keep = shard.len() * 2;
            shard.shrink_to(keep);
        }
        drop(shard);
        self.forget(&entry);
        Some(entry)
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

    /// Messages in flight, and their bytes.
    pub fn usage(&self) -> (usize, usize) {
        (
            self.count.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

fn raw<'a>(view: &MessageView<'a>, kind: HeaderName) -> Option<&'a [u8]> {
    view.headers()
        .find(|h| h.kind == kind)
        .map(|h| h.value.trim_ascii())
}

/// The ACK for a non-2xx final response to our INVITE (RFC 3261 §17.1.1.3): part of the
/// INVITE transaction, so the INVITE's Request-URI, top Via (same branch), Route, From,
/// Call-ID and CSeq number, with the response's To (and its tag).
pub fn ack_for_non_2xx(invite: &MessageView<'_>, response: &MessageView<'_>) -> Option<Vec<u8>> {
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

    const TO: &str = "127.0.0.1:5060";

    fn budget(count: usize, bytes: usize) -> Budget {
        Budget {
            count,
            bytes,
            max_age_ms: 32_000,
        }
    }

    #[test]
    fn cache_keeps_the_newest_within_its_count() {
        let to = TO.parse().unwrap();
        let mut cache = ResponseCache::new(budget(2, 1 << 20));
        cache.put(1, 100, to, b"one", 0);
        cache.put(2, 200, to, b"two", 0);
        cache.put(1, 180, to, b"one again", 0);
        assert_eq!(cache.get(1).map(|c| c.0), Some(180));
        assert_eq!(cache.get(2).map(|c| c.0), Some(200));
        cache.put(3, 200, to, b"three", 0);
        assert!(cache.get(2).is_none(), "the oldest entry went");
        assert_eq!(cache.get(1).map(|c| c.2), Some(&b"one again"[..]));
        assert_eq!(cache.get(3).map(|c| c.2), Some(&b"three"[..]));
        assert_eq!(cache.usage().0, 2);
    }

    #[test]
    fn cache_stays_within_its_bytes_and_forgets_old_transactions() {
        let to = TO.parse().unwrap();
        let mut cache = ResponseCache::new(budget(1_000, 10_000));
        let big = vec![b'x'; 3_000];
        for key in 0..100 {
            cache.put(key, 200, to, &big, key);
            assert!(cache.usage().1 <= 10_000);
        }
        assert_eq!(cache.usage(), (3, 9_000));
        assert!(cache.get(99).is_some() && cache.get(96).is_none());
        cache.put(500, 200, to, &vec![b'y'; 20_000], 100);
        assert!(
            cache.get(500).is_none(),
            "larger than the whole budget: not kept"
        );
        cache.expire(99 + 32_000);
        assert_eq!(cache.usage(), (0, 0));
        assert!(cache.get(99).is_none());
    }

    #[test]
    fn retransmissions_stop_when_answered_and_stay_within_budget() {
        let to = TO.parse().unwrap();
        let r = Retransmissions::new(budget(2, 10));
        assert!(r.insert(7, to, b"BYE"));
        let mut sent = 0;
        assert!(r.resend(7, |_, _| sent += 1));
        r.quieten(7);
        assert!(r.resend(7, |_, _| sent += 1));
        assert_eq!(sent, 1);
        assert!(r.insert(8, to, b"INVITE"));
        assert!(!r.insert(9, to, b"X"), "count cap");
        assert!(r.remove(7));
        assert!(!r.insert(9, to, b"TOO LONG"), "byte budget");
        assert!(r.insert(9, to, b"NOT"));
        assert!(!r.resend(7, |_, _| sent += 1));
        assert!(r.remove(8) && r.remove(9));
        assert_eq!(r.usage(), (0, 0));
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
}
