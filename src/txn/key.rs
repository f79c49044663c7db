//! Transaction keys (RFC 3261 §17.1.3, §17.2.3): what makes two messages belong to one
//! transaction, as keyed 128-bit hashes so a peer cannot aim collisions at the table.

use core::fmt;
use core::hash::{Hash, Hasher};

use crate::prf::Prf;
use crate::wire::{MessageView, Method};

/// The branch prefix of RFC 3261 transactions; a branch without it comes from an RFC 2543 peer.
const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Which side of a transaction a key names: the same branch may name one transaction we
/// sent and one we received (a peer echoing our branch), and they must never meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A transaction started by a request we sent.
    Client,
    /// A transaction started by a request we received.
    Server,
}

/// A transaction's identity: role, the method it is keyed under (an ACK of a non-2xx is keyed
/// as its INVITE, §17.2.3), and a keyed hash of the branch and sent-by (or, for an RFC 2543
/// peer, of Request-URI, Call-ID, From tag, CSeq number and top Via).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TxnKey {
    hash: u128,
    role: Role,
}

impl TxnKey {
    /// Whether the key is of a transaction we started.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl fmt::Debug for TxnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxnKey({:?}, {:032x})", self.role, self.hash)
    }
}

impl Hash for TxnKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed hash: one word of it is enough for a bucket.
        state.write_u64(self.hash as u64 ^ (self.hash >> 64) as u64);
    }
}

/// The identity of an INVITE whose 2xx waits for its ACK: the ACK of a 2xx is a new
/// transaction (new branch, §13.2.2.4), matched by Call-ID, From tag and CSeq number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct AckKey(u128);

impl Hash for AckKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0 as u64 ^ (self.0 >> 64) as u64);
    }
}

/// Computes keys under one secret key, drawn per process.
#[derive(Clone)]
pub(crate) struct Keyer {
    secret: Prf,
}

impl Keyer {
    pub(crate) fn new(secret: [u8; 16]) -> Keyer {
        Keyer {
            secret: Prf::new(&secret),
        }
    }

    fn hash(&self, parts: &[&[u8]]) -> u128 {
        self.secret.hash_parts(parts)
    }

    /// The key of the server transaction a received request belongs to, under `method` (the
    /// request's own method, or INVITE for an ACK or for the INVITE a CANCEL names).
    pub(crate) fn server(&self, view: &MessageView<'_>, method: Method) -> TxnKey {
        let class = method_class(method, view.cseq().method);
        // The top Via decoded once for both its branch and its sent-by.
        let via = view.top_via().ok().flatten();
        let (branch, sent_by) = match via {
            Some(via) => (via.branch, via.sent_by),
            None => (None, &b""[..]),
        };
        let hash = match branch {
            Some(branch) if branch.starts_with(MAGIC_COOKIE) => {
                self.hash(&[b"3261", branch, sent_by, class])
            }
            // RFC 2543 (§17.2.3): Request-URI, Call-ID, From tag, CSeq number and top Via.
            // The To tag is left out: the INVITE had none, its ACK carries ours.
            _ => self.hash(&[
                b"2543",
                view.request_uri().unwrap_or_default(),
                view.call_id(),
                view.from_tag().unwrap_or_default(),
                &view.cseq().number.to_le_bytes(),
                sent_by,
                branch.unwrap_or_default(),
                class,
            ]),
        };
        TxnKey {
            hash,
            role: Role::Server,
        }
    }

    /// The key of a client transaction: our branch and the method (a response to our CANCEL
    /// carries the INVITE's branch and the CANCEL's CSeq method, §17.1.3).
    pub(crate) fn client(&self, branch: &[u8], method: Method, token: &[u8]) -> TxnKey {
        TxnKey {
            hash: self.hash(&[b"client", branch, method_class(method, token)]),
            role: Role::Client,
        }
    }

    /// The key a response names: its top Via branch and CSeq method.
    pub(crate) fn of_response(&self, view: &MessageView<'_>) -> Option<TxnKey> {
        let branch = view.via_branch()?;
        let token = view.cseq().method;
        Some(self.client(branch, Method::from_bytes(token), token))
    }

    /// The INVITE an ACK of a 2xx acknowledges.
    pub(crate) fn ack(&self, view: &MessageView<'_>) -> AckKey {
        AckKey(self.hash(&[
            b"ack",
            view.call_id(),
            view.from_tag().unwrap_or_default(),
            &view.cseq().number.to_le_bytes(),
        ]))
    }
}

/// The method bytes a key is made of: the known token, else the token as written.
fn method_class(method: Method, token: &[u8]) -> &[u8] {
    match method.as_str() {
        Some(name) => name.as_bytes(),
        None => token,
    }
}
