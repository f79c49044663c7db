//! `DialogManager`: the one sans-IO entry point of an SBC or B2BUA.
//!
//! It takes bytes and the current time and returns a [`Verdict`]; whatever has to be sent
//! (a 481, a BYE, an ACK…) is written into an [`Outbox`] the caller owns and reuses. It never
//! opens a socket, spawns a thread or reads a clock.
//!
//! The in-dialog path (scan, lookup, CSeq check, state CAS, activity stamp) takes no lock and
//! allocates nothing; dialog creation and teardown, transaction records and timers are the
//! cold path.
//!
//! One concept per module: the way in (`admission`, `received`), requests inside a dialog
//! (`in_dialog`), the calls we answer (`answer`) and place (`calls`, its view
//! [`DialogManager::calls`]), INVITE records (`pending`), transfers (`transfer`, its view
//! [`DialogManager::transfers`]) and Replaces, expiries (`expiry`), a proxy's view
//! (`observe`), the outbox. Dialogs themselves are made, refreshed and removed in
//! [`crate::dialog`] only; every way a dialog ends goes through one function here.

mod admission;
mod answer;
mod calls;
#[cfg(not(sipdialog_loom))]
mod claim;
#[cfg(sipdialog_loom)]
#[doc(hidden)]
pub mod claim;
mod expiry;
mod in_dialog;
mod memory;
mod observe;
mod outbox;
mod pending;
mod received;
mod replaces;
mod sent;
#[cfg(test)]
mod tests;
mod transfer;

pub use calls::{CallStarted, Calls, NewCall};
pub use expiry::{Expiry, ExpiryReason, MAX_EXPIRIES_PER_CALL};
pub use in_dialog::RequestBody;
pub use memory::MemoryUse;
pub use observe::Observation;
pub use outbox::{Answering, Delivery, Kind, OutMessage, Outbox};
pub use pending::{InviteId, KeptRequest};
pub use replaces::{Replaced, ReplacedAction};
pub use transfer::{TransferProgress, Transfers};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_utils::CachePadded;

use crate::build::BuildError;
use crate::dialog::{DialogInfo, Dialogs, Invite, Origin, Role};
use crate::id::{BuildIdentityHasher, Fingerprint, Tag};
use crate::metrics::{Metrics, TableStats, TerminationReason};
use crate::refer::ReferError;
use crate::security::{Policy, Security, SecurityError};
use crate::state::{DialogState, StateError};
use crate::table::{DialogHandle, DialogTable, TableError};
use crate::timer::{Target, Timers};
use crate::wheel::NEAR_MS;
use crate::wire::{Method, WireError};
use pending::PendingInvite;

/// How a [`DialogManager`] is sized and timed. Times are milliseconds.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// The most dialogs the table holds (its slots are allocated in pages as they are first
    /// used); [`Policy::max_dialogs`] may cap it lower at run time. Beyond it, 503.
    pub capacity: u32,
    /// RFC 3261 T1 (500 ms): the ACK wait, Timer B and transaction lingering are 64×T1.
    pub t1_ms: u64,
    /// An early dialog older than this is ended, and an INVITE without a final response by
    /// then is answered 408 (UAS) or cancelled (UAC) (0: never for dialogs; INVITE records
    /// then go after 180 s).
    pub early_timeout_ms: u64,
    /// A confirmed dialog without any message for this long is ended with BYE (0: never).
    pub idle_timeout_ms: u64,
    /// A dialog older than this is ended with BYE (0: never).
    pub max_duration_ms: u64,
    /// Our Via up to the branch, e.g. `SIP/2.0/UDP 192.0.2.1:5060`; the manager appends a
    /// fresh branch to every request it builds.
    pub via: Box<[u8]>,
    /// Our Contact, e.g. `<sip:sbc@192.0.2.1:5060>`: the remote target our peers use.
    pub contact: Box<[u8]>,
    /// The limits in force at start; [`DialogManager::security`] swaps them at run time.
    pub policy: Policy,
}

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig {
            capacity: 1 << 20,
            t1_ms: 500,
            early_timeout_ms: 180_000,
            idle_timeout_ms: 7_200_000,
            max_duration_ms: 0,
            via: Box::from(&b"SIP/2.0/UDP 127.0.0.1:5060"[..]),
            contact: Box::from(&b"<sip:sipdialog@127.0.0.1:5060>"[..]),
            policy: Policy::default(),
        }
    }
}

/// What a received message means for the dialogs, and what the caller does next. Anything to
/// send has already been written to the [`Outbox`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// A new INVITE, admitted: answer it with [`DialogManager::respond_invite`] (or
    /// [`DialogManager::respond`] with its bytes), which puts `to_tag` in every response and
    /// creates the dialog before a 1xx/2xx leaves.
    NewInvite {
        /// The To tag the manager chose for this INVITE's responses.
        to_tag: Tag,
        /// Its transaction, to answer it by.
        invite: InviteId,
    },
    /// A new INVITE with Replaces naming a dialog it may take over (RFC 3891): answer it as a
    /// [`Verdict::NewInvite`]; once its dialog is up, end `replaced` as its action says.
    /// Refusals (400, 481, 486, 603) never reach here: they are answered in the outbox.
    ReplacingInvite {
        /// The To tag the manager chose for this INVITE's responses.
        to_tag: Tag,
        /// The dialog it replaces, and how that one ends.
        replaced: Replaced,
        /// Its transaction, to answer it by.
        invite: InviteId,
    },
    /// A valid REFER in the dialog (RFC 3515): the 202 is in the outbox (with `Refer-Sub:
    /// false` echoed when asked, RFC 4488). Read it with [`crate::refer::ReferRequest`], act,
    /// and report with [`Transfers::notify`](transfer::Transfers::notify) when `subscribed`.
    Refer {
        /// The dialog.
        dialog: DialogHandle,
        /// The subscription's event id: the REFER's CSeq.
        id: u32,
        /// Whether an implicit subscription was created (NOTIFYs expected).
        subscribed: bool,
    },
    /// A NOTIFY about one of our REFERs: the 200 is in the outbox.
    Notify {
        /// The dialog.
        dialog: DialogHandle,
        /// The subscription's event id (our REFER's CSeq).
        id: u32,
        /// The status in the `message/sipfrag` body.
        status: u16,
        /// What that status means for the transfer.
        progress: TransferProgress,
        /// Whether the subscription ended with it.
        terminated: bool,
    },
    /// A request seen before (same INVITE, or same CSeq in the dialog): resend your answer.
    Retransmission,
    /// A request outside any dialog that creates none (OPTIONS, REGISTER, MESSAGE…).
    OutOfDialog,
    /// A request inside a dialog, accepted: answer it (re-INVITE, UPDATE, INFO, OPTIONS…).
    Request {
        /// The dialog.
        dialog: DialogHandle,
        /// Its method.
        method: Method,
    },
    /// The ACK for a 2xx.
    Ack {
        /// The dialog.
        dialog: DialogHandle,
    },
    /// The peer hung up: the dialog has ended and left the table; the 200 is in the outbox.
    Bye {
        /// The dialog that ended.
        dialog: DialogHandle,
    },
    /// A CANCEL matched an INVITE's transaction (§9.2: Call-ID, From tag, CSeq, top Via
    /// branch and sent-by). Unless the INVITE had its final answer already (then only the 200
    /// for the CANCEL is in the outbox and nothing changed), its early dialogs ended and the
    /// 200 for the CANCEL and the 487 for the INVITE are in the outbox.
    Cancelled {
        /// Early dialogs ended.
        dialogs_ended: u32,
        /// The INVITE cancelled.
        invite: InviteId,
    },
    /// Refused: the response (481, 491, 500, 503…) is in the outbox.
    Rejected {
        /// The status sent.
        status: u16,
        /// The dialog, if the request matched one.
        dialog: Option<DialogHandle>,
    },
    /// A provisional response to our INVITE; `dialog` is the early dialog of its To tag.
    Provisional {
        /// The early dialog, when the response carried a To tag.
        dialog: Option<DialogHandle>,
        /// Status code.
        status: u16,
    },
    /// A 2xx to our INVITE confirmed a dialog: send the ACK ([`DialogManager::ack`]). When
    /// `extra` is set another fork was confirmed first: ACK this one, then BYE it.
    Confirmed {
        /// The confirmed dialog.
        dialog: DialogHandle,
        /// CSeq of the INVITE (the ACK carries it).
        cseq: u32,
        /// Another 2xx already confirmed a dialog of the same INVITE.
        extra: bool,
    },
    /// The INVITE failed (non-2xx final response): all its early dialogs ended.
    Failed {
        /// The final status.
        status: u16,
        /// Early dialogs ended.
        dialogs_ended: u32,
    },
    /// A response to a request we sent inside a dialog.
    Response {
        /// The dialog.
        dialog: DialogHandle,
        /// Status code.
        status: u16,
        /// Method of the request answered.
        method: Method,
        /// CSeq of the request answered (an ACK for a re-INVITE 2xx carries it).
        cseq: u32,
    },
    /// Our re-INVITE met glare (491): retry at `retry_at_ms` as RFC 3261 §14.1 says.
    Glare {
        /// The dialog.
        dialog: DialogHandle,
        /// When to retry, on the caller's clock.
        retry_at_ms: u64,
    },
    /// A response ended the dialog (our BYE answered; 481 or 408 to our request, §12.2.1.2).
    Ended {
        /// The dialog that ended.
        dialog: DialogHandle,
        /// Status code.
        status: u16,
    },
    /// A response for nothing we know of: drop it.
    Stray,
}

/// Why the manager could not act on a message or a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManagerError {
    /// The bytes are not a valid SIP message.
    Wire(WireError),
    /// The dialog table refused (full, stale handle, illegal state change, CSeq).
    Table(TableError),
    /// A message could not be built.
    Build(BuildError),
    /// No live dialog (or INVITE transaction) matches.
    UnknownDialog,
    /// Too many INVITE transactions in progress.
    PendingFull,
    /// The OS random source failed (tag generation).
    Random,
    /// A transfer header or body was refused.
    Refer(ReferError),
    /// No implicit subscription with that id in the dialog.
    NoSubscription,
    /// The dialog holds as many implicit subscriptions as it may.
    TooManySubscriptions,
    /// A limit of the [`Policy`] refused the message or the dialog (for a request, the answer
    /// is in the outbox: 503 with `Retry-After`, 413, 513 or 403).
    Security(SecurityError),
    /// The INVITE has its final answer already (or was cancelled): nothing was sent.
    AlreadyAnswered,
}

impl ManagerError {
    /// The SIP status a request refused by this error is answered with.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            ManagerError::Wire(e) => e.status(),
            ManagerError::Table(e) => e.status(),
            ManagerError::Build(e) => e.status(),
            ManagerError::UnknownDialog => (481, "Call/Transaction Does Not Exist"),
            ManagerError::PendingFull => (503, "Service Unavailable"),
            ManagerError::Random => (500, "Server Internal Error"),
            ManagerError::Refer(e) => e.status(),
            ManagerError::NoSubscription => (481, "Call/Transaction Does Not Exist"),
            ManagerError::TooManySubscriptions => (403, "Forbidden"),
            ManagerError::Security(e) => e.status(),
            ManagerError::AlreadyAnswered => (500, "Server Internal Error"),
        }
    }
}

impl std::fmt::Display for ManagerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManagerError::Wire(e) => write!(f, "bad message: {e}"),
            ManagerError::Table(e) => write!(f, "dialog table: {e}"),
            ManagerError::Build(e) => write!(f, "cannot build: {e:?}"),
            ManagerError::UnknownDialog => f.write_str("no such dialog"),
            ManagerError::PendingFull => f.write_str("too many INVITE transactions"),
            ManagerError::Random => f.write_str("OS random source failed"),
            ManagerError::Refer(e) => write!(f, "transfer: {e}"),
            ManagerError::NoSubscription => f.write_str("no such subscription"),
            ManagerError::TooManySubscriptions => f.write_str("subscription limit reached"),
            ManagerError::Security(e) => write!(f, "refused: {e}"),
            ManagerError::AlreadyAnswered => f.write_str("the INVITE has its final answer"),
        }
    }
}

impl std::error::Error for ManagerError {}

impl From<WireError> for ManagerError {
    fn from(e: WireError) -> ManagerError {
        ManagerError::Wire(e)
    }
}

impl From<SecurityError> for ManagerError {
    fn from(e: SecurityError) -> ManagerError {
        ManagerError::Security(e)
    }
}

impl From<ReferError> for ManagerError {
    fn from(e: ReferError) -> ManagerError {
        ManagerError::Refer(e)
    }
}

impl From<TableError> for ManagerError {
    fn from(e: TableError) -> ManagerError {
        ManagerError::Table(e)
    }
}

impl From<BuildError> for ManagerError {
    fn from(e: BuildError) -> ManagerError {
        ManagerError::Build(e)
    }
}

impl From<StateError> for ManagerError {
    fn from(e: StateError) -> ManagerError {
        ManagerError::Table(TableError::State(e))
    }
}

/// The dialog layer of one SBC, B2BUA or UA: see the [module docs](self).
///
/// ```
/// use sipdialog::manager::{DialogManager, ManagerConfig, Outbox, Verdict};
///
/// let manager = DialogManager::new(ManagerConfig::default()).unwrap();
/// let mut out = Outbox::new();
/// // A BYE for a dialog nobody knows gets a ready 481.
/// let bye = b"BYE sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
/// Call-ID: c1@h\r\nFrom: <sip:b@h>;tag=peer\r\nTo: <sip:a@h>;tag=mine\r\nCSeq: 2 BYE\r\n\r\n";
/// let verdict = manager.on_received(bye, 0, &mut out).unwrap();
/// assert_eq!(verdict, Verdict::Rejected { status: 481, dialog: None });
/// let reply = out.iter().next().unwrap();
/// assert!(reply.bytes.starts_with(b"SIP/2.0 481 "));
/// assert_eq!(reply.next_hop, None); // a response goes back the way the request came
/// ```
pub struct DialogManager {
    dialogs: Dialogs,
    pending: papaya::HashMap<Fingerprint, PendingInvite, BuildIdentityHasher>,
    /// Written on every call setup by every thread: on a line of its own.
    pending_count: CachePadded<AtomicUsize>,
    /// Bytes the INVITE records hold, copies included.
    pending_bytes: CachePadded<AtomicUsize>,
    /// The policy and the per-source state it is enforced with.
    security: Security,
    timers: Timers,
    config: ManagerConfig,
    /// The random per-manager prefix of branch parameters.
    branch_prefix: Tag,
    /// Where the sent-by lies in our Via (`config.via`), decoded once: `None` when it does not
    /// decode as a Via, and then every INVITE we start is refused as malformed.
    own_sent_by: Option<(usize, usize)>,
    /// State of the generator behind glare back-off (jitter, not a secret).
    jitter: AtomicU64,
    /// Transfers in progress, only for dialogs that have one.
    transfers: transfer::TransferTable,
    /// Counters and histograms, when the user asked for them.
    metrics: Option<Arc<Metrics>>,
    /// Told of every dialog that ends ([`DialogManager::on_end`]).
    end_hook: OnceLock<Arc<dyn EndHook>>,
}

/// Told of every dialog that ends, whatever ended it (a BYE either way, an error answer, an
/// expiry, a CANCEL, a Replaces, [`DialogManager::terminate`]), from the manager's single end
/// path: what an application keeps per dialog hangs off it, so none of it outlives its
/// dialog (see [`crate::b2bua::Legs`]).
pub trait EndHook: Send + Sync {
    /// `dialog` has left the table (its handle is stale now) for `reason`. Called once per
    /// dialog, on the thread that ended it, with no lock of the manager's held; it must not
    /// block.
    fn dialog_ended(&self, dialog: DialogHandle, reason: TerminationReason);
}

/// Bytes of `config.via` our Via keeps (the branch needs the rest of its 128).
const OWN_VIA_MAX: usize = 80;

/// Where the sent-by lies in our Via as [`DialogManager::via_with`] writes it (offsets in
/// `via`), or `None` when it does not decode as a Via with a branch appended.
fn own_sent_by(via: &[u8]) -> Option<(usize, usize)> {
    let head = via.get(..via.len().min(OWN_VIA_MAX))?;
    let probe = [head, b";branch=z9hG4bK0"].concat();
    let decoded = crate::wire::value::via(&probe).ok()?;
    let start = (decoded.sent_by.as_ptr() as usize).checked_sub(probe.as_ptr() as usize)?;
    let end = start + decoded.sent_by.len();
    (end <= head.len() && decoded.branch == Some(&b"z9hG4bK0"[..])).then_some((start, end))
}

impl std::fmt::Debug for DialogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialogManager")
            .field("dialogs", &self.dialogs.table.len())
            .field("pending", &self.pending_count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl DialogManager {
    /// A manager with its own table, secret fingerprint key and branch prefix.
    pub fn new(config: ManagerConfig) -> Result<DialogManager, ManagerError> {
        let dialogs = Dialogs::new(config.capacity).map_err(|_| ManagerError::Random)?;
        let branch_prefix = Tag::generate().map_err(|_| ManagerError::Random)?;
        let seed = u64::from_le_bytes(branch_prefix.as_bytes()[..8].try_into().unwrap_or_default());
        Ok(DialogManager {
            dialogs,
            // Sized for a few thousand calls a second up front (growing under load makes every
            // thread help copy the table), not for the cap: a table's pages, once touched by a
            // flood, stay resident.
            pending: papaya::HashMap::builder()
                .capacity(config.policy.max_invite_records.min(1 << 13))
                .hasher(BuildIdentityHasher)
                .collector(crate::sync::collector())
                .build(),
            pending_count: CachePadded::new(AtomicUsize::new(0)),
            pending_bytes: CachePadded::new(AtomicUsize::new(0)),
            security: Security::new(config.policy.clone()),
            timers: Timers::new(),
            own_sent_by: own_sent_by(&config.via),
            config,
            branch_prefix,
            jitter: AtomicU64::new(seed),
            transfers: crate::sync::map(),
            metrics: None,
            end_hook: OnceLock::new(),
        })
    }

    /// A manager that counts into `metrics` (see [`crate::metrics`]; register them with
    /// [`Metrics::register`], passing this manager, shared, as the table statistics).
    pub fn with_metrics(
        config: ManagerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<DialogManager, ManagerError> {
        let mut manager = DialogManager::new(config)?;
        manager.metrics = Some(metrics);
        Ok(manager)
    }

    /// §12.2.1.2: a 481 or 408 to a request inside a dialog ends it, and so does any final
    /// response to our BYE; the reason it is counted under.
    fn ended_by_response(method: Method, status: u16) -> Option<TerminationReason> {
        match (method, status) {
            (Method::Bye, 200..) => Some(TerminationReason::Bye),
            (_, 481 | 408) => Some(TerminationReason::Error),
            _ => None,
        }
    }

    /// Has `hook` told of every dialog that ends from now on. One hook per manager: a second
    /// is handed back.
    pub fn on_end(&self, hook: Arc<dyn EndHook>) -> Result<(), Arc<dyn EndHook>> {
        self.end_hook.set(hook)
    }

    /// Counts into the metrics, if there are any: one branch when there are none.
    #[inline]
    fn count(&self, update: impl FnOnce(&Metrics)) {
        if let Some(metrics) = &self.metrics {
            update(metrics);
        }
    }

    /// The dialog table (states, CSeqs, iteration, counts).
    pub fn table(&self) -> &DialogTable {
        &self.dialogs.table
    }

    /// The configuration it was made with ([`ManagerConfig::policy`] is the policy it started
    /// with; [`DialogManager::security`] has the one in force).
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// The policy in force, the per-source state, and [`Security::set_policy`] to swap the
    /// policy while traffic runs.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// Live dialogs in the early phase.
    pub fn early_dialogs(&self) -> usize {
        self.dialogs.table.early()
    }

    /// How many more dialogs the policy in force and the table's capacity allow now.
    pub fn room(&self) -> usize {
        let max = self
            .security
            .policy()
            .max_dialogs
            .min(self.dialogs.table.capacity());
        (max as usize).saturating_sub(self.dialogs.table.len())
    }

    /// Live dialogs.
    pub fn len(&self) -> usize {
        self.dialogs.table.len()
    }

    /// Whether no dialog is live.
    pub fn is_empty(&self) -> bool {
        self.dialogs.table.is_empty()
    }

    /// INVITE transactions tracked (for forking and CANCEL).
    pub fn pending_invites(&self) -> usize {
        self.pending_count.load(Ordering::Relaxed)
    }

    /// The cold data of a live dialog: URIs, tags, remote target, route set.
    pub fn info(&self, dialog: DialogHandle) -> Option<DialogInfo> {
        self.dialogs.cold.get(dialog).map(|(_, info)| info)
    }

    /// Bytes the live dialogs' data holds (what [`crate::security::Policy::dialog_bytes`]
    /// bounds): identities, URIs, targets, route sets.
    pub fn dialog_bytes(&self) -> usize {
        self.dialogs.cold.bytes()
    }

    /// The policy's [`crate::security::Policy::dialog_bytes`].
    pub(crate) fn dialog_budget(&self) -> usize {
        self.security.load().dialog_bytes
    }

    /// The dialog's state.
    pub fn state(&self, dialog: DialogHandle) -> Result<DialogState, ManagerError> {
        Ok(self.dialogs.table.state(dialog)?)
    }

    /// Makes the dialog `origin` creates (see [`Dialogs::create`]) and counts it. The caller
    /// arms its timer ([`Self::rearm`]) once the state is settled, so that no entry is armed
    /// for a deadline that is moot at once.
    fn create(
        &self,
        invite: &Invite<'_>,
        origin: Origin<'_, '_>,
        state: DialogState,
        now_ms: u64,
    ) -> Result<DialogHandle, ManagerError> {
        // Checked here too: the dialogs of our own INVITEs' answers pass no admission.
        let budget = self.dialog_budget();
        if self.dialogs.cold.bytes() >= budget {
            return Err(SecurityError::DialogBytes { max: budget }.into());
        }
        let handle = self.dialogs.create(invite, origin, state, now_ms)?;
        let role = origin.role();
        self.count(|m| m.dialog_created(role));
        tracing::debug!(dialog = ?handle, ?role, ?state, "dialog created");
        Ok(handle)
    }

    /// Ends a dialog: out of the table and the cold table, its transfers dropped, its share
    /// of its source given back. Every handle copy goes stale. Counted and traced once, by
    /// whoever removes it: every way a dialog ends comes through here.
    fn end(&self, dialog: DialogHandle, reason: TerminationReason, now_ms: u64) -> bool {
        let removed = self.dialogs.remove(dialog);
        self.drop_transfers(dialog);
        let Some(removed) = removed else {
            return false;
        };
        if let Some(charge) = removed.info.and_then(|i| i.charge()) {
            self.security.release(charge);
        }
        let duration_ms = removed.created_ms.map_or(0, |c| now_ms.saturating_sub(c));
        self.count(|m| m.dialog_terminated(reason, duration_ms));
        tracing::debug!(?dialog, ?reason, duration_ms, "dialog terminated");
        if let Some(hook) = self.end_hook.get() {
            hook.dialog_ended(dialog, reason);
        }
        true
    }

    /// A fresh Via value: ours plus a branch unique to this manager's requests (RFC 3261
    /// §8.1.1.7): its random prefix, the dialog's slot and generation (never repeated), the
    /// CSeq and a letter for the kind of request (an ACK shares its INVITE's CSeq). Made of
    /// what the request already has, so no counter is shared between threads.
    fn via(
        &self,
        owner: u16,
        dialog: DialogHandle,
        cseq: u32,
        kind: u8,
        buf: &mut [u8; 128],
    ) -> usize {
        let id = u64::from(dialog.index()) << 32 | u64::from(dialog.generation());
        let mut unique = [0u8; 25];
        for (i, d) in unique[..16].iter_mut().enumerate() {
            *d = b"0123456789abcdef"[(id >> (60 - 4 * i)) as usize & 15];
        }
        for (i, d) in unique[16..24].iter_mut().enumerate() {
            *d = b"0123456789abcdef"[(cseq >> (28 - 4 * i)) as usize & 15];
        }
        unique[24] = kind;
        self.via_with(owner, &unique, buf)
    }

    /// The branch and sent-by of `via`, a Via [`DialogManager::via_with`] wrote: read from
    /// where it put them, not decoded again.
    fn own_via_fields<'v>(&self, via: &'v [u8]) -> Option<(&'v [u8], &'v [u8])> {
        let (start, end) = self.own_sent_by?;
        let branch_at = self.config.via.len().min(OWN_VIA_MAX) + b";branch=".len();
        Some((via.get(branch_at..)?, via.get(start..end)?))
    }

    /// Our Via with the branch `z9hG4bK` + prefix + `owner` (four hex digits, the
    /// [`Outbox::owner`] it is written into) + `unique`.
    fn via_with(&self, owner: u16, unique: &[u8], buf: &mut [u8; 128]) -> usize {
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            let end = (len + bytes.len()).min(buf.len());
            if let Some(dst) = buf.get_mut(len..end) {
                dst.copy_from_slice(&bytes[..end - len]);
            }
            len = end;
        };
        put(&self.config.via[..self.config.via.len().min(OWN_VIA_MAX)]);
        put(b";branch=z9hG4bK");
        put(self.branch_prefix.as_bytes());
        let mut hex = [0u8; 4];
        for (i, d) in hex.iter_mut().enumerate() {
            *d = b"0123456789abcdef"[usize::from(owner >> (12 - 4 * i)) & 15];
        }
        put(&hex);
        put(unique);
        len
    }

    /// The owner a branch of ours names ([`Outbox::for_owner`]): `None` for a branch this
    /// manager did not make. An endpoint with one transaction layer per worker steers a
    /// response to the worker whose layer holds its client transaction.
    ///
    /// ```
    /// use sipdialog::manager::{DialogManager, ManagerConfig};
    ///
    /// let manager = DialogManager::new(ManagerConfig::default()).unwrap();
    /// assert_eq!(manager.branch_owner(b"z9hG4bK776asdhds"), None);
    /// ```
    pub fn branch_owner(&self, branch: &[u8]) -> Option<u16> {
        let rest = branch.strip_prefix(b"z9hG4bK")?;
        let rest = rest.strip_prefix(self.branch_prefix.as_bytes())?;
        let hex = std::str::from_utf8(rest.get(..4)?).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }

    /// §14.1: the owner of the Call-ID (the UAC of the dialog) waits 2.1–4 s, the other side
    /// 0–2 s, in units of 10 ms.
    fn glare_retry_at(&self, role: Role, now_ms: u64) -> u64 {
        let mut z = self
            .jitter
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let wait = match role {
            Role::Uac => 2_100 + (z % 191) * 10,
            Role::Uas | Role::Observed => (z % 201) * 10,
        };
        now_ms + wait
    }

    /// Re-checks a dialog's deadlines and arms its one timer at the nearest. An early
    /// dialog's (minutes ahead, and nearly always superseded by the answer) is looked at
    /// again within [`NEAR_MS`], so that its entry goes into the timing wheel, where a stale
    /// one leaves within a lap, instead of the heap, where it waited minutes or for a sweep.
    fn rearm(&self, dialog: DialogHandle, now_ms: u64) {
        let Some(at) = self.next_dialog_deadline(dialog) else {
            return;
        };
        let early = self
            .dialogs
            .table
            .state(dialog)
            .is_ok_and(|s| s.phase() == crate::state::Phase::Early);
        let at = if early {
            at.min(now_ms.saturating_add(NEAR_MS))
        } else {
            at
        };
        if let Some(entry) = self.dialogs.cold.entry_of(dialog) {
            let armed = entry.armed_at.load(Ordering::Relaxed);
            if armed == 0 || at < armed || armed <= now_ms {
                entry.armed_at.store(at, Ordering::Relaxed);
                self.arm(at, Target::Dialog(dialog));
            }
        }
    }

    /// Arms a timer entry; a shard full of dead entries is swept on the way.
    pub(crate) fn arm(&self, at: u64, target: Target) {
        // At most one live entry per dialog and per INVITE record.
        let live = self.dialogs.table.len() + self.pending_count.load(Ordering::Relaxed);
        self.timers
            .arm(at, target, live, |at, target| self.timer_alive(at, target));
    }

    /// Whether a timer entry still means something: the dialog's current deadline, or an
    /// INVITE record still held.
    fn timer_alive(&self, at: u64, target: Target) -> bool {
        match target {
            Target::Dialog(dialog) => self
                .dialogs
                .cold
                .entry_of(dialog)
                .is_some_and(|entry| entry.armed_at.load(Ordering::Relaxed) == at),
            Target::Pending(key) => self
                .pending
                .pin()
                .get(&Fingerprint::from_words(key))
                .is_some_and(|p| p.armed_at.load(Ordering::Relaxed) == at),
        }
    }

    /// Deadlines armed (stale entries included): for tests and health checks.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }
}

/// The gauges' view of the table, read at scrape time: exact by construction (counted from the
/// live slots), so `sipdialog_dialogs_active` cannot drift from what the table holds.
impl TableStats for DialogManager {
    fn capacity(&self) -> u64 {
        u64::from(self.dialogs.table.capacity())
    }

    fn live(&self) -> u64 {
        self.dialogs.table.len() as u64
    }

    fn by_phase(&self) -> (u64, u64) {
        self.dialogs
            .table
            .iter()
            .fold((0, 0), |(early, confirmed), (_, state)| {
                match state.phase() {
                    crate::state::Phase::Early => (early + 1, confirmed),
                    crate::state::Phase::Confirmed => (early, confirmed + 1),
                    crate::state::Phase::Terminated => (early, confirmed),
                }
            })
    }

    fn slab_bytes(&self) -> u64 {
        self.dialogs.table.slab_bytes() as u64
    }

    fn index_bytes(&self) -> u64 {
        self.dialogs.table.index_bytes() as u64
    }

    fn invite_records(&self) -> (u64, u64) {
        (
            self.pending_invites() as u64,
            self.invite_record_bytes() as u64,
        )
    }

    fn dialog_bytes(&self) -> u64 {
        self.dialog_bytes() as u64
    }

    fn sources(&self) -> u64 {
        self.security.sources() as u64
    }
}
