//! The limits a [`super::Security`] enforces: one plain struct, every field with its default.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::refer::ReferLimits;
use crate::wire::ScanLimits;

/// Every limit the dialog layer enforces on what the network sends it. Swap it at run time
/// with [`super::Security::set_policy`]; a field of 0 in a rate means "no limit".
///
/// How to size it is in SECURITY.md. The defaults suit one SBC on the open internet facing
/// many small peers; a trunk or a proxy that carries many calls from one address belongs in
/// [`Policy::trusted_sources`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Live dialogs at most (also capped by the table's capacity). Default 1 048 576.
    pub max_dialogs: u32,
    /// Early dialogs at most (ringing calls hold one each). Default 65 536.
    pub max_early_dialogs: u32,
    /// Live dialogs one source may hold (those its INVITEs created). Default 10 000.
    pub max_dialogs_per_source: u32,
    /// New dialogs (INVITEs outside a dialog) admitted per second, all sources together; 0:
    /// no limit. Default 0.
    pub new_dialogs_per_second: u32,
    /// How many of those may come at once. Default 1 000.
    pub new_dialog_burst: u32,
    /// New dialogs admitted per second from one source; 0: no limit. Default 200.
    pub new_dialogs_per_second_per_source: u32,
    /// How many of those may come at once. Default 400.
    pub new_dialog_burst_per_source: u32,
    /// Answers to malformed requests per second to one source (beyond, they are dropped, so
    /// garbage cannot make us an amplifier); 0: no limit. Default 10.
    pub error_answers_per_second_per_source: u32,
    /// How many of those may go at once. Default 20.
    pub error_answer_burst_per_source: u32,
    /// Sources tracked at once for the per-source limits; sources beyond share one overflow
    /// entry until idle ones expire. Default 65 536.
    pub max_sources: u32,
    /// A source with no live dialog and no message for this long is forgotten. Default 30 s
    /// (less than 64×T1, so that a flood's entries are gone within 64×T1).
    pub source_idle_ms: u64,
    /// Sources exempt from the per-source limits (a trusted proxy or trunk), still subject to
    /// every global one. Default: none.
    pub trusted_sources: Vec<IpNet>,
    /// The `Retry-After` (seconds) of a 503 for a limit reached. Default 5.
    pub retry_after_s: u32,
    /// Largest message, in bytes. Default 65 535 (the largest UDP payload).
    pub max_message_bytes: usize,
    /// Most header fields in a message. Default 256.
    pub max_headers: usize,
    /// Longest physical line, in bytes. Default 8 192.
    pub max_line_bytes: usize,
    /// Largest body, in bytes (413 beyond). Default 32 768.
    pub max_body_bytes: usize,
    /// Most Record-Route entries, and most Route entries, in a message (513 beyond): a route
    /// set is copied into every dialog it creates. Default 16.
    pub max_route_entries: usize,
    /// Most bytes of Record-Route values, and of Route values, in a message. Default 4 096.
    pub max_route_bytes: usize,
    /// INVITE transactions tracked at once (a record stays 64×T1 after its final response,
    /// so this bounds the sustained rate of new INVITEs at `max_invite_records / 32` a
    /// second with the default T1; a B2BUA's call holds two, one per leg).
    /// Default 2 097 152.
    pub max_invite_records: usize,
    /// Bytes those records may hold together (what a CANCEL or an answer is built from).
    /// Like the count, it bounds the sustained call rate: a B2BUA call's two records hold
    /// about 1.2 KB for 64×T1 (32 s), so the default sustains about 28 000 calls a second
    /// (256 MiB held it to about 7 000). Default 1 GiB.
    pub invite_record_bytes: usize,
    /// Bytes the live dialogs' data may hold together: identities, URIs, remote targets,
    /// route sets, proposed targets (what a request in the dialog is built from; the fixed
    /// 64-byte slots and their side entries are not counted). While it is reached a new dialog
    /// is refused (503), and a target refresh that would grow the data is not made (the dialog
    /// keeps its target); two threads making dialogs at once may pass it by a dialog each.
    /// The data of an established call is about 330 bytes with short URIs and no route set.
    /// Default 1 GiB.
    pub dialog_bytes: usize,
    /// What a received Refer-To may be (length, schemes).
    pub refer_limits: ReferLimits,
    /// REFERs accepted per dialog per second; more get 403. Default 4.
    pub max_refers_per_second: u32,
    /// Implicit subscriptions (REFERs) live at once per dialog; more get 403. Default 4.
    pub max_subscriptions: u32,
    /// The networks a Refer-To host must be an IP literal in, or `None` for any target
    /// (403 otherwise: a REFER must not make an SBC call anywhere it is told). Default `None`;
    /// an SBC that carries out transfers should set it.
    pub transfer_targets: Option<Vec<IpNet>>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            max_dialogs: 1 << 20,
            max_early_dialogs: 1 << 16,
            max_dialogs_per_source: 10_000,
            new_dialogs_per_second: 0,
            new_dialog_burst: 1_000,
            new_dialogs_per_second_per_source: 200,
            new_dialog_burst_per_source: 400,
            error_answers_per_second_per_source: 10,
            error_answer_burst_per_source: 20,
            max_sources: 1 << 16,
            source_idle_ms: 30_000,
            trusted_sources: Vec::new(),
            retry_after_s: 5,
            max_message_bytes: ScanLimits::DEFAULT.max_message,
            max_headers: ScanLimits::DEFAULT.max_headers,
            max_line_bytes: ScanLimits::DEFAULT.max_line,
            max_body_bytes: 32_768,
            max_route_entries: 16,
            max_route_bytes: 4_096,
            max_invite_records: 1 << 21,
            invite_record_bytes: 1 << 30,
            dialog_bytes: 1 << 30,
            refer_limits: ReferLimits::DEFAULT,
            max_refers_per_second: 4,
            max_subscriptions: 4,
            transfer_targets: None,
        }
    }
}

impl Policy {
    /// The scanner limits this policy sets.
    pub fn scan_limits(&self) -> ScanLimits {
        ScanLimits {
            max_message: self.max_message_bytes,
            max_line: self.max_line_bytes,
            max_headers: self.max_headers,
        }
    }

    /// Whether `ip` is exempt from the per-source limits.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted_sources.iter().any(|net| net.contains(&ip))
    }

    /// Whether a transfer may target `host` (a Refer-To host as written): any when
    /// [`Policy::transfer_targets`] is `None`, else only an IP literal inside one of them.
    pub fn allows_transfer_to(&self, host: &[u8]) -> bool {
        let Some(nets) = &self.transfer_targets else {
            return true;
        };
        let host = host.strip_prefix(b"[").unwrap_or(host);
        let host = host.strip_suffix(b"]").unwrap_or(host);
        std::str::from_utf8(host)
            .ok()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .is_some_and(|ip| nets.iter().any(|net| net.contains(&canonical(ip))))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_canonical(),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_sources_and_transfer_targets() {
        let policy = Policy {
            trusted_sources: vec!["10.0.0.0/8".parse().unwrap()],
            transfer_targets: Some(vec![
                "192.0.2.0/24".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ]),
            ..Policy::default()
        };
        assert!(policy.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(policy.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!policy.is_trusted("192.0.2.1".parse().unwrap()));
        assert!(policy.allows_transfer_to(b"192.0.2.44"));
        assert!(policy.allows_transfer_to(b"[::1]"));
        assert!(!policy.allows_transfer_to(b"198.51.100.1"));
        assert!(!policy.allows_transfer_to(b"evil.example.com"));
        assert!(Policy::default().allows_transfer_to(b"evil.example.com"));
    }
}
