//! INVITE transactions in progress: what the manager must remember between an INVITE and its
//! final response (the To tag it chose, the early dialogs of each fork, the bytes a CANCEL or
//! a 487 is built from).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;

use smallvec::SmallVec;

use crate::dialog::{self, contact_uri, Role};
use crate::id::{DialogKey, Fingerprint, Fingerprinter, Tag};
use crate::table::DialogHandle;
use crate::timer::Target;
use crate::wire::{HeaderName, MessageView};

/// Where a field lies in the stored INVITE.
#[derive(Clone, Copy, Debug, Default)]
struct Span(u32, u32);

impl Span {
    /// The span of `field`, a slice of `base`; empty when it is not one.
    fn of(base: &[u8], field: &[u8]) -> Span {
        let start = (field.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        match start.checked_add(field.len()) {
            Some(end) if end <= base.len() && !field.is_empty() => Span(start as u32, end as u32),
            _ => Span::default(),
        }
    }
}

/// The INVITE itself and the fields a dialog is created from, found when it was scanned so
/// that its responses never scan it again. Dropped once nothing can need it (a UAS record
/// that only waits out retransmissions keeps a few dozen bytes, not the message).
#[derive(Debug)]
pub(crate) struct InviteCopy {
    bytes: Box<[u8]>,
    request_uri: Span,
    from: Span,
    to: Span,
    contact: Span,
    /// Record-Route values in the INVITE's order (what the UAS route set is).
    pub record_route: Box<[Box<[u8]>]>,
}

impl InviteCopy {
    fn new(invite: &MessageView<'_>) -> InviteCopy {
        let base = invite.as_bytes();
        let span = |field: Option<&[u8]>| field.map_or(Span::default(), |f| Span::of(base, f));
        InviteCopy {
            request_uri: span(invite.request_uri()),
            from: span(Some(dialog::raw_header(invite, HeaderName::From))),
            to: span(Some(dialog::raw_header(invite, HeaderName::To))),
            contact: span(invite.contact().and_then(contact_uri)),
            record_route: dialog::route_set(invite, false),
            bytes: Box::from(base),
        }
    }

    fn get(&self, span: Span) -> &[u8] {
        self.bytes
            .get(span.0 as usize..span.1 as usize)
            .unwrap_or_default()
    }

    /// The Request-URI of the INVITE.
    pub(crate) fn request_uri(&self) -> &[u8] {
        self.get(self.request_uri)
    }

    /// The From value as written (tag included).
    pub(crate) fn from(&self) -> &[u8] {
        self.get(self.from)
    }

    /// The To value as written.
    pub(crate) fn to(&self) -> &[u8] {
        self.get(self.to)
    }

    /// The URI of the INVITE's Contact (empty if none).
    pub(crate) fn contact(&self) -> &[u8] {
        self.get(self.contact)
    }

    /// The INVITE, scanned again (it parsed when it was stored): for the cold paths that build
    /// a CANCEL or a final response from it.
    pub(crate) fn view(&self) -> Option<MessageView<'_>> {
        MessageView::parse(&self.bytes).ok()
    }
}

/// One INVITE transaction, keyed by (Call-ID, From tag, role).
#[derive(Debug)]
pub(crate) struct PendingInvite {
    pub key: Fingerprint,
    copy: ArcSwapOption<InviteCopy>,
    pub cseq: u32,
    /// When the INVITE was sent or received (caller's clock), for the setup time.
    pub created_ms: u64,
    /// UAS: the To tag of every response to this INVITE.
    pub to_tag: Option<Tag>,
    /// Dialogs created by its responses, one per fork (usually one).
    dialogs: Mutex<SmallVec<[DialogHandle; 2]>>,
    /// A 2xx has been seen: a second one is an extra fork to ACK and BYE.
    pub confirmed: AtomicBool,
    /// A final response has been seen (or the INVITE was cancelled).
    pub finished: AtomicBool,
    /// The deadline of the record's current timer entry; entries with another are stale.
    pub armed_at: AtomicU64,
}

/// The pending-table key: the role keeps apart a UA's own INVITE to itself as UAC and UAS.
pub(crate) fn key(fp: &Fingerprinter, call_id: &[u8], from_tag: &[u8], role: Role) -> Fingerprint {
    let marker: &[u8] = match role {
        Role::Uac => b"\0uac",
        Role::Uas => b"\0uas",
        Role::Observed => b"\0obs",
    };
    fp.fingerprint(&DialogKey {
        call_id,
        local_tag: from_tag,
        remote_tag: marker,
    })
}

impl PendingInvite {
    pub(crate) fn new(
        key: Fingerprint,
        invite: &MessageView<'_>,
        to_tag: Option<Tag>,
    ) -> PendingInvite {
        PendingInvite {
            key,
            copy: ArcSwapOption::from_pointee(InviteCopy::new(invite)),
            cseq: invite.cseq().number,
            created_ms: 0,
            to_tag,
            dialogs: Mutex::new(SmallVec::new()),
            confirmed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            armed_at: AtomicU64::new(0),
        }
    }

    /// The stored INVITE, while it is kept.
    pub(crate) fn copy(&self) -> Option<Arc<InviteCopy>> {
        self.copy.load_full()
    }

    pub(crate) fn add_dialog(&self, dialog: DialogHandle) {
        self.dialogs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(dialog);
    }

    /// The dialogs of this INVITE, taken out (for ending them all).
    pub(crate) fn take_dialogs(&self) -> SmallVec<[DialogHandle; 2]> {
        std::mem::take(&mut *self.dialogs.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Marks the first 2xx; `false` when another one came first.
    pub(crate) fn confirm(&self) -> bool {
        !self.confirmed.swap(true, Ordering::AcqRel)
    }
}

impl super::DialogManager {
    pub(crate) fn pending_key(&self, call_id: &[u8], from_tag: &[u8], role: Role) -> Fingerprint {
        key(self.table.fingerprinter(), call_id, from_tag, role)
    }

    pub(crate) fn pending_get(&self, key: Fingerprint) -> Option<std::sync::Arc<PendingInvite>> {
        self.pending.pin().get(&key).cloned()
    }

    /// Records a new INVITE transaction; `Ok(None)` when it is known already (a
    /// retransmission). The record is dropped at the latest when its safety timer fires.
    pub(crate) fn pending_insert(
        &self,
        pending: PendingInvite,
        now_ms: u64,
    ) -> Result<Option<std::sync::Arc<PendingInvite>>, super::ManagerError> {
        let key = pending.key;
        if self.pending.pin().contains_key(&key) {
            return Ok(None);
        }
        if self.pending_count.fetch_add(1, Ordering::Relaxed) >= self.config.max_pending {
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
            return Err(super::ManagerError::PendingFull);
        }
        let at = now_ms + self.pending_lifetime();
        let mut pending = pending;
        pending.created_ms = now_ms;
        pending.armed_at.store(at, Ordering::Relaxed);
        let pending = std::sync::Arc::new(pending);
        if self.pending.pin().try_insert(key, pending.clone()).is_err() {
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
            return Ok(None);
        }
        self.arm(at, Target::Pending(key));
        Ok(Some(pending))
    }

    /// How long an INVITE transaction record may live: the early-dialog limit, plus 64×T1 for
    /// late 2xx from other forks.
    pub(crate) fn pending_lifetime(&self) -> u64 {
        let early = if self.config.early_timeout_ms == 0 {
            180_000
        } else {
            self.config.early_timeout_ms
        };
        early + 64 * self.config.t1_ms
    }

    /// A final response went out or came in: the record stays 64×T1 more, to recognise
    /// retransmissions of the INVITE and late 2xx from other forks, then goes. Unless
    /// `keep_copy` (a late fork's 2xx may still create a dialog from it), the INVITE copy goes
    /// now.
    pub(crate) fn pending_finish(&self, pending: &PendingInvite, now_ms: u64, keep_copy: bool) {
        if !keep_copy {
            pending.copy.store(None);
        }
        if !pending.finished.swap(true, Ordering::AcqRel) {
            // Replaces the lifetime deadline: the record has one live timer entry at a time.
            let at = now_ms + 64 * self.config.t1_ms;
            pending.armed_at.store(at, Ordering::Relaxed);
            self.arm(at, Target::Pending(pending.key));
        }
    }

    pub(crate) fn pending_remove(&self, key: Fingerprint) {
        if self.pending.pin().remove(&key).is_some() {
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A final non-2xx to an INVITE we sent or watched: its early dialogs end (counted as
    /// cancelled for a 487, rejected otherwise) and its record goes. Returns how many ended.
    pub(crate) fn invite_failed(&self, pending: &PendingInvite, status: u16, now_ms: u64) -> u32 {
        let reason = if status == 487 {
            crate::metrics::TerminationReason::Cancel
        } else {
            crate::metrics::TerminationReason::Rejected
        };
        let ended = self.end_early_dialogs(pending, reason, now_ms);
        pending.finished.store(true, Ordering::Release);
        self.pending_remove(pending.key);
        ended
    }

    /// Ends every early dialog of an INVITE (non-2xx final, CANCEL, timeout); returns how many.
    pub(crate) fn end_early_dialogs(
        &self,
        pending: &PendingInvite,
        reason: crate::metrics::TerminationReason,
        now_ms: u64,
    ) -> u32 {
        let mut ended = 0;
        for dialog in pending.take_dialogs() {
            if self.is_early_dialog(dialog) && self.end(dialog, reason, now_ms) {
                ended += 1;
            }
        }
        ended
    }
}
