//! `sipdialog serve`: a UAS that answers every call, for SIPp and friends to call.

use std::sync::atomic::Ordering;

use bumpalo::Bump;
use sipdialog::build::ResponseParts;
use sipdialog::manager::{Expiry, ReplacedAction, RequestBody, Verdict};
use sipdialog::metrics::TerminationReason;
use sipdialog::refer::ReferRequest;
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{MessageView, Method};

use crate::endpoint::{sdp_offer, Io, Mode};

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
    /// Send `status` to the INVITE in `invite`, unless it was answered finally meanwhile.
    Respond {
        /// The INVITE as received.
        invite: Vec<u8>,
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
        trying: Option<u64>,
    },
}

/// The UAS.
pub struct Serve {
    config: ServeConfig,
    sdp: Vec<u8>,
}

/// How often a final NOTIFY looks again whether NOTIFY 100 has been answered.
const NOTIFY_WAIT_MS: u64 = 20;

const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY";

impl Serve {
    /// A UAS behaving as `config` says.
    pub fn new(config: ServeConfig) -> Serve {
        let sdp = sdp_offer(&config.media_ip);
        Serve { config, sdp }
    }

    fn answer(&self, io: &mut Io<'_, Action>, request: &[u8], status: u16) {
        let parts = ResponseParts {
            content_type: Some(b"application/sdp"),
            body: &self.sdp,
            ..ResponseParts::default()
        };
        io.respond(request, status, &parts);
    }

    fn ok(&self, io: &mut Io<'_, Action>, request: &[u8]) {
        io.respond(request, 200, &ResponseParts::default());
    }

    fn new_invite(
        &self,
        io: &mut Io<'_, Action>,
        bytes: &[u8],
        replaces: Option<(DialogHandle, ReplacedAction)>,
    ) {
        if io.shared.draining.load(Ordering::Relaxed) {
            let retry: [(&str, &[u8]); 1] = [("Retry-After", b"5")];
            let parts = ResponseParts {
                extra_headers: &retry,
                ..ResponseParts::default()
            };
            io.respond(bytes, 503, &parts);
            return;
        }
        io.respond(bytes, 100, &ResponseParts::default());
        let (ring, answer) = (self.config.ring_ms, self.config.answer_ms);
        if ring == 0 && answer > 0 {
            io.respond(bytes, 180, &ResponseParts::default());
        } else if ring > 0 && ring < answer {
            let invite = bytes.to_vec();
            let at = io.now + ring;
            io.schedule(
                at,
                Action::Respond {
                    invite,
                    status: 180,
                    replaces: None,
                },
            );
        }
        if answer == 0 {
            self.answer(io, bytes, 200);
            self.answered(io, replaces);
        } else {
            let invite = bytes.to_vec();
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

    /// A call replacing another is up: end the other one (RFC 3891 §3).
    fn answered(&self, io: &mut Io<'_, Action>, replaces: Option<(DialogHandle, ReplacedAction)>) {
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
        if let Err(e) =
            manager.request(dialog, Method::Bye, &RequestBody::default(), io.now, io.out)
        {
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
        let limits = &io.shared.manager.config().refer_limits;
        if let Ok(refer) = ReferRequest::parse(view, &bump, limits) {
            tracing::info!(target = %String::from_utf8_lossy(refer.target.uri), "transfer");
        }
        if let Err(e) = io.shared.manager.notify(dialog, id, 100, io.now, io.out) {
            tracing::debug!(error = ?e, "NOTIFY not sent");
            return;
        }
        // `notify` wrote the NOTIFY last.
        let trying = io
            .out
            .iter()
            .last()
            .and_then(|m| MessageView::parse(m.bytes).ok())
            .and_then(|v| io.shared.keys.client(&v));
        let at = io.now + self.config.transfer_ms;
        io.schedule(at, Action::TransferDone { dialog, id, trying });
    }
}

impl Mode for Serve {
    type Action = Action;

    fn on_verdict(
        &self,
        io: &mut Io<'_, Action>,
        view: &MessageView<'_>,
        bytes: &[u8],
        verdict: Verdict,
    ) {
        match verdict {
            Verdict::NewInvite { .. } => self.new_invite(io, bytes, None),
            Verdict::ReplacingInvite { replaced, .. } => {
                self.new_invite(io, bytes, Some((replaced.dialog, replaced.action)))
            }
            Verdict::Request { method, .. } => match method {
                Method::Invite => self.answer(io, bytes, 200),
                Method::Update if !view.body().is_empty() => self.answer(io, bytes, 200),
                Method::Prack
                | Method::Update
                | Method::Info
                | Method::Options
                | Method::Message => self.ok(io, bytes),
                _ => {
                    let allow: [(&str, &[u8]); 1] = [("Allow", ALLOW)];
                    let parts = ResponseParts {
                        extra_headers: &allow,
                        ..ResponseParts::default()
                    };
                    io.respond(bytes, 501, &parts);
                }
            },
            Verdict::OutOfDialog => {
                let allow: [(&str, &[u8]); 1] = [("Allow", ALLOW)];
                let parts = ResponseParts {
                    extra_headers: &allow,
                    ..ResponseParts::default()
                };
                let status = if view.method() == Some(Method::Options) {
                    200
                } else {
                    405
                };
                io.respond(bytes, status, &parts);
            }
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
                let Ok(view) = MessageView::parse(&invite) else {
                    return;
                };
                // CANCELled (487 sent) or refused meanwhile.
                if io.answered(&view).is_some_and(|s| s >= 200) {
                    return;
                }
                if status >= 200 && io.shared.draining.load(Ordering::Relaxed) {
                    io.respond(&invite, 480, &ResponseParts::default());
                } else if status >= 200 {
                    self.answer(io, &invite, status);
                    self.answered(io, replaces);
                } else {
                    io.respond(&invite, status, &ResponseParts::default());
                }
            }
            Action::HangUp(dialog) => self.bye(io, dialog),
            Action::TransferDone { dialog, id, trying } => {
                // Until NOTIFY 100 is answered, or given up at 64×T1.
                if trying.is_some_and(|key| io.shared.retransmissions.contains(key)) {
                    let at = io.now + NOTIFY_WAIT_MS;
                    io.schedule(at, Action::TransferDone { dialog, id, trying });
                    return;
                }
                if let Err(e) = io.shared.manager.notify(dialog, id, 200, io.now, io.out) {
                    tracing::debug!(error = ?e, "final NOTIFY not sent");
                }
            }
        }
    }

    fn on_expired(&self, _io: &mut Io<'_, Action>, expired: &[Expiry]) {
        for e in expired {
            tracing::info!(reason = ?e.reason, "dialog expired");
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
