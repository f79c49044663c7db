//! Time passed in: dialogs whose ACK, answer, activity or age ran out end here, and so do
//! INVITEs that got no (final) answer in time; the manager writes what ends them on the wire
//! (BYE, CANCEL, 408).

use std::sync::atomic::Ordering;

use super::outbox::{Delivery, Meta};
use super::pending::{InviteId, PendingInvite};
use super::{DialogManager, ManagerError, Outbox, RequestBody};
use crate::build::{self, RequestParts, ResponseParts};
use crate::dialog::{DialogInfo, Role};
use crate::id::{Fingerprint, Tag};
use crate::metrics::TerminationReason;
use crate::state::{Flags, Phase};
use crate::table::DialogHandle;
use crate::timer::Target;
use crate::wheel::NEAR_MS;
use crate::wire::Method;

/// Why a dialog expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpiryReason {
    /// We sent a 2xx and no ACK came within 64×T1 (§13.3.1.4): BYE sent, once (the peer
    /// never showed it listens where the BYE goes).
    NoAck,
    /// Early (or an INVITE without a final answer) longer than the configured limit: CANCEL
    /// (UAC, when a provisional came) or 408 (UAS) sent.
    EarlyTimeout,
    /// An INVITE we sent got no response at all within 64×T1 (Timer B, §17.1.1.2): its
    /// transaction is gone; tell the caller it timed out (408).
    NoAnswer,
    /// No message for the configured idle time: BYE sent (to both sides when observing).
    Idle,
    /// Older than the configured maximum: BYE sent (to both sides when observing).
    MaxDuration,
    /// Our BYE got no final response within 64×T1: dropped.
    ByeUnanswered,
}

/// A dialog, or an INVITE transaction, that expired in [`DialogManager::on_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The dialog (stale now: it has left the table); `None` for an INVITE that ended
    /// without one.
    pub dialog: Option<DialogHandle>,
    /// The INVITE that got no (final) answer in time ([`ExpiryReason::NoAnswer`], or
    /// [`ExpiryReason::EarlyTimeout`] of its transaction); `None` for a dialog's own expiry.
    pub invite: Option<InviteId>,
    /// Why.
    pub reason: ExpiryReason,
    /// Our role in it.
    pub role: Role,
}

/// Wake-ups handled per [`DialogManager::on_timeout`] call, so that a burst of expiries (a
/// million dialogs idle at once) is worked off in slices between message batches.
pub const MAX_EXPIRIES_PER_CALL: usize = 4096;

/// Wake-ups whose room a thread's [`DUE`] list keeps between calls (8 KiB): a call that
/// takes more (after a burst) frees what it grew.
const DUE_KEPT: usize = 256;

thread_local! {
    /// The wake-ups of the running [`DialogManager::on_timeout`] call, kept between calls so
    /// that taking them costs no allocation.
    static DUE: std::cell::Cell<Vec<(u64, Target)>> = const { std::cell::Cell::new(Vec::new()) };
}

impl DialogManager {
    /// The earliest time [`DialogManager::on_timeout`] has work, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        match (self.timers.next_deadline(), self.security.next_sweep()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles every deadline due at `now_ms`, at most [`MAX_EXPIRIES_PER_CALL`] wake-ups per
    /// call (call again while it returns that many). Expired dialogs leave the table and are
    /// listed in `expired`; what ends them on the wire goes to `out`. Returns the wake-ups
    /// handled.
    pub fn on_timeout(&self, now_ms: u64, out: &mut Outbox, expired: &mut Vec<Expiry>) -> usize {
        self.security.sweep(now_ms);
        // Taken out while in use: a nested call (none today) would get a fresh list.
        let mut due = DUE.take();
        due.clear();
        let n = self
            .timers
            .take_due(now_ms, MAX_EXPIRIES_PER_CALL, &mut due);
        for &(at, target) in &due {
            match target {
                Target::Dialog(dialog) => self.dialog_due(dialog, at, now_ms, out, expired),
                Target::Pending(key) => {
                    self.record_due(Fingerprint::from_words(key), at, now_ms, out, expired)
                }
            }
        }
        if due.capacity() <= DUE_KEPT {
            DUE.set(due);
        }
        n
    }

    /// An INVITE record's deadline: Timer B for ours, the early limit for any INVITE still
    /// without a final answer, or the end of its 64×T1 linger.
    fn record_due(
        &self,
        key: Fingerprint,
        at: u64,
        now_ms: u64,
        out: &mut Outbox,
        expired: &mut Vec<Expiry>,
    ) {
        let records = self.records();
        let Some(p) = self
            .pending_get(key, &records)
            .filter(|p| p.armed_at.load(Ordering::Relaxed) == at)
        else {
            return; // superseded by a later deadline, or gone
        };
        if p.is_finished() {
            // 64×T1 after the first 2xx, forks still early are over (§13.2.2.4).
            if p.confirmed.load(Ordering::Acquire) {
                self.end_early_dialogs(p, TerminationReason::Rejected, now_ms);
            }
            self.pending_remove(key);
            return;
        }
        let age = now_ms.saturating_sub(p.created_ms);
        let answered = p.responded.load(Ordering::Acquire);
        if p.role == Role::Uac && !answered && p.claim_final() {
            // Timer B: nobody answered our INVITE. No CANCEL: nothing was received (§9.1).
            self.pending_remove(key);
            tracing::info!(call = ?key, "INVITE unanswered (Timer B)");
            expired.push(Expiry {
                dialog: None,
                invite: Some(p.id()),
                reason: ExpiryReason::NoAnswer,
                role: Role::Uac,
            });
            return;
        }
        if age < self.early_limit() {
            let at = (p.created_ms + self.early_limit()).min(now_ms.saturating_add(NEAR_MS));
            p.armed_at.store(at, Ordering::Relaxed);
            self.arm(at, Target::pending(key));
            return;
        }
        if !p.claim_final() {
            return;
        }
        let _ = self.write_timeout(p, out);
        self.end_early_dialogs(p, TerminationReason::TimeoutIdle, now_ms);
        self.pending_finish(p, now_ms, false);
        tracing::info!(call = ?key, role = ?p.role, "INVITE without a final answer timed out");
        expired.push(Expiry {
            dialog: None,
            invite: Some(p.id()),
            reason: ExpiryReason::EarlyTimeout,
            role: p.role,
        });
    }

    /// What ends an INVITE that has waited too long for its final answer: 408 to the caller
    /// (UAS), CANCEL to the callee (UAC, once it answered provisionally).
    fn write_timeout(&self, p: &PendingInvite, out: &mut Outbox) -> Result<(), ManagerError> {
        let Some(copy) = p.copy() else {
            return Ok(());
        };
        let Some(invite) = copy.view() else {
            return Ok(());
        };
        match p.role {
            Role::Uas => {
                let tag = p.to_tag.as_ref().map(Tag::as_bytes);
                out.push(Meta::response(None).answering(p.answering), |buf| {
                    let parts = ResponseParts::default();
                    build::response(&invite, 408, "Request Timeout", tag, &parts, buf)
                })?;
            }
            Role::Uac if p.responded.load(Ordering::Acquire) => {
                out.push(Meta::request(None), |buf| build::cancel(&invite, buf))?;
            }
            Role::Uac | Role::Observed => {}
        }
        Ok(())
    }

    /// The nearest deadline of a live dialog.
    pub(crate) fn next_dialog_deadline(&self, dialog: DialogHandle) -> Option<u64> {
        let state = self.dialogs.table.state(dialog).ok()?;
        let (created, active) = self.dialogs.table.times(dialog).ok()?;
        let entry = self.dialogs.cold.entry_of(dialog)?;
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
        let Some((entry, info)) = self.dialogs.cold.get(dialog) else {
            return;
        };
        if entry.armed_at.load(Ordering::Relaxed) != at {
            return; // superseded by a nearer deadline armed later
        }
        let (Ok(state), Ok((created, active))) = (
            self.dialogs.table.state(dialog),
            self.dialogs.table.times(dialog),
        ) else {
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
            ExpiryReason::ByeUnanswered | ExpiryReason::NoAnswer => TerminationReason::Error,
        };
        self.end(dialog, counted_as, now_ms);
        tracing::info!(?dialog, ?reason, role = ?info.role(), "dialog expired");
        expired.push(Expiry {
            dialog: Some(dialog),
            invite: None,
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
            (ExpiryReason::EarlyTimeout, Role::Uac | Role::Uas) => {
                // The INVITE's own timeout sends its CANCEL or 408, once for all its forks.
                let records = self.records();
                let pending = info
                    .invite()
                    .and_then(|key| self.pending_get(key, &records));
                match pending {
                    Some(p) if p.claim_final() => {
                        let _ = self.write_timeout(p, out);
                        self.pending_finish(p, now_ms, false);
                    }
                    _ => {}
                }
                Ok(())
            }
            (ExpiryReason::EarlyTimeout, Role::Observed) => Ok(()),
            (ExpiryReason::NoAnswer, _) => Ok(()),
            // The dialog ends right after: no BYE_PENDING, no deadline for its answer.
            (_, Role::Uac | Role::Uas) => {
                let delivery = match (reason, info.peer()) {
                    // The peer never completed the handshake: one datagram, no more.
                    (ExpiryReason::NoAck, _) => Delivery::Once,
                    (_, Some(peer)) => Delivery::ReliableTo(peer),
                    (_, None) => Delivery::Reliable,
                };
                let body = RequestBody::default();
                self.write_request(dialog, info, Method::Bye, &body, delivery, out)?;
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
        let to_callee = self.dialogs.table.next_local_cseq(dialog)?;
        let (_, callee_last) = self.dialogs.table.cseqs(dialog)?;
        let to_caller = callee_last.map_or(1, |c| c.saturating_add(1));
        for (parts, cseq, kind) in [
            (info.parts(), to_callee, b'e'),
            (info.mirrored_parts(), to_caller, b'r'),
        ] {
            let mut via = [0u8; 128];
            let via_len = self.via(out.owner(), dialog, cseq, kind, &mut via);
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
            out.push_request(Meta::request(Some(dialog)), |buf| {
                build::request_marked(&parts, &request, buf)
            })?;
        }
        Ok(())
    }
}
