//! Messages the caller built and sent itself ([`DialogManager::on_sent`]): recorded as if
//! the manager had written them (an INVITE starts a new call, an in-dialog request moves its
//! dialog, an answer works as [`DialogManager::respond`]).

use super::pending::PendingInvite;
use super::{DialogManager, ManagerError};
use crate::dialog::Role;
use crate::id::DialogKey;
use crate::table::DialogHandle;
use crate::wire::{MessageView, Method};

impl DialogManager {
    /// Records a message the caller built and sent itself: an INVITE outside a dialog starts a
    /// UAC transaction (its 1xx/2xx create dialogs), an in-dialog BYE or re-INVITE moves the
    /// state, a response works as in [`DialogManager::respond`] (its To tag is used as is).
    pub fn on_sent(&self, bytes: &[u8], now_ms: u64) -> Result<Option<DialogHandle>, ManagerError> {
        let view = MessageView::parse(bytes)?;
        match view.method() {
            Some(Method::Invite) if view.to_tag().is_none() => {
                let record = self.new_record(&view, Role::Uac);
                self.pending_insert(PendingInvite::new(record, &view), now_ms, &self.records())?;
                Ok(None)
            }
            Some(method) => {
                let Some(dialog) = self.dialogs.table.lookup(&DialogKey::sent(&view)) else {
                    return Ok(None);
                };
                self.request_sent(dialog, method, now_ms)?;
                Ok(Some(dialog))
            }
            None => {
                let request_method = Method::from_bytes(view.cseq().method);
                let status = view.status_code().unwrap_or_default();
                if request_method == Method::Invite {
                    let key = self.pending_key(
                        view.call_id(),
                        view.from_tag().unwrap_or_default(),
                        Role::Uas,
                    );
                    if let Some(pending) = self.pending_get(key, &self.records()) {
                        return self.invite_answer_sent(pending, &view, status, now_ms);
                    }
                }
                let dialog = self.dialogs.table.lookup(&DialogKey::sent(&view));
                Ok(dialog.and_then(|dialog| {
                    self.in_dialog_answered(dialog, request_method, status, now_ms)
                }))
            }
        }
    }
}
