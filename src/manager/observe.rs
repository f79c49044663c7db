//! SBC observation mode: follow the dialogs of calls passing through, from both directions,
//! as a dialog-stateful proxy does (Kamailio's `dlg_manage`). The key is direction-agnostic:
//! the two tags in a fixed order, so a request from either side finds the same dialog.

use super::pending::PendingInvite;
use super::{DialogManager, ManagerError};
use crate::dialog::{observed_key, KeyLookup, Origin, Role};
use crate::state::{DialogState, Event, Phase};
use crate::table::DialogHandle;
use crate::wire::{MessageView, Method};

/// What an observed message did to the dialogs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observation {
    /// A new INVITE: its transaction is tracked until the final response.
    Invite,
    /// A 1xx with a To tag: an early dialog (`created` when new).
    Early {
        /// The dialog.
        dialog: DialogHandle,
        /// Whether this response created it.
        created: bool,
    },
    /// A 2xx to the INVITE: a confirmed dialog (`created` when new).
    Confirmed {
        /// The dialog.
        dialog: DialogHandle,
        /// Whether this response created it.
        created: bool,
    },
    /// A non-2xx final response to the INVITE: its early dialogs ended.
    Failed {
        /// The status.
        status: u16,
        /// Early dialogs ended.
        dialogs_ended: u32,
    },
    /// A message inside a tracked dialog.
    InDialog {
        /// The dialog.
        dialog: DialogHandle,
    },
    /// The dialog ended (BYE answered, 481/408 to an in-dialog request) and left the table.
    Ended {
        /// The dialog.
        dialog: DialogHandle,
    },
    /// An in-dialog request for no dialog this proxy tracks (it may answer 481).
    Unknown,
    /// Nothing to track (out-of-dialog request other than INVITE, CANCEL, 100 Trying…).
    Other,
}

impl DialogManager {
    /// Follows one message passing through (either direction) at `now_ms`.
    pub fn observe(&self, bytes: &[u8], now_ms: u64) -> Result<Observation, ManagerError> {
        let view = MessageView::parse(bytes)?;
        self.count_message(&view);
        let from = view.from_tag().unwrap_or_default();
        let Some(to) = view.to_tag() else {
            if view.method() == Some(Method::Invite) {
                let record = self.new_record(&view, Role::Observed);
                let pending = PendingInvite::new(record, &view);
                if self
                    .pending_insert(pending, now_ms, &self.records())?
                    .is_some()
                {
                    return Ok(Observation::Invite);
                }
            }
            return Ok(Observation::Other);
        };
        let key = observed_key(view.call_id(), from, to);
        let lookup = self.dialogs.lookup(&key);
        let found = lookup.found;
        if let Some(status) = view.status_code() {
            let method = Method::from_bytes(view.cseq().method);
            if method == Method::Cancel {
                return Ok(Observation::Other);
            }
            if method == Method::Invite {
                let pkey = self.pending_key(view.call_id(), from, Role::Observed);
                let records = self.records();
                if let Some(pending) = self
                    .pending_get(pkey, &records)
                    .filter(|p| p.cseq == view.cseq().number)
                {
                    return self.observed_invite_response(&view, pending, lookup, status, now_ms);
                }
            }
            let Some(dialog) = found else {
                return Ok(Observation::Other);
            };
            let _ = self.dialogs.table.touch(dialog, now_ms);
            if let Some(reason) = Self::ended_by_response(method, status) {
                self.end(dialog, reason, now_ms);
                return Ok(Observation::Ended { dialog });
            }
            if method == Method::Invite && status >= 200 {
                let _ = self.dialogs.table.transition(dialog, Event::EndInvite);
            }
            return Ok(Observation::InDialog { dialog });
        }
        let Some(dialog) = found else {
            return Ok(Observation::Unknown);
        };
        let _ = self.dialogs.table.touch(dialog, now_ms);
        let cseq = view.cseq().number;
        let from_caller = self.info(dialog).is_some_and(|i| i.local_tag() == from);
        match view.method() {
            Some(Method::Ack) => {
                let _ = self.dialogs.table.transition(dialog, Event::AckReceived);
            }
            Some(method) => {
                // Each side's CSeq, so an expiry BYE can follow them (§12.2.1.1).
                let _ = if from_caller {
                    self.dialogs.table.raise_local_cseq(dialog, cseq)
                } else {
                    self.dialogs
                        .table
                        .advance_remote_cseq(dialog, cseq)
                        .map(|_| ())
                };
                let event = match method {
                    Method::Bye => Some(Event::BeginBye),
                    Method::Invite => Some(Event::BeginInvite),
                    _ => None,
                };
                // A proxy reports, it does not police: a refused event is the endpoints' business.
                if let Some(event) = event {
                    let _ = self.dialogs.table.transition(dialog, event);
                }
            }
            None => {}
        }
        Ok(Observation::InDialog { dialog })
    }

    fn observed_invite_response(
        &self,
        view: &MessageView<'_>,
        pending: &PendingInvite,
        lookup: KeyLookup,
        status: u16,
        now_ms: u64,
    ) -> Result<Observation, ManagerError> {
        let found = lookup.found;
        if status >= 300 {
            let dialogs_ended = self.invite_failed(pending, status, now_ms);
            return Ok(Observation::Failed {
                status,
                dialogs_ended,
            });
        }
        if status <= 100 {
            return Ok(Observation::Other);
        }
        let confirmed = status >= 200;
        if let Some(dialog) = found {
            let _ = self.dialogs.table.touch(dialog, now_ms);
            if !confirmed {
                return Ok(Observation::Early {
                    dialog,
                    created: false,
                });
            }
            if self.dialogs.table.state(dialog)?.phase() == Phase::Early {
                self.dialogs.table.transition(dialog, Event::Confirm)?;
                self.dialogs
                    .refresh_target(dialog, view, false, self.dialog_budget());
                self.rearm(dialog, now_ms);
            }
            if pending.confirm() {
                let setup_ms = now_ms.saturating_sub(pending.created_ms);
                self.count(|m| m.setup_completed(setup_ms));
            }
            // Late 2xx from other forks may still pass for 64×T1 (§13.2.2.4).
            self.pending_finish(pending, now_ms, true);
            return Ok(Observation::Confirmed {
                dialog,
                created: false,
            });
        }
        let copy = pending.copy().ok_or(ManagerError::UnknownDialog)?;
        let state = if confirmed {
            DialogState::CONFIRMED
        } else {
            DialogState::EARLY
        };
        let origin = Origin::Observed {
            response: view,
            fingerprint: lookup.fingerprint,
        };
        let dialog = self.create(&pending.invite(&copy), origin, state, now_ms)?;
        pending.add_dialog(dialog, true);
        self.rearm(dialog, now_ms);
        if confirmed {
            if pending.confirm() {
                let setup_ms = now_ms.saturating_sub(pending.created_ms);
                self.count(|m| m.setup_completed(setup_ms));
            }
            // Late 2xx from other forks may still pass for 64×T1 (§13.2.2.4).
            self.pending_finish(pending, now_ms, true);
            Ok(Observation::Confirmed {
                dialog,
                created: true,
            })
        } else {
            Ok(Observation::Early {
                dialog,
                created: true,
            })
        }
    }
}
