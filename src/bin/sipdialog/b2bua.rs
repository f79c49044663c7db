//! `sipdialog b2bua`: every inbound call becomes an outbound call to the upstream, with its
//! own Call-ID, tags, Via and Contact (topology hiding); responses, BYE, re-INVITE, UPDATE,
//! INFO and CANCEL are relayed between the two legs; a REFER from a caller is carried out by
//! the B2BUA itself (blind transfer). A caller it cannot serve gets 503, one whose call the
//! upstream never answers gets 408; nothing it keeps outlives the call.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bumpalo::Bump;
use sipdialog::b2bua::{LegUsage, Legs, Outbound, Relay};
use sipdialog::build::ResponseParts;
use sipdialog::manager::{
    DialogManager, Expiry, ExpiryReason, InviteId, ManagerError, NewCall, Replaced, ReplacedAction,
    RequestBody, Verdict,
};
use sipdialog::metrics::TerminationReason;
use sipdialog::refer::ReferRequest;
use sipdialog::security::SecurityError;
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{MessageView, Method};

use crate::endpoint::{sdp_offer, Io, Mode};
use crate::serve::not_served;
pub use sipdialog::b2bua::LegBudget;
use sipdialog::stack::Sent;

/// What the B2BUA answers, for `Allow`.
const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY";

/// A scheduled B2BUA action.
pub enum Action {
    /// The caller's INVITE `invite` has heard nothing yet while our INVITE `outbound` waits:
    /// 100 Trying to the caller.
    Trying {
        invite: InviteId,
        outbound: InviteId,
    },
    /// A request relayed onto `leg` as `cseq` got no answer in 64×T1: 408 to its sender.
    RelayTimeout { leg: DialogHandle, cseq: u32 },
    /// The final NOTIFY of a transfer, once NOTIFY 100 (`trying`) is answered.
    FinalNotify {
        transferor: DialogHandle,
        id: u32,
        status: u16,
        trying: Option<Arc<Sent>>,
    },
}

/// How long a caller's INVITE waits for its 100 Trying. A callee answering sooner makes it
/// moot (one datagram fewer); RFC 3261 §17.2.1 wants it within 200 ms of the INVITE.
const TRYING_MS: u64 = 100;

/// How often a final NOTIFY looks again whether NOTIFY 100 has been answered.
const NOTIFY_WAIT_MS: u64 = 20;

/// What an outbound call is for, besides the caller's INVITE it may relay.
enum Origin {
    /// A caller's call; `replaces` names the dialog it replaces once up (RFC 3891).
    /// `heard`: a provisional response went to the caller.
    Caller {
        replaces: Option<Replaced>,
        heard: AtomicBool,
    },
    /// A transfer the B2BUA carries out for `transferor` (REFER event id `id`): once the
    /// target answers, `keep` (the transferor's peer) is bridged to it.
    Transfer {
        transferor: DialogHandle,
        id: u32,
        subscribed: bool,
        keep: Option<DialogHandle>,
        /// NOTIFY 100's client transaction: the final NOTIFY waits for its answer.
        trying: Option<Arc<Sent>>,
    },
}

/// The B2BUA.
pub struct B2bua {
    upstream: SocketAddr,
    local: SocketAddr,
    sdp: Vec<u8>,
    legs: Arc<Legs<Origin>>,
}

impl B2bua {
    /// A B2BUA sending new calls to `upstream`, reachable itself at `local`.
    pub fn new(upstream: SocketAddr, local: SocketAddr, budget: LegBudget) -> B2bua {
        B2bua {
            upstream,
            local,
            sdp: sdp_offer(&local.ip().to_string()),
            legs: Arc::new(Legs::new(budget)),
        }
    }

    fn bye(&self, io: &mut Io<'_, Action>, dialog: DialogHandle) {
        let body = RequestBody::default();
        if let Err(e) = io
            .shared
            .manager
            .request(dialog, Method::Bye, &body, io.now, io.desk.out)
        {
            tracing::debug!(error = ?e, "BYE not sent");
        }
    }

    /// Legs that ended: their partners hung up, the requests relayed onto them answered.
    fn hang_up_ended(&self, io: &mut Io<'_, Action>, ended_by: Option<(DialogHandle, u16)>) {
        let manager = &io.shared.manager;
        self.legs
            .hang_up_ended(manager, io.desk.out, ended_by, io.now);
    }

    fn new_invite(
        &self,
        io: &mut Io<'_, Action>,
        view: &MessageView<'_>,
        invite: InviteId,
        replaces: Option<Replaced>,
    ) {
        // Two dialogs per call: refuse now rather than answer the caller 503 after the
        // upstream rang.
        if io.shared.draining.load(Ordering::Relaxed) || io.shared.manager.room() < 2 {
            io.unavailable(invite);
            return;
        }
        if !self.legs.reserve_outbound(true) {
            io.unavailable(invite);
            return;
        }
        let user = view.request_uri().map_or(&b"b2bua"[..], user_part);
        let user = String::from_utf8_lossy(user);
        let request_uri = format!("sip:{user}@{}", self.upstream);
        let to = format!("<{request_uri}>");
        let from = local_uri(self.local);
        let call = NewCall {
            request_uri: request_uri.as_bytes(),
            from: from.as_bytes(),
            to: to.as_bytes(),
            content_type: view.content_type(),
            body: view.body(),
            ..NewCall::default()
        };
        match io.shared.manager.calls().invite(&call, io.now, io.desk.out) {
            Ok(started) => {
                let outbound = Outbound {
                    call_id: started.call_id.as_bytes().into(),
                    from_tag: started.from_tag,
                    caller: Some(invite),
                    data: Origin::Caller {
                        replaces,
                        heard: AtomicBool::new(false),
                    },
                };
                self.legs.add_outbound(started.invite, outbound);
                let outbound = started.invite;
                io.schedule(io.now + TRYING_MS, Action::Trying { invite, outbound });
            }
            Err(e) => {
                tracing::warn!(error = ?e, "outbound INVITE not sent");
                self.legs.unreserve_outbound(true);
                io.unavailable(invite);
            }
        }
    }

    /// A response to one of our outbound INVITEs.
    fn invite_answered(&self, io: &mut Io<'_, Action>, view: &MessageView<'_>, verdict: Verdict) {
        let from_tag = view.from_tag().unwrap_or_default();
        let ours = io
            .shared
            .manager
            .calls()
            .invite_id(view.call_id(), from_tag);
        let Some(call) = self.legs.outbound(ours) else {
            if let Verdict::Confirmed { dialog, cseq, .. } = verdict {
                // Every 2xx is ACKed. A leg already paired is a 2xx sent again (our ACK was
                // lost): its call goes on. Otherwise it answered after we gave up: end it.
                let _ = io.shared.manager.ack(dialog, cseq, io.desk.out);
                if self.legs.other(dialog).is_none() {
                    self.bye(io, dialog);
                }
            }
            return;
        };
        let status = view.status_code().unwrap_or(0);
        let parts = ResponseParts {
            content_type: view.content_type(),
            body: view.body(),
            ..ResponseParts::default()
        };
        match (call.caller, verdict) {
            (Some(invite), Verdict::Provisional { .. }) if status > 100 => {
                if let Origin::Caller { heard, .. } = &call.data {
                    heard.store(true, Ordering::Relaxed);
                }
                io.respond_invite(invite, status, &parts);
            }
            (
                _,
                Verdict::Confirmed {
                    dialog,
                    cseq,
                    extra,
                },
            ) => {
                let _ = io.shared.manager.ack(dialog, cseq, io.desk.out);
                if extra {
                    self.bye(io, dialog); // a second fork answered: one call is enough
                    return;
                }
                self.legs.take_outbound(ours);
                match (call.caller, &call.data) {
                    (Some(invite), Origin::Caller { replaces, .. }) => {
                        let manager = &io.shared.manager;
                        match manager.respond_invite(invite, 200, &parts, io.now, io.desk.out) {
                            Ok(Some(inbound)) if self.legs.link(manager, inbound, dialog) => {
                                io.shared.stats.calls.fetch_add(1, Ordering::Relaxed);
                                if let Some(replaced) = replaces {
                                    self.end_replaced(io, *replaced);
                                }
                            }
                            Ok(Some(inbound)) => {
                                self.bye(io, inbound);
                                self.bye(io, dialog);
                            }
                            // The caller gave up meanwhile, or was refused a dialog (503).
                            _ => self.bye(io, dialog),
                        }
                    }
                    (
                        _,
                        Origin::Transfer {
                            transferor,
                            id,
                            subscribed,
                            keep,
                            trying,
                        },
                    ) => {
                        if *subscribed {
                            self.final_notify(io, *transferor, *id, 200, trying.clone());
                        }
                        // The transferor leaves; its peer now talks to the target.
                        self.legs.unlink(*transferor);
                        match keep {
                            Some(keep) if self.legs.link(&io.shared.manager, *keep, dialog) => {}
                            _ => self.bye(io, dialog),
                        }
                    }
                    (None, Origin::Caller { .. }) => self.bye(io, dialog),
                }
            }
            (_, Verdict::Failed { .. }) => {
                self.legs.take_outbound(ours);
                self.outbound_failed(io, &call, status);
            }
            _ => {}
        }
    }

    /// Our INVITE failed (`status`), or got no answer (408): tell whoever it was for.
    fn outbound_failed(&self, io: &mut Io<'_, Action>, call: &Outbound<Origin>, status: u16) {
        if let Some(invite) = call.caller {
            // Skipped by the manager if the caller cancelled meanwhile.
            io.respond_invite(invite, status, &ResponseParts::default());
            return;
        }
        match &call.data {
            Origin::Transfer {
                transferor,
                id,
                subscribed: true,
                trying,
                ..
            } => self.final_notify(io, *transferor, *id, status, trying.clone()),
            Origin::Transfer { .. } | Origin::Caller { .. } => {}
        }
    }

    /// The final NOTIFY, held until NOTIFY 100 is answered (or given up at 64×T1), so the
    /// transferor gets them in order even through a proxy that reorders. The question goes to
    /// the worker holding NOTIFY 100's transaction.
    fn final_notify(
        &self,
        io: &mut Io<'_, Action>,
        transferor: DialogHandle,
        id: u32,
        status: u16,
        trying: Option<Arc<Sent>>,
    ) {
        if let Some(sent) = &trying {
            let in_flight = io.desk.in_flight(sent);
            if in_flight != Some(false) {
                let worker = sent.worker;
                let action = Action::FinalNotify {
                    transferor,
                    id,
                    status,
                    trying,
                };
                match in_flight {
                    Some(_) => io.schedule(io.now + NOTIFY_WAIT_MS, action),
                    None => io.hand_over(worker, action),
                }
                return;
            }
        }
        if let Err(e) =
            io.shared
                .manager
                .transfers()
                .notify(transferor, id, status, io.now, io.desk.out)
        {
            tracing::debug!(error = ?e, "final NOTIFY not sent");
        }
    }

    /// An INVITE with Replaces is up: its target and that one's other leg end (RFC 3891).
    fn end_replaced(&self, io: &mut Io<'_, Action>, replaced: Replaced) {
        if let Some(other) = self.legs.unlink(replaced.dialog) {
            self.bye(io, other);
        }
        match replaced.action {
            ReplacedAction::Bye => self.bye(io, replaced.dialog),
            ReplacedAction::Cancel => {
                io.shared
                    .manager
                    .terminate(replaced.dialog, TerminationReason::Replaced, io.now);
            }
        }
    }

    /// An in-dialog request on one leg goes to the other with its body; the answer comes back
    /// through `Legs::relay_answer`, or 408 after 64×T1.
    fn relay(
        &self,
        io: &mut Io<'_, Action>,
        view: &MessageView<'_>,
        from: DialogHandle,
        method: Method,
    ) {
        let manager = &io.shared.manager;
        match self
            .legs
            .relay(manager, io.desk.out, view, from, method, io.now)
        {
            Relay::Sent { leg, cseq } => {
                let at = io.now + 64 * io.shared.t1_ms + io.shared.t1_ms;
                io.schedule(at, Action::RelayTimeout { leg, cseq });
            }
            Relay::Answered(status) => io.desk.count(status, None),
        }
    }

    /// A REFER from one leg (the manager checked its target against the policy before the
    /// 202): the B2BUA calls the target itself and bridges the other leg to it, reporting to
    /// the transferor with NOTIFY (RFC 3515).
    fn transfer(
        &self,
        io: &mut Io<'_, Action>,
        view: &MessageView<'_>,
        transferor: DialogHandle,
        id: u32,
        subscribed: bool,
    ) {
        let bump = Bump::new();
        let manager = &io.shared.manager;
        let policy = manager.security().policy();
        let Ok(refer) = ReferRequest::parse(view, &bump, &policy.refer_limits) else {
            return; // the manager refused it already
        };
        let mut trying = None;
        if subscribed
            && manager
                .transfers()
                .notify(transferor, id, 100, io.now, io.desk.out)
                .is_ok()
        {
            // `notify` wrote the NOTIFY last.
            trying = io.desk.last_request().map(Arc::new);
        }
        let target = refer.target.uri;
        let to = [b"<", target, b">"].concat();
        let from = local_uri(self.local);
        let call = NewCall {
            request_uri: target,
            from: from.as_bytes(),
            to: &to,
            referred_by: refer.referred_by,
            content_type: Some(b"application/sdp"),
            body: &self.sdp,
            ..NewCall::default()
        };
        let keep = self.legs.other(transferor);
        let started = match self.legs.reserve_outbound(false) {
            true => manager
                .calls()
                .invite(&call, io.now, io.desk.out)
                .inspect_err(|_| {
                    self.legs.unreserve_outbound(false);
                }),
            false => Err(ManagerError::Security(SecurityError::TooManyInvites)),
        };
        match started {
            Ok(started) => {
                let data = Origin::Transfer {
                    transferor,
                    id,
                    subscribed,
                    keep,
                    trying,
                };
                let outbound = Outbound {
                    call_id: started.call_id.as_bytes().into(),
                    from_tag: started.from_tag,
                    caller: None,
                    data,
                };
                self.legs.add_outbound(started.invite, outbound);
            }
            Err(e) => {
                tracing::warn!(error = ?e, "transfer INVITE not sent");
                if subscribed {
                    let _ = manager
                        .transfers()
                        .notify(transferor, id, 503, io.now, io.desk.out);
                }
            }
        }
    }

    /// An INVITE the manager gave up on: ours (no answer: the caller gets 408), or a caller's
    /// (the manager answered it 408: our INVITE for it is cancelled).
    fn invite_expired(&self, io: &mut Io<'_, Action>, expiry: &Expiry, invite: InviteId) {
        if let Some(call) = self.legs.take_outbound(invite) {
            if expiry.reason == ExpiryReason::EarlyTimeout {
                let _ = io.shared.manager.calls().cancel(
                    &call.call_id,
                    call.from_tag.as_bytes(),
                    io.desk.out,
                );
            }
            self.outbound_failed(io, &call, 408);
        } else if let Some(ours) = self.legs.take_inbound(invite) {
            if let Some(call) = self.legs.take_outbound(ours) {
                let _ = io.shared.manager.calls().cancel(
                    &call.call_id,
                    call.from_tag.as_bytes(),
                    io.desk.out,
                );
            }
        }
    }
}

impl Mode for B2bua {
    type Action = Action;

    fn on_verdict(&self, io: &mut Io<'_, Action>, view: &MessageView<'_>, verdict: Verdict) {
        match verdict {
            Verdict::NewInvite { invite, .. } => self.new_invite(io, view, invite, None),
            Verdict::ReplacingInvite {
                replaced, invite, ..
            } => self.new_invite(io, view, invite, Some(replaced)),
            Verdict::Provisional { .. } | Verdict::Confirmed { .. } | Verdict::Failed { .. } => {
                self.invite_answered(io, view, verdict)
            }
            Verdict::Cancelled { invite, .. } => {
                // The caller's 200 and 487 are in the outbox; cancel the outbound leg, whose
                // 487 takes its entry out.
                if let Some(call) = self
                    .legs
                    .take_inbound(invite)
                    .and_then(|o| self.legs.outbound(o))
                {
                    let tag = call.from_tag.as_bytes();
                    let _ = io
                        .shared
                        .manager
                        .calls()
                        .cancel(&call.call_id, tag, io.desk.out);
                }
            }
            Verdict::Ended { dialog, status } => {
                // A 481 or 408 to a relayed request ends its leg: its sender hears the same.
                self.hang_up_ended(io, Some((dialog, status)));
            }
            Verdict::Request { dialog, method } => self.relay(io, view, dialog, method),
            Verdict::Response {
                dialog,
                status,
                method,
                cseq,
            } => {
                let answer = (status, method, cseq);
                let manager = &io.shared.manager;
                self.legs
                    .relay_answer(manager, io.desk.out, view, dialog, answer, io.now);
            }
            Verdict::Refer {
                dialog,
                id,
                subscribed,
            } => self.transfer(io, view, dialog, id, subscribed),
            Verdict::OutOfDialog => not_served(io, view, false, ALLOW),
            _ => {}
        }
        self.hang_up_ended(io, None);
    }

    fn attach(&self, manager: &DialogManager) {
        if manager.on_end(self.legs.clone()).is_err() {
            tracing::error!("the manager tells another of its dialogs' ends: leg maps not cleaned");
        }
    }

    fn on_refused(&self, io: &mut Io<'_, Action>, view: &MessageView<'_>, error: &ManagerError) {
        // The upstream's answer to our INVITE could not be taken (no room for its dialog):
        // the caller hears 503 now rather than wait for the INVITE to time out.
        if view.is_request() || view.cseq().method != b"INVITE" {
            return;
        }
        let from_tag = view.from_tag().unwrap_or_default();
        let ours = io
            .shared
            .manager
            .calls()
            .invite_id(view.call_id(), from_tag);
        if let Some(call) = self.legs.take_outbound(ours) {
            tracing::info!(error = %error, "upstream answer refused");
            if let Some(invite) = call.caller {
                io.unavailable(invite);
            }
        }
        self.hang_up_ended(io, None);
    }

    fn on_action(&self, io: &mut Io<'_, Action>, action: Action) {
        match action {
            Action::Trying { invite, outbound } => {
                // Still waiting (the final answer takes the entry out) and nothing relayed.
                let waiting = self.legs.outbound(outbound).is_some_and(|call| {
                    matches!(&call.data, Origin::Caller { heard, .. } if !heard.load(Ordering::Relaxed))
                });
                if waiting {
                    io.respond_invite(invite, 100, &ResponseParts::default());
                }
            }
            Action::RelayTimeout { leg, cseq } => {
                let manager = &io.shared.manager;
                self.legs
                    .relay_timeout(manager, io.desk.out, (leg, cseq), io.now);
            }
            Action::FinalNotify {
                transferor,
                id,
                status,
                trying,
            } => self.final_notify(io, transferor, id, status, trying),
        }
        self.hang_up_ended(io, None);
    }

    fn on_expired(&self, io: &mut Io<'_, Action>, expired: &[Expiry]) {
        for e in expired {
            if let (None, Some(invite)) = (e.dialog, e.invite) {
                self.invite_expired(io, e, invite);
            }
        }
        // Legs that timed out: the other goes too.
        self.hang_up_ended(io, None);
    }

    fn usage(&self) -> Vec<(&'static str, &'static str, u64)> {
        let LegUsage {
            entries,
            bytes,
            outbound,
            inbound,
            links,
            relayed,
        } = self.legs.usage();
        vec![
            (
                "sipdialog_b2bua_leg_entries",
                "Entries the B2BUA keeps for its calls.",
                entries as u64,
            ),
            (
                "sipdialog_b2bua_leg_bytes",
                "Bytes those entries hold.",
                bytes as u64,
            ),
            (
                "sipdialog_b2bua_outbound_invites",
                "Outbound INVITEs waiting for a final answer.",
                outbound as u64,
            ),
            (
                "sipdialog_b2bua_inbound_invites",
                "Callers' INVITEs waiting for the upstream.",
                inbound as u64,
            ),
            (
                "sipdialog_b2bua_links",
                "Leg pairings (two per call).",
                links as u64,
            ),
            (
                "sipdialog_b2bua_relayed",
                "Legs with relayed requests waiting for their answer.",
                relayed as u64,
            ),
        ]
    }

    fn hang_up_all(&self, io: &mut Io<'_, Action>) {
        let confirmed: Vec<_> = io
            .shared
            .manager
            .table()
            .iter()
            .filter(|(_, state)| state.phase() == Phase::Confirmed)
            .map(|(dialog, _)| dialog)
            .collect();
        for dialog in confirmed {
            self.legs.unlink(dialog);
            self.bye(io, dialog);
        }
        self.hang_up_ended(io, None);
    }
}

/// The user part of a SIP URI (`sip:user@host` → `user`), `b2bua` when there is none.
fn user_part(uri: &[u8]) -> &[u8] {
    let rest = uri
        .strip_prefix(b"sips:")
        .or_else(|| uri.strip_prefix(b"sip:"))
        .unwrap_or(uri);
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'@' | b';' | b'?' | b':'))
        .unwrap_or(rest.len());
    match rest.get(end) {
        Some(b'@') if end > 0 => &rest[..end],
        _ => b"b2bua",
    }
}

/// The address the B2BUA says it is at.
fn local_uri(local: SocketAddr) -> String {
    format!("<sip:b2bua@{local}>")
}
