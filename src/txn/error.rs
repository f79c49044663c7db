//! What the transaction layer refuses.

use core::fmt;

/// Why the transaction layer refused a call. Each maps to the SIP status a caller answers a
/// request with when the refusal is about a received request ([`TxnError::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnError {
    /// The table is at its count cap or byte budget and nothing in it may be dropped: the
    /// request gets 503 (with Retry-After), a request of ours is not sent.
    Full,
    /// The token names a transaction that has ended (or never was).
    Gone,
    /// The call does not fit the transaction's state: a second final response, a response
    /// to an ACK, a response after the transaction gave up, a status outside 100..=699.
    WrongState,
    /// ACK is not a transaction of its own: an ACK of a non-2xx is sent by the INVITE's client
    /// transaction, an ACK of a 2xx directly by the dialog.
    AckIsNotATransaction,
    /// A request without a top Via branch cannot start a client transaction (we always make
    /// one, §8.1.1.7).
    NoBranch,
    /// The token was made by another owner's layer ([`super::TxnConfig::owner`]): hand the
    /// call to that owner.
    NotOurs,
    /// [`super::TxnConfig`] with T1 of 0 or T2 below T1.
    BadConfig,
    /// The OS CSPRNG gave no secret for the keys.
    NoEntropy,
}

impl TxnError {
    /// The status and reason phrase a received request gets for this refusal.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            TxnError::Full => (503, "Service Unavailable"),
            TxnError::Gone => (481, "Call/Transaction Does Not Exist"),
            TxnError::WrongState
            | TxnError::AckIsNotATransaction
            | TxnError::NoBranch
            | TxnError::NotOurs
            | TxnError::BadConfig
            | TxnError::NoEntropy => (500, "Server Internal Error"),
        }
    }
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TxnError::Full => "transaction table full",
            TxnError::Gone => "transaction gone",
            TxnError::WrongState => "not allowed in the transaction's state",
            TxnError::AckIsNotATransaction => "ACK does not start a transaction",
            TxnError::NoBranch => "request without a Via branch",
            TxnError::NotOurs => "token of another owner's transactions",
            TxnError::BadConfig => "T1 must be above 0 and T2 at least T1",
            TxnError::NoEntropy => "no randomness for the transaction keys",
        })
    }
}

impl std::error::Error for TxnError {}
