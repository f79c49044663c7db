//! New calls this side places as UAC: the INVITE (with Referred-By and Replaces for the call
//! a transfer triggers), its CANCEL, and the responses that make its dialogs (§12.1.2,
//! §13.2.2). The public surface is the [`Calls`] view, [`DialogManager::calls`].

use std::net::SocketAddr;

use smallvec::SmallVec;

use super::outbox::Meta;
use super::pending::{InviteCopy, NewRecord, PendingInvite};
use super::{DialogManager, InviteId, ManagerError, Outbox, Verdict};
use crate::build::{self, BuildError, DialogParts, RequestParts};
use crate::dialog::{KeyLookup, Origin, Role};
use crate::id::{CallId, Tag};
use crate::refer::{write_replaces, Replaces};
use crate::state::{DialogState, Event, StateError};
use crate::table::TableError;
use crate::wire::{MessageView, Method};

/// A new call to place: what the INVITE says beyond what the manager fills in (Call-ID, From
/// tag, CSeq 1, Via, Max-Forwards, Contact).
#[derive(Clone, Copy, Debug, Default)]
pub struct NewCall<'a> {
    /// Where the INVITE goes (e.g. the Refer-To target).
    pub request_uri: &'a [u8],
    /// Our party, a name-addr without tag: `"Bob" <sip:bob@biloxi.example.com>`.
    pub from: &'a [u8],
    /// The called party, a name-addr without tag.
    pub to: &'a [u8],
    /// Referred-By to carry (RFC 3892: copied from the REFER that triggered the call).
    pub referred_by: Option<&'a [u8]>,
    /// Replaces to carry (attended transfer, RFC 3891).
    pub replaces: Option<&'a Replaces<'a>>,
    /// Content-Type of the body.
    pub content_type: Option<&'a [u8]>,
    /// The body (an SDP offer).
    pub body: &'a [u8],
}

/// The new call's identity, for a later CANCEL ([`Calls::cancel`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStarted {
    /// The Call-ID chosen.
    pub call_id: CallId,
    /// Our From tag.
    pub from_tag: Tag,
    /// Its INVITE transaction, as [`super::Expiry::invite`] reports it.
    pub invite: super::InviteId,
}

/// The calls this side places: see [`DialogManager::calls`].
#[derive(Clone, Copy, Debug)]
pub struct Calls<'m> {
    manager: &'m DialogManager,
}

impl DialogManager {
    /// New calls: place one ([`Calls::invite`]), cancel it ([`Calls::cancel`]), name its
    /// INVITE ([`Calls::invite_id`]). Their responses come in through
    /// [`DialogManager::on_message`] like any other.
    pub fn calls(&self) -> Calls<'_> {
        Calls { manager: self }
    }

    /// A response to the INVITE that creates our dialogs as UAC (§12.1.2, §13.2.2).
    pub(crate) fn invite_response(
        &self,
        view: &MessageView<'_>,
        pending: &PendingInvite,
        lookup: Option<KeyLookup>,
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
        let Some(lookup) = lookup else {
            // 100 Trying (or a 1xx without a tag, which creates no dialog).
            return Ok(Verdict::Provisional {
                dialog: None,
                status,
            });
        };
        let confirmed = status >= 200;
        let dialog = match lookup.found {
            Some(dialog) => {
                let _ = self.dialogs.table.touch(dialog, now_ms);
                if !confirmed {
                    return Ok(Verdict::Provisional {
                        dialog: Some(dialog),
                        status,
                    });
                }
                match self.dialogs.table.transition(dialog, Event::Confirm) {
                    Ok(_) => {
                        // The 2xx fixes the route set and the target (§13.2.2.4).
                        self.dialogs
                            .refresh_target(dialog, view, true, self.dialog_budget());
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
                let copy = pending.copy().ok_or(ManagerError::UnknownDialog)?;
                let origin = Origin::Uac {
                    response: view,
                    peer: source,
                    fingerprint: lookup.fingerprint,
                };
                let dialog = self.create(&pending.invite(&copy), origin, state, now_ms)?;
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
}

impl Calls<'_> {
    /// Builds a new INVITE (a fresh Call-ID and From tag, CSeq 1, our Via and Contact) and
    /// registers it as [`DialogManager::on_sent`] would: its responses create the dialogs.
    /// For the call a REFER triggers, pass the REFER's Referred-By and Replaces.
    pub fn invite(
        &self,
        call: &NewCall<'_>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<CallStarted, ManagerError> {
        let call_id = CallId::generate().map_err(|_| ManagerError::Random)?;
        let from_tag = Tag::generate().map_err(|_| ManagerError::Random)?;
        let mut replaces = Vec::new();
        let mut extra: SmallVec<[(&str, &[u8]); 2]> = SmallVec::new();
        if let Some(r) = call.replaces {
            write_replaces(&mut replaces, r)?;
            extra.push(("Replaces", &replaces));
        }
        if let Some(by) = call.referred_by {
            extra.push(("Referred-By", by));
        }
        let parties = DialogParts {
            call_id: call_id.as_bytes(),
            local_uri: call.from,
            local_tag: from_tag.as_bytes(),
            remote_uri: call.to,
            remote_tag: b"",
            remote_target: call.request_uri,
            route_set: crate::build::RouteSet::default(),
        };
        let mut via = [0u8; 128];
        let mut unique = [0u8; 17];
        unique[..16].copy_from_slice(from_tag.as_bytes());
        unique[16] = b'i';
        let via_len = self.manager.via_with(out.owner(), &unique, &mut via);
        let parts = RequestParts {
            method: Method::Invite,
            cseq: 1,
            via: via.get(..via_len).unwrap_or_default(),
            max_forwards: 70,
            contact: Some(&self.manager.config.contact),
            content_type: call.content_type,
            body: call.body,
            extra_headers: &extra,
        };
        out.push_request(Meta::request(None), |buf| {
            build::initial_invite_marked(&parties, &parts, buf)
        })?;
        // Recorded as `on_sent` would, from the parts rather than by scanning what was written.
        let via = parts.via;
        let key = self
            .manager
            .pending_key(parties.call_id, parties.local_tag, Role::Uac);
        // A Via of ours that does not decode would leave the INVITE's answers unmatched.
        let recorded = match self.manager.own_via_fields(via) {
            Some(_) => {
                let record = NewRecord {
                    key,
                    role: Role::Uac,
                    via: None,
                    source: None,
                    to_tag: None,
                    charge: None,
                    answering: None,
                };
                let copy = InviteCopy::of_own(&parties, via, &self.manager.config.contact);
                let records = self.manager.records();
                self.manager
                    .pending_insert(PendingInvite::with_copy(record, copy, 1), now_ms, &records)
                    .map(|_| ())
            }
            None => Err(BuildError::InvalidValue { header: "Via" }.into()),
        };
        if let Err(e) = recorded {
            // Untracked, the INVITE must not leave (its answers would match nothing).
            out.pop();
            return Err(e);
        }
        Ok(CallStarted {
            call_id,
            from_tag,
            invite: InviteId(key),
        })
    }

    /// Builds a CANCEL for the INVITE we sent with this Call-ID and From tag (§9.1). Its early
    /// dialogs end when the 487 arrives.
    pub fn cancel(
        &self,
        call_id: &[u8],
        from_tag: &[u8],
        out: &mut Outbox,
    ) -> Result<(), ManagerError> {
        let key = self.manager.pending_key(call_id, from_tag, Role::Uac);
        let records = self.manager.records();
        let pending = self
            .manager
            .pending_get(key, &records)
            .ok_or(ManagerError::UnknownDialog)?;
        let copy = pending.copy().ok_or(ManagerError::UnknownDialog)?;
        let invite = copy.view().ok_or(ManagerError::UnknownDialog)?;
        out.push(Meta::request(None), |buf| build::cancel(&invite, buf))?;
        Ok(())
    }

    /// The token of the INVITE we sent with this Call-ID and From tag (its responses carry
    /// both), for matching a response or an [`super::Expiry`] to a call placed with
    /// [`super::Calls::invite`].
    pub fn invite_id(&self, call_id: &[u8], from_tag: &[u8]) -> InviteId {
        InviteId(self.manager.pending_key(call_id, from_tag, Role::Uac))
    }
}
