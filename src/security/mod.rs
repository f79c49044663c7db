//! Admission and limits: what the network may make the dialog layer hold, checked before any
//! dialog work.
//!
//! A [`Security`] holds the [`Policy`] (swapped at run time through `arc-swap`, so traffic
//! never stops for a change), the global rate bucket, and per-source state: a token bucket for
//! new dialogs, one for answers to malformed requests, and a count of live dialogs, in a map
//! with a hard cap and idle expiry (see [`sources`]). The policy is loaded once per message
//! ([`Security::load`]) and handed to each check. The manager asks it:
//!
//! - [`Security::check_message`] for every scanned message (body, Record-Route, Route);
//! - [`Security::admit_new_dialog`] for every INVITE outside a dialog (rates);
//! - [`Security::charge`] when a dialog is created from a source's INVITE, and
//!   [`Security::release`] when it ends (concurrent dialogs per source);
//! - [`Security::may_answer_error`] before answering a malformed request.
//!
//! Every refusal is a [`SecurityError`] with the status to answer (503 with `Retry-After` for
//! a limit reached, 413 or 513 for an oversized part).

mod policy;
mod rate;
pub mod sources;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

pub use policy::Policy;
pub use rate::Rate;
pub use sources::{Charge, SourceKey};

use crate::wire::{HeaderName, MessageView};
use sources::{ChargeError, Sources};

/// Why the security layer refused a message or a new dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityError {
    /// The body is larger than [`Policy::max_body_bytes`].
    BodyTooLarge {
        /// The limit.
        max: usize,
    },
    /// More Record-Route (or Route) entries than [`Policy::max_route_entries`].
    TooManyRoutes {
        /// Record-Route or Route.
        header: HeaderName,
        /// The limit.
        max: usize,
    },
    /// More Record-Route (or Route) bytes than [`Policy::max_route_bytes`].
    RoutesTooLarge {
        /// Record-Route or Route.
        header: HeaderName,
        /// The limit.
        max: usize,
    },
    /// The source starts new dialogs faster than its bucket allows.
    SourceRateLimited,
    /// New dialogs come faster than the global bucket allows.
    RateLimited,
    /// The source holds [`Policy::max_dialogs_per_source`] dialogs.
    SourceFull {
        /// The limit.
        max: u32,
    },
    /// The manager holds [`Policy::max_dialogs`] dialogs (or its table is full).
    TooManyDialogs {
        /// The limit.
        max: u32,
    },
    /// The manager holds [`Policy::max_early_dialogs`] early dialogs.
    TooManyEarlyDialogs {
        /// The limit.
        max: u32,
    },
    /// The INVITE records reached [`Policy::max_invite_records`] or
    /// [`Policy::invite_record_bytes`].
    TooManyInvites,
    /// The live dialogs' data holds [`Policy::dialog_bytes`].
    DialogBytes {
        /// The budget.
        max: usize,
    },
    /// A Refer-To host outside [`Policy::transfer_targets`].
    TransferTargetNotAllowed,
    /// The caller's transaction layer is at its count cap or byte budget
    /// ([`crate::txn::TxnError::Full`]).
    TooManyTransactions,
}

impl SecurityError {
    /// The status and reason phrase a request refused for this answers with. A 503 also
    /// carries `Retry-After` ([`Policy::retry_after_s`]).
    ///
    /// ```
    /// use sipdialog::security::SecurityError;
    /// assert_eq!(SecurityError::SourceRateLimited.status(), (503, "Service Unavailable"));
    /// assert_eq!(SecurityError::BodyTooLarge { max: 10 }.status().0, 413);
    /// ```
    pub const fn status(&self) -> (u16, &'static str) {
        match self {
            SecurityError::BodyTooLarge { .. } => (413, "Request Entity Too Large"),
            SecurityError::TooManyRoutes { .. } | SecurityError::RoutesTooLarge { .. } => {
                (513, "Message Too Large")
            }
            SecurityError::TransferTargetNotAllowed => (403, "Forbidden"),
            SecurityError::SourceRateLimited
            | SecurityError::RateLimited
            | SecurityError::SourceFull { .. }
            | SecurityError::TooManyDialogs { .. }
            | SecurityError::TooManyEarlyDialogs { .. }
            | SecurityError::DialogBytes { .. }
            | SecurityError::TooManyInvites
            | SecurityError::TooManyTransactions => (503, "Service Unavailable"),
        }
    }

    /// Whether this is a rate limit (counted in `sipdialog_rate_limited_total`).
    pub const fn is_rate_limit(&self) -> bool {
        matches!(
            self,
            SecurityError::SourceRateLimited | SecurityError::RateLimited
        )
    }
}

impl std::fmt::Display for SecurityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecurityError::BodyTooLarge { max } => write!(f, "body larger than {max} bytes"),
            SecurityError::TooManyRoutes { header, max } => {
                write!(f, "more than {max} {} entries", header.as_str())
            }
            SecurityError::RoutesTooLarge { header, max } => {
                write!(f, "{} values longer than {max} bytes", header.as_str())
            }
            SecurityError::SourceRateLimited => f.write_str("source over its new-dialog rate"),
            SecurityError::RateLimited => f.write_str("over the global new-dialog rate"),
            SecurityError::SourceFull { max } => write!(f, "source holds {max} dialogs"),
            SecurityError::TooManyDialogs { max } => write!(f, "{max} dialogs held"),
            SecurityError::TooManyEarlyDialogs { max } => write!(f, "{max} early dialogs held"),
            SecurityError::TooManyInvites => f.write_str("INVITE records at their budget"),
            SecurityError::DialogBytes { max } => write!(f, "dialogs' data holds {max} bytes"),
            SecurityError::TransferTargetNotAllowed => f.write_str("transfer target not allowed"),
            SecurityError::TooManyTransactions => f.write_str("transactions at their budget"),
        }
    }
}

impl std::error::Error for SecurityError {}

/// The policy and the state it is enforced with. Lock-free: the policy is read through
/// `arc-swap`, buckets and counts are atomics.
///
/// ```
/// use sipdialog::security::{Policy, Security, SecurityError};
///
/// let policy = Policy { new_dialogs_per_second_per_source: 1, new_dialog_burst_per_source: 1,
///     ..Policy::default() };
/// let security = Security::new(policy);
/// let peer = "192.0.2.1".parse().unwrap();
/// let policy = security.load();
/// assert_eq!(security.admit_new_dialog(&policy, Some(peer), 0), Ok(()));
/// assert_eq!(
///     security.admit_new_dialog(&policy, Some(peer), 0),
///     Err(SecurityError::SourceRateLimited)
/// );
/// // Swapped while traffic runs: no limit from the next load on.
/// security.set_policy(Policy { new_dialogs_per_second_per_source: 0, ..Policy::default() });
/// assert_eq!(security.admit_new_dialog(&security.load(), Some(peer), 0), Ok(()));
/// ```
pub struct Security {
    policy: ArcSwap<Policy>,

    sources: Sources,
    new_dialogs: Rate,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("sources", &self.sources.len())
            .finish_non_exhaustive()
    }
}

/// The policy in force, as [`Security::load`] hands it out.
pub type PolicyGuard = Guard<Arc<Policy>>;

/// How many times a charge looks a retiring entry up again before using the overflow entry.
const RETIRED_RETRIES: usize = 4;

impl Security {
    /// Enforces `policy`.
    pub fn new(policy: Policy) -> Security {
        Security {
            sources: Sources::new(policy.max_sources as usize),
            policy: ArcSwap::from_pointee(policy),
            new_dialogs: Rate::new(),
        }
    }

    /// The policy in force, to keep.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// The policy in force, for the checks of one message: cheaper than
    /// [`Security::policy`], and not to be held across messages (the policy it read lives
    /// as long as the guard does).
    pub fn load(&self) -> PolicyGuard {
        self.policy.load()
    }

    /// Where the policy in force is kept, for a worker's [`arc_swap::Cache`] of it.
    pub(crate) fn policy_cell(&self) -> &ArcSwap<Policy> {
        &self.policy
    }

    /// Puts `policy` in force for every check from now on, without stopping traffic. The
    /// source map keeps its entries; a lower [`Policy::max_sources`] takes effect as they
    /// expire.
    pub fn set_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// Sources tracked for the per-source limits.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Checks what a scanned message would make us copy or hold: body size, Record-Route and
    /// Route count and bytes.
    pub fn check_message(
        &self,
        policy: &Policy,
        view: &MessageView<'_>,
    ) -> Result<(), SecurityError> {
        if view.body().len() > policy.max_body_bytes {
            return Err(SecurityError::BodyTooLarge {
                max: policy.max_body_bytes,
            });
        }
        for header in [HeaderName::RecordRoute, HeaderName::Route] {
            let tally = view.route_tally(header);
            // The scan's tally bounds the entries and their bytes from above: only a message
            // near a limit pays for a walk that counts them exactly.
            if tally.lines == 0
                || (tally.lines + tally.commas) as usize <= policy.max_route_entries
                    && tally.bytes as usize <= policy.max_route_bytes
            {
                continue;
            }
            let (mut count, mut bytes) = (0, 0);
            for value in view.values(header) {
                count += 1;
                bytes += value.len();
                if count > policy.max_route_entries {
                    return Err(SecurityError::TooManyRoutes {
                        header,
                        max: policy.max_route_entries,
                    });
                }
                if bytes > policy.max_route_bytes {
                    return Err(SecurityError::RoutesTooLarge {
                        header,
                        max: policy.max_route_bytes,
                    });
                }
            }
        }
        Ok(())
    }

    /// Takes a token for a new dialog from the global bucket and from `source`'s (unless it is
    /// trusted or unknown). Rate limits only: the dialog counts are checked when the dialog is
    /// made ([`Security::charge`]).
    pub fn admit_new_dialog(
        &self,
        policy: &Policy,
        source: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<(), SecurityError> {
        if let Some(ip) = source.filter(|&ip| !policy.is_trusted(ip)) {
            let (rate, burst) = (
                policy.new_dialogs_per_second_per_source,
                policy.new_dialog_burst_per_source,
            );
            let limits = (policy.max_sources as usize, policy.source_idle_ms);
            let admitted = self.sources.with(ip, now_ms, limits, |entry, _| {
                entry.new_dialogs.take(now_ms, rate, burst)
            });
            if !admitted {
                return Err(SecurityError::SourceRateLimited);
            }
        }
        let global = (policy.new_dialogs_per_second, policy.new_dialog_burst);
        if !self.new_dialogs.take(now_ms, global.0, global.1) {
            return Err(SecurityError::RateLimited);
        }
        Ok(())
    }

    /// Counts a new live dialog against `source`'s limit. `Ok(None)`: nothing was counted (no
    /// source, or a trusted one); otherwise give the [`Charge`] back with
    /// [`Security::release`] when the dialog ends.
    pub fn charge(
        &self,
        policy: &Policy,
        source: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<Option<Charge>, SecurityError> {
        let Some(ip) = source.filter(|&ip| !policy.is_trusted(ip)) else {
            return Ok(None);
        };
        let max = policy.max_dialogs_per_source;
        let limits = (policy.max_sources as usize, policy.source_idle_ms);
        for _ in 0..RETIRED_RETRIES {
            let charged = self.sources.with(ip, now_ms, limits, |entry, charge| {
                entry.charge(max).map(|()| charge)
            });
            match charged {
                Ok(charge) => return Ok(Some(charge)),
                Err(ChargeError::Full) => return Err(SecurityError::SourceFull { max }),
                Err(ChargeError::Retired) => std::hint::spin_loop(),
            }
        }
        Err(SecurityError::SourceFull { max })
    }

    /// Gives back what [`Security::charge`] counted.
    pub fn release(&self, charge: Charge) {
        self.sources.release(charge);
    }

    /// Whether a malformed request from `source` may be answered now (its error bucket).
    pub fn may_answer_error(&self, policy: &Policy, source: Option<IpAddr>, now_ms: u64) -> bool {
        let Some(ip) = source.filter(|&ip| !policy.is_trusted(ip)) else {
            return true;
        };
        let (rate, burst) = (
            policy.error_answers_per_second_per_source,
            policy.error_answer_burst_per_source,
        );
        let limits = (policy.max_sources as usize, policy.source_idle_ms);
        self.sources.with(ip, now_ms, limits, |entry, _| {
            entry.error_answers.take(now_ms, rate, burst)
        })
    }

    /// Forgets the sources idle for [`Policy::source_idle_ms`] (at most once a second).
    pub fn sweep(&self, now_ms: u64) {
        let idle = self.policy.load().source_idle_ms;
        self.sources.sweep(now_ms, idle);
    }

    /// When [`Security::sweep`] next has something to look at.
    pub fn next_sweep(&self) -> Option<u64> {
        self.sources.next_sweep()
    }
}

#[cfg(all(test, not(sipdialog_loom)))]
mod tests;
