//! Requests inside a dialog, both ways (§12.2): what a received one does to the dialog (CSeq
//! order, BYE, re-INVITE glare, target refresh offered), what a response to ours does, and
//! the requests we build from the dialog's state (§12.2.1.1), ACK included.

use std::sync::atomic::Ordering;

use super::outbox::{Delivery, Meta};
use super::{DialogManager, ManagerError, Outbox, Verdict};
use crate::build::{self, RequestParts, ResponseParts};
use crate::dialog::{DialogInfo, Role};
use crate::metrics::TerminationReason;
use crate::state::{Event, Phase, StateError};
use crate::table::{CSeqOrder, DialogHandle, TableError};
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
    /// A request inside the live `dialog` (§12.2.2): ACK, then the CSeq order, then what the
    /// method does to the dialog.
    pub(crate) fn in_dialog_request(
        &self,
        view: &MessageView<'_>,
        dialog: DialogHandle,
        method: Method,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        // ACK carries the INVITE's CSeq and is not part of the CSeq order (§12.2.2).
        if method == Method::Ack {
            let _ = self.dialogs.table.transition(dialog, Event::AckReceived);
            self.dialogs.table.touch(dialog, now_ms)?;
            return Ok(Verdict::Ack { dialog });
        }
        match self
            .dialogs
            .table
            .advance_remote_cseq(dialog, view.cseq().number)
        {
            Ok(CSeqOrder::Newer) => {}
            Ok(CSeqOrder::Same) => return Ok(Verdict::Retransmission),
            Err(TableError::CSeqOutOfOrder { .. }) => {
                return self.reject(view, Some(dialog), 500, out)
            }
            Err(TableError::Stale) => return self.reject(view, None, 481, out),
            Err(e) => return Err(e.into()),
        }
        let _ = self.dialogs.table.touch(dialog, now_ms);
        match method {
            Method::Bye => {
                self.end(dialog, TerminationReason::Bye, now_ms);
                out.push(Meta::response(Some(dialog)), |buf| {
                    build::response(view, 200, "OK", None, &ResponseParts::default(), buf)
                })?;
                Ok(Verdict::Bye { dialog })
            }
            Method::Invite | Method::Update => {
                if method == Method::Invite {
                    match self.dialogs.table.transition(dialog, Event::BeginInvite) {
                        Ok(_) => {}
                        Err(TableError::State(StateError::Glare)) => {
                            return self.reject(view, Some(dialog), 491, out)
                        }
                        Err(TableError::State(StateError::Illegal { .. })) => {
                            // A re-INVITE on an early dialog, or while our BYE is pending.
                            return self.reject(view, Some(dialog), 500, out);
                        }
                        Err(TableError::State(StateError::ByePending)) => {
                            return self.reject(view, Some(dialog), 481, out)
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                // A target refresh takes effect when we answer it 2xx (§12.2.2).
                self.dialogs
                    .propose_target(dialog, view, self.dialog_budget());
                Ok(Verdict::Request { dialog, method })
            }
            Method::Refer => self.refer_received(view, dialog, now_ms, out),
            Method::Notify => self.notify_received(view, dialog, out),
            _ => Ok(Verdict::Request { dialog, method }),
        }
    }

    /// A response to a request we sent inside the live `dialog` (§12.2.1.2).
    pub(crate) fn in_dialog_response(
        &self,
        view: &MessageView<'_>,
        dialog: DialogHandle,
        status: u16,
        now_ms: u64,
    ) -> Result<Verdict, ManagerError> {
        let method = Method::from_bytes(view.cseq().method);
        let cseq = view.cseq().number;
        let _ = self.dialogs.table.touch(dialog, now_ms);
        if let Some(reason) = Self::ended_by_response(method, status) {
            self.end(dialog, reason, now_ms);
            return Ok(Verdict::Ended { dialog, status });
        }
        if method == Method::Refer && status >= 300 {
            self.refer_refused(dialog, cseq);
        }
        if method == Method::Invite && status >= 200 {
            let _ = self.dialogs.table.transition(dialog, Event::EndInvite);
            if status == 491 {
                let role = self.info(dialog).map_or(Role::Uas, |i| i.role());
                return Ok(Verdict::Glare {
                    dialog,
                    retry_at_ms: self.glare_retry_at(role, now_ms),
                });
            }
        }
        if (200..300).contains(&status) && matches!(method, Method::Invite | Method::Update) {
            self.dialogs
                .refresh_target(dialog, view, false, self.dialog_budget());
        }
        Ok(Verdict::Response {
            dialog,
            status,
            method,
            cseq,
        })
    }

    /// State changes for a request we send inside a dialog.
    pub(crate) fn request_sent(
        &self,
        dialog: DialogHandle,
        method: Method,
        now_ms: u64,
    ) -> Result<(), ManagerError> {
        match method {
            Method::Bye => {
                // The callee ends an early dialog with a final response, never BYE (§15).
                let state = self.dialogs.table.state(dialog)?;
                let uas = self
                    .dialogs
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
                self.dialogs.table.transition(dialog, Event::BeginBye)?;
                if let Some(entry) = self.dialogs.cold.entry_of(dialog) {
                    entry
                        .bye_deadline
                        .store(now_ms + 64 * self.config.t1_ms, Ordering::Relaxed);
                }
                self.rearm(dialog, now_ms);
            }
            Method::Invite => {
                self.dialogs.table.transition(dialog, Event::BeginInvite)?;
            }
            _ => {}
        }
        let _ = self.dialogs.table.touch(dialog, now_ms);
        Ok(())
    }

    /// Builds a request inside the dialog (BYE, re-INVITE, UPDATE, INFO, OPTIONS keepalive,
    /// REFER, NOTIFY, MESSAGE…) into `out`, with the next local CSeq, our Via with a fresh
    /// branch, and our Contact on target-refresh requests; the state moves as for
    /// [`DialogManager::on_sent`] (a re-INVITE while one is pending is refused: glare).
    /// Returns the CSeq used. Use [`DialogManager::ack`] for ACK and
    /// [`Calls::cancel`](super::Calls::cancel) for CANCEL.
    pub fn request(
        &self,
        dialog: DialogHandle,
        method: Method,
        body: &RequestBody<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<u32, ManagerError> {
        let (_, info) = self
            .dialogs
            .cold
            .get(dialog)
            .ok_or(ManagerError::UnknownDialog)?;
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
        let cseq = self.dialogs.table.next_local_cseq(dialog)?;
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
        out.push_request(Meta::request(Some(dialog)).delivered(delivery), |buf| {
            build::request_marked(&info.parts(), &parts, buf)
        })?;
        Ok(cseq)
    }

    /// Takes back the state change of a request that could not be built.
    fn undo_sent(&self, dialog: DialogHandle, method: Method) {
        if method == Method::Invite {
            let _ = self.dialogs.table.transition(dialog, Event::EndInvite);
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
        let (_, info) = self
            .dialogs
            .cold
            .get(dialog)
            .ok_or(ManagerError::UnknownDialog)?;
        let mut via = [0u8; 128];
        let via_len = self.via(out.owner(), dialog, invite_cseq, b'a', &mut via);
        // An ACK is never resent by the transport: the 2xx it answers is (§13.2.2.4).
        out.push_request(
            Meta::request(Some(dialog)).delivered(Delivery::Once),
            |buf| {
                build::ack_for_2xx_marked(
                    &info.parts(),
                    invite_cseq,
                    via.get(..via_len).unwrap_or_default(),
                    buf,
                )
            },
        )?;
        Ok(())
    }

    /// Ends a dialog now, without sending anything (the application already did, or the
    /// peer is gone). `false` if it had ended already.
    pub fn terminate(&self, dialog: DialogHandle, reason: TerminationReason, now_ms: u64) -> bool {
        self.end(dialog, reason, now_ms)
    }

    /// Whether the dialog is still early (for callers deciding between CANCEL and BYE).
    pub fn is_early_dialog(&self, dialog: DialogHandle) -> bool {
        self.dialogs
            .table
            .state(dialog)
            .is_ok_and(|s| s.phase() == Phase::Early)
    }
}
