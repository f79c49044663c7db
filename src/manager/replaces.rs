//! An INVITE with Replaces (RFC 3891 §3): which dialog it names, whether it may replace it,
//! and what ends the replaced call.

use super::{DialogManager, Verdict};
use crate::dialog::Role;
use crate::id::DialogKey;
use crate::refer::parse_replaces;
use crate::state::{Flags, Phase};
use crate::table::DialogHandle;
use crate::wire::{HeaderName, MessageView, Method};

/// What ends the call an accepted INVITE with Replaces takes over, once the new dialog is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplacedAction {
    /// The replaced dialog was confirmed: send it a BYE.
    Bye,
    /// The replaced dialog is early and this UA sent its INVITE: CANCEL that INVITE.
    Cancel,
}

/// The dialog an INVITE with Replaces takes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Replaced {
    /// The dialog being replaced.
    pub dialog: DialogHandle,
    /// What ends it.
    pub action: ReplacedAction,
}

impl DialogManager {
    /// Checks a received request's Replaces header. `Ok(None)`: it has none. `Err(status)`:
    /// refuse the request with that status (400: malformed, repeated or not on an INVITE;
    /// 481: no such dialog, or an early one this UA did not initiate; 486: `early-only` but
    /// confirmed; 603: the dialog is ending).
    pub(crate) fn check_replaces(&self, view: &MessageView<'_>) -> Result<Option<Replaced>, u16> {
        let Some(value) = view.replaces() else {
            return Ok(None);
        };
        if view.method() != Some(Method::Invite)
            || view.values(HeaderName::Replaces).nth(1).is_some()
        {
            return Err(400);
        }
        let replaces = parse_replaces(value).map_err(|_| 400u16)?;
        // From the recipient's side: its local tag is the to-tag (§3).
        let key = DialogKey {
            call_id: replaces.call_id,
            local_tag: replaces.to_tag,
            remote_tag: replaces.from_tag,
        };
        let dialog = self.dialogs.table.lookup(&key).ok_or(481u16)?;
        let state = self.dialogs.table.state(dialog).map_err(|_| 481u16)?;
        if state.is_terminated() || state.flags().contains(Flags::BYE_PENDING) {
            return Err(603);
        }
        let role = self.info(dialog).map(|i| i.role()).ok_or(481u16)?;
        match state.phase() {
            Phase::Confirmed if replaces.early_only => Err(486),
            Phase::Confirmed => Ok(Some(Replaced {
                dialog,
                action: ReplacedAction::Bye,
            })),
            Phase::Early if role == Role::Uac => Ok(Some(Replaced {
                dialog,
                action: ReplacedAction::Cancel,
            })),
            _ => Err(481),
        }
    }

    /// The verdict for a new INVITE, with the dialog it replaces if any.
    pub(crate) fn new_invite_verdict(
        to_tag: crate::id::Tag,
        invite: super::InviteId,
        replaced: Option<Replaced>,
    ) -> Verdict {
        match replaced {
            None => Verdict::NewInvite { to_tag, invite },
            Some(replaced) => Verdict::ReplacingInvite {
                to_tag,
                replaced,
                invite,
            },
        }
    }
}
