//! The RFC 3261 §12 data of a dialog that in-dialog routing never reads: who we are, who the
//! peer is, where requests go (remote target, route set). It lives in a cold side table next
//! to the hot slot, so the slot stays one cache line.
//!
//! A [`DialogInfo`] is immutable; a target refresh publishes a new one through `arc-swap`, so
//! readers building a request on another thread never see half an update and never lock.

mod cold;
mod header;
mod live;

pub(crate) use cold::ColdTable;
pub use header::{contact_uri, uri_host, uri_hostport, without_tag};
pub(crate) use live::{observed_key, Dialogs, Invite, KeyLookup, Origin};

use std::net::SocketAddr;

use triomphe::ThinArc;

use crate::build::{pack_routes, packed_routes_len, DialogParts, RouteSet};
use crate::id::Fingerprint;
use crate::security::Charge;
use crate::table::DialogHandle;
use crate::wire::{HeaderName, MessageView};

/// Which side of the dialog this manager plays (RFC 3261 §12.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the dialog-creating request.
    Uac,
    /// We received the dialog-creating request.
    Uas,
    /// We only watch the dialog pass, as a dialog-stateful proxy does (SBC observation mode).
    Observed,
}

/// The byte fields of a [`DialogInfo`], in the order they lie in its buffer.
#[derive(Clone, Copy)]
enum Field {
    CallId,
    LocalTag,
    RemoteTag,
    LocalUri,
    RemoteUri,
    RemoteTarget,
    LocalTarget,
    /// The route set, packed ([`RouteSet`]): in the same allocation, where a list of its own
    /// cost an allocation for the list and one per entry.
    Routes,
}

/// How many [`Field`]s there are.
const FIELDS: usize = 8;

/// Everything about one dialog that is read rarely: identity bytes, URIs, route set. A
/// handle: cloning it shares the data, which is immutable and lives in one allocation with
/// its bytes (`ThinArc`).
#[derive(Clone)]
pub struct DialogInfo(pub(crate) ThinArc<InfoHead, u8>);

impl std::fmt::Debug for DialogInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialogInfo")
            .field("head", self.head())
            .field("bytes", &self.0.slice.len())
            .finish()
    }
}

/// Where a [`DialogInfo`]'s byte fields lie, and what it knows besides bytes.
#[derive(Debug)]
pub(crate) struct InfoHead {
    handle: DialogHandle,
    /// A [`Fingerprint`] as two words (`has_invite` says whether there is one): a `u128`'s
    /// 16-byte alignment would pad the shared block.
    invite: [u64; 2],
    /// The [`Charge`] as [`Charge::pack`] gives it, for the same reason.
    charge_key: [u64; 2],
    peer: Option<SocketAddr>,
    /// Where each [`Field`] ends in the buffer; it starts where the one before it ends.
    ends: [u32; FIELDS],
    invite_cseq: u32,
    role: Role,
    secure: bool,
    has_invite: bool,
    charge_kind: u8,
}

/// The fields a new [`DialogInfo`] is made of, borrowed from the messages that created it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InfoParts<'a> {
    pub role: Role,
    pub secure: bool,
    pub invite_cseq: u32,
    pub invite: Option<Fingerprint>,
    pub call_id: &'a [u8],
    pub local_tag: &'a [u8],
    pub remote_tag: &'a [u8],
    /// Local party as in From/To, possibly still carrying its tag (stripped here).
    pub local_uri: &'a [u8],
    pub remote_uri: &'a [u8],
    pub remote_target: &'a [u8],
    pub local_target: &'a [u8],
    /// Where the peer's messages came from (the creating INVITE, or the response that made a
    /// UAC dialog), when the caller said.
    pub peer: Option<SocketAddr>,
    /// The per-source share the dialog holds, given back when it ends.
    pub charge: Option<Charge>,
}

impl DialogInfo {
    /// One buffer for all identity bytes and the route set: one allocation per dialog,
    /// whatever its route set.
    pub(crate) fn new(handle: DialogHandle, p: &InfoParts<'_>, routes: RouteSet<'_>) -> DialogInfo {
        let (local_a, local_b) = without_tag(p.local_uri);
        let (remote_a, remote_b) = without_tag(p.remote_uri);
        let len = p.call_id.len()
            + p.local_tag.len()
            + p.remote_tag.len()
            + local_a.len()
            + local_b.len()
            + remote_a.len()
            + remote_b.len()
            + p.remote_target.len()
            + p.local_target.len()
            + packed_routes_len(routes);
        // Staged in this thread's buffer, then copied once into the shared allocation.
        crate::scratch::with_buffer(|bytes| {
            bytes.reserve(len);
            let mut put = |parts: &[&[u8]]| {
                for part in parts {
                    bytes.extend_from_slice(part);
                }
                bytes.len() as u32
            };
            // In `Field`'s order.
            let ends: [u32; FIELDS] = [
                put(&[p.call_id]),
                put(&[p.local_tag]),
                put(&[p.remote_tag]),
                put(&[local_a, local_b]),
                put(&[remote_a, remote_b]),
                put(&[p.remote_target]),
                put(&[p.local_target]),
                {
                    pack_routes(routes, bytes);
                    bytes.len() as u32
                },
            ];
            let (charge_kind, charge_key) = Charge::pack(p.charge);
            let head = InfoHead {
                handle,
                invite: p.invite.map_or([0; 2], Fingerprint::to_words),
                charge_key,
                peer: p.peer,
                ends,
                invite_cseq: p.invite_cseq,
                role: p.role,
                secure: p.secure,
                has_invite: p.invite.is_some(),
                charge_kind,
            };
            DialogInfo(ThinArc::from_header_and_slice(head, bytes))
        })
    }

    /// Bytes this info holds: its block (the counts, the head, the bytes, the route set
    /// among them). What [`crate::security::Policy::dialog_bytes`] counts.
    pub(crate) fn cost(&self) -> usize {
        2 * std::mem::size_of::<usize>() + std::mem::size_of::<InfoHead>() + self.0.slice.len()
    }

    fn head(&self) -> &InfoHead {
        &self.0.header.header
    }

    /// The same dialog with a new remote target (and, for a 2xx that confirms an early
    /// dialog, a new route set): §12.2.1.2 and §13.2.2.4.
    pub(crate) fn refreshed(
        &self,
        remote_target: &[u8],
        route_set: Option<RouteSet<'_>>,
    ) -> DialogInfo {
        let head = self.head();
        let parts = InfoParts {
            role: head.role,
            secure: head.secure,
            invite_cseq: head.invite_cseq,
            invite: self.invite(),
            call_id: self.call_id(),
            local_tag: self.local_tag(),
            remote_tag: self.remote_tag(),
            local_uri: self.get(Field::LocalUri),
            remote_uri: self.get(Field::RemoteUri),
            remote_target,
            local_target: self.local_target(),
            peer: head.peer,
            charge: self.charge(),
        };
        DialogInfo::new(head.handle, &parts, route_set.unwrap_or(self.route_set()))
    }

    fn get(&self, field: Field) -> &[u8] {
        let ends = &self.head().ends;
        let at = field as usize;
        let start = if at == 0 { 0 } else { ends[at - 1] };
        self.0
            .slice
            .get(start as usize..ends[at] as usize)
            .unwrap_or_default()
    }

    /// The dialog's handle in the table.
    pub fn handle(&self) -> DialogHandle {
        self.head().handle
    }

    /// Our role in the dialog.
    pub fn role(&self) -> Role {
        self.head().role
    }

    /// Whether the dialog was created with a `sips` URI (RFC 3261 §12.1.1).
    pub fn secure(&self) -> bool {
        self.head().secure
    }

    /// The CSeq of the INVITE that created the dialog (an ACK for its 2xx carries it).
    pub fn invite_cseq(&self) -> u32 {
        self.head().invite_cseq
    }

    /// The fingerprint of the INVITE transaction that created the dialog (its fork group).
    pub(crate) fn invite(&self) -> Option<Fingerprint> {
        let head = self.head();
        head.has_invite
            .then(|| Fingerprint::from_words(head.invite))
    }

    /// Call-ID.
    pub fn call_id(&self) -> &[u8] {
        self.get(Field::CallId)
    }

    /// Our tag (for an observed dialog: the caller's).
    pub fn local_tag(&self) -> &[u8] {
        self.get(Field::LocalTag)
    }

    /// The peer's tag (for an observed dialog: the callee's).
    pub fn remote_tag(&self) -> &[u8] {
        self.get(Field::RemoteTag)
    }

    /// Where the peer receives in-dialog requests: its Contact URI.
    pub fn remote_target(&self) -> &[u8] {
        self.get(Field::RemoteTarget)
    }

    /// Our own Contact URI (for an observed dialog: the caller's).
    pub fn local_target(&self) -> &[u8] {
        self.get(Field::LocalTarget)
    }

    /// The transport address the peer's messages came from, when the caller said: the one
    /// address our requests are retransmitted to (SECURITY.md: no amplification towards third
    /// parties).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.head().peer
    }

    /// The per-source share the dialog holds.
    pub(crate) fn charge(&self) -> Option<Charge> {
        let head = self.head();
        Charge::unpack(head.charge_kind, head.charge_key)
    }

    /// The route set, in the order our requests visit it.
    pub fn route_set(&self) -> RouteSet<'_> {
        RouteSet::packed(self.get(Field::Routes))
    }

    /// What the request builder needs, from our side.
    pub fn parts(&self) -> DialogParts<'_> {
        DialogParts {
            call_id: self.call_id(),
            local_uri: self.get(Field::LocalUri),
            local_tag: self.local_tag(),
            remote_uri: self.get(Field::RemoteUri),
            remote_tag: self.remote_tag(),
            remote_target: self.remote_target(),
            route_set: self.route_set(),
        }
    }

    /// What the request builder needs to speak for the peer toward us: an observing SBC ends a
    /// call by sending BYE to both sides, each as if from the other.
    pub fn mirrored_parts(&self) -> DialogParts<'_> {
        DialogParts {
            call_id: self.call_id(),
            local_uri: self.get(Field::RemoteUri),
            local_tag: self.remote_tag(),
            remote_uri: self.get(Field::LocalUri),
            remote_tag: self.local_tag(),
            remote_target: self.local_target(),
            route_set: RouteSet::default(),
        }
    }
}

/// The route set of a new dialog (§12.1.1, §12.1.2): the Record-Route values of `view` in
/// order, reversed when we are the UAC. Borrowed from the message until the dialog's data
/// packs them (on the stack for up to eight entries).
pub(crate) fn route_set<'a>(view: &MessageView<'a>, reverse: bool) -> RouteList<'a> {
    let mut routes: RouteList<'a> = view.values(HeaderName::RecordRoute).collect();
    if reverse {
        routes.reverse();
    }
    routes
}

/// Route entries borrowed from a message, as [`route_set`] reads them.
pub(crate) type RouteList<'a> = smallvec::SmallVec<[&'a [u8]; 8]>;

/// Whether a URI uses the `sips` scheme.
pub(crate) fn is_sips(uri: &[u8]) -> bool {
    uri.get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case(b"sips:"))
}

#[cfg(test)]
mod tests;
