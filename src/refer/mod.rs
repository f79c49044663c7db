//! Call transfer on cold paths: REFER and its implicit subscription (RFC 3515, RFC 4488),
//! NOTIFY with `message/sipfrag` (RFC 3420), Replaces (RFC 3891) and Referred-By (RFC 3892).
//! Nothing here touches the hot slot: dialogs without a transfer pay nothing for it.

// The wire formats of a transfer, parsed and written: Refer-To, Replaces, sipfrag, Event,
// Subscription-State, Refer-Sub.
mod error;
mod event;
mod replaces;
mod request;
mod sipfrag;
#[cfg(test)]
mod tests;
mod uri;

pub use error::ReferError;
pub use event::{
    parse_refer_event, parse_refer_sub, parse_subscription_state, write_subscription_state,
    SubscriptionState,
};
pub use replaces::{parse_replaces, write_replaces, Replaces};
pub use request::ReferRequest;
pub use sipfrag::{parse_sipfrag_status, write_sipfrag};
pub use uri::{parse_refer_to, write_refer_to, ReferLimits, ReferTo, UriScheme};
