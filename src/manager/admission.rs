//! The way in: every received message is scanned under the policy's limits and checked by
//! the security layer before any dialog work; a new INVITE is admitted (rates, dialog counts,
//! the source's share, a record within budget) or refused with a stateless 503; a malformed
//! request gets its 400/505/513, at most as often as its source's error bucket allows.

use std::net::SocketAddr;

use super::outbox::{Answering, Delivery, Meta};
use super::pending::{InviteId, NewRecord, PendingInvite};
use super::{DialogManager, ManagerError, Outbox, Verdict};
use crate::build::{self, ResponseParts};
use crate::dialog::Role;
use crate::id::{Fingerprint, Tag};
use crate::security::{Policy, SecurityError};
use crate::table::DialogHandle;
use crate::wire::{MessageView, Method, Salvaged, ScanLimits, WireError};

impl DialogManager {
    /// Handles a message received from `source` at `now_ms` (caller's clock): the entry point
    /// of a transport. Answers the manager gives (481, 491, 500, 503, 200 to BYE/CANCEL, 487,
    /// and 400/505/513 to a malformed request) go to `out`.
    ///
    /// `source` is where the datagram came from: the per-source limits count by it, and the
    /// dialogs its INVITEs create retransmit only towards it. Give the request with its top
    /// Via stamped for it ([`crate::build::stamp_received`]) so that answers written later go
    /// back there too.
    ///
    /// ```
    /// use sipdialog::manager::{DialogManager, ManagerConfig, Outbox, Verdict};
    /// use sipdialog::security::Policy;
    ///
    /// let policy = Policy { max_dialogs: 0, ..Policy::default() }; // full
    /// let manager = DialogManager::new(ManagerConfig { policy, ..ManagerConfig::default() })
    ///     .unwrap();
    /// let mut out = Outbox::new();
    /// let invite = b"INVITE sip:b@192.0.2.4 SIP/2.0\r\n\
    /// Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
    /// To: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    /// let source = "192.0.2.1:5060".parse().unwrap();
    /// let verdict = manager.on_received_from(invite, source, 0, &mut out).unwrap();
    /// assert_eq!(verdict, Verdict::Rejected { status: 503, dialog: None });
    /// let answer = out.iter().next().unwrap();
    /// assert!(answer.bytes.starts_with(b"SIP/2.0 503 Service Unavailable\r\n"));
    /// assert!(answer.bytes.windows(15).any(|w| w == b"Retry-After: 5\r"));
    /// ```
    pub fn on_received_from(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        self.receive(bytes, Some(source), now_ms, out)
    }

    /// [`DialogManager::on_received_from`] for a caller that does not know the source: the
    /// per-source limits do not apply, and requests are retransmitted wherever they go.
    pub fn on_received(
        &self,
        bytes: &[u8],
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        self.receive(bytes, None, now_ms, out)
    }

    fn receive(
        &self,
        bytes: &[u8],
        source: Option<SocketAddr>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        // Loaded once: every check of this message reads the same policy.
        let policy = self.security.load();
        match MessageView::parse_with(bytes, &policy.scan_limits()) {
            Ok(view) => self.message(&policy, &view, source, now_ms, out),
            Err(e) => {
                self.malformed(&policy, bytes, e, source, now_ms, out);
                Err(e.into())
            }
        }
    }

    /// The scanner limits of the policy in force: a caller that scans messages itself before
    /// [`DialogManager::on_message`] uses these.
    pub fn scan_limits(&self) -> ScanLimits {
        self.security.load().scan_limits()
    }

    /// [`DialogManager::on_received_from`] for a message the caller scanned already (with
    /// [`DialogManager::scan_limits`]): no second scan.
    pub fn on_message(
        &self,
        view: &MessageView<'_>,
        source: Option<SocketAddr>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        self.message(&self.security.load(), view, source, now_ms, out)
    }

    /// The checks and the verdict of one scanned message under `policy`, loaded once by the
    /// caller for all of them (a [`crate::stack::Stack`] keeps it between messages).
    pub(crate) fn message(
        &self,
        policy: &Policy,
        view: &MessageView<'_>,
        source: Option<SocketAddr>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        self.count_message(view);
        if let Err(e) = self.security.check_message(policy, view) {
            return self.refuse_request(view, e, out);
        }
        match view.method() {
            Some(method) => self.request_received(policy, view, method, source, now_ms, out),
            None => self.response_received(view, source, now_ms),
        }
    }

    /// Refuses a request statelessly for `error` (its status, 503 with `Retry-After` for a
    /// limit), counted like the manager's own refusals: for limits the caller enforces, such
    /// as its transaction layer being full ([`SecurityError::TooManyTransactions`]). An ACK
    /// is never answered.
    pub fn refuse_request(
        &self,
        view: &MessageView<'_>,
        error: SecurityError,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        match view.method() {
            Some(method) if method != Method::Ack => self.refuse(view, None, error, out),
            _ => Err(error.into()),
        }
    }

    /// Answers a request the scanner refused with the status of its error, statelessly, when
    /// enough of it can be read to address an answer and `source`'s error bucket allows;
    /// `true` when an answer is in `out`. Responses and garbage are dropped.
    pub fn answer_malformed(
        &self,
        bytes: &[u8],
        error: WireError,
        source: Option<SocketAddr>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> bool {
        self.malformed(&self.security.load(), bytes, error, source, now_ms, out)
    }

    fn malformed(
        &self,
        policy: &Policy,
        bytes: &[u8],
        error: WireError,
        source: Option<SocketAddr>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> bool {
        let Some(salvaged) = Salvaged::scan(bytes) else {
            return false;
        };
        if salvaged.method() == b"ACK" {
            return false;
        }
        let Some(destination) = salvaged.response_destination(source) else {
            return false;
        };
        if !self
            .security
            .may_answer_error(policy, source.map(|s| s.ip()), now_ms)
        {
            self.count(|m| m.rate_limited());
            return false;
        }
        let (status, reason) = error.status();
        let meta = Meta {
            destination: Some(destination),
            ..Meta::response(None).delivered(Delivery::Once)
        };
        let written = out
            .push(meta, |buf| {
                build::error_response(&salvaged, status, reason, source, buf)
            })
            .is_ok();
        if written {
            self.count(|m| m.rejected(status));
            tracing::debug!(status, ?source, error = %error, "malformed request answered");
        }
        written
    }

    /// A new INVITE (no To tag, not a retransmission) whose record key is `key`
    /// ([`Self::uas_key`]): the admission checks, in order of cost, then a record; answers the
    /// To tag chosen for its responses and its token. `Err` is the refusal to answer with.
    pub(crate) fn admit_invite(
        &self,
        policy: &Policy,
        view: &MessageView<'_>,
        key: Fingerprint,
        source: Option<SocketAddr>,
        answering: Option<Answering>,
        now_ms: u64,
    ) -> Result<(Tag, InviteId), ManagerError> {
        let ip = source.map(|s| s.ip());
        self.security.admit_new_dialog(policy, ip, now_ms)?;
        self.check_room(true)?;
        let to_tag = Tag::generate().map_err(|_| ManagerError::Random)?;
        let charge = self.security.charge(policy, ip, now_ms)?;
        let record = NewRecord {
            source,
            to_tag: Some(to_tag),
            charge,
            answering,
            ..self.keyed_record(view, Role::Uas, key)
        };
        let records = self.records();
        let inserted = self.pending_insert(PendingInvite::new(record, view), now_ms, &records);
        match inserted {
            Ok(Some(pending)) => Ok((to_tag, pending.id())),
            Ok(None) => {
                // Inserted by another thread meanwhile (the same INVITE on two workers).
                if let Some(charge) = charge {
                    self.security.release(charge);
                }
                Err(ManagerError::AlreadyAnswered)
            }
            Err(e) => {
                if let Some(charge) = charge {
                    self.security.release(charge);
                }
                Err(e)
            }
        }
    }

    /// Whether one more dialog (`early`: one that starts early) fits the policy and the table.
    pub(crate) fn check_room(&self, early: bool) -> Result<(), SecurityError> {
        let policy = self.security.load();
        let max = policy.max_dialogs.min(self.dialogs.table.capacity());
        if self.dialogs.table.len() >= max as usize {
            return Err(SecurityError::TooManyDialogs { max });
        }
        if self.dialogs.cold.bytes() >= policy.dialog_bytes {
            return Err(SecurityError::DialogBytes {
                max: policy.dialog_bytes,
            });
        }
        if early && self.dialogs.table.early() >= policy.max_early_dialogs as usize {
            return Err(SecurityError::TooManyEarlyDialogs {
                max: policy.max_early_dialogs,
            });
        }
        Ok(())
    }

    /// Refuses `view` for a limit: its status (503 with `Retry-After`, 413, 513, 403), sent
    /// once and kept nowhere, counted.
    pub(crate) fn refuse(
        &self,
        view: &MessageView<'_>,
        dialog: Option<DialogHandle>,
        error: SecurityError,
        out: &mut Outbox,
    ) -> Result<Verdict, ManagerError> {
        let status = self.write_refusal(view, None, error, Delivery::Once, None, out)?;
        self.count(|m| {
            m.rejected(status);
            if error.is_rate_limit() {
                m.rate_limited();
            }
        });
        tracing::debug!(status, %error, method = ?view.method(), "request refused");
        Ok(Verdict::Rejected { status, dialog })
    }

    /// Writes the answer of a refusal (with `to_tag` when the INVITE's earlier answers had
    /// it) to the request in hand, or to `answering`'s; its status.
    pub(crate) fn write_refusal(
        &self,
        view: &MessageView<'_>,
        to_tag: Option<&[u8]>,
        error: SecurityError,
        delivery: Delivery,
        answering: Option<Option<Answering>>,
        out: &mut Outbox,
    ) -> Result<u16, ManagerError> {
        let (status, reason) = error.status();
        let mut retry = [0u8; 10];
        let retry_len = write_decimal(&mut retry, self.security.policy().retry_after_s);
        let headers: [(&str, &[u8]); 1] = [("Retry-After", &retry[..retry_len])];
        let parts = ResponseParts {
            extra_headers: if status == 503 { &headers } else { &[] },
            ..ResponseParts::default()
        };
        let meta = Meta::response(None).delivered(delivery);
        let meta = Meta { answering, ..meta };
        out.push(meta, |buf| {
            build::response(view, status, reason, to_tag, &parts, buf)
        })?;
        Ok(status)
    }
}

/// The decimal digits of `n` into `buf`; how many.
fn write_decimal(buf: &mut [u8; 10], mut n: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[i] = *d;
    }
    len
}
