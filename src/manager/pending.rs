//! INVITE transactions in progress: what the manager remembers between an INVITE and its
//! final response (the To tag it chose, the early dialogs of each fork, the headers a CANCEL
//! or an answer is built from), within a count cap and a byte budget.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use smallvec::SmallVec;

use super::claim::FinalAnswer;
use crate::dialog::{contact_uri, Role};
use crate::id::{DialogKey, Fingerprint, Fingerprinter, Tag};
use crate::security::{Charge, SecurityError};
use crate::table::DialogHandle;
use crate::timer::Target;
use crate::wire::{HeaderName, MessageView};

/// An INVITE transaction the manager tracks: what [`super::Verdict::NewInvite`] hands out and
/// [`super::DialogManager::respond_invite`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InviteId(pub(crate) Fingerprint);

/// Where a field lies in the stored copy.
#[derive(Clone, Copy, Debug, Default)]
struct Span(u32, u32);

/// What an INVITE's answers, its CANCEL and its dialogs are built from, copied when it was
/// scanned: the request line, Via, Route, Record-Route, From, To, Call-ID, CSeq and Contact,
/// and nothing else (no body, no other header), as one small SIP message. Dropped once
/// nothing can need it.
#[derive(Debug)]
pub(crate) struct InviteCopy {
    bytes: Box<[u8]>,
    request_uri: Span,
    from: Span,
    to: Span,
    contact: Span,
}

/// The headers a copy keeps.
const KEPT: [HeaderName; 8] = [
    HeaderName::Via,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Contact,
];

impl InviteCopy {
    fn new(invite: &MessageView<'_>) -> InviteCopy {
        // One walk over the headers collects what is kept (in message order: the order of
        // Via and of Record-Route entries is what matters); then one exact allocation.
        let mut kept: SmallVec<[(HeaderName, &[u8]); 16]> = SmallVec::new();
        let mut contact_seen = false;
        for header in invite.headers() {
            let contact = header.kind == HeaderName::Contact;
            if !KEPT.contains(&header.kind) || (contact && contact_seen) {
                continue;
            }
            contact_seen |= contact;
            kept.push((header.kind, crate::wire::trim_lws(header.value)));
        }
        let uri = invite.request_uri().unwrap_or_default();
        let len = b"INVITE ".len()
            + uri.len()
            + b" SIP/2.0\r\n".len()
            + kept
                .iter()
                .map(|(kind, value)| kind.as_str().len() + 4 + value.len())
                .sum::<usize>()
            + b"Content-Length: 0\r\n\r\n".len();
        let mut bytes = Vec::with_capacity(len);
        let span = |bytes: &Vec<u8>, start: usize| Span(start as u32, bytes.len() as u32);
        bytes.extend_from_slice(b"INVITE ");
        let start = bytes.len();
        bytes.extend_from_slice(uri);
        let request_uri = span(&bytes, start);
        bytes.extend_from_slice(b" SIP/2.0\r\n");
        let (mut from, mut to, mut contact) = (Span::default(), Span::default(), Span::default());
        for (kind, value) in kept {
            bytes.extend_from_slice(kind.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            let start = bytes.len();
            bytes.extend_from_slice(value);
            match kind {
                HeaderName::From => from = span(&bytes, start),
                HeaderName::To => to = span(&bytes, start),
                HeaderName::Contact => {
                    if let Some(uri) = contact_uri(value) {
                        let at = start + (uri.as_ptr() as usize - value.as_ptr() as usize);
                        contact = Span(at as u32, (at + uri.len()) as u32);
                    }
                }
                _ => {}
            }
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        debug_assert_eq!(bytes.len(), len);
        InviteCopy {
            bytes: bytes.into_boxed_slice(),
            request_uri,
            from,
            to,
            contact,
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

    /// The copy, scanned: for the cold paths that build an answer or a CANCEL from it.
    pub(crate) fn view(&self) -> Option<MessageView<'_>> {
        MessageView::parse(&self.bytes).ok()
    }

    /// Bytes it holds, for the byte budget.
    fn cost(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<InviteCopy>()
    }
}

/// What a record costs besides its copy: itself, its `Arc`, its index entry.
const RECORD_COST: usize = std::mem::size_of::<PendingInvite>() + 64;

/// One INVITE transaction, keyed by (Call-ID, From tag, role).
#[derive(Debug)]
pub(crate) struct PendingInvite {
    pub key: Fingerprint,
    pub role: Role,
    copy: ArcSwapOption<InviteCopy>,
    pub cseq: u32,
    /// The top Via's branch and sent-by (§17.2.3), fingerprinted: a CANCEL must match them.
    pub via: Fingerprint,
    /// Where the INVITE came from (UAS), when the caller said.
    pub source: Option<SocketAddr>,
    /// When the INVITE was sent or received (caller's clock).
    pub created_ms: u64,
    /// UAS: the To tag of every response to this INVITE.
    pub to_tag: Option<Tag>,
    /// The per-source share this INVITE holds until its dialog takes it over or it ends.
    charge: Option<Charge>,
    charge_taken: AtomicBool,
    /// The final answer's claim (sent, received, or the INVITE was cancelled), and the
    /// dialogs its responses made, one per fork (usually one).
    answer: FinalAnswer<DialogHandle>,
    /// A 2xx has been seen: a second one is an extra fork to ACK and BYE.
    pub confirmed: AtomicBool,
    /// UAC: a response came (Timer B is off).
    pub responded: AtomicBool,
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

/// The transaction part of a request's top Via, fingerprinted (branch and sent-by).
pub(crate) fn via_key(fp: &Fingerprinter, view: &MessageView<'_>) -> Fingerprint {
    let via = view.top_via().ok().flatten();
    fp.fingerprint(&DialogKey {
        call_id: b"\0via",
        local_tag: via.and_then(|v| v.branch).unwrap_or_default(),
        remote_tag: via.map(|v| v.sent_by).unwrap_or_default(),
    })
}

/// What a new record starts with.
pub(crate) struct NewRecord {
    pub key: Fingerprint,
    pub role: Role,
    pub via: Fingerprint,
    pub source: Option<SocketAddr>,
    pub to_tag: Option<Tag>,
    pub charge: Option<Charge>,
}

impl PendingInvite {
    pub(crate) fn new(new: NewRecord, invite: &MessageView<'_>) -> PendingInvite {
        PendingInvite {
            key: new.key,
            role: new.role,
            copy: ArcSwapOption::from_pointee(InviteCopy::new(invite)),
            cseq: invite.cseq().number,
            via: new.via,
            source: new.source,
            created_ms: 0,
            to_tag: new.to_tag,
            charge: new.charge,
            charge_taken: AtomicBool::new(false),
            answer: FinalAnswer::new(),
            confirmed: AtomicBool::new(false),
            responded: AtomicBool::new(false),
            armed_at: AtomicU64::new(0),
        }
    }

    /// This record's token.
    pub(crate) fn id(&self) -> InviteId {
        InviteId(self.key)
    }

    /// The stored copy, while it is kept.
    pub(crate) fn copy(&self) -> Option<Arc<InviteCopy>> {
        self.copy.load_full()
    }

    /// Claims the final answer; `false` when another one was claimed first.
    pub(crate) fn claim_final(&self) -> bool {
        self.answer.claim()
    }

    /// Whether the INVITE has its final answer (or was cancelled).
    pub(crate) fn is_finished(&self) -> bool {
        self.answer.is_claimed()
    }

    /// Hands the per-source share over (to the dialog the INVITE created); `None` when there
    /// was none or it went already.
    pub(crate) fn take_charge(&self) -> Option<Charge> {
        self.charge
            .filter(|_| !self.charge_taken.swap(true, Ordering::AcqRel))
    }

    /// Records a dialog of this INVITE. Unless the caller holds the final-answer claim
    /// (`claimed`), `false` when the claim was taken meanwhile (a CANCEL won): the dialog must
    /// then go, since nothing will end it as one of this INVITE's. The lock orders this
    /// against [`PendingInvite::take_dialogs`]: a dialog added before the claimer takes them is
    /// ended by the claimer, one added after sees the claim.
    pub(crate) fn add_dialog(&self, dialog: DialogHandle, claimed: bool) -> bool {
        // Only a UAS contends: a UAC's or an observer's claim is the network's answer.
        self.answer.add(dialog, claimed || self.role != Role::Uas)
    }

    /// The dialogs of this INVITE, taken out (for ending them all).
    pub(crate) fn take_dialogs(&self) -> SmallVec<[DialogHandle; 2]> {
        self.answer.take()
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

    pub(crate) fn pending_get(&self, key: Fingerprint) -> Option<Arc<PendingInvite>> {
        self.pending.pin().get(&key).cloned()
    }

    /// What a new record of `invite`, in `role`, starts with: no source, tag or charge yet.
    pub(crate) fn new_record(&self, invite: &MessageView<'_>, role: Role) -> NewRecord {
        let from_tag = invite.from_tag().unwrap_or_default();
        NewRecord {
            key: self.pending_key(invite.call_id(), from_tag, role),
            role,
            via: via_key(self.table.fingerprinter(), invite),
            source: None,
            to_tag: None,
            charge: None,
        }
    }

    /// The record of a received INVITE (this side is its UAS).
    pub(crate) fn uas_record(&self, view: &MessageView<'_>) -> Option<Arc<PendingInvite>> {
        let from_tag = view.from_tag().unwrap_or_default();
        self.pending_get(self.pending_key(view.call_id(), from_tag, Role::Uas))
    }

    /// The token of the INVITE we sent with this Call-ID and From tag (its responses carry
    /// both), for matching a response or an [`super::Expiry`] to a call placed with
    /// [`super::DialogManager::invite`].
    pub fn sent_invite_id(&self, call_id: &[u8], from_tag: &[u8]) -> InviteId {
        InviteId(self.pending_key(call_id, from_tag, Role::Uac))
    }

    /// Records a new INVITE transaction; `Ok(None)` when it is known already (a
    /// retransmission), an error when the records are at their count cap or byte budget
    /// ([`crate::security::Policy::max_invite_records`],
    /// [`crate::security::Policy::invite_record_bytes`]). The record goes at the latest when
    /// its timers run out.
    pub(crate) fn pending_insert(
        &self,
        mut pending: PendingInvite,
        now_ms: u64,
    ) -> Result<Option<Arc<PendingInvite>>, super::ManagerError> {
        let key = pending.key;
        if self.pending.pin().contains_key(&key) {
            return Ok(None);
        }
        let policy = self.security.policy();
        let cost = RECORD_COST + pending.copy.load().as_ref().map_or(0, |c| c.cost());
        let full = super::ManagerError::Security(SecurityError::TooManyInvites);
        if self.pending_count.fetch_add(1, Ordering::Relaxed) >= policy.max_invite_records {
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
            return Err(full);
        }
        if self.pending_bytes.fetch_add(cost, Ordering::Relaxed) + cost > policy.invite_record_bytes
        {
            self.pending_bytes.fetch_sub(cost, Ordering::Relaxed);
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
            return Err(full);
        }
        let at = now_ms + self.first_record_deadline(pending.role);
        pending.created_ms = now_ms;
        pending.armed_at.store(at, Ordering::Relaxed);
        let pending = Arc::new(pending);
        if self.pending.pin().try_insert(key, pending.clone()).is_err() {
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
            self.pending_bytes.fetch_sub(cost, Ordering::Relaxed);
            return Ok(None);
        }
        self.arm(at, Target::Pending(key));
        Ok(Some(pending))
    }

    /// How long after its creation a record's first deadline is: Timer B (64×T1) for an
    /// INVITE we sent, which must have drawn some response by then; the early limit for the
    /// others.
    fn first_record_deadline(&self, role: Role) -> u64 {
        match role {
            Role::Uac => (64 * self.config.t1_ms).min(self.early_limit()),
            Role::Uas | Role::Observed => self.early_limit(),
        }
    }

    /// How long an INVITE may go without a final response: the early-dialog limit (180 s when
    /// that is off, so that no record lives forever).
    pub(crate) fn early_limit(&self) -> u64 {
        match self.config.early_timeout_ms {
            0 => 180_000,
            early => early,
        }
    }

    /// Bytes INVITE records hold (copies included): what
    /// [`crate::security::Policy::invite_record_bytes`] bounds.
    pub fn invite_record_bytes(&self) -> usize {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    /// The final answer went out or came in (the winner of [`PendingInvite::claim_final`],
    /// or a response to an INVITE we sent or watched): the record stays 64×T1 more, to
    /// recognise retransmissions of the INVITE and late 2xx from other forks, then goes. Unless
    /// `keep_copy` (a late fork's 2xx may still create a dialog from it), the copy goes now; so
    /// does the per-source share if no dialog took it.
    pub(crate) fn pending_finish(&self, pending: &PendingInvite, now_ms: u64, keep_copy: bool) {
        if !keep_copy {
            self.drop_copy(pending);
            self.release_record_charge(pending);
        }
        pending.answer.set_claimed();
        // Replaces any earlier deadline: the record has one live timer entry at a time.
        let at = now_ms + 64 * self.config.t1_ms;
        if pending.armed_at.swap(at, Ordering::Relaxed) != at {
            self.arm(at, Target::Pending(pending.key));
        }
    }

    fn drop_copy(&self, pending: &PendingInvite) {
        if let Some(copy) = pending.copy.swap(None) {
            self.pending_bytes.fetch_sub(copy.cost(), Ordering::Relaxed);
        }
    }

    fn release_record_charge(&self, pending: &PendingInvite) {
        if let Some(charge) = pending.take_charge() {
            self.security.release(charge);
        }
    }

    pub(crate) fn pending_remove(&self, key: Fingerprint) {
        if let Some(pending) = self.pending.pin().remove(&key) {
            self.drop_copy(pending);
            self.release_record_charge(pending);
            self.pending_bytes.fetch_sub(RECORD_COST, Ordering::Relaxed);
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
        pending.answer.set_claimed();
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
