//! Label values: every label is an enum, and every enum maps to a fixed index into the
//! counter arrays and to the one string it is exported as. No lookup, no allocation.

use crate::dialog::Role;
use crate::wire::Method;

/// Why a dialog ended, as counted by `sipdialog_dialogs_terminated_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TerminationReason {
    /// A BYE (received, sent, or observed) ended a confirmed dialog: `bye`.
    Bye,
    /// A CANCEL ended an early dialog: `cancel`.
    Cancel,
    /// The INVITE got a non-2xx final response (or was refused): `rejected`.
    Rejected,
    /// We sent a 2xx and the ACK never came (64×T1): `timeout_ack`.
    TimeoutAck,
    /// No message for the idle (or early, or maximum-duration) limit: `timeout_idle`.
    TimeoutIdle,
    /// An INVITE with Replaces took the dialog over (RFC 3891): `replaced`.
    Replaced,
    /// Anything else (our BYE unanswered, a transport or protocol error): `error`.
    Error,
}

impl TerminationReason {
    /// Every reason, in label order.
    pub const ALL: [TerminationReason; 7] = [
        TerminationReason::Bye,
        TerminationReason::Cancel,
        TerminationReason::Rejected,
        TerminationReason::TimeoutAck,
        TerminationReason::TimeoutIdle,
        TerminationReason::Replaced,
        TerminationReason::Error,
    ];

    /// The `reason` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TerminationReason::Bye => "bye",
            TerminationReason::Cancel => "cancel",
            TerminationReason::Rejected => "rejected",
            TerminationReason::TimeoutAck => "timeout_ack",
            TerminationReason::TimeoutIdle => "timeout_idle",
            TerminationReason::Replaced => "replaced",
            TerminationReason::Error => "error",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// Whether a counted message was a request or a response: the `kind` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A request: `request`.
    Request,
    /// A response (its method is the CSeq method): `response`.
    Response,
}

impl MessageKind {
    /// Both kinds, in label order.
    pub const ALL: [MessageKind; 2] = [MessageKind::Request, MessageKind::Response];

    /// The `kind` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// What became of a REFER (RFC 3515): the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReferOutcome {
    /// The REFER was answered 202: `accepted`.
    Accepted,
    /// The REFER was refused (403, 400, 481…): `rejected`.
    Rejected,
    /// The transfer target answered 2xx (final NOTIFY with a 2xx sipfrag): `succeeded`.
    Succeeded,
    /// The transfer failed (final NOTIFY with a non-2xx sipfrag, or no final NOTIFY): `failed`.
    Failed,
}

impl ReferOutcome {
    /// Every outcome, in label order.
    pub const ALL: [ReferOutcome; 4] = [
        ReferOutcome::Accepted,
        ReferOutcome::Rejected,
        ReferOutcome::Succeeded,
        ReferOutcome::Failed,
    ];

    /// The `outcome` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReferOutcome::Accepted => "accepted",
            ReferOutcome::Rejected => "rejected",
            ReferOutcome::Succeeded => "succeeded",
            ReferOutcome::Failed => "failed",
        }
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// Every role, in label order.
pub(super) const ROLES: [Role; 3] = [Role::Uac, Role::Uas, Role::Observed];

/// The `role` label value of a [`Role`]: `uac`, `uas` or `observed`.
pub const fn role_label(role: Role) -> &'static str {
    match role {
        Role::Uac => "uac",
        Role::Uas => "uas",
        Role::Observed => "observed",
    }
}

pub(super) const fn role_index(role: Role) -> usize {
    match role {
        Role::Uac => 0,
        Role::Uas => 1,
        Role::Observed => 2,
    }
}

/// Every method, in label order; [`Method::Extension`] (exported as `other`) last.
pub(super) const METHODS: [Method; 15] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Options,
    Method::Register,
    Method::Prack,
    Method::Subscribe,
    Method::Notify,
    Method::Publish,
    Method::Info,
    Method::Refer,
    Method::Message,
    Method::Update,
    Method::Extension,
];

/// The `method` label value of a [`Method`]: its token, or `other` for an extension method
/// (whose token could be anything, so it never becomes a label: bounded cardinality).
pub const fn method_label(method: Method) -> &'static str {
    match method.as_str() {
        Some(token) => token,
        None => "other",
    }
}

pub(super) const fn method_index(method: Method) -> usize {
    match method {
        Method::Invite => 0,
        Method::Ack => 1,
        Method::Bye => 2,
        Method::Cancel => 3,
        Method::Options => 4,
        Method::Register => 5,
        Method::Prack => 6,
        Method::Subscribe => 7,
        Method::Notify => 8,
        Method::Publish => 9,
        Method::Info => 10,
        Method::Refer => 11,
        Method::Message => 12,
        Method::Update => 13,
        Method::Extension => 14,
    }
}

/// The rejection statuses that get a label value of their own; any other is `other`.
pub const REJECT_STATUSES: [u16; 15] = [
    400, 403, 405, 408, 413, 481, 486, 489, 491, 500, 501, 503, 505, 513, 603,
];

/// The `status` label values, in index order: [`REJECT_STATUSES`] as text, then `other`.
pub(super) const STATUS_LABELS: [&str; 16] = [
    "400", "403", "405", "408", "413", "481", "486", "489", "491", "500", "501", "503", "505",
    "513", "603", "other",
];

/// The `status` label value of a rejection status: the code for the ones in
/// [`REJECT_STATUSES`], `other` for any other.
pub const fn status_label(status: u16) -> &'static str {
    let index = status_index(status);
    if index < STATUS_LABELS.len() {
        STATUS_LABELS[index]
    } else {
        "other"
    }
}

pub(super) const fn status_index(status: u16) -> usize {
    match status {
        400 => 0,
        403 => 1,
        405 => 2,
        408 => 3,
        413 => 4,
        481 => 5,
        486 => 6,
        489 => 7,
        491 => 8,
        500 => 9,
        501 => 10,
        503 => 11,
        505 => 12,
        513 => 13,
        603 => 14,
        _ => 15,
    }
}
