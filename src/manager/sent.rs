//! Messages this side sends: the INVITE that starts a UAC dialog, requests inside dialogs
//! built from the dialog's state (§12.2.1.1), ACK and CANCEL, and messages the caller built
//! itself ([`DialogManager::on_sent`]).

use std::sync::atomic::Ordering;

use super::outbox::{Delivery, Meta};
use super::pending::PendingInvite;
use super::{DialogManager, ManagerError, Outbox};
use crate::build::{self, RequestParts};
use crate::dialog::{DialogInfo, Role};
use crate::id::DialogKey;
use crate::metrics::TerminationReason;
use crate::state::{Event, Phase, StateError};
use crate::table::DialogHandle;
use crate::wire::{MessageView, Method};

/// The parts of an in-dialog request the caller chooses; the manager fills in the rest.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestBody<'a> {
    /// Content-Type of the body, required when the body is not empty.
    pub content_type: Option<&'a [u8]>,
    /// The body (an SDP offer for a re-INVITE, an INFO payload…).
    pub body: &'a [u8],
    /// Further headers, written in order.
    pub extra_headers: &'a [(&'a str, &'a [u8])],
}

impl DialogManager {
    /// Records a message the caller built and sent itself: an INVITE outside a dialog starts a
    /// UAC transaction (its 1xx/2xx create dialogs), an in-dialog BYE or re-INVITE moves the
    /// state, a response works as in [`DialogManager::respond`] (its To tag is used as is).
    pub fn on_sent(&self, bytes: &[u8], now_ms: u64) -> Result<Option<DialogHandle>, ManagerError> {
        let view = MessageView::parse(bytes)?;
        match view.method() {
            Some(Method::Invite) if view.to_tag().is_none() => {
                let record = self.new_record(&view, Role::Uac);
                self.pending_insert(PendingInvite::new(record, &view), now_ms)?;
                Ok(None)
            }
            Some(method) => {
                let Some(dialog) = self.table.lookup(&DialogKey::sent(&view)) else {
                    return Ok(None);
                };
                self.request_sent(dialog, method, now_ms)?;
                Ok(Some(dialog))
            }
            None => {
                let request_method = Method::from_bytes(view.cseq().method);
                let status = view.status_code().unwrap_or_default();
                if request_method == Method::Invite {
                    let key = self.pending_key(
                        view.call_id(),
                        view.from_tag().unwrap_or_default(),
                        Role::Uas,
                    );
                    if let Some(pending) = self.pending_get(key) {
                        return self.invite_answer_sent(&pending, &view, status, now_ms);
                    }
                }
                Ok(
                    self.in_dialog_answered(
                        &DialogKey::sent(&view),
                        request_method,
                        status,
                        now_ms,
                    ),
                )
            }
        }
    }

    /// State changes for a request we send inside a dialog.
    fn request_sent(
        &self,
        dialog: DialogHandle,
        method: Method,
        now_ms: u64,
    ) -> Result<(), ManagerError> {
        match method {
            Method::Bye => {
                // The callee ends an early dialog with a final response, never BYE (§15).
                let state = self.table.state(dialog)?;
                let uas = self
                    .cold
                    .get(dialog)
                    .is_some_and(|(_, i)| i.role() == Role::Uas);
                if uas && state.phase() == Phase::Early {
                    return Err(StateError::Illegal {
                        from: state,
                        event: Event::BeginBye,
                    }
                    .into());
                }
                self.table.transition(dialog, Event::BeginBye)?;
                if let Some((entry, _)) = self.cold.get(dialog) {
                    entry
                        .bye_deadline
                        .store(now_ms + 64 * self.config.t1_ms, Ordering::Relaxed);
                }
                self.rearm(dialog, now_ms);
            }
            Method::Invite => {
                self.table.transition(dialog, Event::BeginInvite)?;
            }
            _ => {}
        }
        let _ = self.table.touch(dialog, now_ms);
        Ok(())
    }

    /// Builds a request inside the dialog (BYE, re-INVITE, UPDATE, INFO, OPTIONS keepalive,
    /// REFER, NOTIFY, MESSAGE…) into `out`, with the next local CSeq, our Via with a fresh
    /// branch, and our Contact on target-refresh requests; the state moves as for
    /// [`DialogManager::on_sent`] (a re-INVITE while one is pending is refused: glare).
    /// Returns the CSeq used. Use [`DialogManager::ack`] for ACK and
    /// [`DialogManager::cancel`] for CANCEL.
    pub fn request(
        &self,
        dialog: DialogHandle,
        method: Method,
        body: &RequestBody<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<u32, ManagerError> {
        let (_, info) = self.cold.get(dialog).ok_or(ManagerError::UnknownDialog)?;
        self.request_sent(dialog, method, now_ms)?;
        let delivery = match info.peer() {
            Some(peer) => Delivery::ReliableTo(peer),
            None => Delivery::Reliable,
        };
        self.write_request(dialog, &info, method, body, delivery, out)
            .inspect_err(|_| self.undo_sent(dialog, method))
    }

    /// Writes an in-dialog request with the next local CSeq, without moving the state.
    pub(crate) fn write_request(
        &self,
        dialog: DialogHandle,
        info: &DialogInfo,
        method: Method,
        body: &RequestBody<'_>,
        delivery: Delivery,
        out: &mut Outbox,
    ) -> Result<u32, ManagerError> {
        let cseq = self.table.next_local_cseq(dialog)?;
        let mut via = [0u8; 128];
        let via_len = self.via(out.owner(), dialog, cseq, b'q', &mut via);
        // Target refreshes carry our Contact (§12.2.1.1), and REFER and NOTIFY must too
        // (RFC 3515 §7, RFC 6665 §8.2.1).
        let contact = matches!(
            method,
            Method::Invite | Method::Update | Method::Refer | Method::Notify | Method::Subscribe
        )
        .then_some(&self.config.contact[..]);
        let parts = RequestParts {
            method,
            cseq,
            via: via.get(..via_len).unwrap_or_default(),
            max_forwards: 70,
            contact,
            content_type: body.content_type,
            body: body.body,
            extra_headers: body.extra_headers,
        };
        out.push(Meta::request(Some(dialog)).delivered(delivery), |buf| {
            build::request(&info.parts(), &parts, buf)
        })?;
        Ok(cseq)
    }

    /// Takes back the state change of a request that could not be built.
    fn undo_sent(&self, dialog: DialogHandle, method: Method) {
        if method == Method::Invite {
            let _ = self.table.transition(dialog, Event::EndInvite);
        }
    }

    /// Builds the ACK for a 2xx to the INVITE (or re-INVITE) with CSeq `invite_cseq`
    /// (§13.2.2.4): the `cseq` of [`super::Verdict::Confirmed`] or
    /// [`super::Verdict::Response`].
    pub fn ack(
        &self,
        dialog: DialogHandle,
        invite_cseq: u32,
        out: &mut Outbox,
    ) -> Result<(), ManagerError> {
        let (_, info) = self.cold.get(dialog).ok_or(ManagerError::UnknownDialog)?;
        let mut via = [0u8; 128];
        let via_len = self.via(out.owner(), dialog, invite_cseq, b'a', &mut via);
        // An ACK is never resent by the transport: the 2xx it answers is (§13.2.2.4).
        out.push(
            Meta::request(Some(dialog)).delivered(Delivery::Once),
            |buf| {
                build::ack_for_2xx(
                    &info.parts(),
                    invite_cseq,
                    via.get(..via_len).unwrap_or_default(),
                    buf,
                )
            },
        )?;
        Ok(())
    }

    /// Builds a CANCEL for the INVITE we sent with this Call-ID and From tag (§9.1). Its early
    /// dialogs end when the 487 arrives.
    pub fn cancel(
        &self,
        call_id: &[u8],
        from_tag: &[u8],
        out: &mut Outbox,
    ) -> Result<(), ManagerError> {
        let key = self.pending_key(call_id, from_tag, Role::Uac);
        let pending = self.pending_get(key).ok_or(ManagerError::UnknownDialog)?;
        let copy = pending.copy().ok_or(ManagerError::UnknownDialog)?;
        let invite = copy.view().ok_or(ManagerError::UnknownDialog)?;
        out.push(Meta::request(None), |buf| build::cancel(&invite, buf))?;
        Ok(())
    }

    /// Ends a dialog now, without sending anything (the application already did, or the
    /// peer is gone). `false` if it had ended already.
    pub fn terminate(&self, dialog: DialogHandle, reason: TerminationReason, now_ms: u64) -> bool {
        self.end(dialog, reason, now_ms)
    }
}
