//! The one error type of the transfer wire formats, mapped to the SIP status a UAS answers with.

use core::fmt;

/// Why a transfer header or body was refused (or, for the writers, could not be written).
///
/// [`ReferError::status`] maps each variant to the answer: 400 Bad Request for anything
/// malformed or too long, 403 Forbidden for a Refer-To scheme the policy does not allow, 489
/// Bad Event for an `Event` that is not `refer`, and 500 for a writer given a bad value (the
/// fault is on our side, as in [`crate::build::BuildError`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferError {
    /// A header value or body does not follow its grammar. `what` names it (`Refer-To`,
    /// `Replaces`, `Event`, `Subscription-State`, `Refer-Sub`, `message/sipfrag`).
    Malformed {
        /// The header or body.
        what: &'static str,
    },
    /// A `%` in a URI is not followed by two hex digits (RFC 3986 §2.1).
    BadEscape,
    /// The Refer-To value is longer than [`super::ReferLimits::max_len`].
    TooLong {
        /// The configured maximum, in bytes.
        max: usize,
    },
    /// Refer-To names more than one target (a comma-separated list); RFC 3515 §2.1 allows one.
    MultipleTargets,
    /// The Refer-To URI carries `Replaces` more than once in its headers part.
    DuplicateReplaces,
    /// Replaces lacks `to-tag` or `from-tag` (RFC 3891 §6.1: each exactly once).
    MissingParam {
        /// The parameter.
        param: &'static str,
    },
    /// A parameter that may appear once appears twice (`to-tag`, `from-tag`, `early-only`,
    /// `id`, `expires`, `reason`).
    DuplicateParam {
        /// The parameter.
        param: &'static str,
    },
    /// The Refer-To URI scheme is not one [`super::ReferLimits::allowed`] lists (or not `sip`,
    /// `sips` or `tel` at all, e.g. `http`).
    SchemeNotAllowed,
    /// The `Event` names a package other than `refer` (RFC 6665 §8.2.1: answer 489).
    BadEvent,
    /// A writer was given a value it refuses: CR, LF or NUL, a tag that is not a token, a
    /// Call-ID that is not `word["@"word]`, a URI with a `?` part or angle brackets, a status
    /// outside 100..=699. `what` names the value.
    InvalidValue {
        /// The value.
        what: &'static str,
    },
}

impl ReferError {
    /// The status code and reason phrase to answer a request refused with this error.
    ///
    /// ```
    /// use sipdialog::refer::ReferError;
    ///
    /// assert_eq!(ReferError::BadEvent.status(), (489, "Bad Event"));
    /// assert_eq!(ReferError::SchemeNotAllowed.status(), (403, "Forbidden"));
    /// assert_eq!(ReferError::TooLong { max: 2048 }.status(), (400, "Bad Request"));
    /// ```
    pub const fn status(&self) -> (u16, &'static str) {
        match self {
            ReferError::SchemeNotAllowed => (403, "Forbidden"),
            ReferError::BadEvent => (489, "Bad Event"),
            ReferError::InvalidValue { .. } => (500, "Server Internal Error"),
            ReferError::Malformed { .. }
            | ReferError::BadEscape
            | ReferError::TooLong { .. }
            | ReferError::MultipleTargets
            | ReferError::DuplicateReplaces
            | ReferError::MissingParam { .. }
            | ReferError::DuplicateParam { .. } => (400, "Bad Request"),
        }
    }
}

impl fmt::Display for ReferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferError::Malformed { what } => write!(f, "malformed {what}"),
            ReferError::BadEscape => f.write_str("malformed %-escape in URI"),
            ReferError::TooLong { max } => write!(f, "Refer-To longer than {max} bytes"),
            ReferError::MultipleTargets => f.write_str("Refer-To names more than one target"),
            ReferError::DuplicateReplaces => f.write_str("Refer-To URI carries Replaces twice"),
            ReferError::MissingParam { param } => write!(f, "Replaces without {param}"),
            ReferError::DuplicateParam { param } => write!(f, "parameter {param} given twice"),
            ReferError::SchemeNotAllowed => f.write_str("Refer-To URI scheme not allowed"),
            ReferError::BadEvent => f.write_str("Event package is not refer"),
            ReferError::InvalidValue { what } => write!(f, "invalid value for {what}"),
        }
    }
}

impl std::error::Error for ReferError {}
