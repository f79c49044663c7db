//! Where a received message goes: a CANCEL to its INVITE, a request without a To tag to
//! the new calls we answer, a response to our INVITE to its record ([`super::calls`]),
//! anything else to its dialog ([`super::in_dialog`]); refusals are written here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::outbox::Meta;
use super::{DialogManager, ManagerError, Outbox, Verdict};
use crate::build::{self, ResponseParts};
use crate::dialog::Role;
use crate::id::DialogKey;
use crate::metrics::MessageKind;
use crate::security::Policy;
use crate::table::DialogHandle;
use crate::wire::{MessageView, Method};

impl DialogManager {
    pub(crate) fn request_received(
        &self,
        policy: &Policy,
        view: &MessageView<'_>,
        method: Method,
        source: Option<SocketAddr>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        if method == Method::Cancel {
            return self.cancel_received(view, now_ms, out);
        }
        if view.to_tag().is_none() {
            return self.out_of_dialog_request(policy, view, method, source, now_ms, out);
        }
        if view.replaces().is_some() {
            // Replaces belongs on an INVITE that creates a dialog (RFC 3891 §3).
            return self.reject(view, None, 400, out);
        }
        let Some(dialog) = self.dialogs.table.lookup(&DialogKey::received(view)) else {
            // ACK never gets a response; anything else gets a ready 481 (§12.2.2).
            if method == Method::Ack {
                return Ok(Verdict::Stray);
            }
            return self.reject(view, None, 481, out);
        };
        self.in_dialog_request(view, dialog, method, now_ms, out)
    }

    /// A request with no To tag: a new INVITE (a UAS dialog in the making, once admitted), or
    /// not ours.
    fn out_of_dialog_request(
        &self,
        policy: &Policy,
        view: &MessageView<'_>,
        method: Method,
        source: Option<SocketAddr>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        let replaced = match self.check_replaces(view) {
            Ok(replaced) => replaced,
            Err(status) => return self.reject(view, None, status, out),
        };
        if method != Method::Invite {
            return Ok(Verdict::OutOfDialog);
        }
        // Computed once for the look-up and the new record.
        let key = self.uas_key(view);
        let records = self.records();
        if let Some(known) = self.pending_get(key, &records) {
            if known.cseq == view.cseq().number {
                return Ok(Verdict::Retransmission);
            }
            if !known.is_finished() {
                // A second INVITE while the first is unanswered (§14.2).
                return self.reject(view, None, 500, out);
            }
            // A new INVITE after a final answer, e.g. with credentials after a 401.
            self.pending_remove(known.key());
        }
        match self.admit_invite(policy, view, key, source, out.answered(), now_ms) {
            Ok((to_tag, invite)) => Ok(Self::new_invite_verdict(to_tag, invite, replaced)),
            Err(ManagerError::AlreadyAnswered) => Ok(Verdict::Retransmission),
            Err(ManagerError::Security(e)) => self.refuse(view, None, e, out),
            Err(e) => Err(e),
        }
    }

    /// Writes a response refusing `view` and reports it.
    pub(crate) fn reject(
        &self,
        view: &MessageView<'_>,
        dialog: Option<DialogHandle>,
        status: u16,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        out.push(Meta::response(dialog), |buf| {
            build::response(
                view,
                status,
                build::reason_phrase(status),
                None,
                &ResponseParts::default(),
                buf,
            )
        })?;
        self.count(|m| m.rejected(status));
        tracing::debug!(status, method = ?view.method(), ?dialog, "request rejected");
        Ok(Verdict::Rejected { status, dialog })
    }

    /// `sipdialog_messages_total`, one relaxed add on this thread's shard.
    #[inline]
    pub(crate) fn count_message(&self, view: &MessageView<'_>) {
        self.count(|m| match view.method() {
            Some(method) => m.message(MessageKind::Request, method),
            None => m.message(
                MessageKind::Response,
                Method::from_bytes(view.cseq().method),
            ),
        });
        tracing::trace!(call_id = ?view.call_id(), cseq = view.cseq().number, "message");
    }

    pub(crate) fn response_received(
        &self,
        view: &MessageView<'_>,
        source: Option<SocketAddr>,
        now_ms: u64,
    ) -> Result<Verdict, ManagerError> {
        let status = view.status_code().unwrap_or_default();
        let method = Method::from_bytes(view.cseq().method);
        let cseq = view.cseq().number;
        if method == Method::Cancel {
            // Hop by hop: the transaction layer's business, whatever its To tag (§9.1).
            return Ok(Verdict::Stray);
        }
        let lookup = view
            .to_tag()
            .map(|_| self.dialogs.lookup(&DialogKey::received(view)));
        if method == Method::Invite {
            let key = self.pending_key(
                view.call_id(),
                view.from_tag().unwrap_or_default(),
                Role::Uac,
            );
            let records = self.records();
            if let Some(pending) = self.pending_get(key, &records).filter(|p| p.cseq == cseq) {
                pending.responded.store(true, Ordering::Release);
                return self.invite_response(view, pending, lookup, status, source, now_ms);
            }
        }
        let Some(dialog) = lookup.and_then(|l| l.found) else {
            return Ok(Verdict::Stray);
        };
        self.in_dialog_response(view, dialog, status, now_ms)
    }
}
