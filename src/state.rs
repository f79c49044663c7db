//! The dialog state byte: a phase (RFC 3261 §12: early, confirmed, terminated) plus flag bits,
//! moved only through the one const [`TRANSITIONS`] table.
//!
//! The byte is stored in the low 8 bits of each slot's 64-bit lifecycle word, next to the slot
//! generation, so that one compare-and-swap both checks that a handle is current and moves the
//! state (see `table::slot`). A bare `AtomicU8` beside a separate generation counter would let
//! a stale handle's CAS land on a reused slot whose state byte happens to match (ABA); the loom
//! model `bare_state_byte_is_aba_prone` in `loom-tests/` shows that interleaving.

use core::fmt;

/// Where a dialog is in its life (RFC 3261 §12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Created by a provisional (1xx) response with a To tag; no 2xx yet.
    Early,
    /// A 2xx response has been sent or received.
    Confirmed,
    /// Ended by BYE, a non-2xx final response, an error or a timeout; it accepts no more events.
    Terminated,
}

/// Flag bits carried next to the phase.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// An INVITE transaction (initial or re-INVITE) is in progress; another one is glare (491).
    pub const INVITE_PENDING: Flags = Flags(1 << 2);
    /// A BYE has been sent or received and awaits its final response.
    pub const BYE_PENDING: Flags = Flags(1 << 3);
    /// The UAS sent a 2xx to INVITE and waits for the ACK (64×T1 timer).
    pub const ACK_PENDING: Flags = Flags(1 << 4);

    const ALL: u8 = Self::INVITE_PENDING.0 | Self::BYE_PENDING.0 | Self::ACK_PENDING.0;

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the flags of `other` added.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` with the flags of `other` removed.
    pub const fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::INVITE_PENDING, "INVITE_PENDING"),
            (Flags::BYE_PENDING, "BYE_PENDING"),
            (Flags::ACK_PENDING, "ACK_PENDING"),
        ];
        let mut list = f.debug_set();
        for (flag, name) in names {
            if self.contains(flag) {
                list.entry(&format_args!("{name}"));
            }
        }
        list.finish()
    }
}

const PHASE_MASK: u8 = 0b11;
const PHASE_EARLY: u8 = 0;
const PHASE_CONFIRMED: u8 = 1;
const PHASE_TERMINATED: u8 = 2;

/// One dialog's state: phase and flags packed into a byte.
///
/// ```
/// use sipdialog::state::{DialogState, Event, Phase, StateError};
///
/// let early = DialogState::EARLY;
/// let confirmed = early.apply(Event::Confirm).unwrap();
/// assert_eq!(confirmed.phase(), Phase::Confirmed);
/// let ended = confirmed.apply(Event::Terminate).unwrap();
/// assert_eq!(ended.apply(Event::Confirm), Err(StateError::Terminated));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DialogState(u8);

impl DialogState {
    /// A new early dialog with no flags.
    pub const EARLY: DialogState = DialogState(PHASE_EARLY);
    /// A new confirmed dialog with no flags.
    pub const CONFIRMED: DialogState = DialogState(PHASE_CONFIRMED);
    /// A terminated dialog.
    pub const TERMINATED: DialogState = DialogState(PHASE_TERMINATED);

    /// Builds a state from a phase and flags.
    pub const fn new(phase: Phase, flags: Flags) -> DialogState {
        let p = match phase {
            Phase::Early => PHASE_EARLY,
            Phase::Confirmed => PHASE_CONFIRMED,
            Phase::Terminated => PHASE_TERMINATED,
        };
        DialogState(p | (flags.0 & Flags::ALL))
    }

    /// Reads a packed byte; `None` if it holds an undefined phase or unknown flag bits.
    pub const fn from_bits(bits: u8) -> Option<DialogState> {
        if bits & PHASE_MASK > PHASE_TERMINATED || bits & !(PHASE_MASK | Flags::ALL) != 0 {
            None
        } else {
            Some(DialogState(bits))
        }
    }

    /// The packed byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The phase.
    pub const fn phase(self) -> Phase {
        match self.0 & PHASE_MASK {
            PHASE_EARLY => Phase::Early,
            PHASE_CONFIRMED => Phase::Confirmed,
            _ => Phase::Terminated,
        }
    }

    /// The flag bits.
    pub const fn flags(self) -> Flags {
        Flags(self.0 & Flags::ALL)
    }

    /// Whether the dialog has ended.
    pub const fn is_terminated(self) -> bool {
        self.0 & PHASE_MASK == PHASE_TERMINATED
    }

    /// The state `event` leads to, looked up in [`TRANSITIONS`]; an illegal event is an error.
    #[inline]
    pub const fn apply(self, event: Event) -> Result<DialogState, StateError> {
        TRANSITIONS[self.0 as usize][event as usize]
    }
}

impl fmt::Debug for DialogState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}{:?}", self.phase(), self.flags())
    }
}

/// What happened to a dialog; the input of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Event {
    /// A 2xx to the dialog-creating INVITE was received (UAC) or observed: early → confirmed.
    Confirm,
    /// The UAS sent a 2xx to the INVITE: early → confirmed, waiting for the ACK.
    ConfirmAwaitingAck,
    /// The ACK for the 2xx arrived: clears `ACK_PENDING`.
    AckReceived,
    /// A re-INVITE starts on a confirmed dialog; a second one while one is pending is glare.
    BeginInvite,
    /// The pending re-INVITE got its final response.
    EndInvite,
    /// A BYE was sent or received.
    BeginBye,
    /// The dialog ends (BYE answered, non-2xx final, 481/408, CANCEL, timeout).
    Terminate,
}

const EVENT_COUNT: usize = 7;

impl Event {
    /// Every event, in table column order.
    pub const ALL: [Event; EVENT_COUNT] = [
        Event::Confirm,
        Event::ConfirmAwaitingAck,
        Event::AckReceived,
        Event::BeginInvite,
        Event::EndInvite,
        Event::BeginBye,
        Event::Terminate,
    ];
}

/// Why a transition was refused. The state is left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateError {
    /// The dialog has ended; it takes no more events.
    Terminated,
    /// An INVITE is already pending on this dialog (answer 491 Request Pending).
    Glare,
    /// A BYE is already pending on this dialog.
    ByePending,
    /// The event makes no sense in this state (e.g. an ACK with no 2xx awaiting one).
    Illegal {
        /// The state the event was applied to.
        from: DialogState,
        /// The refused event.
        event: Event,
    },
    /// The byte does not hold a valid state.
    Corrupt,
}

impl StateError {
    /// The SIP status an in-dialog request refused by this error is answered with.
    pub const fn status(&self) -> (u16, &'static str) {
        match self {
            StateError::Glare => (491, "Request Pending"),
            StateError::Terminated => (481, "Call/Transaction Does Not Exist"),
            StateError::ByePending | StateError::Illegal { .. } | StateError::Corrupt => {
                (500, "Server Internal Error")
            }
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Terminated => f.write_str("dialog already terminated"),
            StateError::Glare => f.write_str("an INVITE is already pending (glare)"),
            StateError::ByePending => f.write_str("a BYE is already pending"),
            StateError::Illegal { from, event } => write!(f, "{event:?} is illegal in {from:?}"),
            StateError::Corrupt => f.write_str("invalid state byte"),
        }
    }
}

impl std::error::Error for StateError {}

/// The rule behind each cell of [`TRANSITIONS`].
const fn rule(bits: u8, event: Event) -> Result<DialogState, StateError> {
    let state = match DialogState::from_bits(bits) {
        Some(s) => s,
        None => return Err(StateError::Corrupt),
    };
    let flags = state.flags();
    let illegal = Err(StateError::Illegal { from: state, event });
    match (state.phase(), event) {
        (Phase::Terminated, _) => Err(StateError::Terminated),
        (_, Event::Terminate) => Ok(DialogState::TERMINATED),
        (Phase::Early, Event::Confirm) => Ok(DialogState::new(Phase::Confirmed, flags)),
        (Phase::Early, Event::ConfirmAwaitingAck) => Ok(DialogState::new(
            Phase::Confirmed,
            flags.union(Flags::ACK_PENDING),
        )),
        (Phase::Confirmed, Event::AckReceived) if flags.contains(Flags::ACK_PENDING) => Ok(
            DialogState::new(Phase::Confirmed, flags.difference(Flags::ACK_PENDING)),
        ),
        (Phase::Confirmed, Event::BeginInvite) if flags.contains(Flags::BYE_PENDING) => {
            Err(StateError::ByePending)
        }
        (Phase::Confirmed, Event::BeginInvite) if flags.contains(Flags::INVITE_PENDING) => {
            Err(StateError::Glare)
        }
        (Phase::Confirmed, Event::BeginInvite) => Ok(DialogState::new(
            Phase::Confirmed,
            flags.union(Flags::INVITE_PENDING),
        )),
        (Phase::Confirmed, Event::EndInvite) if flags.contains(Flags::INVITE_PENDING) => Ok(
            DialogState::new(Phase::Confirmed, flags.difference(Flags::INVITE_PENDING)),
        ),
        (_, Event::BeginBye) if flags.contains(Flags::BYE_PENDING) => Err(StateError::ByePending),
        (phase, Event::BeginBye) => Ok(DialogState::new(phase, flags.union(Flags::BYE_PENDING))),
        _ => illegal,
    }
}

const fn build_table() -> [[Result<DialogState, StateError>; EVENT_COUNT]; 256] {
    let mut table = [[Err(StateError::Corrupt); EVENT_COUNT]; 256];
    let mut bits = 0;
    while bits < 256 {
        let mut e = 0;
        while e < EVENT_COUNT {
            table[bits][e] = rule(bits as u8, Event::ALL[e]);
            e += 1;
        }
        bits += 1;
    }
    table
}

/// The transition table: `TRANSITIONS[state byte][event]`. Built at compile time from one rule
/// function so that every byte value, valid or not, has a defined answer.
pub static TRANSITIONS: [[Result<DialogState, StateError>; EVENT_COUNT]; 256] = build_table();

/// The five-state model many stacks use (e.g. Kamailio-style None/Early/Confirmed/Terminating/
/// Terminated), for users migrating from one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegacyState {
    /// No dialog exists yet.
    None,
    /// Early dialog.
    Early,
    /// Confirmed dialog.
    Confirmed,
    /// BYE sent or received, not yet answered.
    Terminating,
    /// Ended.
    Terminated,
}

impl From<DialogState> for LegacyState {
    fn from(s: DialogState) -> LegacyState {
        match s.phase() {
            Phase::Terminated => LegacyState::Terminated,
            _ if s.flags().contains(Flags::BYE_PENDING) => LegacyState::Terminating,
            Phase::Early => LegacyState::Early,
            Phase::Confirmed => LegacyState::Confirmed,
        }
    }
}

/// A legacy or sipgo state with no counterpart in [`DialogState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoEquivalent;

impl fmt::Display for NoEquivalent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("state has no equivalent in the other model")
    }
}

impl std::error::Error for NoEquivalent {}

impl TryFrom<LegacyState> for DialogState {
    type Error = NoEquivalent;
    /// `None` means "no dialog", which is not a state a dialog can be in.
    fn try_from(s: LegacyState) -> Result<DialogState, NoEquivalent> {
        match s {
            LegacyState::None => Err(NoEquivalent),
            LegacyState::Early => Ok(DialogState::EARLY),
            LegacyState::Confirmed => Ok(DialogState::CONFIRMED),
            LegacyState::Terminating => Ok(DialogState::new(Phase::Confirmed, Flags::BYE_PENDING)),
            LegacyState::Terminated => Ok(DialogState::TERMINATED),
        }
    }
}

/// sipgo's three dialog states. sipgo has no early dialogs: a dialog starts at the 2xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SipgoState {
    /// 2xx sent or received, ACK not yet.
    Established,
    /// ACK sent or received.
    Confirmed,
    /// BYE sent or received.
    Ended,
}

impl TryFrom<DialogState> for SipgoState {
    type Error = NoEquivalent;
    /// An early dialog has no sipgo counterpart.
    fn try_from(s: DialogState) -> Result<SipgoState, NoEquivalent> {
        match s.phase() {
            Phase::Early => Err(NoEquivalent),
            Phase::Terminated => Ok(SipgoState::Ended),
            Phase::Confirmed if s.flags().contains(Flags::BYE_PENDING) => Ok(SipgoState::Ended),
            Phase::Confirmed if s.flags().contains(Flags::ACK_PENDING) => {
                Ok(SipgoState::Established)
            }
            Phase::Confirmed => Ok(SipgoState::Confirmed),
        }
    }
}

impl From<SipgoState> for DialogState {
    fn from(s: SipgoState) -> DialogState {
        match s {
            SipgoState::Established => DialogState::new(Phase::Confirmed, Flags::ACK_PENDING),
            SipgoState::Confirmed => DialogState::CONFIRMED,
            SipgoState::Ended => DialogState::TERMINATED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_valid_states() -> impl Iterator<Item = DialogState> {
        (0..=255u8).filter_map(DialogState::from_bits)
    }

    #[test]
    fn table_matches_rule_and_never_leaves_terminated() {
        for s in all_valid_states() {
            for e in Event::ALL {
                let next = s.apply(e);
                assert_eq!(next, rule(s.bits(), e));
                if s.is_terminated() {
                    assert_eq!(next, Err(StateError::Terminated));
                }
                if let Ok(n) = next {
                    assert!(DialogState::from_bits(n.bits()).is_some());
                }
            }
        }
        assert_eq!(
            DialogState(0xFF).apply(Event::Confirm),
            Err(StateError::Corrupt)
        );
    }

    #[test]
    fn call_flows() {
        let s = DialogState::EARLY.apply(Event::ConfirmAwaitingAck).unwrap();
        assert!(s.flags().contains(Flags::ACK_PENDING));
        let s = s.apply(Event::AckReceived).unwrap();
        assert_eq!(s, DialogState::CONFIRMED);
        assert!(matches!(
            s.apply(Event::AckReceived),
            Err(StateError::Illegal { .. })
        ));
        let s = s.apply(Event::BeginInvite).unwrap();
        assert_eq!(s.apply(Event::BeginInvite), Err(StateError::Glare));
        assert_eq!(StateError::Glare.status().0, 491);
        let s = s.apply(Event::EndInvite).unwrap();
        let s = s.apply(Event::BeginBye).unwrap();
        assert_eq!(s.apply(Event::BeginInvite), Err(StateError::ByePending));
        assert_eq!(LegacyState::from(s), LegacyState::Terminating);
        let s = s.apply(Event::Terminate).unwrap();
        assert_eq!(s, DialogState::TERMINATED);
        assert!(matches!(
            DialogState::EARLY.apply(Event::BeginInvite),
            Err(StateError::Illegal { .. })
        ));
    }

    #[test]
    fn legacy_and_sipgo_round_trip() {
        for l in [
            LegacyState::Early,
            LegacyState::Confirmed,
            LegacyState::Terminating,
            LegacyState::Terminated,
        ] {
            assert_eq!(LegacyState::from(DialogState::try_from(l).unwrap()), l);
        }
        assert_eq!(DialogState::try_from(LegacyState::None), Err(NoEquivalent));
        for g in [
            SipgoState::Established,
            SipgoState::Confirmed,
            SipgoState::Ended,
        ] {
            assert_eq!(SipgoState::try_from(DialogState::from(g)), Ok(g));
        }
        assert_eq!(SipgoState::try_from(DialogState::EARLY), Err(NoEquivalent));
    }
}
