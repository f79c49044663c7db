//! Time passed in: dialogs whose ACK, answer, activity or age ran out end here, and the
//! manager writes what ends them on the wire (BYE, CANCEL, 408).

use std::sync::atomic::Ordering;

use super::{DialogManager, ManagerError, Outbox, RequestBody};
use crate::build::{self, RequestParts, ResponseParts};
use crate::dialog::{DialogInfo, Role};
use crate::metrics::TerminationReason;
use crate::state::{Flags, Phase};
use crate::table::DialogHandle;
use crate::timer::Target;
use crate::wire::Method;

/// Why a dialog expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpiryReason {
    /// We sent a 2xx and no ACK came within 64×T1 (§13.3.1.4): BYE sent.
    NoAck,
    /// Early longer than the configured limit: CANCEL (UAC) or 408 (UAS) sent.
    EarlyTimeout,
    /// No message for the configured idle time: BYE sent (to both sides when observing).
    Idle,
    /// Older than the configured maximum: BYE sent (to both sides when observing).
    MaxDuration,
    /// Our BYE got no final response within 64×T1: dropped.
    ByeUnanswered,
}

/// One dialog that expired in [`DialogManager::on_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The dialog (stale now: it has left the table).
    pub dialog: DialogHandle,
    /// Why.
    pub reason: ExpiryReason,
    /// Our role in it.
    pub role: Role,
}

/// Wake-ups handled per [`DialogManager::on_timeout`] call, so that a burst of expiries (a
/// million dialogs idle at once) is worked off in slices between message batches.
pub const MAX_EXPIRIES_PER_CALL: usize = 4096;

impl DialogManager {
    /// The earliest time [`DialogManager::on_timeout`] has work, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    /// Handles every deadline due at `now_ms`, at most [`MAX_EXPIRIES_PER_CALL`] wake-ups per
    /// call (call again while it returns that many). Expired dialogs leave the table and are
    /// listed in `expired`; what ends them on the wire goes to `out`. Returns the wake-ups
    /// handled.
    pub fn on_timeout(&self, now_ms: u64, out: &mut Outbox, expired: &mut Vec<Expiry>) -> usize {
        let mut due = Vec::new();
        let n = self
            .timers
            .take_due(now_ms, MAX_EXPIRIES_PER_CALL, &mut due);
        for (at, target) in due {
            match target {
                Target::Dialog(dialog) => self.dialog_due(dialog, at, now_ms, out, expired),
                Target::Pending(key) => {
                    // Its lifetime, or 64×T1 after its final response, is over.
                    let current = self.pending_get(key);
                    if let Some(p) = current.filter(|p| p.armed_at.load(Ordering::Relaxed) == at) {
                        // 64×T1 after the first 2xx, forks still early are over (§13.2.2.4).
                        if p.confirmed.load(Ordering::Acquire) {
                            self.end_early_dialogs(&p, TerminationReason::Rejected, now_ms);
                        }
                        self.pending_remove(key);
                    }
                }
            }
        }
        n
    }

    /// The nearest deadline of a live dialog.
    pub(crate) fn next_dialog_deadline(&self, dialog: DialogHandle) -> Option<u64> {
        let state = self.table.state(dialog).ok()?;
        let (created, active) = self.table.times(dialog).ok()?;
        let (entry, _) = self.cold.get(dialog)?;
        let c = &self.config;
        let flags = state.flags();
        let candidates = [
            (state.phase() == Phase::Early && c.early_timeout_ms > 0)
                .then(|| created + c.early_timeout_ms),
            flags
                .contains(Flags::ACK_PENDING)
                .then(|| entry.ack_deadline.load(Ordering::Relaxed)),
            flags
                .contains(Flags::BYE_PENDING)
                .then(|| entry.bye_deadline.load(Ordering::Relaxed)),
            (state.phase() == Phase::Confirmed && c.idle_timeout_ms > 0)
                .then(|| active + c.idle_timeout_ms),
            (c.max_duration_ms > 0).then(|| created + c.max_duration_ms),
        ];
        candidates.into_iter().flatten().filter(|&at| at > 0).min()
    }

    fn dialog_due(
        &self,
        dialog: DialogHandle,
        at: u64,
        now_ms: u64,
        out: &mut Outbox,
        expired: &mut Vec<Expiry>,
    ) {
        let Some((entry, info)) = self.cold.get(dialog) else {
            return;
        };
        if entry.armed_at.load(Ordering::Relaxed) != at {
            return; // superseded by a nearer deadline armed later
        }
        let (Ok(state), Ok((created, active))) =
            (self.table.state(dialog), self.table.times(dialog))
        else {
            return;
        };
        let c = &self.config;
        let flags = state.flags();
        let past = |deadline: u64| deadline > 0 && deadline <= now_ms;
        let reason = if flags.contains(Flags::BYE_PENDING)
            && past(entry.bye_deadline.load(Ordering::Relaxed))
        {
            ExpiryReason::ByeUnanswered
        } else if flags.contains(Flags::ACK_PENDING)
            && past(entry.ack_deadline.load(Ordering::Relaxed))
        {
            ExpiryReason::NoAck
        } else if state.phase() == Phase::Early
            && c.early_timeout_ms > 0
            && past(created + c.early_timeout_ms)
        {
            ExpiryReason::EarlyTimeout
        } else if state.phase() == Phase::Confirmed
            && c.idle_timeout_ms > 0
            && past(active + c.idle_timeout_ms)
        {
            ExpiryReason::Idle
        } else if c.max_duration_ms > 0 && past(created + c.max_duration_ms) {
            ExpiryReason::MaxDuration
        } else {
            self.rearm(dialog, now_ms);
            return;
        };
        // Best effort on the wire: the dialog ends whatever the builder says.
        let _ = self.send_ending(dialog, &info, reason, now_ms, out);
        let counted_as = match reason {
            ExpiryReason::NoAck => TerminationReason::TimeoutAck,
            ExpiryReason::EarlyTimeout | ExpiryReason::Idle | ExpiryReason::MaxDuration => {
                TerminationReason::TimeoutIdle
            }
            ExpiryReason::ByeUnanswered => TerminationReason::Error,
        };
        self.end(dialog, counted_as, now_ms);
        tracing::info!(?dialog, ?reason, role = ?info.role(), "dialog expired");
        expired.push(Expiry {
            dialog,
            reason,
            role: info.role(),
        });
    }

    /// Writes what ends an expiring dialog.
    fn send_ending(
        &self,
        dialog: DialogHandle,
        info: &DialogInfo,
        reason: ExpiryReason,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), ManagerError> {
        match (reason, info.role()) {
            (ExpiryReason::ByeUnanswered, _) => Ok(()),
            (ExpiryReason::EarlyTimeout, Role::Uac) => {
                self.cancel(info.call_id(), info.local_tag(), out)
            }
            (ExpiryReason::EarlyTimeout, Role::Uas) => {
                let Some(key) = info.invite() else {
                    return Ok(());
                };
                let Some(pending) = self.pending_get(key) else {
                    return Ok(());
                };
                if !pending.finished.load(Ordering::Acquire) {
                    if let Some(copy) = pending.copy() {
                        let Some(invite) = copy.view() else {
                            return Ok(());
                        };
                        let tag = pending.to_tag.as_ref().map(|t| t.as_bytes());
                        out.push(None, false, |buf| {
                            build::response(
                                &invite,
                                408,
                                "Request Timeout",
                                tag,
                                &ResponseParts::default(),
                                buf,
                            )
                        })?;
                    }
                    self.pending_finish(&pending, now_ms, false);
                }
                Ok(())
            }
            (ExpiryReason::EarlyTimeout, Role::Observed) => Ok(()),
            // The dialog ends right after: no BYE_PENDING, no deadline for its answer.
            (_, Role::Uac | Role::Uas) => {
                self.write_request(dialog, info, Method::Bye, &RequestBody::default(), out)?;
                Ok(())
            }
            (_, Role::Observed) => self.bye_both_sides(dialog, info, out),
        }
    }

    /// An observing SBC ends a call by sending BYE to each side as if from the other.
    fn bye_both_sides(
        &self,
        dialog: DialogHandle,
        info: &DialogInfo,
        out: &mut Outbox,
    ) -> Result<(), ManagerError> {
        let to_callee = self.table.next_local_cseq(dialog)?;
        let (_, callee_last) = self.table.cseqs(dialog)?;
        let to_caller = callee_last.map_or(1, |c| c.saturating_add(1));
        for (parts, cseq, kind) in [
            (info.parts(), to_callee, b'e'),
            (info.mirrored_parts(), to_caller, b'r'),
        ] {
            let mut via = [0u8; 128];
            let via_len = self.via(dialog, cseq, kind, &mut via);
            let request = RequestParts {
                method: Method::Bye,
                cseq,
                via: via.get(..via_len).unwrap_or_default(),
                max_forwards: 70,
                contact: None,
                content_type: None,
                body: &[],
                extra_headers: &[],
            };
            out.push(Some(dialog), true, |buf| {
                build::request(&parts, &request, buf)
            })?;
        }
        Ok(())
    }
}
