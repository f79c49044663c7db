//! Messages received from the network (RFC 3261 §12.1–§12.2, §13–§15).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::outbox::Meta;
use super::pending::PendingInvite;
use super::{DialogManager, ManagerError, Outbox, Verdict};
use crate::build::{self, ResponseParts};
use crate::dialog::{self, contact_uri, InfoParts, Role};
use crate::id::DialogKey;
use crate::metrics::{MessageKind, TerminationReason};
use crate::security::Policy;
use crate::state::{DialogState, Event, Phase, StateError};
use crate::table::{CSeqOrder, DialogHandle, NewDialog, TableError};
use crate::wire::{HeaderName, MessageView, Method};
use smallvec::SmallVec;

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
        let Some(dialog) = self.table.lookup(&DialogKey::received(view)) else {
            // ACK never gets a response; anything else gets a ready 481 (§12.2.2).
            if method == Method::Ack {
                return Ok(Verdict::Stray);
            }
            return self.reject(view, None, 481, out);
        };
        // ACK carries the INVITE's CSeq and is not part of the CSeq order (§12.2.2).
        if method == Method::Ack {
            let _ = self.table.transition(dialog, Event::AckReceived);
            self.table.touch(dialog, now_ms)?;
            return Ok(Verdict::Ack { dialog });
        }
        match self.table.advance_remote_cseq(dialog, view.cseq().number) {
            Ok(CSeqOrder::Newer) => {}
            Ok(CSeqOrder::Same) => return Ok(Verdict::Retransmission),
            Err(TableError::CSeqOutOfOrder { .. }) => {
                return self.reject(view, Some(dialog), 500, out)
            }
            Err(TableError::Stale) => return self.reject(view, None, 481, out),
            Err(e) => return Err(e.into()),
        }
        let _ = self.table.touch(dialog, now_ms);
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
                    match self.table.transition(dialog, Event::BeginInvite) {
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
                if let Some((entry, _)) = self.cold.get(dialog) {
                    let target = view.contact().and_then(contact_uri).map(Box::from);
                    entry.pending_target.store(target.map(std::sync::Arc::new));
                }
                Ok(Verdict::Request { dialog, method })
            }
            Method::Refer => self.refer_received(view, dialog, now_ms, out),
            Method::Notify => self.notify_received(view, dialog, out),
            _ => Ok(Verdict::Request { dialog, method }),
        }
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
        if let Some(known) = self.uas_record(view) {
            if known.cseq == view.cseq().number {
                return Ok(Verdict::Retransmission);
            }
            if !known.is_finished() {
                // A second INVITE while the first is unanswered (§14.2).
                return self.reject(view, None, 500, out);
            }
            // A new INVITE after a final answer, e.g. with credentials after a 401.
            self.pending_remove(known.key);
        }
        match self.admit_invite(policy, view, source, out.answered(), now_ms) {
            Ok(pending) => {
                // An admitted INVITE's record always carries the tag chosen for it.
                let to_tag = pending.to_tag.ok_or(ManagerError::Random)?;
                Ok(Self::new_invite_verdict(to_tag, pending.id(), replaced))
            }
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
        let found = view
            .to_tag()
            .and_then(|_| self.table.lookup(&DialogKey::received(view)));
        if method == Method::Invite {
            let key = self.pending_key(
                view.call_id(),
                view.from_tag().unwrap_or_default(),
                Role::Uac,
            );
            if let Some(pending) = self.pending_get(key).filter(|p| p.cseq == cseq) {
                pending.responded.store(true, Ordering::Release);
                return self.invite_response(view, &pending, found, status, source, now_ms);
            }
        }
        let Some(dialog) = found else {
            return Ok(Verdict::Stray);
        };
        let _ = self.table.touch(dialog, now_ms);
        if matches!(status, 481 | 408) || (method == Method::Bye && status >= 200) {
            // §12.2.1.2: 481 or 408 to a request inside a dialog ends it; so does any final
            // response to our BYE.
            let reason = if method == Method::Bye {
                TerminationReason::Bye
            } else {
                TerminationReason::Error
            };
            self.end(dialog, reason, now_ms);
            return Ok(Verdict::Ended { dialog, status });
        }
        if method == Method::Refer && status >= 300 {
            self.refer_refused(dialog, cseq);
        }
        if method == Method::Invite && status >= 200 {
            let _ = self.table.transition(dialog, Event::EndInvite);
            if status == 491 {
                let role = self.info(dialog).map_or(Role::Uas, |i| i.role());
                return Ok(Verdict::Glare {
                    dialog,
                    retry_at_ms: self.glare_retry_at(role, now_ms),
                });
            }
        }
        if (200..300).contains(&status) && matches!(method, Method::Invite | Method::Update) {
            self.refresh_target(dialog, view, false);
        }
        Ok(Verdict::Response {
            dialog,
            status,
            method,
            cseq,
        })
    }

    /// A response to the INVITE that creates our dialogs as UAC (§12.1.2, §13.2.2).
    fn invite_response(
        &self,
        view: &MessageView<'_>,
        pending: &PendingInvite,
        found: Option<DialogHandle>,
        status: u16,
        source: Option<SocketAddr>,
        now_ms: u64,
    ) -> Result<Verdict, ManagerError> {
        if status >= 300 {
            let dialogs_ended = self.invite_failed(pending, status, now_ms);
            return Ok(Verdict::Failed {
                status,
                dialogs_ended,
            });
        }
        if view.to_tag().is_none() {
            // 100 Trying (or a 1xx without a tag, which creates no dialog).
            return Ok(Verdict::Provisional {
                dialog: None,
                status,
            });
        }
        let confirmed = status >= 200;
        let dialog = match found {
            Some(dialog) => {
                let _ = self.table.touch(dialog, now_ms);
                if !confirmed {
                    return Ok(Verdict::Provisional {
                        dialog: Some(dialog),
                        status,
                    });
                }
                match self.table.transition(dialog, Event::Confirm) {
                    Ok(_) => {
                        // The 2xx fixes the route set and the target (§13.2.2.4).
                        self.refresh_target(dialog, view, true);
                        self.rearm(dialog, now_ms);
                    }
                    // Already confirmed: the 2xx was retransmitted; the ACK goes again.
                    Err(TableError::State(StateError::Illegal { .. })) => {
                        return Ok(Verdict::Confirmed {
                            dialog,
                            cseq: pending.cseq,
                            extra: false,
                        })
                    }
                    Err(e) => return Err(e.into()),
                }
                dialog
            }
            None => {
                let state = if confirmed {
                    DialogState::CONFIRMED
                } else {
                    DialogState::EARLY
                };
                let dialog = self.create_uac(view, pending, state, source, now_ms)?;
                pending.add_dialog(dialog, true);
                self.rearm(dialog, now_ms);
                if !confirmed {
                    return Ok(Verdict::Provisional {
                        dialog: Some(dialog),
                        status,
                    });
                }
                dialog
            }
        };
        let extra = !pending.confirm();
        if !extra {
            let setup_ms = now_ms.saturating_sub(pending.created_ms);
            self.count(|m| m.setup_completed(setup_ms));
        }
        // Later 2xx from other forks may come for 64×T1 (§13.2.2.4).
        self.pending_finish(pending, now_ms, true);
        Ok(Verdict::Confirmed {
            dialog,
            cseq: pending.cseq,
            extra,
        })
    }

    /// A UAC dialog from the INVITE we sent and the response that created it.
    fn create_uac(
        &self,
        response: &MessageView<'_>,
        pending: &PendingInvite,
        state: DialogState,
        source: Option<SocketAddr>,
        now_ms: u64,
    ) -> Result<DialogHandle, ManagerError> {
        let copy = pending.copy().ok_or(ManagerError::UnknownDialog)?;
        let parts = InfoParts {
            role: Role::Uac,
            secure: dialog::is_sips(copy.request_uri()),
            invite_cseq: pending.cseq,
            invite: Some(pending.key),
            call_id: response.call_id(),
            local_tag: response.from_tag().unwrap_or_default(),
            remote_tag: response.to_tag().unwrap_or_default(),
            local_uri: copy.from(),
            remote_uri: copy.to(),
            remote_target: response
                .contact()
                .and_then(contact_uri)
                .unwrap_or(copy.request_uri()),
            local_target: copy.contact(),
            peer: source,
            charge: None,
        };
        let init = NewDialog {
            state,
            local_cseq: pending.cseq,
            remote_cseq: None,
            now_ms,
        };
        self.create(
            &DialogKey::received(response),
            &init,
            &parts,
            dialog::route_set(response, true),
        )
    }

    /// Replaces the remote target with the Contact of `view` (and the route set, if given).
    /// With `uac_routes`, the route set is recomputed from the Record-Route of `view` as the
    /// UAC does on the 2xx that confirms an early dialog (§13.2.2.4). Nothing is copied when
    /// nothing changed, which is the common case.
    pub(crate) fn refresh_target(
        &self,
        dialog: DialogHandle,
        view: &MessageView<'_>,
        uac_routes: bool,
    ) {
        let Some((entry, info)) = self.cold.get(dialog) else {
            return;
        };
        let target = view.contact().and_then(contact_uri);
        let target_changed = target.is_some_and(|t| t != info.remote_target());
        let routes_changed = uac_routes && {
            let seen: SmallVec<[&[u8]; 8]> = view.values(HeaderName::RecordRoute).collect();
            !seen
                .iter()
                .rev()
                .copied()
                .eq(info.route_set().iter().map(|r| &r[..]))
        };
        if !target_changed && !routes_changed {
            return;
        }
        let routes = routes_changed.then(|| dialog::route_set(view, true));
        let target = target.unwrap_or(info.remote_target());
        entry
            .info
            .store(Some(std::sync::Arc::new(info.refreshed(target, routes))));
    }

    /// Whether the dialog is still early (for callers deciding between CANCEL and BYE).
    pub fn is_early_dialog(&self, dialog: DialogHandle) -> bool {
        self.table
            .state(dialog)
            .is_ok_and(|s| s.phase() == Phase::Early)
    }
}
