//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1): requests we receive.

use std::net::SocketAddr;

use super::store::{self, Ending, Family};
use super::{Received, TimedOut, Transactions, Transmits, Transport, TxnError, TxnId, TxnState};
use crate::wire::{MessageView, Method};

impl Transactions {
    /// A request received from `source`: a new transaction ([`Received::New`] or
    /// [`Received::Cancel`]), the ACK of a 2xx ([`Received::AckOf2xx`]), or a retransmission
    /// answered here ([`Received::Absorbed`]). Responses to the request go where RFC 3261
    /// §18.2.2 and RFC 3581 say over UDP (stamp `received`/`rport` first, see
    /// [`crate::build::stamp_received`]), else back to `source`.
    ///
    /// [`TxnError::Full`] when there is no room for a new transaction: answer 503.
    pub fn on_request(
        &mut self,
        view: &MessageView<'_>,
        source: SocketAddr,
        transport: Transport,
        now_ms: u64,
        out: &mut Transmits,
    ) -> Result<Received, TxnError> {
        let method = view
            .method()
            .unwrap_or_else(|| Method::from_bytes(view.cseq().method));
        if method == Method::Ack {
            return Ok(self.on_ack(view, now_ms));
        }
        let key = self.keyer.server(view, method);
        if let Some(id) = self.store.find(&key) {
            if let Some(txn) = self.store.get(id) {
                // The request again: resend the last response, if any (§17.2.1, §17.2.2).
                if txn.status != 0 && txn.state != TxnState::Accepted {
                    out.push(&txn.message, txn.peer, txn.transport, Some(key));
                }
                return Ok(Received::Absorbed);
            }
        }
        self.room(0)?;
        let peer = match transport {
            Transport::Unreliable => view.reply_to(source).unwrap_or(source),
            Transport::Reliable => source,
        };
        let family = match method {
            Method::Invite => Family::Invite,
            _ => Family::NonInvite,
        };
        let state = match family {
            Family::Invite => TxnState::Proceeding,
            Family::NonInvite => TxnState::Trying,
        };
        let mut txn = self.new_txn(key, family, state);
        txn.transport = transport;
        txn.peer = peer;
        if family == Family::Invite {
            txn.ack_of = Some(self.keyer.ack(view));
        }
        // A non-INVITE's client gives up at 64×T1 (Timer F); an INVITE's may wait longer.
        let unanswered = match family {
            Family::Invite => self.config.max_pending_ms,
            Family::NonInvite => self.timeout(),
        };
        txn.end_at = Some((now_ms + unanswered, Ending::Report(TimedOut::Unanswered)));
        let id = self.store.insert(txn);
        if method != Method::Cancel {
            return Ok(Received::New(id));
        }
        // §9.2: the INVITE a CANCEL names has the same branch and sent-by.
        let invite = self.store.find(&self.keyer.server(view, Method::Invite));
        Ok(Received::Cancel { cancel: id, invite })
    }

    /// An ACK: of our non-2xx (same transaction, absorbed) or of our 2xx (the dialog's).
    fn on_ack(&mut self, view: &MessageView<'_>, now_ms: u64) -> Received {
        // An INVITE transaction waits for the ACK of its 2xx under the ACK's own key, only
        // while it is Accepted; one that sent a failure (Completed) never does. Looking for the
        // common case first leaves the failure's key to ACKs it did not find.
        if let Some(id) = self.store.find_ack(&self.keyer.ack(view)) {
            let sent = self.store.update(id, |txn| {
                // Acknowledged: stop resending the 2xx; Timer L still absorbs the INVITE's
                // retransmissions, which needs no copy of the 2xx (a retransmitted INVITE in
                // Accepted gets nothing, RFC 6026 §7.1): its buffer goes back now rather
                // than at the end of Timer L, 64×T1 later.
                txn.ack_key = None;
                txn.resend_at = None;
                if let Some((at, _)) = txn.end_at {
                    txn.end_at = Some((at, Ending::Quiet));
                }
                std::mem::take(&mut txn.message)
            });
            if let Some(sent) = sent {
                self.store.recycle(sent);
            }
            return Received::AckOf2xx { invite: Some(id) };
        }
        let key = self.keyer.server(view, Method::Invite);
        if let Some(id) = self.store.find(&key) {
            let linger = self.config.t4_ms;
            let confirmed = self.store.update(id, |txn| {
                if txn.state == TxnState::Completed {
                    // Timer I: absorb the ACK's retransmissions (§17.2.1).
                    txn.state = TxnState::Confirmed;
                    txn.resend_at = None;
                    txn.end_at =
                        Some((now_ms + Self::linger(txn.transport, linger), Ending::Quiet));
                }
                matches!(txn.state, TxnState::Confirmed)
            });
            if confirmed == Some(true) {
                return Received::Absorbed;
            }
        }
        Received::AckOf2xx { invite: None }
    }

    /// Sends the transaction user's response `bytes` (status `status`) to request `txn`, and
    /// keeps it for the request's retransmissions: resent on Timer G for an INVITE's non-2xx
    /// until the ACK (Timer H), and for an INVITE's 2xx until the ACK of the 2xx or 64×T1
    /// ([`TimedOut::NoAckOf2xx`]).
    ///
    /// [`TxnError::NotOurs`] for another owner's token; [`TxnError::Gone`] when the
    /// transaction has ended; [`TxnError::WrongState`] for a
    /// response after a final one (except further 2xx to an INVITE, RFC 6026) or a status
    /// outside 100..=699; [`TxnError::Full`] when the byte budget cannot hold it (nothing sent).
    pub fn respond(
        &mut self,
        txn: TxnId,
        status: u16,
        bytes: &[u8],
        now_ms: u64,
        out: &mut Transmits,
    ) -> Result<(), TxnError> {
        if !(100..=699).contains(&status) {
            return Err(TxnError::WrongState);
        }
        if txn.owner() != self.config.owner {
            return Err(TxnError::NotOurs);
        }
        let current = self.store.get(txn).ok_or(TxnError::Gone)?;
        if current.key.role() != super::Role::Server {
            // A client transaction's token: we answer only requests we received.
            return Err(TxnError::WrongState);
        }
        let allowed = match (current.family, current.state) {
            (_, TxnState::Trying | TxnState::Proceeding) => true,
            (Family::Invite, TxnState::Accepted) => (200..300).contains(&status),
            _ => false,
        };
        if !allowed {
            return Err(TxnError::WrongState);
        }
        let (family, held) = (current.family, current.message.capacity());
        self.room_for_bytes(store::capacity_for(bytes.len()).saturating_sub(held))?;
        let mut buffer = self.store.buffer(bytes);
        let (t1, timeout) = (self.config.t1_ms, self.timeout());
        self.store
            .update(txn, |t| {
                out.push(bytes, t.peer, t.transport, Some(t.key));
                std::mem::swap(&mut t.message, &mut buffer);
                t.status = status;
                let unreliable = t.transport == Transport::Unreliable;
                match (family, status) {
                    (_, 100..=199) => {
                        if t.state == TxnState::Trying {
                            t.state = TxnState::Proceeding;
                        }
                    }
                    (Family::Invite, 200..=299) => {
                        if t.state != TxnState::Accepted {
                            t.state = TxnState::Accepted;
                            t.interval = t1;
                            // Timer L; the 2xx is resent until its ACK (§13.3.1.4).
                            t.ack_key = t.ack_of;
                            let ending = match t.ack_key {
                                Some(_) => Ending::Report(TimedOut::NoAckOf2xx),
                                None => Ending::Quiet,
                            };
                            t.end_at = Some((now_ms + timeout, ending));
                            if t.ack_key.is_some() {
                                t.resend_at = unreliable.then_some(now_ms + t1);
                            }
                        }
                    }
                    (Family::Invite, _) => {
                        t.state = TxnState::Completed;
                        t.interval = t1;
                        // Timers G and H.
                        t.resend_at = unreliable.then_some(now_ms + t1);
                        t.end_at = Some((now_ms + timeout, Ending::Report(TimedOut::NoAck)));
                    }
                    (Family::NonInvite, _) => {
                        t.state = TxnState::Completed;
                        // Timer J.
                        t.end_at =
                            Some((now_ms + Self::linger(t.transport, timeout), Ending::Quiet));
                    }
                }
            })
            .ok_or(TxnError::Gone)?;
        self.store.recycle(buffer);
        Ok(())
    }

    /// Sends `bytes` once as the answer to request `txn` and forgets the transaction, as a
    /// stateless UAS would (RFC 3261 §8.2.7): for refusals under load (503) and of hostile
    /// input, which must cost no state and must not be resent to a source that may be
    /// spoofed. A retransmission of the request starts over as a new transaction.
    pub fn respond_statelessly(
        &mut self,
        txn: TxnId,
        bytes: &[u8],
        out: &mut Transmits,
    ) -> Result<(), TxnError> {
        if txn.owner() != self.config.owner {
            return Err(TxnError::NotOurs);
        }
        let current = self.store.get(txn).ok_or(TxnError::Gone)?;
        if current.key.role() != super::Role::Server
            || !matches!(current.state, TxnState::Trying | TxnState::Proceeding)
        {
            return Err(TxnError::WrongState);
        }
        out.push(bytes, current.peer, current.transport, Some(current.key));
        self.store.remove(txn);
        Ok(())
    }
}
