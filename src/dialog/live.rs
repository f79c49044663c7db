//! The live dialogs: the hot table and the cold side table, changed together. A dialog is
//! made here and only here (§12.1.1 for the UAS, §12.1.2 for the UAC, a proxy's view of
//! both), its remote target and route set are refreshed here and only here (§12.2,
//! §13.2.2.4), and it leaves both tables here.

use std::net::SocketAddr;

use super::{contact_uri, is_sips, route_set, ColdTable, DialogInfo, InfoParts, Role, RouteList};
use crate::build::RouteSet;
use crate::id::{DialogKey, Fingerprint};
use crate::security::Charge;
use crate::state::DialogState;
use crate::table::{DialogHandle, DialogTable, NewDialog, TableError};
use crate::wire::MessageView;

/// The dialog-creating INVITE, as its record keeps it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Invite<'a> {
    pub request_uri: &'a [u8],
    pub from: &'a [u8],
    pub to: &'a [u8],
    /// The Contact URI of whoever sent the INVITE.
    pub contact: &'a [u8],
    pub cseq: u32,
    /// The INVITE record's key.
    pub key: Fingerprint,
}

/// The message that makes a dialog out of an INVITE.
#[derive(Clone, Copy)]
pub(crate) enum Origin<'a, 'v> {
    /// A 1xx with a To tag or a 2xx to the INVITE we sent (§12.1.2).
    Uac {
        response: &'a MessageView<'v>,
        /// Where the response came from.
        peer: Option<SocketAddr>,
        /// The fingerprint of the response's dialog key, from the lookup that missed.
        fingerprint: Fingerprint,
    },
    /// The INVITE we received, answered with our To tag (§12.1.1).
    Uas {
        request: &'a MessageView<'v>,
        to_tag: &'a [u8],
        /// Our Contact URI.
        local_target: &'a [u8],
        peer: Option<SocketAddr>,
        /// The per-source share the dialog holds, given back when it ends.
        charge: Option<Charge>,
        /// The fingerprint of the dialog's key, from the lookup that missed.
        fingerprint: Fingerprint,
    },
    /// A 1xx/2xx passing through a proxy that follows the call. Its key has the two tags in
    /// a fixed order, so a request from either side finds it.
    Observed {
        response: &'a MessageView<'v>,
        /// The fingerprint of the observed key, from the lookup that missed.
        fingerprint: Fingerprint,
    },
}

impl Origin<'_, '_> {
    /// The fingerprint of the key of the dialog this origin makes.
    fn fingerprint(&self) -> Fingerprint {
        match *self {
            Origin::Uac { fingerprint, .. }
            | Origin::Uas { fingerprint, .. }
            | Origin::Observed { fingerprint, .. } => fingerprint,
        }
    }

    /// Our role in the dialog this origin makes.
    pub(crate) fn role(&self) -> Role {
        match self {
            Origin::Uac { .. } => Role::Uac,
            Origin::Uas { .. } => Role::Uas,
            Origin::Observed { .. } => Role::Observed,
        }
    }
}

/// The key of a dialog a proxy observes: direction-agnostic, the two tags in a fixed order.
pub(crate) fn observed_key<'a>(call_id: &'a [u8], a: &'a [u8], b: &'a [u8]) -> DialogKey<'a> {
    let (local_tag, remote_tag) = if a <= b { (a, b) } else { (b, a) };
    DialogKey {
        call_id,
        local_tag,
        remote_tag,
    }
}

/// What [`Dialogs::remove`] took out.
pub(crate) struct Removed {
    /// When the dialog was made, on the caller's clock.
    pub created_ms: Option<u64>,
    pub info: Option<DialogInfo>,
}

/// The live dialogs: slots in the table, their cold data beside them.
pub(crate) struct Dialogs {
    pub table: DialogTable,
    pub cold: ColdTable,
}

/// A dialog looked up by key, and the key's fingerprint: a miss that goes on to create the
/// dialog hands the fingerprint to [`Dialogs::create`] rather than hashing the key again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyLookup {
    pub fingerprint: Fingerprint,
    pub found: Option<DialogHandle>,
}

impl Dialogs {
    /// Room for `capacity` dialogs (their pages made on first use).
    pub(crate) fn new(capacity: u32) -> Result<Dialogs, getrandom::Error> {
        Ok(Dialogs {
            table: DialogTable::with_capacity(capacity)?,
            cold: ColdTable::new(capacity),
        })
    }

    /// The live dialog with `key`, and the key's fingerprint.
    #[inline]
    pub(crate) fn lookup(&self, key: &DialogKey<'_>) -> KeyLookup {
        let fingerprint = self.table.fingerprinter().fingerprint(key);
        KeyLookup {
            fingerprint,
            found: self.table.lookup_fingerprint(fingerprint),
        }
    }

    /// Makes the dialog `origin` creates from `invite`, in `state`. Its timers are the
    /// caller's to arm once the state is settled.
    pub(crate) fn create(
        &self,
        invite: &Invite<'_>,
        origin: Origin<'_, '_>,
        state: DialogState,
        now_ms: u64,
    ) -> Result<DialogHandle, TableError> {
        // Per origin: the key, our and the peer's URI, the remote target, where the peer is,
        // the charge, the route set and the peer's CSeq so far.
        let (key, local_uri, remote_uri, remote_target, local_target, peer, charge, routes) =
            match origin {
                Origin::Uac { response, peer, .. } => (
                    DialogKey::received(response),
                    invite.from,
                    invite.to,
                    // Without a Contact, requests go where the INVITE went.
                    response
                        .contact()
                        .and_then(contact_uri)
                        .unwrap_or(invite.request_uri),
                    invite.contact,
                    peer,
                    None,
                    route_set(response, true),
                ),
                Origin::Uas {
                    request,
                    to_tag,
                    local_target,
                    peer,
                    charge,
                    ..
                } => (
                    DialogKey {
                        call_id: request.call_id(),
                        local_tag: to_tag,
                        remote_tag: request.from_tag().unwrap_or_default(),
                    },
                    invite.to,
                    invite.from,
                    invite.contact,
                    local_target,
                    peer,
                    charge,
                    route_set(request, false),
                ),
                Origin::Observed { response, .. } => {
                    // Responses carry the INVITE's Call-ID and From (caller) tag.
                    let caller_tag = response.from_tag().unwrap_or_default();
                    let callee_tag = response.to_tag().unwrap_or_default();
                    (
                        observed_key(response.call_id(), caller_tag, callee_tag),
                        invite.from,
                        invite.to,
                        response.contact().and_then(contact_uri).unwrap_or_default(),
                        invite.contact,
                        None,
                        None,
                        RouteList::new(),
                    )
                }
            };
        let role = origin.role();
        // The observed key orders the tags; the dialog's data keeps caller, then callee.
        let (local_tag, remote_tag) = match origin {
            Origin::Observed { response, .. } => (
                response.from_tag().unwrap_or_default(),
                response.to_tag().unwrap_or_default(),
            ),
            _ => (key.local_tag, key.remote_tag),
        };
        let parts = InfoParts {
            role,
            secure: is_sips(invite.request_uri),
            invite_cseq: invite.cseq,
            invite: Some(invite.key),
            call_id: key.call_id,
            local_tag,
            remote_tag,
            local_uri,
            remote_uri,
            remote_target,
            local_target,
            peer,
            charge,
        };
        let remote_cseq = (role == Role::Uas).then_some(invite.cseq);
        let init = NewDialog {
            state,
            local_cseq: if role == Role::Uas { 0 } else { invite.cseq },
            remote_cseq,
            now_ms,
        };
        let fingerprint = origin.fingerprint();
        debug_assert_eq!(fingerprint, self.table.fingerprinter().fingerprint(&key));
        let handle = self.table.insert_fingerprinted(fingerprint, &init)?;
        self.cold
            .install(DialogInfo::new(handle, &parts, RouteSet::from(&routes[..])));
        Ok(handle)
    }

    /// Replaces the remote target with the Contact of `view` (§12.2.1.2, §12.2.2). With
    /// `uac_routes`, the route set is recomputed from the Record-Route of `view` as the UAC
    /// does on the 2xx that confirms an early dialog (§13.2.2.4). Nothing is copied when
    /// nothing changed, which is the common case; a refresh that would take the dialogs' data
    /// past `budget` bytes is not made (the dialog keeps its target and route set).
    pub(crate) fn refresh_target(
        &self,
        dialog: DialogHandle,
        view: &MessageView<'_>,
        uac_routes: bool,
        budget: usize,
    ) {
        let Some((entry, info)) = self.cold.get(dialog) else {
            return;
        };
        let target = view.contact().and_then(contact_uri);
        let target_changed = target.is_some_and(|t| t != info.remote_target());
        let routes = uac_routes.then(|| route_set(view, true));
        let routes = routes
            .as_deref()
            .map(RouteSet::from)
            .filter(|new| *new != info.route_set());
        if !target_changed && routes.is_none() {
            return;
        }
        let target = target.unwrap_or(info.remote_target());
        self.cold
            .replace(entry, &info, info.refreshed(target, routes), budget);
    }

    /// A re-INVITE or UPDATE asks to move the remote target to its Contact: kept until we
    /// answer it (§12.2.2), replacing any earlier one still unanswered; not kept when it
    /// would take the dialogs' data past `budget` bytes.
    pub(crate) fn propose_target(
        &self,
        dialog: DialogHandle,
        request: &MessageView<'_>,
        budget: usize,
    ) {
        if let Some(entry) = self.cold.entry_of(dialog) {
            let target = request.contact().and_then(contact_uri);
            self.cold.propose(entry, target, budget);
        }
    }

    /// Our final answer to that re-INVITE or UPDATE went out: a 2xx installs the proposed
    /// target (unless it is the target already, or it would take the dialogs' data past
    /// `budget` bytes), any other drops it.
    pub(crate) fn settle_target(&self, dialog: DialogHandle, accepted: bool, budget: usize) {
        let Some((entry, info)) = self.cold.get(dialog) else {
            return;
        };
        let target = self.cold.take_proposed(entry);
        if let Some(target) = target.filter(|t| accepted && t[..] != *info.remote_target()) {
            let refreshed = info.refreshed(&target, None);
            self.cold.replace(entry, &info, refreshed, budget);
        }
    }

    /// Takes the dialog out of both tables; `None` when it had already left the table. Every
    /// copy of the handle goes stale.
    pub(crate) fn remove(&self, dialog: DialogHandle) -> Option<Removed> {
        let created_ms = self.table.times(dialog).ok().map(|(created, _)| created);
        let info = self.cold.get(dialog).map(|(_, info)| info);
        // Cleared while the slot is still the dialog's: a dialog that takes the slot next
        // installs its info only after this (see `ColdTable::clear`).
        self.cold.clear(dialog);
        let removed = self.table.remove(dialog).is_ok();
        removed.then_some(Removed { created_ms, info })
    }
}
