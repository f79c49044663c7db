//! Call transfer through the manager: REFER and its implicit subscription (RFC 3515, RFC
//! 4488) and NOTIFY with `message/sipfrag`. The call a transfer triggers is placed with
//! [`super::Calls::invite`], carrying Referred-By and, for an attended transfer, Replaces.
//! The public surface is the [`Transfers`] view, [`DialogManager::transfers`].
//!
//! The subscriptions live in a side table keyed by dialog that only dialogs with a transfer
//! appear in: the hot slot does not grow and a call without a transfer pays one map removal
//! when it ends.

use std::sync::{Arc, Mutex, PoisonError};

use bumpalo::Bump;
use smallvec::SmallVec;

use super::outbox::Meta;
use super::{DialogManager, ManagerError, Outbox, RequestBody, Verdict};
use crate::build::{self, ResponseParts};
use crate::metrics::ReferOutcome;
use crate::refer::{
    parse_refer_event, parse_sipfrag_status, parse_subscription_state, write_refer_to,
    write_sipfrag, write_subscription_state, ReferError, ReferRequest, Replaces, SubscriptionState,
};
use crate::table::DialogHandle;
use crate::wire::{MessageView, Method};

/// How a transfer is going, from the status a NOTIFY reports (RFC 3515 §2.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferProgress {
    /// A provisional status: the transferee is trying.
    Trying,
    /// A 2xx: the transfer target answered.
    Succeeded,
    /// A final non-2xx: the transfer failed (the status says why).
    Failed,
}

impl TransferProgress {
    fn of(status: u16) -> TransferProgress {
        match status {
            100..=199 => TransferProgress::Trying,
            200..=299 => TransferProgress::Succeeded,
            _ => TransferProgress::Failed,
        }
    }
}

/// Which end of an implicit subscription this side is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// We received the REFER and send the NOTIFYs.
    Notifier,
    /// We sent the REFER and receive the NOTIFYs.
    Subscriber,
}

#[derive(Clone, Copy, Debug)]
struct Subscription {
    id: u32,
    side: Side,
}

/// One dialog's transfers: its subscriptions and its REFER rate window.
#[derive(Debug, Default)]
pub(crate) struct DialogTransfers {
    subscriptions: SmallVec<[Subscription; 2]>,
    window_start_ms: u64,
    refers_in_window: u32,
}

pub(crate) type TransferTable = papaya::HashMap<DialogHandle, Arc<Mutex<DialogTransfers>>>;

fn lock(m: &Mutex<DialogTransfers>) -> std::sync::MutexGuard<'_, DialogTransfers> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DialogManager {
    /// The dialog's transfers; with `create`, made for a live dialog that has none. An entry
    /// made while the dialog ends is taken out again, so none outlives its dialog.
    fn transfers_of(
        &self,
        dialog: DialogHandle,
        create: bool,
    ) -> Option<Arc<Mutex<DialogTransfers>>> {
        let map = self.transfers.pin();
        if !create {
            return map.get(&dialog).cloned();
        }
        self.dialogs.table.state(dialog).ok()?;
        let entry = map.get_or_insert_with(dialog, Default::default).clone();
        if self.dialogs.table.state(dialog).is_err() {
            map.remove(&dialog);
            return None;
        }
        Some(entry)
    }

    /// Forgets a dialog's transfers (the dialog ended).
    pub(crate) fn drop_transfers(&self, dialog: DialogHandle) {
        self.transfers.pin().remove(&dialog);
    }

    /// A REFER inside `dialog` (its CSeq already checked): validate, apply the per-dialog
    /// limits, answer 202.
    pub(crate) fn refer_received(
        &self,
        view: &MessageView<'_>,
        dialog: DialogHandle,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        let bump = Bump::new();
        let policy = self.security.policy();
        let request = match ReferRequest::parse(view, &bump, &policy.refer_limits) {
            Ok(request) => request,
            Err(e) => {
                self.count(|m| m.refer(ReferOutcome::Rejected));
                tracing::info!(?dialog, error = %e, "REFER refused");
                return self.reject(view, Some(dialog), e.status().0, out);
            }
        };
        if !policy.allows_transfer_to(crate::dialog::uri_host(request.target.uri)) {
            self.count(|m| m.refer(ReferOutcome::Rejected));
            tracing::info!(?dialog, "REFER to a target outside the policy");
            let refused = crate::security::SecurityError::TransferTargetNotAllowed;
            return self.refuse(view, Some(dialog), refused, out);
        }
        let id = view.cseq().number;
        let transfers = self.transfers_of(dialog, true);
        let mut rate_limited = false;
        let admitted = transfers.is_some_and(|t| {
            let mut t = lock(&t);
            if now_ms >= t.window_start_ms + 1_000 {
                t.window_start_ms = now_ms;
                t.refers_in_window = 0;
            }
            let full =
                request.subscribe && t.subscriptions.len() >= policy.max_subscriptions as usize;
            rate_limited = t.refers_in_window >= policy.max_refers_per_second;
            if rate_limited || full {
                return false;
            }
            t.refers_in_window += 1;
            if request.subscribe {
                t.subscriptions.push(Subscription {
                    id,
                    side: Side::Notifier,
                });
            }
            true
        });
        if !admitted {
            self.count(|m| {
                m.refer(ReferOutcome::Rejected);
                if rate_limited {
                    m.rate_limited();
                }
            });
            tracing::info!(?dialog, rate_limited, "REFER over the dialog's limits");
            return self.reject(view, Some(dialog), 403, out);
        }
        self.count(|m| m.refer(ReferOutcome::Accepted));
        tracing::info!(?dialog, id, subscribe = request.subscribe, "REFER accepted");
        let no_sub: [(&str, &[u8]); 1] = [("Refer-Sub", b"false")];
        let parts = ResponseParts {
            extra_headers: if request.subscribe { &[] } else { &no_sub },
            ..ResponseParts::default()
        };
        out.push(Meta::response(Some(dialog)), |buf| {
            build::response(view, 202, "Accepted", None, &parts, buf)
        })?;
        Ok(Verdict::Refer {
            dialog,
            id,
            subscribed: request.subscribe,
        })
    }

    /// A NOTIFY inside `dialog`: which of our REFERs it reports on, and how it went.
    pub(crate) fn notify_received(
        &self,
        view: &MessageView<'_>,
        dialog: DialogHandle,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        let id = match view.event().map(parse_refer_event) {
            Some(Ok(id)) => id,
            Some(Err(ReferError::BadEvent)) => return self.reject(view, Some(dialog), 489, out),
            Some(Err(_)) | None => return self.reject(view, Some(dialog), 400, out),
        };
        let (status, state) = match (
            parse_sipfrag_status(view.body()),
            view.subscription_state().map(parse_subscription_state),
        ) {
            (Ok(status), Some(Ok(state))) => (status, state),
            _ => return self.reject(view, Some(dialog), 400, out),
        };
        let terminated = matches!(state, SubscriptionState::Terminated { .. });
        let found = self.transfers_of(dialog, false).and_then(|t| {
            let mut t = lock(&t);
            // Without an id the NOTIFY is about the first REFER (RFC 3515 §2.4.6).
            let at = t
                .subscriptions
                .iter()
                .position(|s| s.side == Side::Subscriber && id.is_none_or(|id| s.id == id))?;
            let sub = t.subscriptions[at];
            if terminated {
                t.subscriptions.remove(at);
            }
            Some(sub.id)
        });
        let Some(id) = found else {
            return self.reject(view, Some(dialog), 481, out);
        };
        out.push(Meta::response(Some(dialog)), |buf| {
            build::response(view, 200, "OK", None, &ResponseParts::default(), buf)
        })?;
        if terminated && status >= 200 {
            let outcome = if status < 300 {
                ReferOutcome::Succeeded
            } else {
                ReferOutcome::Failed
            };
            self.count(|m| m.refer(outcome));
            tracing::info!(?dialog, id, status, "transfer finished");
        }
        Ok(Verdict::Notify {
            dialog,
            id,
            status,
            progress: TransferProgress::of(status),
            terminated,
        })
    }

    /// A final non-2xx to our REFER: no subscription came of it.
    pub(crate) fn refer_refused(&self, dialog: DialogHandle, id: u32) {
        if let Some(t) = self.transfers_of(dialog, false) {
            lock(&t)
                .subscriptions
                .retain(|s| !(s.side == Side::Subscriber && s.id == id));
        }
    }
}

/// The transfers of this manager's dialogs: see [`DialogManager::transfers`].
#[derive(Clone, Copy, Debug)]
pub struct Transfers<'m> {
    manager: &'m DialogManager,
}

impl DialogManager {
    /// Transfers: send a REFER ([`Transfers::refer`]), report progress to the peer that
    /// sent one ([`Transfers::notify`]), count a dialog's subscriptions. A received REFER or
    /// NOTIFY comes in through [`DialogManager::on_message`] like any other request.
    pub fn transfers(&self) -> Transfers<'_> {
        Transfers { manager: self }
    }
}

impl Transfers<'_> {
    /// Implicit subscriptions the dialog holds, either end.
    pub fn subscriptions(&self, dialog: DialogHandle) -> usize {
        self.manager
            .transfers_of(dialog, false)
            .map_or(0, |t| lock(&t).subscriptions.len())
    }

    /// Builds a REFER in the dialog asking the peer to call `target` (blind transfer), or to
    /// replace the dialog `replaces` names with a call to `target` (attended transfer, RFC
    /// 5589 §7: the Replaces is escaped into the Refer-To). Referred-By is added when given.
    /// Returns the subscription's event id (the REFER's CSeq).
    pub fn refer(
        &self,
        dialog: DialogHandle,
        target: &[u8],
        replaces: Option<&Replaces<'_>>,
        referred_by: Option<&[u8]>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<u32, ManagerError> {
        let transfers = self
            .manager
            .transfers_of(dialog, true)
            .ok_or(ManagerError::UnknownDialog)?;
        let max = self.manager.security.policy().max_subscriptions as usize;
        if lock(&transfers).subscriptions.len() >= max {
            return Err(ManagerError::TooManySubscriptions);
        }
        let mut refer_to = Vec::new();
        write_refer_to(&mut refer_to, target, replaces)?;
        let mut extra: SmallVec<[(&str, &[u8]); 2]> = SmallVec::new();
        extra.push(("Refer-To", &refer_to));
        if let Some(by) = referred_by {
            extra.push(("Referred-By", by));
        }
        let body = RequestBody {
            extra_headers: &extra,
            ..RequestBody::default()
        };
        let id = self
            .manager
            .request(dialog, Method::Refer, &body, now_ms, out)?;
        lock(&transfers).subscriptions.push(Subscription {
            id,
            side: Side::Subscriber,
        });
        Ok(id)
    }

    /// Builds the NOTIFY reporting `status` for the REFER with event id `id` (RFC 3515
    /// §2.4.5): a `message/sipfrag` status line, `Subscription-State: active;expires=60` while
    /// provisional, `terminated;reason=noresource` for a final status, which ends the
    /// subscription.
    pub fn notify(
        &self,
        dialog: DialogHandle,
        id: u32,
        status: u16,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), ManagerError> {
        let transfers = self
            .manager
            .transfers_of(dialog, false)
            .ok_or(ManagerError::NoSubscription)?;
        let is_ours = |s: &Subscription| s.side == Side::Notifier && s.id == id;
        if !lock(&transfers).subscriptions.iter().any(is_ours) {
            return Err(ManagerError::NoSubscription);
        }
        let last = status >= 200;
        let mut frag = Vec::new();
        write_sipfrag(&mut frag, status, build::reason_phrase(status))?;
        let state = if last {
            SubscriptionState::Terminated {
                reason: Some(b"noresource"),
            }
        } else {
            SubscriptionState::Active { expires: Some(60) }
        };
        let mut sub_state = Vec::new();
        write_subscription_state(&mut sub_state, &state)?;
        let event = format!("refer;id={id}");
        let extra: [(&str, &[u8]); 2] = [
            ("Event", event.as_bytes()),
            ("Subscription-State", &sub_state),
        ];
        let body = RequestBody {
            content_type: Some(b"message/sipfrag"),
            body: &frag,
            extra_headers: &extra,
        };
        self.manager
            .request(dialog, Method::Notify, &body, now_ms, out)?;
        if last {
            lock(&transfers).subscriptions.retain(|s| !is_ours(s));
        }
        Ok(())
    }
}
