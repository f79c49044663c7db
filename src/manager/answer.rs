//! Answers to received requests. An INVITE's 1xx/2xx leave only for a dialog that exists
//! (it is made, or found unmakeable, before the answer is written), and its final answer is
//! claimed once ([`PendingInvite::claim_final`]), so a CANCEL and a 200 racing on two
//! threads never both win. CANCEL matches its INVITE's transaction as RFC 3261 §9.2 says.

use std::sync::atomic::Ordering;

use super::outbox::{Delivery, Meta};
use super::pending::{self, InviteId, KeptRequest, PendingInvite};
use super::{DialogManager, ManagerError, Outbox, Verdict};
use crate::build::{self, BuildError, ResponseParts};
use crate::dialog::{contact_uri, Origin, Role};
use crate::id::{DialogKey, Tag};
use crate::metrics::TerminationReason;
use crate::security::SecurityError;
use crate::state::{DialogState, Event};
use crate::table::{DialogHandle, TableError};
use crate::wire::{MessageView, Method};

/// Whether an answer is written, or only recorded (the caller built and sent it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Write,
    Record,
}

impl DialogManager {
    /// Answers a received request with `status` and records what the answer does to the
    /// dialogs. For a new INVITE ([`super::Verdict::NewInvite`]) the dialog comes first: a
    /// 1xx/2xx creates (or confirms) it with the chosen To tag before the answer is written,
    /// and when it cannot be made (table full, early or per-source limit) the INVITE gets 503
    /// with `Retry-After` instead and the error says why. Once the INVITE has its final answer
    /// (a 2xx, a refusal, a CANCEL's 487) nothing more is sent for it:
    /// [`ManagerError::AlreadyAnswered`]. Inside a dialog, a 1xx/2xx is refused
    /// ([`ManagerError::UnknownDialog`], nothing sent) once the dialog is gone; a 2xx to a
    /// re-INVITE or UPDATE installs the new remote target. Our Contact is added to 1xx/2xx of
    /// INVITE and UPDATE unless `parts` has one. Returns the dialog.
    pub fn respond(
        &self,
        request: &[u8],
        status: u16,
        parts: &ResponseParts<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let view = MessageView::parse_with(request, &self.scan_limits())?;
        self.respond_to(&view, status, parts, now_ms, out)
    }

    /// [`DialogManager::respond`] for a request already scanned (the view the caller handed
    /// to [`DialogManager::on_message`]): no second scan.
    pub fn respond_to(
        &self,
        view: &MessageView<'_>,
        status: u16,
        parts: &ResponseParts<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let view = *view;
        let method = view.method().ok_or(BuildError::NotARequest)?;
        if method == Method::Invite && view.to_tag().is_none() {
            let records = self.records();
            let pending = self
                .uas_record(&view, &records)
                .ok_or(ManagerError::UnknownDialog)?;
            return self.answer_invite(pending, &view, status, parts, now_ms, out, Mode::Write);
        }
        // Looked up once, for the check and for the answer's effect on the dialog.
        let dialog = view
            .to_tag()
            .and_then(|_| self.dialogs.table.lookup(&DialogKey::received(&view)));
        // A success inside a dialog that has ended (or never was) would speak for no dialog.
        if view.to_tag().is_some() && (101..300).contains(&status) && dialog.is_none() {
            return Err(ManagerError::UnknownDialog);
        }
        let parts = self.with_contact(method, status, parts);
        out.push(Meta::response(None), |buf| {
            let reason = build::reason_phrase(status);
            build::response(&view, status, reason, None, &parts, buf)
        })?;
        Ok(dialog.and_then(|dialog| self.in_dialog_answered(dialog, method, status, now_ms)))
    }

    /// [`DialogManager::respond`] for a request kept with [`KeptRequest::new`] (answered
    /// after its bytes are gone, e.g. once a B2BUA's other leg answered): no scan.
    pub fn respond_kept(
        &self,
        request: &KeptRequest,
        status: u16,
        parts: &ResponseParts<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let view = request.view().ok_or(ManagerError::UnknownDialog)?;
        self.respond_to(&view, status, parts, now_ms, out)
    }

    /// [`DialogManager::respond`] for a new INVITE by its token, without its bytes: the answer
    /// is built from what the manager kept of it (Via, From, To, Call-ID, CSeq,
    /// Record-Route). [`ManagerError::AlreadyAnswered`] once it has its final answer.
    pub fn respond_invite(
        &self,
        invite: InviteId,
        status: u16,
        parts: &ResponseParts<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let records = self.records();
        let pending = self
            .pending_get(invite.0, &records)
            .filter(|p| p.role == Role::Uas)
            .ok_or(ManagerError::UnknownDialog)?;
        let copy = pending.copy().ok_or(ManagerError::AlreadyAnswered)?;
        let view = copy.view().ok_or(ManagerError::UnknownDialog)?;
        self.answer_invite(pending, &view, status, parts, now_ms, out, Mode::Write)
    }

    /// Whether the INVITE has its final answer (or was cancelled); `None` when the manager
    /// no longer tracks it.
    pub fn is_answered(&self, invite: InviteId) -> Option<bool> {
        self.pending_get(invite.0, &self.records())
            .map(|p| p.is_finished())
    }

    /// Our Contact on a 1xx/2xx of INVITE or UPDATE, unless the caller gave one.
    fn with_contact<'a>(
        &'a self,
        method: Method,
        status: u16,
        parts: &ResponseParts<'a>,
    ) -> ResponseParts<'a> {
        let mut parts = *parts;
        let target_refresh = matches!(method, Method::Invite | Method::Update);
        if parts.contact.is_none() && target_refresh && (101..300).contains(&status) {
            parts.contact = Some(&self.config.contact);
        }
        parts
    }

    /// A response to a new INVITE: what it does to the dialogs, and (`Mode::Write`) the
    /// response itself, in that order.
    #[allow(clippy::too_many_arguments)]
    fn answer_invite(
        &self,
        pending: &PendingInvite,
        view: &MessageView<'_>,
        status: u16,
        parts: &ResponseParts<'_>,
        now_ms: u64,
        out: &mut Outbox,
        mode: Mode,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let parts = self.with_contact(Method::Invite, status, parts);
        let tag = pending.to_tag.as_ref().map(Tag::as_bytes);
        let write = |out: &mut Outbox, dialog: Option<DialogHandle>, tag: Option<&[u8]>| {
            if mode == Mode::Record {
                return Ok(());
            }
            let reason = build::reason_phrase(status);
            out.push(Meta::response(dialog).answering(pending.answering), |buf| {
                build::response(view, status, reason, tag, &parts, buf)
            })
        };
        match status {
            100 => {
                if pending.is_finished() {
                    return Err(ManagerError::AlreadyAnswered);
                }
                write(out, None, None)?;
                Ok(None)
            }
            101..=199 => {
                if pending.is_finished() {
                    return Err(ManagerError::AlreadyAnswered);
                }
                let dialog = match self.uas_dialog(pending, view, false, now_ms) {
                    Ok(dialog) => dialog,
                    Err(ManagerError::Security(e)) => {
                        if !pending.claim_final() {
                            return Err(ManagerError::AlreadyAnswered);
                        }
                        return Err(self.refuse_invite(pending, view, e, now_ms, out, mode));
                    }
                    Err(e) => return Err(e),
                };
                write(out, Some(dialog), tag)?;
                Ok(Some(dialog))
            }
            200..=299 => {
                if !pending.claim_final() {
                    return Err(ManagerError::AlreadyAnswered);
                }
                let confirmed = self
                    .uas_dialog(pending, view, true, now_ms)
                    .and_then(|dialog| {
                        self.uas_confirmed(dialog, pending, now_ms)?;
                        write(out, Some(dialog), tag)?;
                        Ok(dialog)
                    });
                match confirmed {
                    Ok(dialog) => {
                        self.pending_finish(pending, now_ms, false);
                        Ok(Some(dialog))
                    }
                    Err(ManagerError::Security(e)) => {
                        Err(self.refuse_invite(pending, view, e, now_ms, out, mode))
                    }
                    Err(e) => {
                        // We hold the claim: the INVITE still gets its final answer, and no
                        // dialog of it stays without its 2xx.
                        for dialog in pending.take_dialogs() {
                            self.end(dialog, TerminationReason::Error, now_ms);
                        }
                        if mode == Mode::Write {
                            let meta = Meta::response(None).answering(pending.answering);
                            let _ = out.push(meta, |buf| {
                                let parts = ResponseParts::default();
                                let reason = build::reason_phrase(500);
                                build::response(view, 500, reason, tag, &parts, buf)
                            });
                        }
                        self.pending_finish(pending, now_ms, false);
                        Err(e)
                    }
                }
            }
            _ => {
                if !pending.claim_final() {
                    return Err(ManagerError::AlreadyAnswered);
                }
                self.end_early_dialogs(pending, TerminationReason::Rejected, now_ms);
                let written = write(out, None, tag);
                self.pending_finish(pending, now_ms, false);
                written?;
                Ok(None)
            }
        }
    }

    /// The INVITE, whose final answer the caller claimed, cannot have the dialog its 1xx/2xx
    /// needs: its early dialogs end and it gets the refusal's status (503 with `Retry-After`)
    /// instead. Returns the error to report.
    fn refuse_invite(
        &self,
        pending: &PendingInvite,
        view: &MessageView<'_>,
        error: SecurityError,
        now_ms: u64,
        out: &mut Outbox,
        mode: Mode,
    ) -> ManagerError {
        let ended = self.end_early_dialogs(pending, TerminationReason::Rejected, now_ms);
        if mode == Mode::Write {
            // Our tag only where earlier answers carried it with a dialog behind them.
            let tag = pending
                .to_tag
                .as_ref()
                .map(Tag::as_bytes)
                .filter(|_| ended > 0);
            if let Ok(status) = self.write_refusal(
                view,
                tag,
                error,
                Delivery::Reliable,
                Some(pending.answering),
                out,
            ) {
                self.count(|m| m.rejected(status));
            }
        }
        tracing::debug!(%error, "INVITE refused when answered");
        self.pending_finish(pending, now_ms, false);
        ManagerError::Security(error)
    }

    /// The UAS dialog of a new INVITE, found or made (early). `claimed`: the caller holds the
    /// final-answer claim (it is answering 2xx), so a concurrent CANCEL cannot have won.
    fn uas_dialog(
        &self,
        pending: &PendingInvite,
        view: &MessageView<'_>,
        claimed: bool,
        now_ms: u64,
    ) -> Result<DialogHandle, ManagerError> {
        // Made by an earlier 1xx: the record lists it, so no look-up by key is needed.
        if let Some(dialog) = pending.first_dialog() {
            if self.dialogs.table.state(dialog).is_ok() {
                return Ok(dialog);
            }
        }
        let to_tag = pending.to_tag.as_ref().map(Tag::as_bytes);
        let key = DialogKey {
            call_id: view.call_id(),
            local_tag: to_tag.or(view.to_tag()).unwrap_or_default(),
            remote_tag: view.from_tag().unwrap_or_default(),
        };
        let lookup = self.dialogs.lookup(&key);
        if let Some(dialog) = lookup.found {
            return Ok(dialog);
        }
        // A dialog a 2xx makes is confirmed at once: it does not count as early.
        self.check_room(!claimed)?;
        let copy = pending.copy().ok_or(ManagerError::AlreadyAnswered)?;
        let charge = pending.take_charge();
        let origin = Origin::Uas {
            request: view,
            to_tag: key.local_tag,
            local_target: contact_uri(&self.config.contact).unwrap_or_default(),
            peer: pending.source,
            charge,
            fingerprint: lookup.fingerprint,
        };
        let created = self.create(&pending.invite(&copy), origin, DialogState::EARLY, now_ms);
        let dialog = match created {
            Ok(dialog) => dialog,
            Err(e) => {
                if let Some(charge) = charge {
                    self.security.release(charge);
                }
                return Err(match e {
                    ManagerError::Table(TableError::Full { capacity }) => {
                        SecurityError::TooManyDialogs { max: capacity }.into()
                    }
                    e => e,
                });
            }
        };
        if !pending.add_dialog(dialog, claimed) {
            // A CANCEL claimed the INVITE while this dialog was made.
            self.end(dialog, TerminationReason::Cancel, now_ms);
            return Err(ManagerError::AlreadyAnswered);
        }
        if !claimed {
            self.rearm(dialog, now_ms);
        }
        Ok(dialog)
    }

    /// Our 2xx is going out: the dialog waits for the ACK (64×T1), and the INVITE record stays
    /// as long, so that a retransmitted INVITE is recognised (RFC 6026 "Accepted").
    fn uas_confirmed(
        &self,
        dialog: DialogHandle,
        pending: &PendingInvite,
        now_ms: u64,
    ) -> Result<(), ManagerError> {
        self.dialogs
            .table
            .transition(dialog, Event::ConfirmAwaitingAck)?;
        let setup_ms = now_ms.saturating_sub(pending.created_ms);
        self.count(|m| m.setup_completed(setup_ms));
        if let Some(entry) = self.dialogs.cold.entry_of(dialog) {
            entry
                .ack_deadline
                .store(now_ms + 64 * self.config.t1_ms, Ordering::Relaxed);
        }
        self.rearm(dialog, now_ms);
        Ok(())
    }

    /// A response to a new INVITE that the caller built and sent itself: recorded as
    /// [`DialogManager::respond`] would (dialogs made, claim taken), nothing written.
    pub(crate) fn invite_answer_sent(
        &self,
        pending: &PendingInvite,
        view: &MessageView<'_>,
        status: u16,
        now_ms: u64,
    ) -> Result<Option<DialogHandle>, ManagerError> {
        let mut none = Outbox::new();
        let parts = ResponseParts::default();
        match self.answer_invite(
            pending,
            view,
            status,
            &parts,
            now_ms,
            &mut none,
            Mode::Record,
        ) {
            // A retransmitted answer: report the dialog it made.
            Err(ManagerError::AlreadyAnswered) if (101..300).contains(&status) => {
                let to_tag = pending.to_tag.as_ref().map(Tag::as_bytes);
                let key = DialogKey {
                    call_id: view.call_id(),
                    local_tag: to_tag.or(view.to_tag()).unwrap_or_default(),
                    remote_tag: view.from_tag().unwrap_or_default(),
                };
                Ok(self.dialogs.table.lookup(&key))
            }
            Err(ManagerError::AlreadyAnswered) => Ok(None),
            other => other,
        }
    }

    /// Our answer to a request inside `dialog`; `None` when the dialog has ended since.
    pub(crate) fn in_dialog_answered(
        &self,
        dialog: DialogHandle,
        method: Method,
        status: u16,
        now_ms: u64,
    ) -> Option<DialogHandle> {
        self.dialogs.table.touch(dialog, now_ms).ok()?;
        if method == Method::Invite && status >= 200 {
            let _ = self.dialogs.table.transition(dialog, Event::EndInvite);
        }
        if matches!(method, Method::Invite | Method::Update) && status >= 200 {
            self.dialogs
                .settle_target(dialog, status < 300, self.dialog_budget());
        }
        Some(dialog)
    }

    /// CANCEL (§9.2): it matches the INVITE's server transaction by Call-ID, From tag, CSeq
    /// number and top Via (branch and sent-by, §17.2.3), else 481. The 200 for it always goes;
    /// the 487 only if the CANCEL wins the INVITE's final answer, and then the INVITE's early
    /// dialogs end.
    pub(crate) fn cancel_received(
        &self,
        view: &MessageView<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        let via = pending::via_key(self.dialogs.table.fingerprinter(), view);
        let records = self.records();
        let Some(pending) = self
            .uas_record(view, &records)
            .filter(|p| p.cseq == view.cseq().number && p.via() == Some(via))
        else {
            return self.reject(view, None, 481, out);
        };
        // The 200 carries the To tag of the INVITE's responses (§9.2).
        let tag = pending.to_tag.as_ref().map(Tag::as_bytes);
        out.push(Meta::response(None), |buf| {
            build::response(view, 200, "OK", tag, &ResponseParts::default(), buf)
        })?;
        let invite = pending.id();
        if !pending.claim_final() {
            // The INVITE was answered already: the CANCEL changes nothing (§9.2).
            return Ok(Verdict::Cancelled {
                dialogs_ended: 0,
                invite,
            });
        }
        let dialogs_ended = self.end_early_dialogs(pending, TerminationReason::Cancel, now_ms);
        if let Some(copy) = pending.copy() {
            if let Some(invite) = copy.view() {
                let meta = Meta::response(None).answering(pending.answering);
                out.push(meta, |buf| {
                    let parts = ResponseParts::default();
                    build::response(&invite, 487, "Request Terminated", tag, &parts, buf)
                })?;
            }
        }
        self.pending_finish(pending, now_ms, false);
        Ok(Verdict::Cancelled {
            dialogs_ended,
            invite,
        })
    }
}
