//! Messages this side sends: responses that create dialogs (UAS), the INVITE that starts a
//! UAC dialog, and requests inside dialogs built from the dialog's state (§12.2.1.1).

use std::sync::atomic::Ordering;

use super::pending::PendingInvite;
use super::{DialogManager, ManagerError, Outbox};
use crate::build::{self, RequestParts, ResponseParts};
use crate::dialog::{self, contact_uri, DialogInfo, InfoParts, Role};
use crate::id::DialogKey;
use crate::metrics::TerminationReason;
use crate::state::{DialogState, Event, Phase, StateError};
use crate::table::{DialogHandle, NewDialog};
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
    /// Answers a received request with `status` and records what the answer does to the
    /// dialogs: a 1xx/2xx to a new INVITE creates the early/confirmed UAS dialog (with the
    /// To tag chosen in [`super::Verdict::NewInvite`]), a final response ends the INVITE
    /// transaction, a 2xx to a re-INVITE/UPDATE installs the new remote target. Our Contact is
    /// added to 1xx/2xx of INVITE and UPDATE unless `parts` has one. Returns the dialog.
    pub fn respond(
        &self,
        request: &[u8],
        status: u16,
        parts: &ResponseParts<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let view = MessageView::parse(request)?;
        let method = view.method().ok_or(ManagerError::UnknownDialog)?;
        let new_invite = method == Method::Invite && view.to_tag().is_none();
        let pending = if new_invite {
            let key = self.pending_key(
                view.call_id(),
                view.from_tag().unwrap_or_default(),
                Role::Uas,
            );
            Some(self.pending_get(key).ok_or(ManagerError::UnknownDialog)?)
        } else {
            None
        };
        let to_tag = pending.as_ref().and_then(|p| p.to_tag);
        let mut parts = *parts;
        let needs_contact = matches!(method, Method::Invite | Method::Update) && status > 100;
        if parts.contact.is_none() && needs_contact && status < 300 {
            parts.contact = Some(&self.config.contact);
        }
        // A 100 carries no tag (§8.2.6.2); every other response to the INVITE carries ours.
        let tag = to_tag
            .as_ref()
            .filter(|_| status > 100)
            .map(|t| t.as_bytes());
        out.push(None, false, |buf| {
            build::response(
                &view,
                status,
                build::reason_phrase(status),
                tag,
                &parts,
                buf,
            )
        })?;
        match pending {
            Some(pending) => self.uas_invite_answered(&view, &pending, status, now_ms),
            None => {
                Ok(self.in_dialog_answered(&DialogKey::received(&view), method, status, now_ms))
            }
        }
    }

    /// Records a message the caller built and sent itself: an INVITE outside a dialog starts a
    /// UAC transaction (its 1xx/2xx create dialogs), an in-dialog BYE or re-INVITE moves the
    /// state, a response works as in [`DialogManager::respond`] (its To tag is used as is).
    pub fn on_sent(&self, bytes: &[u8], now_ms: u64) -> Result<Option<DialogHandle>, ManagerError> {
        let view = MessageView::parse(bytes)?;
        match view.method() {
            Some(Method::Invite) if view.to_tag().is_none() => {
                let key = self.pending_key(
                    view.call_id(),
                    view.from_tag().unwrap_or_default(),
                    Role::Uac,
                );
                self.pending_insert(PendingInvite::new(key, &view, None), now_ms)?;
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
                        return self.uas_invite_answered(&view, &pending, status, now_ms);
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

    /// Our answer to a new INVITE: 101–299 with our tag creates or confirms the dialog.
    fn uas_invite_answered(
        &self,
        view: &MessageView<'_>,
        pending: &PendingInvite,
        status: u16,
        now_ms: u64,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        if status >= 300 {
            if !pending.finished.load(Ordering::Acquire) {
                self.end_early_dialogs(pending, TerminationReason::Rejected, now_ms);
                self.pending_finish(pending, now_ms, false);
            }
            return Ok(None);
        }
        let to_tag = match (&pending.to_tag, view.to_tag()) {
            (Some(tag), _) => tag.as_bytes(),
            (None, Some(tag)) => tag,
            (None, None) => return Ok(None),
        };
        if status <= 100 {
            return Ok(None);
        }
        // Call-ID and From tag are the INVITE's in every response to it.
        let key = DialogKey {
            call_id: view.call_id(),
            local_tag: to_tag,
            remote_tag: view.from_tag().unwrap_or_default(),
        };
        if let Some(dialog) = self.table.lookup(&key) {
            // A retransmitted answer, or the 2xx after a 1xx: only the 2xx moves the state.
            if status >= 200 && !pending.finished.load(Ordering::Acquire) {
                self.uas_confirmed(dialog, pending, now_ms)?;
            }
            return Ok(Some(dialog));
        }
        if pending.finished.load(Ordering::Acquire) {
            return Ok(None); // answered before: no dialog comes of it now
        }
        let Some(copy) = pending.copy() else {
            return Ok(None);
        };
        let parts = InfoParts {
            role: Role::Uas,
            secure: dialog::is_sips(copy.request_uri()),
            invite_cseq: pending.cseq,
            invite: Some(pending.key),
            call_id: key.call_id,
            local_tag: to_tag,
            remote_tag: key.remote_tag,
            local_uri: copy.to(),
            remote_uri: copy.from(),
            remote_target: copy.contact(),
            local_target: contact_uri(&self.config.contact).unwrap_or_default(),
        };
        let init = NewDialog {
            state: DialogState::EARLY,
            local_cseq: 0,
            remote_cseq: Some(pending.cseq),
            now_ms,
        };
        let dialog = self.create(&key, &init, &parts, copy.record_route.clone())?;
        pending.add_dialog(dialog);
        if status >= 200 {
            self.uas_confirmed(dialog, pending, now_ms)?;
        } else {
            self.rearm(dialog, now_ms);
        }
        Ok(Some(dialog))
    }

    /// Our 2xx went out: the dialog waits for the ACK (64×T1), and the INVITE record stays as
    /// long, so that a retransmitted INVITE is recognised (RFC 6026 "Accepted").
    fn uas_confirmed(
        &self,
        dialog: DialogHandle,
        pending: &PendingInvite,
        now_ms: u64,
    ) -> Result<(), ManagerError> {
        self.table.transition(dialog, Event::ConfirmAwaitingAck)?;
        let setup_ms = now_ms.saturating_sub(pending.created_ms);
        self.count(|m| m.setup_completed(setup_ms));
        if let Some((entry, _)) = self.cold.get(dialog) {
            entry
                .ack_deadline
                .store(now_ms + 64 * self.config.t1_ms, Ordering::Relaxed);
        }
        self.rearm(dialog, now_ms);
        self.pending_finish(pending, now_ms, false);
        Ok(())
    }

    /// Our answer to a request inside the dialog `key` names.
    fn in_dialog_answered(
        &self,
        key: &DialogKey<'_>,
        method: Method,
        status: u16,
        now_ms: u64,
    ) -> Option<DialogHandle> {
        let dialog = self.table.lookup(key)?;
        let _ = self.table.touch(dialog, now_ms);
        if method == Method::Invite && status >= 200 {
            let _ = self.table.transition(dialog, Event::EndInvite);
        }
        if matches!(method, Method::Invite | Method::Update) && status >= 200 {
            if let Some((entry, info)) = self.cold.get(dialog) {
                let target = entry.pending_target.swap(None);
                if let Some(target) = target.filter(|_| status < 300) {
                    entry
                        .info
                        .store(Some(std::sync::Arc::new(info.refreshed(&target, None))));
                }
            }
        }
        Some(dialog)
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
        self.write_request(dialog, &info, method, body, out)
            .inspect_err(|_| self.undo_sent(dialog, method))
    }

    /// Writes an in-dialog request with the next local CSeq, without moving the state.
    pub(crate) fn write_request(
        &self,
        dialog: DialogHandle,
        info: &DialogInfo,
        method: Method,
        body: &RequestBody<'_>,
        out: &mut Outbox,
    ) -> Result<u32, ManagerError> {
        let cseq = self.table.next_local_cseq(dialog)?;
        let mut via = [0u8; 128];
        let via_len = self.via(dialog, cseq, b'q', &mut via);
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
        out.push(Some(dialog), true, |buf| {
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
        let via_len = self.via(dialog, invite_cseq, b'a', &mut via);
        out.push(Some(dialog), true, |buf| {
            build::ack_for_2xx(
                &info.parts(),
                invite_cseq,
                via.get(..via_len).unwrap_or_default(),
                buf,
            )
        })?;
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
        out.push(None, true, |buf| build::cancel(&invite, buf))?;
        Ok(())
    }

    /// Ends a dialog now, without sending anything (the application already did, or the
    /// peer is gone). `false` if it had ended already.
    pub fn terminate(&self, dialog: DialogHandle, reason: TerminationReason, now_ms: u64) -> bool {
        self.end(dialog, reason, now_ms)
    }
}
