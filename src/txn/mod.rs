//! Sans-IO SIP transactions (RFC 3261 §17, with RFC 6026's Accepted state): the layer between
//! the transport and the dialogs that makes one request and its responses one exchange over a
//! lossy network.
//!
//! It matches each received message to its transaction with a typed key (top Via branch and
//! sent-by and method, §17.2.3; the RFC 2543 fallback for peers without the magic cookie),
//! absorbs retransmissions and answers them from what it last sent, resends our requests and
//! final responses on Timers A, E and G, ACKs a non-2xx final response to our INVITE itself,
//! resends a 2xx until its ACK (the UAS core's job, §13.3.1.4, done here so no caller has to),
//! pairs a CANCEL with the INVITE it names, and ends every transaction on Timers B, D, F, H, I,
//! J, K, L and M. Nothing is unbounded: the table has a count cap and a byte budget; past them
//! the transactions that only absorb retransmissions are dropped oldest first, and when none
//! is left a new one is refused ([`TxnError::Full`]: the caller answers 503).
//!
//! Like the rest of the crate it does no I/O and reads no clock: messages and the time come in,
//! datagrams go out into a [`Transmits`] the caller owns and sends, and [`Transactions::next_deadline`]
//! says when to call [`Transactions::on_timeout`]. One `Transactions` is owned by one thread
//! (`&mut self`: no lock); a multi-threaded endpoint keeps one per worker and steers each
//! peer's datagrams to one worker.
//!
//! ```
//! use sipdialog::txn::{Received, Transactions, Transmits, Transport, TxnConfig};
//! use sipdialog::wire::MessageView;
//!
//! let mut txns = Transactions::new(TxnConfig::default()).unwrap();
//! let mut out = Transmits::new();
//! let peer = "192.0.2.1:5060".parse().unwrap();
//! let bye = b"BYE sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb1\r\n\
//! From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n\
//! Content-Length: 0\r\n\r\n";
//! let view = MessageView::parse(bye).unwrap();
//! let Received::New(txn) = txns.on_request(&view, peer, Transport::Unreliable, 0, &mut out).unwrap()
//! else { panic!("a new request") };
//! // The dialog layer answers it; the layer sends the answer and keeps it for retransmissions.
//! let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb1\r\n\
//! From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n\
//! Content-Length: 0\r\n\r\n";
//! txns.respond(txn, 200, ok, 10, &mut out).unwrap();
//! assert_eq!(out.iter().next().unwrap().to, peer);
//! out.clear();
//! // The BYE again: answered from the transaction, never seen by the dialog layer.
//! let again = txns.on_request(&view, peer, Transport::Unreliable, 500, &mut out).unwrap();
//! assert_eq!(again, Received::Absorbed);
//! assert_eq!(out.iter().next().unwrap().bytes, &ok[..]);
//! // 64×T1 later the transaction is gone.
//! let mut expired = Vec::new();
//! txns.on_timeout(40_000, &mut out, &mut expired);
//! assert!(txns.is_empty() && expired.is_empty());
//! ```

mod client;
mod error;
mod key;
mod server;
mod store;
#[cfg(test)]
mod tests;
mod transmits;

use std::net::SocketAddr;

pub use client::Request;
pub use error::TxnError;
pub use key::{Role, TxnKey};
pub use transmits::{Transmit, Transmits};

use key::Keyer;
use store::{Ending, Store, Txn};

/// How a transaction's messages travel: over UDP it retransmits and lingers to absorb
/// retransmissions; over TCP, TLS or SCTP it does neither (Timers A, E, G unused, D, I, J, K
/// zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Unreliable,
    /// TCP, TLS, SCTP.
    Reliable,
}

/// Timer values and limits. The defaults are RFC 3261's (T1 500 ms, T2 4 s, T4 5 s).
#[derive(Clone, Copy, Debug)]
pub struct TxnConfig {
    /// RTT estimate (ms): the first retransmission interval; 64×T1 is the transaction timeout.
    pub t1_ms: u64,
    /// The longest retransmission interval (ms).
    pub t2_ms: u64,
    /// How long a message may live in the network (ms): Timers I and K.
    pub t4_ms: u64,
    /// Transactions held at most.
    pub max_transactions: usize,
    /// Bytes of message buffers (requests, responses, ACKs) held at most, counted by their
    /// capacity (a power of two from 512 bytes to 4 KiB, exact above), not by the bytes
    /// written: what the budget bounds is the memory held.
    pub max_bytes: usize,
    /// The longest an INVITE may wait for its final response after a provisional one, and a
    /// received request for the transaction user's final answer (ms). RFC 3261 leaves both
    /// open (a UAC cancels when it likes; Timer C is a proxy's); without a bound a peer that
    /// sends 180 and nothing else would hold an entry forever. Default 3 minutes, Timer C's.
    pub max_pending_ms: u64,
    /// Who owns this layer (an endpoint's worker number): stamped on its tokens, so a token
    /// handed to another owner's layer is refused ([`TxnError::NotOurs`]) instead of naming
    /// one of its transactions.
    pub owner: u16,
}

impl Default for TxnConfig {
    fn default() -> TxnConfig {
        TxnConfig {
            t1_ms: 500,
            t2_ms: 4_000,
            t4_ms: 5_000,
            max_transactions: 262_144,
            max_bytes: 256 << 20,
            max_pending_ms: 180_000,
            owner: 0,
        }
    }
}

/// A transaction's state (RFC 3261 Figures 5–8, RFC 6026 Figures 5 and 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    /// Client INVITE: sent, no response yet.
    Calling,
    /// Non-INVITE: sent or received, no response yet.
    Trying,
    /// A provisional response was sent or received.
    Proceeding,
    /// A final response (a non-2xx to an INVITE) was sent or received.
    Completed,
    /// INVITE: a 2xx was sent or received (RFC 6026).
    Accepted,
    /// Server INVITE: the ACK of its non-2xx arrived.
    Confirmed,
    /// Over; about to be removed.
    Terminated,
}

/// A token naming one transaction in one [`Transactions`]; stale once it ends, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxnId {
    slot: u32,
    generation: u32,
    owner: u16,
}

impl TxnId {
    /// The owner of the layer that made it ([`TxnConfig::owner`]).
    pub fn owner(&self) -> u16 {
        self.owner
    }
}

/// What a received message is to the transaction user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A new request: its server transaction. The transaction user answers it with
    /// [`Transactions::respond`].
    New(TxnId),
    /// A new CANCEL (its own server transaction, to be answered 200 or 481) and the INVITE
    /// server transaction it names, if one is live (§9.2): the transaction user answers that
    /// one 487 if it has not sent a final response yet.
    Cancel {
        /// The CANCEL's transaction.
        cancel: TxnId,
        /// The INVITE's.
        invite: Option<TxnId>,
    },
    /// An ACK of a 2xx: the dialog's business. `invite` is the server transaction whose 2xx it
    /// acknowledges (its retransmissions stop), if still live.
    AckOf2xx {
        /// The INVITE's transaction.
        invite: Option<TxnId>,
    },
    /// A response to a request of ours: hand it to the transaction user. Provisional
    /// responses, the final response, and retransmissions of a 2xx to an INVITE (each must be
    /// ACKed again, §13.2.2.4) all come this way.
    Response {
        /// Its client transaction.
        txn: TxnId,
        /// Its status.
        status: u16,
    },
    /// A 2xx to an INVITE with no transaction left (a late retransmission, or another fork's
    /// answer): the dialog layer ACKs (and maybe BYEs) it, §13.2.2.4.
    Stray2xx,
    /// A retransmission or an ACK of a non-2xx, taken care of here (the last response resent,
    /// the ACK resent); the transaction user never sees it.
    Absorbed,
    /// A response that matches nothing of ours and is not a 2xx to an INVITE: dropped
    /// (§17.1.3, §18.1.2).
    Dropped,
}

/// Why a transaction ended without the transaction user's doing; reported by
/// [`Transactions::on_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimedOut {
    /// Timer B or F: our request got no final response within 64×T1. The transaction user
    /// treats it as a 408 (§8.1.3.1).
    NoResponse,
    /// Our INVITE got a provisional response and then nothing within `max_pending_ms`: the
    /// transaction user cancels it (§9.1) or gives up on it.
    NoFinalResponse,
    /// Timer H: our non-2xx final response was never ACKed.
    NoAck,
    /// Our 2xx was resent until 64×T1 and never ACKed: the dialog must end with a BYE
    /// (§13.3.1.4).
    NoAckOf2xx,
    /// A received request the transaction user did not answer within `max_pending_ms` (or,
    /// for a non-INVITE, within 64×T1, when its client gave up): it can no longer be answered.
    Unanswered,
}

/// One transaction that ended on a timer, for the transaction user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The transaction (stale once reported).
    pub txn: TxnId,
    /// Whether we started it.
    pub role: Role,
    /// Why it ended.
    pub reason: TimedOut,
}

/// Every transaction of one owner (one endpoint worker).
pub struct Transactions {
    config: TxnConfig,
    keyer: Keyer,
    store: Store,
}

impl Transactions {
    /// An empty layer, keyed by a secret from the OS CSPRNG. Refuses timers of 0
    /// ([`TxnError::BadConfig`]): retransmissions would never space out and Timer B would fire
    /// at once.
    pub fn new(config: TxnConfig) -> Result<Transactions, TxnError> {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|_| TxnError::NoEntropy)?;
        Transactions::with_secret(config, secret)
    }

    /// An empty layer keyed by `secret` (tests and fuzzing: reproducible keys).
    pub fn with_secret(config: TxnConfig, secret: [u8; 16]) -> Result<Transactions, TxnError> {
        if config.t1_ms == 0 || config.t2_ms < config.t1_ms {
            return Err(TxnError::BadConfig);
        }
        Ok(Transactions {
            config,
            keyer: Keyer::new(secret),
            store: Store::new(config.owner),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// Transactions held.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Entries in the queue of evictable transactions, stale ones included.
    #[cfg(test)]
    pub(crate) fn evictable_queued(&self) -> usize {
        self.store.evictable_queued()
    }

    /// Bytes of message buffers held, by capacity (within [`TxnConfig::max_bytes`]).
    pub fn bytes(&self) -> usize {
        self.store.bytes()
    }

    /// A transaction's state, `None` once it has ended.
    pub fn state(&self, txn: TxnId) -> Option<TxnState> {
        self.store.get(txn).map(|t| t.state)
    }

    /// A transaction's key, `None` once it has ended.
    pub fn key(&self, txn: TxnId) -> Option<TxnKey> {
        self.store.get(txn).map(|t| t.key)
    }

    /// Where a transaction's messages go, `None` once it has ended.
    pub fn peer(&self, txn: TxnId) -> Option<SocketAddr> {
        self.store.get(txn).map(|t| t.peer)
    }

    /// Hands a received message to [`Transactions::on_request`] or
    /// [`Transactions::on_response`].
    pub fn on_message(
        &mut self,
        view: &crate::wire::MessageView<'_>,
        source: SocketAddr,
        transport: Transport,
        now_ms: u64,
        out: &mut Transmits,
    ) -> Result<Received, TxnError> {
        if view.is_request() {
            self.on_request(view, source, transport, now_ms, out)
        } else {
            Ok(self.on_response(view, now_ms, out))
        }
    }

    /// When [`Transactions::on_timeout`] has work next (ms), if ever.
    pub fn next_deadline(&mut self) -> Option<u64> {
        self.store.next_due()
    }

    /// Runs every timer due at `now_ms`: retransmissions go into `out`, transactions that end
    /// for the transaction user's attention into `expired`. Returns how many timers fired.
    pub fn on_timeout(
        &mut self,
        now_ms: u64,
        out: &mut Transmits,
        expired: &mut Vec<Expired>,
    ) -> usize {
        let mut fired = 0;
        while let Some(id) = self.store.pop_due(now_ms) {
            fired += 1;
            let Some(txn) = self.store.get(id) else {
                continue;
            };
            if let Some((_, ending)) = txn.end_at.filter(|(at, _)| *at <= now_ms) {
                if let Ending::Report(reason) = ending {
                    expired.push(Expired {
                        txn: id,
                        role: txn.key.role(),
                        reason,
                    });
                }
                self.store.remove(id);
                continue;
            }
            let t2 = self.config.t2_ms;
            self.store.update(id, |txn| {
                let Some(at) = txn.resend_at.filter(|at| *at <= now_ms) else {
                    return;
                };
                out.push(&txn.message, txn.peer, txn.transport, Some(txn.key));
                // Timer A doubles without bound (§17.1.1.2); E, G and the 2xx's stop at T2.
                let cap = if txn.key.role() == Role::Client && txn.state == TxnState::Calling {
                    u64::MAX
                } else {
                    t2
                };
                txn.interval = txn.interval.saturating_mul(2).min(cap);
                txn.resend_at = Some(at.max(now_ms) + txn.interval);
            });
        }
        fired
    }

    /// 64×T1: how long a transaction may wait for its answer.
    fn timeout(&self) -> u64 {
        self.config.t1_ms.saturating_mul(64)
    }

    /// How long a completed transaction lingers to absorb retransmissions: `unreliable` over
    /// UDP, nothing over a reliable transport.
    fn linger(transport: Transport, unreliable: u64) -> u64 {
        match transport {
            Transport::Unreliable => unreliable,
            Transport::Reliable => 0,
        }
    }

    /// Makes room for one more transaction holding `bytes`.
    fn room(&mut self, bytes: usize) -> Result<(), TxnError> {
        let TxnConfig {
            max_transactions,
            max_bytes,
            ..
        } = self.config;
        if bytes > max_bytes || !self.store.make_room(max_transactions, max_bytes, bytes) {
            return Err(TxnError::Full);
        }
        Ok(())
    }

    /// Makes room for `extra` more bytes in an existing transaction.
    fn room_for_bytes(&mut self, extra: usize) -> Result<(), TxnError> {
        let TxnConfig { max_bytes, .. } = self.config;
        if extra > max_bytes || !self.store.make_room(usize::MAX, max_bytes, extra) {
            return Err(TxnError::Full);
        }
        Ok(())
    }

    fn new_txn(&mut self, key: TxnKey, family: store::Family, state: TxnState) -> Txn {
        Txn {
            key,
            family,
            state,
            transport: Transport::Unreliable,
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            message: Vec::new(),
            ack: Vec::new(),
            ack_of: None,
            ack_key: None,
            status: 0,
            interval: self.config.t1_ms,
            resend_at: None,
            end_at: None,
        }
    }
}
