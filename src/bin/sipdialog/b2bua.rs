//! `sipdialog b2bua`: every inbound call becomes an outbound call to the upstream, with its
//! own Call-ID, tags, Via and Contact (topology hiding); responses, BYE, re-INVITE, UPDATE,
//! INFO and CANCEL are relayed between the two legs; a REFER from a caller is carried out by
//! the B2BUA itself (blind transfer).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bumpalo::Bump;
use sipdialog::build::ResponseParts;
use sipdialog::id::Tag;
use sipdialog::manager::{Expiry, NewCall, Replaced, ReplacedAction, RequestBody, Verdict};
use sipdialog::metrics::TerminationReason;
use sipdialog::refer::ReferRequest;
use sipdialog::state::Phase;
use sipdialog::table::DialogHandle;
use sipdialog::wire::{HeaderName, MessageView, Method};

use crate::endpoint::{sdp_offer, Io, Mode};

/// An outbound INVITE on its way, and what its answer is for.
struct Outbound {
    from_tag: Tag,
    origin: Origin,
}

enum Origin {
    /// The inbound INVITE (bytes as received) this call relays.
    Caller {
        invite: Vec<u8>,
        /// Its server transaction key (in `by_inbound` until the outbound call is answered).
        key: u64,
        replaces: Option<Replaced>,
    },
    /// A transfer the B2BUA carries out for `transferor` (REFER event id `id`): once the
    /// target answers, `keep` (the transferor's peer) is bridged to it.
    Transfer {
        transferor: DialogHandle,
        id: u32,
        subscribed: bool,
        keep: Option<DialogHandle>,
    },
}

/// The B2BUA.
pub struct B2bua {
    upstream: SocketAddr,
    local: String,
    sdp: Vec<u8>,
    /// Outbound INVITEs by their Call-ID.
    outbound: papaya::HashMap<Box<[u8]>, Arc<Outbound>>,
    /// Inbound INVITE (server transaction key) → outbound Call-ID, to CANCEL.
    by_inbound: papaya::HashMap<u64, Box<[u8]>>,
    /// Each leg → the other.
    links: papaya::HashMap<DialogHandle, DialogHandle>,
    /// Requests relayed onto a leg, by (leg, CSeq) → the request as received on the other.
    relayed: papaya::HashMap<(DialogHandle, u32), Arc<[u8]>>,
}

impl B2bua {
    /// A B2BUA sending new calls to `upstream`, reachable itself at `local`.
    pub fn new(upstream: SocketAddr, local: SocketAddr) -> B2bua {
        B2bua {
            upstream,
            local: local.to_string(),
            sdp: sdp_offer(&local.ip().to_string()),
            outbound: papaya::HashMap::new(),
            by_inbound: papaya::HashMap::new(),
            links: papaya::HashMap::new(),
            relayed: papaya::HashMap::new(),
        }
    }

    fn link(&self, a: DialogHandle, b: DialogHandle) {
        let links = self.links.pin();
        links.insert(a, b);
        links.insert(b, a);
    }

    /// Takes out both directions of `leg`'s link; the other leg.
    fn unlink(&self, leg: DialogHandle) -> Option<DialogHandle> {
        let links = self.links.pin();
        let other = *links.remove(&leg)?;
        if links.get(&other) == Some(&leg) {
            links.remove(&other);
        }
        Some(other)
    }

    fn bye(&self, io: &mut Io<'_, ()>, dialog: DialogHandle) {
        let body = RequestBody::default();
        if let Err(e) = io
            .shared
            .manager
            .request(dialog, Method::Bye, &body, io.now, io.out)
        {
            tracing::debug!(error = ?e, "BYE not sent");
        }
    }

    fn new_invite(
        &self,
        io: &mut Io<'_, ()>,
        view: &MessageView<'_>,
        bytes: &[u8],
        replaces: Option<Replaced>,
    ) {
        if io.shared.draining.load(Ordering::Relaxed) {
            io.respond(bytes, 503, &ResponseParts::default());
            return;
        }
        io.respond(bytes, 100, &ResponseParts::default());
        let user = view.request_uri().map_or(&b"b2bua"[..], user_part);
        let user = String::from_utf8_lossy(user);
        let upstream = self.upstream;
        let request_uri = format!("sip:{user}@{upstream}");
        let to = format!("<{request_uri}>");
        let from = format!("<sip:b2bua@{}>", self.local);
        let call = NewCall {
            request_uri: request_uri.as_bytes(),
            from: from.as_bytes(),
            to: to.as_bytes(),
            content_type: content_type(view),
            body: view.body(),
            ..NewCall::default()
        };
        match io.shared.manager.invite(&call, io.now, io.out) {
            Ok(started) => {
                let call_id: Box<[u8]> = started.call_id.as_bytes().into();
                let key = io.shared.keys.server(view);
                self.by_inbound.pin().insert(key, call_id.clone());
                let origin = Origin::Caller {
                    invite: bytes.to_vec(),
                    key,
                    replaces,
                };
                let outbound = Outbound {
                    from_tag: started.from_tag,
                    origin,
                };
                self.outbound.pin().insert(call_id, Arc::new(outbound));
            }
            Err(e) => {
                tracing::warn!(error = ?e, "outbound INVITE not sent");
                io.respond(bytes, e.status().0.max(500), &ResponseParts::default());
            }
        }
    }

    /// A response to one of our outbound INVITEs.
    fn invite_answered(&self, io: &mut Io<'_, ()>, view: &MessageView<'_>, verdict: Verdict) {
        let outbound = self.outbound.pin();
        let Some(call) = outbound.get(view.call_id()).cloned() else {
            return;
        };
        let status = view.status_code().unwrap_or(0);
        let parts = ResponseParts {
            content_type: content_type(view),
            body: view.body(),
            ..ResponseParts::default()
        };
        match (&call.origin, verdict) {
            (Origin::Caller { invite, .. }, Verdict::Provisional { .. })
                if status > 100 && !finally_answered(io, invite) =>
            {
                io.respond(invite, status, &parts);
            }
            (
                _,
                Verdict::Confirmed {
                    dialog,
                    cseq,
                    extra,
                },
            ) => {
                let _ = io.shared.manager.ack(dialog, cseq, io.out);
                if extra {
                    self.bye(io, dialog); // a second fork answered: one call is enough
                    return;
                }
                outbound.remove(view.call_id());
                match &call.origin {
                    Origin::Caller {
                        invite,
                        key,
                        replaces,
                    } => {
                        self.by_inbound.pin().remove(key);
                        if finally_answered(io, invite) {
                            self.bye(io, dialog); // the caller gave up meanwhile
                            return;
                        }
                        let manager = &io.shared.manager;
                        match manager.respond(invite, 200, &parts, io.now, io.out) {
                            Ok(Some(inbound)) => {
                                io.shared.stats.calls.fetch_add(1, Ordering::Relaxed);
                                self.link(inbound, dialog);
                                if let Some(replaced) = replaces {
                                    self.end_replaced(io, *replaced);
                                }
                            }
                            _ => self.bye(io, dialog),
                        }
                    }
                    Origin::Transfer {
                        transferor,
                        id,
                        subscribed,
                        keep,
                    } => {
                        if *subscribed {
                            let _ = io
                                .shared
                                .manager
                                .notify(*transferor, *id, 200, io.now, io.out);
                        }
                        // The transferor leaves; its peer now talks to the target.
                        self.unlink(*transferor);
                        match keep {
                            Some(keep) => self.link(*keep, dialog),
                            None => self.bye(io, dialog),
                        }
                    }
                }
            }
            (_, Verdict::Failed { .. }) => {
                outbound.remove(view.call_id());
                match &call.origin {
                    Origin::Caller { invite, key, .. } => {
                        self.by_inbound.pin().remove(key);
                        if !finally_answered(io, invite) {
                            io.respond(invite, status, &ResponseParts::default());
                        }
                    }
                    Origin::Transfer {
                        transferor,
                        id,
                        subscribed: true,
                        ..
                    } => {
                        let _ = io
                            .shared
                            .manager
                            .notify(*transferor, *id, status, io.now, io.out);
                    }
                    Origin::Transfer { .. } => {}
                }
            }
            _ => {}
        }
    }

    /// An INVITE with Replaces is up: its target and that one's other leg end (RFC 3891).
    fn end_replaced(&self, io: &mut Io<'_, ()>, replaced: Replaced) {
        if let Some(other) = self.unlink(replaced.dialog) {
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
    /// through [`B2bua::relay_answer`].
    fn relay(
        &self,
        io: &mut Io<'_, ()>,
        view: &MessageView<'_>,
        bytes: &[u8],
        from: DialogHandle,
        method: Method,
    ) {
        let Some(to) = self.links.pin().get(&from).copied() else {
            io.respond(bytes, 481, &ResponseParts::default());
            return;
        };
        let body = RequestBody {
            content_type: content_type(view),
            body: view.body(),
            extra_headers: &[],
        };
        match io.shared.manager.request(to, method, &body, io.now, io.out) {
            Ok(cseq) => {
                self.relayed.pin().insert((to, cseq), Arc::from(bytes));
            }
            Err(e) => {
                // Glare on the other leg is glare for this one too.
                let status = if method == Method::Invite {
                    491
                } else {
                    e.status().0
                };
                io.respond(bytes, status, &ResponseParts::default());
            }
        }
    }

    fn relay_answer(
        &self,
        io: &mut Io<'_, ()>,
        view: &MessageView<'_>,
        leg: DialogHandle,
        status: u16,
        method: Method,
        cseq: u32,
    ) {
        if status < 200 {
            return;
        }
        if method == Method::Invite && status < 300 {
            let _ = io.shared.manager.ack(leg, cseq, io.out);
        }
        let Some(request) = self.relayed.pin().remove(&(leg, cseq)).cloned() else {
            return;
        };
        let parts = ResponseParts {
            content_type: content_type(view),
            body: view.body(),
            ..ResponseParts::default()
        };
        io.respond(&request, status, &parts);
    }

    /// A REFER from one leg: the B2BUA calls the target itself and bridges the other leg to
    /// it, reporting to the transferor with NOTIFY (RFC 3515).
    fn transfer(
        &self,
        io: &mut Io<'_, ()>,
        view: &MessageView<'_>,
        transferor: DialogHandle,
        id: u32,
        subscribed: bool,
    ) {
        let bump = Bump::new();
        let manager = &io.shared.manager;
        let Ok(refer) = ReferRequest::parse(view, &bump, &manager.config().refer_limits) else {
            return; // the manager refused it already
        };
        if subscribed {
            let _ = manager.notify(transferor, id, 100, io.now, io.out);
        }
        let target = refer.target.uri;
        let to = [b"<", target, b">"].concat();
        let from = format!("<sip:b2bua@{}>", self.local);
        let call = NewCall {
            request_uri: target,
            from: from.as_bytes(),
            to: &to,
            referred_by: refer.referred_by,
            content_type: Some(b"application/sdp"),
            body: &self.sdp,
            ..NewCall::default()
        };
        let keep = self.links.pin().get(&transferor).copied();
        match manager.invite(&call, io.now, io.out) {
            Ok(started) => {
                let origin = Origin::Transfer {
                    transferor,
                    id,
                    subscribed,
                    keep,
                };
                let outbound = Outbound {
                    from_tag: started.from_tag,
                    origin,
                };
                self.outbound
                    .pin()
                    .insert(started.call_id.as_bytes().into(), Arc::new(outbound));
            }
            Err(e) => {
                tracing::warn!(error = ?e, "transfer INVITE not sent");
                if subscribed {
                    let _ = manager.notify(transferor, id, 503, io.now, io.out);
                }
            }
        }
    }
}

impl Mode for B2bua {
    type Action = ();

    fn on_verdict(
        &self,
        io: &mut Io<'_, ()>,
        view: &MessageView<'_>,
        bytes: &[u8],
        verdict: Verdict,
    ) {
        match verdict {
            Verdict::NewInvite { .. } => self.new_invite(io, view, bytes, None),
            Verdict::ReplacingInvite { replaced, .. } => {
                self.new_invite(io, view, bytes, Some(replaced))
            }
            Verdict::Provisional { .. } | Verdict::Confirmed { .. } | Verdict::Failed { .. } => {
                self.invite_answered(io, view, verdict)
            }
            Verdict::Cancelled { .. } => {
                // The caller's 200 and 487 are in the outbox; cancel the outbound leg.
                let key = io.shared.keys.cancelled_invite(view);
                if let Some(call_id) = self.by_inbound.pin().remove(&key) {
                    if let Some(call) = self.outbound.pin().get(call_id) {
                        let tag = call.from_tag.as_bytes();
                        let _ = io.shared.manager.cancel(call_id, tag, io.out);
                    }
                }
            }
            Verdict::Bye { dialog } => {
                if let Some(other) = self.unlink(dialog) {
                    self.bye(io, other);
                }
            }
            Verdict::Ended { dialog, .. } => {
                if let Some(other) = self.unlink(dialog) {
                    self.bye(io, other);
                }
            }
            Verdict::Request { dialog, method } => self.relay(io, view, bytes, dialog, method),
            Verdict::Response {
                dialog,
                status,
                method,
                cseq,
            } => self.relay_answer(io, view, dialog, status, method, cseq),
            Verdict::Refer {
                dialog,
                id,
                subscribed,
            } => self.transfer(io, view, dialog, id, subscribed),
            Verdict::OutOfDialog => {
                let status = if view.method() == Some(Method::Options) {
                    200
                } else {
                    405
                };
                io.respond(bytes, status, &ResponseParts::default());
            }
            _ => {}
        }
    }

    fn on_action(&self, _io: &mut Io<'_, ()>, _action: ()) {}

    fn on_expired(&self, io: &mut Io<'_, ()>, expired: &[Expiry]) {
        // One leg timed out: the other goes too (BYE to both sides).
        for e in expired {
            if let Some(other) = self.unlink(e.dialog) {
                self.bye(io, other);
            }
        }
    }

    fn hang_up_all(&self, io: &mut Io<'_, ()>) {
        let confirmed: Vec<_> = io
            .shared
            .manager
            .table()
            .iter()
            .filter(|(_, state)| state.phase() == Phase::Confirmed)
            .map(|(dialog, _)| dialog)
            .collect();
        for dialog in confirmed {
            self.unlink(dialog);
            self.bye(io, dialog);
        }
    }
}

/// Whether the inbound INVITE `invite` already has its final response (a CANCEL's 487).
fn finally_answered(io: &Io<'_, ()>, invite: &[u8]) -> bool {
    MessageView::parse(invite).is_ok_and(|v| io.answered(&v).is_some_and(|s| s >= 200))
}

/// The Content-Type of a message, if any.
fn content_type<'a>(view: &MessageView<'a>) -> Option<&'a [u8]> {
    view.headers()
        .find(|h| h.kind == HeaderName::ContentType)
        .map(|h| h.value.trim_ascii())
}

/// The user part of a SIP URI (`sip:user@host` → `user`), or the whole host part.
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
