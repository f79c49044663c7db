//! Relaying in-dialog requests between a call's two legs: a request on one leg goes to the
//! other with its body, kept (without its bytes) until the other leg answers, and that answer
//! goes back with its body; a leg that ends answers what was relayed onto it and hangs up its
//! partner.

use crate::build::ResponseParts;
use crate::manager::{DialogManager, Outbox, RequestBody};
use crate::table::DialogHandle;
use crate::wire::{MessageView, Method};

use super::{Answering, KeptRequest, Legs};

/// What [`Legs::relay`] did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// Sent on `leg` as CSeq `cseq`. Its answer comes back through [`Legs::relay_answer`];
    /// arm a timer for [`Legs::relay_timeout`] (64×T1 and a little more) in case none does.
    Sent {
        /// The other leg.
        leg: DialogHandle,
        /// The CSeq it went out with there.
        cseq: u32,
    },
    /// Answered here with this status: 481 (no other leg, or it ended meanwhile), 503 (the
    /// legs' byte budget is spent), 491 (a re-INVITE on the other leg already), or what the
    /// manager refused it with.
    Answered(u16),
}

impl<T> Legs<T> {
    /// Relays `request`, received on leg `from` (its [`crate::manager::Verdict::Request`]),
    /// onto the other leg. `out` is the outbox the request is in hand at (its answers go on
    /// its server transaction, [`Outbox::answered`]).
    pub fn relay(
        &self,
        manager: &DialogManager,
        out: &mut Outbox,
        request: &MessageView<'_>,
        from: DialogHandle,
        method: Method,
        now: u64,
    ) -> Relay {
        let Some(to) = self.other(from) else {
            return answer(manager, out, request, 481, now);
        };
        let kept = KeptRequest::new(request);
        if !self.reserve_relayed(kept.bytes()) {
            let retry = manager.security().policy().retry_after_s.to_string();
            let headers: [(&str, &[u8]); 1] = [("Retry-After", retry.as_bytes())];
            let parts = ResponseParts {
                extra_headers: &headers,
                ..ResponseParts::default()
            };
            let _ = manager.respond_to(request, 503, &parts, now, out);
            return Relay::Answered(503);
        }
        let body = RequestBody {
            content_type: request.content_type(),
            body: request.body(),
            extra_headers: &[],
        };
        match manager.request(to, method, &body, now, out) {
            Ok(cseq) => {
                let answering = out.answered();
                match self.add_relayed(manager, to, cseq, kept, answering) {
                    // The other leg ended meanwhile.
                    Some((kept, answering)) => {
                        respond_kept(
                            manager,
                            out,
                            (&kept, answering),
                            481,
                            &ResponseParts::default(),
                            now,
                        );
                        Relay::Answered(481)
                    }
                    None => Relay::Sent { leg: to, cseq },
                }
            }
            Err(e) => {
                self.unreserve_relayed(kept.bytes());
                // Glare on the other leg is glare on this one too.
                let status = match method {
                    Method::Invite => 491,
                    _ => e.status().0,
                };
                answer(manager, out, request, status, now)
            }
        }
    }

    /// The answer from `leg` to a request we sent there (its
    /// [`crate::manager::Verdict::Response`]): a final one goes back to the request relayed
    /// onto `leg` as `cseq`, with its body; a 2xx to a re-INVITE is ACKed here.
    pub fn relay_answer(
        &self,
        manager: &DialogManager,
        out: &mut Outbox,
        response: &MessageView<'_>,
        leg: DialogHandle,
        (status, method, cseq): (u16, Method, u32),
        now: u64,
    ) {
        if status < 200 {
            return;
        }
        if method == Method::Invite && status < 300 {
            let _ = manager.ack(leg, cseq, out);
        }
        let Some((kept, answering)) = self.take_relayed(leg, cseq) else {
            return;
        };
        let parts = ResponseParts {
            content_type: response.content_type(),
            body: response.body(),
            ..ResponseParts::default()
        };
        respond_kept(manager, out, (&kept, answering), status, &parts, now);
    }

    /// A request relayed onto `leg` as `cseq` got no answer in time: 408 to its sender;
    /// `false` when it had its answer already.
    pub fn relay_timeout(
        &self,
        manager: &DialogManager,
        out: &mut Outbox,
        (leg, cseq): (DialogHandle, u32),
        now: u64,
    ) -> bool {
        let Some((kept, answering)) = self.take_relayed(leg, cseq) else {
            return false;
        };
        respond_kept(
            manager,
            out,
            (&kept, answering),
            408,
            &ResponseParts::default(),
            now,
        );
        true
    }

    /// Settles what the legs that ended since the last call owe ([`Legs::take_ended`]): each
    /// request relayed onto an ended leg is answered (with the status that ended it when that
    /// leg is `ended_by`'s, a 481 or 408 to such a request, else 481) and each partner still
    /// up gets a BYE. Call it after every step that can end a dialog.
    pub fn hang_up_ended(
        &self,
        manager: &DialogManager,
        out: &mut Outbox,
        ended_by: Option<(DialogHandle, u16)>,
        now: u64,
    ) {
        for ended in self.take_ended() {
            for (_, (kept, answering)) in ended.unanswered {
                let status = match ended_by {
                    Some((by, status)) if by == ended.leg => status,
                    _ => 481,
                };
                let parts = ResponseParts::default();
                respond_kept(manager, out, (&kept, answering), status, &parts, now);
            }
            if let Some(partner) = ended.partner {
                bye(manager, out, partner, now);
            }
        }
    }
}

/// A BYE on `dialog` (nothing when it is gone or cannot take one).
pub(crate) fn bye(manager: &DialogManager, out: &mut Outbox, dialog: DialogHandle, now: u64) {
    if let Err(e) = manager.request(dialog, Method::Bye, &RequestBody::default(), now, out) {
        tracing::debug!(error = ?e, "BYE not sent");
    }
}

fn answer(
    manager: &DialogManager,
    out: &mut Outbox,
    request: &MessageView<'_>,
    status: u16,
    now: u64,
) -> Relay {
    let _ = manager.respond_to(request, status, &ResponseParts::default(), now, out);
    Relay::Answered(status)
}

/// Answers a kept request on its own transaction (`answering`), leaving the outbox's request
/// in hand as it was.
fn respond_kept(
    manager: &DialogManager,
    out: &mut Outbox,
    (kept, answering): (&KeptRequest, Option<Answering>),
    status: u16,
    parts: &ResponseParts<'_>,
    now: u64,
) {
    let in_hand = out.answered();
    out.answering(answering);
    let _ = manager.respond_kept(kept, status, parts, now, out);
    out.answering(in_hand);
}
