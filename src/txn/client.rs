//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2): requests we send.

use std::net::SocketAddr;

use super::store::{self, Ending, Family};
use super::{Received, TimedOut, Transactions, Transmits, Transport, TxnError, TxnId, TxnState};
use crate::wire::{MessageView, Method};

/// A request of ours, as the transaction layer needs it: what the caller knows because it
/// built it, so the layer never scans its own output.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The whole message.
    pub bytes: &'a [u8],
    /// Its method (not ACK).
    pub method: Method,
    /// The method token as written (needed only for an extension method).
    pub method_token: &'a [u8],
    /// The branch of its top Via, unique per request (`z9hG4bK…`).
    pub branch: &'a [u8],
    /// Where it goes (the resolved next hop).
    pub to: SocketAddr,
    /// Over what.
    pub transport: Transport,
}

impl Transactions {
    /// Starts the client transaction of `request`: sends it (into `out`) and resends it on
    /// Timer A or E until a response comes or 64×T1 passes ([`TimedOut::NoResponse`]).
    ///
    /// ```
    /// use sipdialog::txn::{Received, Request, Transactions, Transmits, Transport, TxnConfig};
    /// use sipdialog::wire::{MessageView, Method};
    ///
    /// let mut txns = Transactions::new(TxnConfig::default()).unwrap();
    /// let mut out = Transmits::new();
    /// let options = b"OPTIONS sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKo1\r\n\
    /// From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    /// let txn = txns.request(Request {
    ///     bytes: options, method: Method::Options, method_token: b"OPTIONS",
    ///     branch: b"z9hG4bKo1", to: "192.0.2.4:5060".parse().unwrap(), transport: Transport::Unreliable,
    /// }, 0, &mut out).unwrap();
    /// assert_eq!(out.len(), 1);
    /// let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKo1\r\n\
    /// From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    /// let got = txns.on_response(&MessageView::parse(ok).unwrap(), 30, &mut out);
    /// assert_eq!(got, Received::Response { txn, status: 200 });
    /// ```
    pub fn request(
        &mut self,
        request: Request<'_>,
        now_ms: u64,
        out: &mut Transmits,
    ) -> Result<TxnId, TxnError> {
        if request.method == Method::Ack {
            return Err(TxnError::AckIsNotATransaction);
        }
        if request.branch.is_empty() {
            return Err(TxnError::NoBranch);
        }
        let key = self
            .keyer
            .client(request.branch, request.method, request.method_token);
        if self.store.find(&key).is_some() {
            // A branch is unique per request (§8.1.1.7): a second use is a caller's mistake.
            return Err(TxnError::WrongState);
        }
        self.room(store::capacity_for(request.bytes.len()))?;
        let (family, state) = match request.method {
            Method::Invite => (Family::Invite, TxnState::Calling),
            _ => (Family::NonInvite, TxnState::Trying),
        };
        let mut txn = self.new_txn(key, family, state);
        txn.transport = request.transport;
        txn.peer = request.to;
        txn.message = self.store.buffer(request.bytes);
        if request.transport == Transport::Unreliable {
            txn.resend_at = Some(now_ms + txn.interval);
        }
        txn.end_at = Some((
            now_ms + self.timeout(),
            Ending::Report(TimedOut::NoResponse),
        ));
        out.push(request.bytes, request.to, request.transport, Some(key));
        Ok(self.store.insert(txn))
    }

    /// The client transaction of our request with top Via `branch` and `method`
    /// (`method_token` as written, needed only for an extension method), while it lives.
    pub fn find_client(&self, branch: &[u8], method: Method, method_token: &[u8]) -> Option<TxnId> {
        let key = self.keyer.client(branch, method, method_token);
        self.store.find(&key)
    }

    /// A response received: matched to our request by its top Via branch and CSeq method
    /// (§17.1.3). Retransmitted non-2xx finals are ACKed again here and absorbed.
    pub fn on_response(
        &mut self,
        view: &MessageView<'_>,
        now_ms: u64,
        out: &mut Transmits,
    ) -> Received {
        let Some(status) = view.status_code() else {
            return Received::Dropped;
        };
        let invite = view.cseq().method == b"INVITE";
        let found = self
            .keyer
            .of_response(view)
            .and_then(|key| self.store.find(&key));
        let Some(id) = found else {
            return if invite && (200..300).contains(&status) {
                Received::Stray2xx
            } else {
                Received::Dropped
            };
        };
        let Some(txn) = self.store.get(id) else {
            return Received::Dropped;
        };
        match (txn.family, txn.state) {
            (Family::Invite, TxnState::Calling | TxnState::Proceeding) => {
                self.invite_response(id, view, status, now_ms, out)
            }
            // RFC 6026: every 2xx, first or not, from any fork, goes up to be ACKed.
            (Family::Invite, TxnState::Accepted) if (200..300).contains(&status) => {
                Received::Response { txn: id, status }
            }
            (Family::Invite, TxnState::Completed) if status >= 300 => {
                out.push(&txn.ack, txn.peer, txn.transport, Some(txn.key));
                Received::Absorbed
            }
            (Family::NonInvite, TxnState::Trying | TxnState::Proceeding) => {
                let (linger, t2) = (self.config.t4_ms, self.config.t2_ms);
                self.store.update(id, |txn| {
                    if status < 200 {
                        txn.state = TxnState::Proceeding;
                        // Timer E keeps going, at T2 from now on (§17.1.2.2).
                        txn.interval = t2;
                    } else {
                        txn.state = TxnState::Completed;
                        txn.status = status;
                        txn.resend_at = None;
                        txn.end_at =
                            Some((now_ms + Self::linger(txn.transport, linger), Ending::Quiet));
                    }
                });
                Received::Response { txn: id, status }
            }
            _ => Received::Absorbed,
        }
    }

    /// A response to our INVITE before its final one was seen.
    fn invite_response(
        &mut self,
        id: TxnId,
        view: &MessageView<'_>,
        status: u16,
        now_ms: u64,
        out: &mut Transmits,
    ) -> Received {
        let pending = self.config.max_pending_ms;
        let accepted = self.timeout();
        if status < 200 {
            self.store.update(id, |txn| {
                txn.state = TxnState::Proceeding;
                txn.resend_at = None;
                txn.end_at = Some((now_ms + pending, Ending::Report(TimedOut::NoFinalResponse)));
            });
        } else if status < 300 {
            let sent = self.store.update(id, |txn| {
                txn.state = TxnState::Accepted;
                txn.status = status;
                txn.resend_at = None;
                // Timer M: other forks' 2xx still come through this transaction. Accepted
                // never sends the INVITE again nor ACKs a failure from it, so its copy goes
                // back now rather than at the end of Timer M, 64×T1 later.
                txn.end_at = Some((now_ms + accepted, Ending::Quiet));
                std::mem::take(&mut txn.message)
            });
            if let Some(sent) = sent {
                self.store.recycle(sent);
            }
        } else {
            self.fail_invite(id, view, status, now_ms, out);
        }
        Received::Response { txn: id, status }
    }

    /// A non-2xx final response to our INVITE: ACK it (§17.1.1.3) and linger on Timer D.
    fn fail_invite(
        &mut self,
        id: TxnId,
        view: &MessageView<'_>,
        status: u16,
        now_ms: u64,
        out: &mut Transmits,
    ) {
        let mut ack = self.store.buffer(b"");
        let built = self.store.get(id).is_some_and(|txn| {
            // Our own INVITE is read back once here, on the failure path only.
            MessageView::parse(&txn.message).ok().is_some_and(|invite| {
                crate::build::ack_for_failure(&invite, view, &mut ack).is_ok()
            })
        });
        // Timer D: 32 s or more over UDP (§17.1.1.2); whatever T1 is, a retransmitted final
        // can come until 64×T1.
        let linger = self.timeout().max(32_000);
        let room = built && self.room_for_bytes(ack.len()).is_ok();
        self.store.update(id, |txn| {
            txn.state = TxnState::Completed;
            txn.status = status;
            txn.resend_at = None;
            txn.end_at = Some((now_ms + Self::linger(txn.transport, linger), Ending::Quiet));
            if built {
                out.push(&ack, txn.peer, txn.transport, Some(txn.key));
            }
            if room {
                std::mem::swap(&mut txn.ack, &mut ack);
            }
        });
    }
}
