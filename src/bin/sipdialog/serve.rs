//! `sipdialog serve`: a UAS that answers every call, for SIPp and friends to call.

use std::sync::atomic::Ordering;

use bumpalo::Bump;
use sipdialog::build::ResponseParts;
use sipdialog::manager::{Expiry, InviteId, ReplacedAction, RequestBody, Verdict};
use sipdialog::metrics::TerminationReason;
use sipdialog::refer::ReferRequest;
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{MessageView, Method};

use crate::endpoint::{sdp_offer, Io, Mode};
use sipdialog::stack::Sent;

/// How the UAS behaves, in milliseconds.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// From the INVITE to the 180 (0: at once, with the 100).
    pub ring_ms: u64,
    /// From the INVITE to the 200.
    pub answer_ms: u64,
    /// From the ACK to our BYE (0: wait for the caller to hang up).
    pub hold_ms: u64,
    /// From the REFER to the final NOTIFY (the "call" to the transfer target).
    pub transfer_ms: u64,
    /// The SDP answer's connection address.
    pub media_ip: String,
}

/// A scheduled UAS action.
pub enum Action {
    /// Send `status` to the INVITE, unless it has its final answer meanwhile (a CANCEL).
    Respond {
        /// The INVITE.
        invite: InviteId,
        /// 180 or 200.
        status: u16,
        /// The dialog it replaces, ended once this 200 is sent.
        replaces: Option<(DialogHandle, ReplacedAction)>,
    },
    /// Our hold time is up: BYE.
    HangUp(DialogHandle),
    /// The transfer target "answered": the final NOTIFY.
    TransferDone {
        /// The transferor's dialog.
        dialog: DialogHandle,
        /// The subscription's event id.
        id: u32,
        /// The client transaction of NOTIFY 100: the final NOTIFY waits for its answer, so
        /// the transferor gets them in order even through a proxy that reorders.
        trying: Option<Sent>,
    },
}

/// The UAS.
pub struct Serve {
    config: ServeConfig,
    sdp: Vec<u8>,
}

/// How often a final NOTIFY looks again whether NOTIFY 100 has been answered.
const NOTIFY_WAIT_MS: u64 = 20;

/// What serve answers, for `Allow` (RFC 3261 §20.5).
pub const ALLOW: &[u8] =
    b"INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, PRACK, MESSAGE";

/// The answer to a request outside any dialog that creates none, or to a method inside one
/// that this endpoint does not serve: 200 to OPTIONS, 481 to a method that only exists inside
/// a dialog, 501 to a method nobody knows, 405 to the rest; 405 and 501 list what is
/// allowed.
pub fn not_served(
    io: &mut Io<'_, impl Send>,
    view: &MessageView<'_>,
    in_dialog: bool,
    allow: &[u8],
) {
    let status = match view.method() {
        Some(Method::Options) => 200,
        Some(Method::Extension) => 501,
        Some(Method::Bye | Method::Update | Method::Info | Method::Prack | Method::Notify)
            if !in_dialog =>
        {
            481
        }
        _ => 405,
    };
    let allow: [(&str, &[u8]); 1] = [("Allow", allow)];
    let parts = ResponseParts {
        extra_headers: if status == 481 { &[] } else { &allow },
        ..ResponseParts::default()
    };
    io.respond(view, status, &parts);
}

impl Serve {
    /// A UAS behaving as `config` says.
    pub fn new(config: ServeConfig) -> Serve {
        let sdp = sdp_offer(&config.media_ip);
        Serve { config, sdp }
    }

    fn answer_parts(&self) -> ResponseParts<'_> {
        ResponseParts {
            content_type: Some(b"application/sdp"),
            body: &self.sdp,
            ..ResponseParts::default()
        }
    }

    fn new_invite(
        &self,
        io: &mut Io<'_, Action>,
        invite: InviteId,
        replaces: Option<(DialogHandle, ReplacedAction)>,
    ) {
        if io.shared.draining.load(Ordering::Relaxed) {
            io.unavailable(invite);
            return;
        }
        let (ring, answer) = (self.config.ring_ms, self.config.answer_ms);
        // A 100 only when no response leaves now: the 180 or the 200 sent at once stops the
        // caller's retransmissions as well (RFC 3261 §8.2.6.1, §17.2.1), one datagram fewer.
        let at_once = answer == 0 || ring == 0;
        if !at_once && !io.respond_invite(invite, 100, &ResponseParts::default()) {
            return;
        }
        if ring == 0 && answer > 0 {
            io.respond_invite(invite, 180, &ResponseParts::default());
        } else if ring > 0 && ring < answer {
            let at = io.now + ring;
            let status = 180;
            io.schedule(
                at,
                Action::Respond {
                    invite,
                    status,
                    replaces: None,
                },
            );
        }
        if answer == 0 {
            self.answer(io, invite, replaces);
        } else {
            let at = io.now + answer;
            io.schedule(
                at,
                Action::Respond {
                    invite,
                    status: 200,
                    replaces,
                },
            );
        }
    }

    /// The 200, unless the INVITE has its final answer (or gets a 503 instead: the manager
    /// could not make its dialog); then a call replacing another ends that one (RFC 3891 §3).
    fn answer(
        &self,
        io: &mut Io<'_, Action>,
        invite: InviteId,
        replaces: Option<(DialogHandle, ReplacedAction)>,
    ) {
        if !io.respond_invite(invite, 200, &self.answer_parts()) {
            return;
        }
        io.shared.stats.calls.fetch_add(1, Ordering::Relaxed);
        if let Some((dialog, action)) = replaces {
            match action {
                ReplacedAction::Bye => self.bye(io, dialog),
                // Only a UAC has an INVITE to cancel; this UAS never sent one.
                ReplacedAction::Cancel => {
                    io.shared
                        .manager
                        .terminate(dialog, TerminationReason::Replaced, io.now);
                }
            }
        }
    }

    fn bye(&self, io: &mut Io<'_, Action>, dialog: DialogHandle) {
        let manager = &io.shared.manager;
        if let Err(e) = manager.request(
            dialog,
            Method::Bye,
            &RequestBody::default(),
            io.now,
            io.desk.out,
        ) {
            tracing::debug!(error = ?e, "BYE not sent");
        }
    }

    fn refer(
        &self,
        io: &mut Io<'_, Action>,
        view: &MessageView<'_>,
        dialog: DialogHandle,
        id: u32,
    ) {
        // The manager checked the REFER before its 202; read the target for the log.
        let bump = Bump::new();
        let policy = io.shared.manager.security().policy();
        if let Ok(refer) = ReferRequest::parse(view, &bump, &policy.refer_limits) {
            tracing::info!(target = %String::from_utf8_lossy(refer.target.uri), "transfer");
        }
        if let Err(e) = io
            .shared
            .manager
            .transfers()
            .notify(dialog, id, 100, io.now, io.desk.out)
        {
            tracing::debug!(error = ?e, "NOTIFY not sent");
            return;
        }
        // `notify` wrote the NOTIFY last.
        let trying = io.desk.last_request();
        let at = io.now + self.config.transfer_ms;
        io.schedule(at, Action::TransferDone { dialog, id, trying });
    }
}

impl Mode for Serve {
    type Action = Action;

    fn on_verdict(&self, io: &mut Io<'_, Action>, view: &MessageView<'_>, verdict: Verdict) {
        match verdict {
            Verdict::NewInvite { invite, .. } => self.new_invite(io, invite, None),
            Verdict::ReplacingInvite {
                replaced, invite, ..
            } => self.new_invite(io, invite, Some((replaced.dialog, replaced.action))),
            Verdict::Request { method, .. } => match method {
                Method::Invite => io.respond(view, 200, &self.answer_parts()),
                Method::Update if !view.body().is_empty() => {
                    io.respond(view, 200, &self.answer_parts())
                }
                Method::Prack
                | Method::Update
                | Method::Info
                | Method::Options
                | Method::Message => io.respond(view, 200, &ResponseParts::default()),
                _ => not_served(io, view, true, ALLOW),
            },
            Verdict::OutOfDialog => not_served(io, view, false, ALLOW),
            Verdict::Ack { dialog } if self.config.hold_ms > 0 => {
                let at = io.now + self.config.hold_ms;
                io.schedule(at, Action::HangUp(dialog));
            }
            Verdict::Refer {
                dialog,
                id,
                subscribed: true,
            } => self.refer(io, view, dialog, id),
            _ => {}
        }
    }

    fn on_action(&self, io: &mut Io<'_, Action>, action: Action) {
        match action {
            Action::Respond {
                invite,
                status,
                replaces,
            } => {
                if status >= 200 && io.shared.draining.load(Ordering::Relaxed) {
                    io.respond_invite(invite, 480, &ResponseParts::default());
                } else if status >= 200 {
                    self.answer(io, invite, replaces);
                } else {
                    // Skipped by the manager once the INVITE has its final answer.
                    io.respond_invite(invite, status, &ResponseParts::default());
                }
            }
            Action::HangUp(dialog) => self.bye(io, dialog),
            Action::TransferDone { dialog, id, trying } => {
                // Until NOTIFY 100 is answered, or given up at 64×T1; asked of the worker
                // holding its transaction.
                if let Some(sent) = &trying {
                    match io.desk.in_flight(sent) {
                        Some(false) => {}
                        Some(true) => {
                            let at = io.now + NOTIFY_WAIT_MS;
                            io.schedule(at, Action::TransferDone { dialog, id, trying });
                            return;
                        }
                        None => {
                            let worker = sent.worker;
                            io.hand_over(worker, Action::TransferDone { dialog, id, trying });
                            return;
                        }
                    }
                }
                if let Err(e) =
                    io.shared
                        .manager
                        .transfers()
                        .notify(dialog, id, 200, io.now, io.desk.out)
                {
                    tracing::debug!(error = ?e, "final NOTIFY not sent");
                }
            }
        }
    }

    fn on_expired(&self, _io: &mut Io<'_, Action>, expired: &[Expiry]) {
        for e in expired {
            tracing::info!(reason = ?e.reason, "expired");
        }
    }

    fn hang_up_all(&self, io: &mut Io<'_, Action>) {
        let dialogs: Vec<_> = io
            .shared
            .manager
            .table()
            .iter()
            .filter(|(_, state)| state.phase() == Phase::Confirmed)
            .map(|(dialog, _)| dialog)
            .collect();
        for dialog in dialogs {
            self.bye(io, dialog);
        }
    }
}
