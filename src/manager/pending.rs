//! INVITE transactions in progress: what the manager remembers between an INVITE and its
//! final response (the To tag it chose, the early dialogs of each fork, the headers a CANCEL
//! or an answer is built from), within a count cap and a byte budget.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use arc_swap::ArcSwapAny;
use smallvec::SmallVec;
use triomphe::ThinArc;

use super::claim::FinalAnswer;
use super::outbox::Answering;
use crate::build::DialogParts;
use crate::dialog::{contact_uri, Invite, Role};
use crate::id::{DialogKey, Fingerprint, Fingerprinter, Tag};
use crate::security::{Charge, SecurityError};
use crate::table::DialogHandle;
use crate::timer::Target;
use crate::wheel::NEAR_MS;
use crate::wire::{CSeq, HeaderName, MessageView, Method, OwnRequest, RouteTally, StartLine};

/// An INVITE transaction the manager tracks: what [`super::Verdict::NewInvite`] hands out and
/// [`super::DialogManager::respond_invite`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InviteId(pub(crate) Fingerprint);

/// Where a field lies in the stored copy.
#[derive(Clone, Copy, Debug, Default)]
struct Span(u32, u32);

/// What an INVITE's answers, its CANCEL and its dialogs are built from, copied when it was
/// scanned: the request line, Via, Route, Record-Route, From, To, Call-ID, CSeq, Contact and
/// Timestamp, and nothing else (no body, no other header), as one small SIP message, with
/// where each field lies in it, so answering from it takes no scan. Dropped once nothing can
/// need it.
/// Where the fields lie and the bytes are one allocation (`ThinArc`), shared by handle.
#[derive(Clone)]
pub(crate) struct InviteCopy(ThinArc<CopyHead, u8>);

/// Where a copy's fields lie in its bytes.
#[derive(Debug)]
pub(crate) struct CopyHead {
    request_uri: Span,
    from: Span,
    to: Span,
    contact: Span,
    /// The method, and the length of its token at the start of the bytes.
    method: (Method, usize),
    /// Where the view's fields lie (`view`).
    fields: Fields,
}

impl std::fmt::Debug for InviteCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InviteCopy")
            .field("head", self.head())
            .field("bytes", &self.bytes().len())
            .finish()
    }
}

/// A received request kept to be answered later, without its bytes: the headers an answer
/// copies (Via, From, To, Call-ID, CSeq, Record-Route) in a compact copy that knows where each
/// field lies, so answering it ([`super::DialogManager::respond_kept`]) takes no scan. What a
/// B2BUA holds while the other leg answers a request it relayed.
///
/// ```
/// use sipdialog::manager::{DialogManager, KeptRequest, ManagerConfig, Outbox};
/// use sipdialog::wire::MessageView;
///
/// let manager = DialogManager::new(ManagerConfig::default()).unwrap();
/// let info = b"INFO sip:b@192.0.2.4 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKi1\r\n\
/// From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c1\r\nCSeq: 7 INFO\r\n\
/// Content-Type: application/x\r\nContent-Length: 3\r\n\r\nabc";
/// let kept = KeptRequest::new(&MessageView::parse(info).unwrap());
/// // Later, the bytes gone: the answer from what was kept.
/// let mut out = Outbox::new();
/// manager.respond_kept(&kept, 481, &Default::default(), 0, &mut out).unwrap();
/// let answer = MessageView::parse(out.iter().next().unwrap().bytes).unwrap();
/// assert_eq!((answer.status_code(), answer.cseq().number), (Some(481), 7));
/// assert_eq!(answer.to_tag(), Some(&b"2"[..]));
/// ```
#[derive(Debug)]
pub struct KeptRequest(InviteCopy);

impl KeptRequest {
    /// Keeps what an answer to `request` needs.
    pub fn new(request: &MessageView<'_>) -> KeptRequest {
        KeptRequest(InviteCopy::new(request))
    }

    /// Bytes it holds (for a caller's byte budget).
    pub fn bytes(&self) -> usize {
        self.0.cost()
    }

    /// The kept request, viewed without a scan.
    pub(crate) fn view(&self) -> Option<MessageView<'_>> {
        self.0.view()
    }
}

/// The fields of a copy's view, by span (empty: absent).
#[derive(Debug, Default)]
struct Fields {
    headers_start: u32,
    call_id: Span,
    from_tag: Option<Span>,
    to_tag: Option<Span>,
    cseq: (u32, Span),
    via: Option<Span>,
    contact: Option<Span>,
    record_route: Option<Span>,
    route: Option<Span>,
    timestamp: Option<Span>,
    routes: (RouteTally, RouteTally),
    /// Via lines in the copy: each kept line is one (a fold stays on its line).
    via_lines: u32,
}

/// The headers a copy keeps.
const KEPT: [HeaderName; 9] = [
    HeaderName::Via,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Contact,
    HeaderName::Timestamp,
];

/// What a copy knows of its INVITE besides the kept headers: slices of those header values
/// (tags, Call-ID, CSeq method) and the route tallies.
struct Known<'a> {
    from_tag: Option<&'a [u8]>,
    to_tag: Option<&'a [u8]>,
    call_id: &'a [u8],
    cseq: CSeq<'a>,
    routes: (RouteTally, RouteTally),
}

impl InviteCopy {
    /// The copy of a received (or observed) INVITE.
    fn new(invite: &MessageView<'_>) -> InviteCopy {
        // What is kept comes from the scan, or else from one walk over the headers (in message
        // order: the order of Via and of Record-Route entries is what matters); then one exact
        // allocation.
        let mut kept: SmallVec<[(HeaderName, &[u8]); 16]> = SmallVec::new();
        let (record_routes, routes) = invite.route_tallies();
        // One line each of Via, Record-Route and Route at most: the scan kept every value
        // the copy needs, so no walk (the order of different headers means nothing).
        let scanned = match (invite.top_via_raw(), invite.raw_cseq()) {
            (Some(via), Some(cseq))
                if invite.via_lines() == Some(1)
                    && record_routes.lines <= 1
                    && routes.lines <= 1 =>
            {
                let optional = [
                    (HeaderName::Route, invite.route()),
                    (HeaderName::RecordRoute, invite.record_route()),
                    (HeaderName::Contact, invite.contact()),
                    (HeaderName::Timestamp, invite.timestamp()),
                ];
                let required = [
                    (HeaderName::Via, via),
                    (HeaderName::From, invite.raw_from()),
                    (HeaderName::To, invite.raw_to()),
                    (HeaderName::CallId, invite.call_id()),
                    (HeaderName::CSeq, cseq),
                ];
                kept.extend(
                    required
                        .into_iter()
                        .map(|(k, v)| (k, crate::wire::trim_lws(v))),
                );
                kept.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
                true
            }
            _ => false,
        };
        if !scanned {
            let mut contact_seen = false;
            for header in invite.headers() {
                let contact = header.kind == HeaderName::Contact;
                if !KEPT.contains(&header.kind) || (contact && contact_seen) {
                    continue;
                }
                contact_seen |= contact;
                kept.push((header.kind, crate::wire::trim_lws(header.value)));
            }
        }
        let known = Known {
            from_tag: invite.from_tag(),
            to_tag: invite.to_tag(),
            call_id: invite.call_id(),
            cseq: invite.cseq(),
            routes: invite.route_tallies(),
        };
        let method = match invite.start_line() {
            StartLine::Request {
                method,
                method_token,
                ..
            } => (method, method_token),
            StartLine::Response { .. } => (Method::Invite, &b"INVITE"[..]),
        };
        InviteCopy::write(
            method,
            invite.request_uri().unwrap_or_default(),
            &kept,
            &known,
        )
    }

    /// The copy of an INVITE we build ([`super::Calls::invite`]), from its parts: what
    /// it holds is what `build::initial_invite` writes for them, minus body and extras.
    pub(crate) fn of_own(parties: &DialogParts<'_>, via: &[u8], contact: &[u8]) -> InviteCopy {
        // On the stack: the copy below is the only allocation this makes.
        let mut from: SmallVec<[u8; 160]> = SmallVec::new();
        from.extend_from_slice(parties.local_uri);
        from.extend_from_slice(b";tag=");
        from.extend_from_slice(parties.local_tag);
        let cseq = b"1 INVITE";
        let kept = [
            (HeaderName::Via, via),
            (HeaderName::From, &from[..]),
            (HeaderName::To, parties.remote_uri),
            (HeaderName::CallId, parties.call_id),
            (HeaderName::CSeq, &cseq[..]),
            (HeaderName::Contact, contact),
        ];
        let known = Known {
            from_tag: from.get(parties.local_uri.len() + 5..),
            to_tag: None,
            call_id: parties.call_id,
            cseq: CSeq {
                number: 1,
                method: &cseq[2..],
            },
            routes: Default::default(),
        };
        let method = (Method::Invite, &b"INVITE"[..]);
        InviteCopy::write(method, parties.remote_target, &kept, &known)
    }

    /// Writes the copy: request line, `kept` headers in order, an empty body; and where each
    /// field is.
    fn write(
        method: (Method, &[u8]),
        uri: &[u8],
        kept: &[(HeaderName, &[u8])],
        known: &Known<'_>,
    ) -> InviteCopy {
        // Staged in this thread's buffer, then copied once into the shared allocation.
        crate::scratch::with_buffer(|bytes| {
            let head = InviteCopy::write_into(bytes, method, uri, kept, known);
            InviteCopy(ThinArc::from_header_and_slice(head, bytes))
        })
    }

    /// [`InviteCopy::write`]'s bytes, into the empty `bytes`; returns where the fields are.
    fn write_into(
        bytes: &mut Vec<u8>,
        (method, token): (Method, &[u8]),
        uri: &[u8],
        kept: &[(HeaderName, &[u8])],
        known: &Known<'_>,
    ) -> CopyHead {
        let len = token.len()
            + 1
            + uri.len()
            + b" SIP/2.0\r\n".len()
            + kept
                .iter()
                .map(|(kind, value)| kind.as_str().len() + 4 + value.len())
                .sum::<usize>()
            + b"Content-Length: 0\r\n\r\n".len();
        bytes.reserve(len);
        let span = |bytes: &Vec<u8>, start: usize| Span(start as u32, bytes.len() as u32);
        // Where `inner`, a slice of the value copied at `start`, lies in the copy.
        let within = |start: usize, value: &[u8], inner: &[u8]| {
            let at = start + (inner.as_ptr() as usize).checked_sub(value.as_ptr() as usize)?;
            (at + inner.len() <= start + value.len())
                .then_some(Span(at as u32, (at + inner.len()) as u32))
        };
        bytes.extend_from_slice(token);
        bytes.push(b' ');
        let start = bytes.len();
        bytes.extend_from_slice(uri);
        let request_uri = span(bytes, start);
        bytes.extend_from_slice(b" SIP/2.0\r\n");
        let mut fields = Fields {
            headers_start: bytes.len() as u32,
            routes: known.routes,
            ..Fields::default()
        };
        let (mut from, mut to, mut contact) = (Span::default(), Span::default(), Span::default());
        for &(kind, value) in kept {
            fields.via_lines += u32::from(kind == HeaderName::Via);
            bytes.extend_from_slice(kind.as_str().as_bytes());
            bytes.extend_from_slice(b": ");
            let start = bytes.len();
            bytes.extend_from_slice(value);
            let whole = span(bytes, start);
            // Canonical form: a fold's CR and LF become spaces (the same LWS, the same
            // offsets), so every line of the copy ends at its first LF.
            let mut at = start;
            while let Some(i) = memchr::memchr2(b'\r', b'\n', &bytes[at..]) {
                bytes[at + i] = b' ';
                at += i + 1;
            }
            let first = |slot: &mut Option<Span>| {
                slot.get_or_insert(whole);
            };
            match kind {
                HeaderName::From => {
                    from = whole;
                    fields.from_tag = known.from_tag.and_then(|t| within(start, value, t));
                }
                HeaderName::To => {
                    to = whole;
                    fields.to_tag = known.to_tag.and_then(|t| within(start, value, t));
                }
                HeaderName::CallId => {
                    fields.call_id = within(start, value, known.call_id).unwrap_or(whole);
                }
                HeaderName::CSeq => {
                    let method = within(start, value, known.cseq.method);
                    fields.cseq = (known.cseq.number, method.unwrap_or_default());
                }
                HeaderName::Via => first(&mut fields.via),
                HeaderName::Route => first(&mut fields.route),
                HeaderName::RecordRoute => first(&mut fields.record_route),
                HeaderName::Timestamp => first(&mut fields.timestamp),
                HeaderName::Contact => {
                    fields.contact = Some(whole);
                    if let Some(uri) = contact_uri(value) {
                        contact = within(start, value, uri).unwrap_or_default();
                    }
                }
                _ => {}
            }
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        debug_assert_eq!(bytes.len(), len);
        CopyHead {
            request_uri,
            from,
            to,
            contact,
            method: (method, token.len()),
            fields,
        }
    }

    fn head(&self) -> &CopyHead {
        &self.0.header.header
    }

    fn bytes(&self) -> &[u8] {
        &self.0.slice
    }

    fn get(&self, span: Span) -> &[u8] {
        self.bytes()
            .get(span.0 as usize..span.1 as usize)
            .unwrap_or_default()
    }

    /// The Request-URI of the INVITE.
    pub(crate) fn request_uri(&self) -> &[u8] {
        self.get(self.head().request_uri)
    }

    /// The From value as written (tag included).
    pub(crate) fn from(&self) -> &[u8] {
        self.get(self.head().from)
    }

    /// The To value as written.
    pub(crate) fn to(&self) -> &[u8] {
        self.get(self.head().to)
    }

    /// The URI of the INVITE's Contact (empty if none).
    pub(crate) fn contact(&self) -> &[u8] {
        self.get(self.head().contact)
    }

    /// A view of the copy for the paths that build an answer or a CANCEL from it, from the
    /// spans written down when it was made: no scan.
    pub(crate) fn view(&self) -> Option<MessageView<'_>> {
        let head = self.head();
        let f = &head.fields;
        let opt = |span: Option<Span>| span.map(|s| self.get(s));
        let (number, method) = f.cseq;
        Some(MessageView::of_own_request(OwnRequest {
            bytes: self.bytes(),
            method: head.method.0,
            method_token: self.bytes().get(..head.method.1)?,
            uri: self.get(head.request_uri),
            headers: (f.headers_start as usize, self.bytes().len()),
            call_id: self.get(f.call_id),
            from: self.get(head.from),
            to: self.get(head.to),
            from_tag: opt(f.from_tag),
            to_tag: opt(f.to_tag),
            cseq: CSeq {
                number,
                method: self.get(method),
            },
            via: opt(f.via),
            contact: opt(f.contact),
            record_route: opt(f.record_route),
            route: opt(f.route),
            timestamp: opt(f.timestamp),
            routes: f.routes,
            via_lines: Some(f.via_lines),
            canonical: true,
        }))
    }

    /// Bytes it holds, for the byte budget: its count and length, the head, the bytes (one
    /// allocation).
    fn cost(&self) -> usize {
        self.0.slice.len() + std::mem::size_of::<CopyHead>() + 16
    }
}

/// What a record costs besides its copy: itself with its key in one map entry, the entry's
/// heap overhead and the map's room for it (up to two 9-byte slots).
const RECORD_COST: usize = std::mem::size_of::<PendingInvite>() + 64;

/// What a read of the INVITE records holds: the records it returns stay valid (a removed one
/// is freed only once no guard that saw it is left), without a reference count to move.
pub(crate) type RecordGuard<'m> = papaya::LocalGuard<'m>;

/// One INVITE transaction, keyed by (Call-ID, From tag, role).
#[derive(Debug)]
pub(crate) struct PendingInvite {
    /// Its key in the records' map, as two words ([`PendingInvite::key`]): a `u128` would
    /// align the record to 16 bytes.
    key: [u64; 2],
    pub role: Role,
    copy: ArcSwapAny<Option<ThinArc<CopyHead, u8>>>,
    /// Bytes the copy holds while it is kept, 0 once dropped: its share of the byte budget,
    /// and what tells a second drop that the copy is gone without an `arc-swap` load.
    copy_bytes: AtomicUsize,
    pub cseq: u32,
    /// UAS: the top Via's branch and sent-by (§17.2.3), fingerprinted, as two words
    /// ([`PendingInvite::via`]): a CANCEL must match them. Nothing matches a CANCEL against
    /// the other roles' records, so they keep none.
    via: [u64; 2],
    has_via: bool,
    /// Where the INVITE came from (UAS), when the caller said.
    pub source: Option<SocketAddr>,
    /// UAS: its server transaction and where its answers go, as the caller named them when
    /// it handed the INVITE over ([`super::Outbox::answering`]); every answer carries them.
    pub answering: Option<Answering>,
    /// When the INVITE was sent or received (caller's clock).
    pub created_ms: u64,
    /// UAS: the To tag of every response to this INVITE.
    pub to_tag: Option<Tag>,
    /// The per-source share this INVITE holds until its dialog takes it over or it ends, as
    /// [`Charge::pack`] gives it: an `Option<Charge>` or `Option<Fingerprint>` takes 32 bytes.
    charge: (u8, [u64; 2]),
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
    pub via: Option<Fingerprint>,
    pub source: Option<SocketAddr>,
    pub to_tag: Option<Tag>,
    pub charge: Option<Charge>,
    pub answering: Option<Answering>,
}

impl PendingInvite {
    pub(crate) fn new(new: NewRecord, invite: &MessageView<'_>) -> PendingInvite {
        PendingInvite::with_copy(new, InviteCopy::new(invite), invite.cseq().number)
    }

    /// A record holding `copy`, of an INVITE with CSeq `cseq`.
    pub(crate) fn with_copy(new: NewRecord, copy: InviteCopy, cseq: u32) -> PendingInvite {
        PendingInvite {
            key: new.key.to_words(),
            role: new.role,
            copy_bytes: AtomicUsize::new(copy.cost()),
            copy: ArcSwapAny::new(Some(copy.0)),
            cseq,
            via: new.via.map_or([0; 2], Fingerprint::to_words),
            has_via: new.via.is_some(),
            source: new.source,
            answering: new.answering,
            created_ms: 0,
            to_tag: new.to_tag,
            charge: Charge::pack(new.charge),
            charge_taken: AtomicBool::new(false),
            answer: FinalAnswer::new(),
            confirmed: AtomicBool::new(false),
            responded: AtomicBool::new(false),
            armed_at: AtomicU64::new(0),
        }
    }

    /// Its key in the records' map.
    pub(crate) fn key(&self) -> Fingerprint {
        Fingerprint::from_words(self.key)
    }

    /// This record's token.
    pub(crate) fn id(&self) -> InviteId {
        InviteId(self.key())
    }

    /// The stored copy, while it is kept.
    pub(crate) fn copy(&self) -> Option<InviteCopy> {
        self.copy.load_full().map(InviteCopy)
    }

    /// The INVITE as a dialog is made of it, from its kept copy.
    pub(crate) fn invite<'a>(&self, copy: &'a InviteCopy) -> Invite<'a> {
        Invite {
            request_uri: copy.request_uri(),
            from: copy.from(),
            to: copy.to(),
            contact: copy.contact(),
            cseq: self.cseq,
            key: self.key(),
        }
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
        let (kind, key) = self.charge;
        Charge::unpack(kind, key).filter(|_| !self.charge_taken.swap(true, Ordering::AcqRel))
    }

    /// UAS: the fingerprint of the INVITE's top Via branch and sent-by.
    pub(crate) fn via(&self) -> Option<Fingerprint> {
        self.has_via.then(|| Fingerprint::from_words(self.via))
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

    /// The first dialog of this INVITE, while it is listed (a UAS's INVITE has one).
    pub(crate) fn first_dialog(&self) -> Option<DialogHandle> {
        self.answer.first()
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
        key(self.dialogs.table.fingerprinter(), call_id, from_tag, role)
    }

    /// A guard for reading INVITE records: what they return lives as long as it.
    pub(crate) fn records(&self) -> RecordGuard<'_> {
        self.pending.guard()
    }

    pub(crate) fn pending_get<'g>(
        &self,
        key: Fingerprint,
        guard: &'g RecordGuard<'_>,
    ) -> Option<&'g PendingInvite> {
        self.pending.get(&key, guard)
    }

    /// What a new record of `invite`, in `role`, starts with: no source, tag or charge yet.
    pub(crate) fn new_record(&self, invite: &MessageView<'_>, role: Role) -> NewRecord {
        let from_tag = invite.from_tag().unwrap_or_default();
        let key = self.pending_key(invite.call_id(), from_tag, role);
        self.keyed_record(invite, role, key)
    }

    /// [`Self::new_record`] under `key`, computed by the caller for its own look-up.
    pub(crate) fn keyed_record(
        &self,
        invite: &MessageView<'_>,
        role: Role,
        key: Fingerprint,
    ) -> NewRecord {
        NewRecord {
            key,
            role,
            via: (role == Role::Uas).then(|| via_key(self.dialogs.table.fingerprinter(), invite)),
            source: None,
            to_tag: None,
            charge: None,
            answering: None,
        }
    }

    /// The record of a received INVITE (this side is its UAS).
    pub(crate) fn uas_record<'g>(
        &self,
        view: &MessageView<'_>,
        guard: &'g RecordGuard<'_>,
    ) -> Option<&'g PendingInvite> {
        self.pending_get(self.uas_key(view), guard)
    }

    /// The key of the record of a received INVITE (this side is its UAS).
    pub(crate) fn uas_key(&self, view: &MessageView<'_>) -> Fingerprint {
        let from_tag = view.from_tag().unwrap_or_default();
        self.pending_key(view.call_id(), from_tag, Role::Uas)
    }

    /// Records a new INVITE transaction; `Ok(None)` when it is known already (a
    /// retransmission), an error when the records are at their count cap or byte budget
    /// ([`crate::security::Policy::max_invite_records`],
    /// [`crate::security::Policy::invite_record_bytes`]). The record goes at the latest when
    /// its timers run out.
    pub(crate) fn pending_insert<'g>(
        &self,
        mut pending: PendingInvite,
        now_ms: u64,
        guard: &'g RecordGuard<'_>,
    ) -> Result<Option<&'g PendingInvite>, super::ManagerError> {
        let key = pending.key();
        if self.pending.contains_key(&key, guard) {
            return Ok(None);
        }
        let policy = self.security.load();
        let cost = RECORD_COST + pending.copy_bytes.load(Ordering::Relaxed);
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
        let Ok(pending) = self.pending.try_insert(key, pending, guard) else {
            self.pending_count.fetch_sub(1, Ordering::Relaxed);
            self.pending_bytes.fetch_sub(cost, Ordering::Relaxed);
            return Ok(None);
        };
        self.arm(at, Target::pending(key));
        Ok(Some(pending))
    }

    /// How long after its creation a record's first deadline is: Timer B (64×T1) for an
    /// INVITE we sent, which must have drawn some response by then; the early limit for the
    /// others.
    fn first_record_deadline(&self, role: Role) -> u64 {
        match role {
            Role::Uac => (64 * self.config.t1_ms).min(self.early_limit()),
            // Looked at again within the wheel's lap (see `rearm`): the answer nearly always
            // comes first and supersedes this entry.
            Role::Uas | Role::Observed => self.early_limit().min(NEAR_MS),
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
            self.arm(at, Target::pending(pending.key()));
        }
    }

    /// Frees the copy of a record that stays (a store makes `arc-swap` visit every thread's
    /// list of reads, so only the first drop stores).
    fn drop_copy(&self, pending: &PendingInvite) {
        let bytes = pending.copy_bytes.swap(0, Ordering::AcqRel);
        if bytes > 0 {
            pending.copy.store(None);
            self.pending_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    fn release_record_charge(&self, pending: &PendingInvite) {
        if let Some(charge) = pending.take_charge() {
            self.security.release(charge);
        }
    }

    pub(crate) fn pending_remove(&self, key: Fingerprint) {
        if let Some(pending) = self.pending.pin().remove(&key) {
            // The copy goes with the record, once no reader's guard sees it: no store for it.
            let copy = pending.copy_bytes.swap(0, Ordering::AcqRel);
            self.release_record_charge(pending);
            self.pending_bytes
                .fetch_sub(RECORD_COST + copy, Ordering::Relaxed);
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
        self.pending_remove(pending.key());
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

#[cfg(test)]
mod tests {
    use super::InviteCopy;
    use crate::wire::{HeaderName, MessageView};

    /// What `view` shows of a message, accessor by accessor.
    pub(super) fn shown(view: &MessageView<'_>) -> String {
        let headers: Vec<_> = view.headers().map(|h| (h.kind, h.value)).collect();
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            view.start_line(),
            view.call_id(),
            view.from_tag(),
            view.to_tag(),
            view.cseq(),
            view.top_via(),
            view.contact(),
            view.record_route(),
            view.route(),
            view.route_tally(HeaderName::RecordRoute).lines,
            view.route_tally(HeaderName::Route).lines,
            view.body(),
            view.content_length(),
            headers,
        )
    }

    /// The header lines a copy of `invite` must hold: the kept headers' values, trimmed, folds
    /// made spaces, only the first Contact; sorted (their order across names means nothing).
    fn kept_lines(invite: &MessageView<'_>) -> Vec<(HeaderName, Vec<u8>)> {
        let mut contact_seen = false;
        let mut lines: Vec<_> = invite
            .headers()
            .filter(|h| super::KEPT.contains(&h.kind))
            .filter(|h| {
                let first = !(h.kind == HeaderName::Contact && contact_seen);
                contact_seen |= h.kind == HeaderName::Contact;
                first
            })
            .map(|h| {
                let value = crate::wire::trim_lws(h.value);
                let unfolded = value
                    .iter()
                    .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b });
                (h.kind, unfolded.collect::<Vec<u8>>())
            })
            .collect();
        lines.sort_by_key(|(k, v)| (k.as_str(), v.clone()));
        lines
    }

    /// A copy holds the lines a walk of the INVITE finds, and views as a scan of it does,
    /// whether made from what the scan kept (one Via line, at most one Record-Route and one
    /// Route line) or by a walk (more lines).
    #[test]
    fn a_copy_from_the_scan_holds_what_a_walk_finds() {
        for extra in [
            "",
            "Record-Route: <sip:p1;lr>,\r\n <sip:p2;lr>\r\n",
            "Route: <sip:r1;lr>\r\nm: <sip:a@h>\r\nContact: <sip:second@h>\r\n",
            "f: \"A\"\r\n <sip:a@h>;tag=9\r\n",
            // Two lines of a route header: the walk's business.
            "Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n",
            "Route: <sip:r1;lr>\r\nRoute: <sip:r2;lr>\r\n",
        ] {
            let from = if extra.starts_with("f:") {
                ""
            } else {
                "From: <sip:a@h>;tag=1\r\n"
            };
            let text = format!(
                "INVITE sip:b@h SIP/2.0\r\nv:  SIP/2.0/UDP a:5060;branch=z9hG4bK1 \r\n{from}\
To: <sip:b@h>\r\ni: c1\r\nSubject: x\r\nCSeq:  7 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
            );
            let invite = MessageView::parse(text.as_bytes()).unwrap();
            assert!(invite.raw_cseq().is_some() && invite.via_lines() == Some(1));
            let copy = InviteCopy::new(&invite);
            let scanned = MessageView::parse(copy.bytes()).unwrap();
            assert_eq!(kept_lines(&scanned), kept_lines(&invite), "{extra:?}");
            assert_eq!(shown(&copy.view().unwrap()), shown(&scanned), "{extra:?}");
        }
    }

    /// The copy's view, made from spans, shows what a scan of the copy shows, for every
    /// torture INVITE that scans.
    #[test]
    fn a_copy_is_viewed_as_a_scan_would_see_it() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475");
        let mut compared = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let Ok(invite) = MessageView::parse(&bytes) else {
                continue;
            };
            if invite.method() != Some(crate::wire::Method::Invite) {
                continue;
            }
            let copy = InviteCopy::new(&invite);
            let Ok(scanned) = MessageView::parse(copy.bytes()) else {
                continue; // a copy of an odd INVITE need not scan; its view is built anyway
            };
            assert_eq!(shown(&copy.view().unwrap()), shown(&scanned));
            compared += 1;
        }
        assert!(compared >= 8, "only {compared} INVITEs compared");
    }
}

#[cfg(test)]
mod own_tests {
    use super::InviteCopy;
    use crate::build::{self, DialogParts, RequestParts};
    use crate::wire::{MessageView, Method};

    /// The copy of an INVITE we build, made from its parts, is the copy a scan of the
    /// INVITE as written would give.
    #[test]
    fn an_own_invite_is_copied_from_its_parts() {
        let parties = DialogParts {
            call_id: b"own-1@192.0.2.1",
            local_uri: b"\"B2BUA\" <sip:sbc@192.0.2.1>",
            local_tag: b"f1a2",
            remote_uri: b"<sip:bob@192.0.2.4>",
            remote_tag: b"",
            remote_target: b"sip:bob@192.0.2.4:5070",
            route_set: crate::build::RouteSet::default(),
        };
        let via = b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKown1";
        let contact = b"<sip:sbc@192.0.2.1:5060>";
        let parts = RequestParts {
            method: Method::Invite,
            cseq: 1,
            via,
            max_forwards: 70,
            contact: Some(contact),
            content_type: Some(b"application/sdp"),
            body: b"v=0\r\n",
            extra_headers: &[("Referred-By", b"<sip:alice@192.0.2.9>")],
        };
        let mut written = Vec::new();
        build::initial_invite(&parties, &parts, &mut written).unwrap();
        let scanned = InviteCopy::new(&MessageView::parse(&written).unwrap());
        let own = InviteCopy::of_own(&parties, via, contact);
        assert_eq!(own.bytes(), scanned.bytes());
        assert_eq!(
            super::tests::shown(&own.view().unwrap()),
            super::tests::shown(&scanned.view().unwrap())
        );
        assert_eq!(
            (own.from(), own.to(), own.contact()),
            (scanned.from(), scanned.to(), scanned.contact())
        );
        assert_eq!(own.request_uri(), b"sip:bob@192.0.2.4:5070");
    }
}
