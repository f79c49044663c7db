//! The scrape side: a prometheus-client [`Collector`] that sums the shards and reads the
//! table once per scrape and writes every family through the library's encoder (never by
//! hand), so the text is valid Prometheus and OpenMetrics exposition.

use std::fmt::Error;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::counters::Snapshot;
use super::histogram::HistogramSnapshot;
use super::labels::{
    method_label, role_label, MessageKind, ReferOutcome, TerminationReason, METHODS,
    REJECT_STATUSES, ROLES, STATUS_LABELS,
};
use super::{Metrics, TableStats};

/// Family names, without the `_total` a counter sample gets (and, for the table bytes, the
/// `_bytes` the encoder appends from its unit).
pub(super) mod names {
    pub const CREATED: &str = "sipdialog_dialogs_created";
    pub const TERMINATED: &str = "sipdialog_dialogs_terminated";
    pub const MESSAGES: &str = "sipdialog_messages";
    pub const REJECTED: &str = "sipdialog_rejected";
    pub const RATE_LIMITED: &str = "sipdialog_rate_limited";
    pub const REFER: &str = "sipdialog_refer";
    /// In seconds, without a `# UNIT` line (see [`super::histogram`]).
    pub const SETUP: &str = "sipdialog_setup_duration_seconds";
    /// In seconds, without a `# UNIT` line.
    pub const DURATION: &str = "sipdialog_dialog_duration_seconds";
    pub const ACTIVE: &str = "sipdialog_dialogs_active";
    pub const CAPACITY: &str = "sipdialog_table_capacity_dialogs";
    pub const SLOTS: &str = "sipdialog_table_slots_in_use";
    /// With [`prometheus_client::registry::Unit::Bytes`]: `sipdialog_table_bytes`.
    pub const TABLE: &str = "sipdialog_table";
    pub const INVITES: &str = "sipdialog_invite_records";
    /// With [`prometheus_client::registry::Unit::Bytes`]: `sipdialog_invite_record_bytes`.
    pub const INVITE_BYTES: &str = "sipdialog_invite_record";
    pub const SOURCES: &str = "sipdialog_security_sources";
    /// With [`prometheus_client::registry::Unit::Bytes`]: `sipdialog_dialog_data_bytes`.
    pub const DIALOG_BYTES: &str = "sipdialog_dialog_data";
}

/// Registered by [`Metrics::register`]; runs at every scrape.
#[derive(Debug)]
pub(super) struct MetricsCollector {
    metrics: Arc<Metrics>,
    table: Arc<dyn TableStats>,
}

impl MetricsCollector {
    pub(super) fn new(metrics: Arc<Metrics>, table: Arc<dyn TableStats>) -> Self {
        MetricsCollector { metrics, table }
    }
}

/// One counter family with a single label.
fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'static str, u64)>,
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label, value)];
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, u64, u64>(&count, None)?;
    }
    Ok(())
}

/// One gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), Error> {
    encoder
        .encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// One histogram in seconds. The name carries `_seconds`, but no `# UNIT` line is written:
/// OpenMetrics allows one on a histogram, yet some strict parsers (openmetrics-parser 0.5)
/// reject it, and Prometheus reads the unit from the name anyway.
fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snapshot: &HistogramSnapshot,
) -> Result<(), Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(
            snapshot.sum_seconds(),
            snapshot.count(),
            &snapshot.buckets(),
            None,
        )
}

fn encode_counters(encoder: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), Error> {
    counter_family(
        encoder,
        names::CREATED,
        "Dialogs created (early or confirmed, forks included), by our role in them.",
        "role",
        ROLES
            .iter()
            .map(|&role| (role_label(role), s.created(role))),
    )?;
    counter_family(
        encoder,
        names::TERMINATED,
        "Dialogs ended, by why they ended.",
        "reason",
        TerminationReason::ALL
            .iter()
            .map(|&reason| (reason.as_str(), s.terminated(reason))),
    )?;
    {
        let mut metric = encoder.encode_descriptor(
            names::MESSAGES,
            "SIP messages handled, by kind and method (a response counts under its CSeq \
             method; unknown methods as other).",
            None,
            MetricType::Counter,
        )?;
        for kind in MessageKind::ALL {
            for method in METHODS {
                let labels = [("kind", kind.as_str()), ("method", method_label(method))];
                metric
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&s.messages(kind, method), None)?;
            }
        }
    }
    let statuses = REJECT_STATUSES
        .iter()
        .map(|&status| s.rejected(status))
        // 0 is no listed status: it reads the `other` count.
        .chain(std::iter::once(s.rejected(0)));
    counter_family(
        encoder,
        names::REJECTED,
        "Requests refused, by the status sent (statuses not listed count as other).",
        "status",
        STATUS_LABELS.iter().copied().zip(statuses),
    )?;
    encoder
        .encode_descriptor(
            names::RATE_LIMITED,
            "Requests refused by a rate limit (per-source or per-dialog).",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<NoLabelSet, u64, u64>(&s.rate_limited(), None)?;
    counter_family(
        encoder,
        names::REFER,
        "REFER transfers, by outcome (accepted or rejected when answered, succeeded or \
         failed when the final NOTIFY says so).",
        "outcome",
        ReferOutcome::ALL
            .iter()
            .map(|&outcome| (outcome.as_str(), s.refer(outcome))),
    )
}

impl Collector for MetricsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let snapshot = self.metrics.snapshot();
        encode_counters(&mut encoder, &snapshot)?;
        histogram(
            &mut encoder,
            names::SETUP,
            "Call setup time: from the INVITE to its 2xx.",
            snapshot.setup(),
        )?;
        histogram(
            &mut encoder,
            names::DURATION,
            "Dialog lifetime: from creation to termination.",
            snapshot.duration(),
        )?;

        let (early, confirmed) = self.table.by_phase();
        {
            let mut metric = encoder.encode_descriptor(
                names::ACTIVE,
                "Dialogs in the table now, by state (counted from live slots at scrape).",
                None,
                MetricType::Gauge,
            )?;
            for (state, value) in [("early", early), ("confirmed", confirmed)] {
                let labels = [("state", state)];
                metric.encode_family(&labels)?.encode_gauge(&value)?;
            }
        }
        gauge(
            &mut encoder,
            names::CAPACITY,
            "Dialogs the table can hold; beyond it new dialogs get 503.",
            None,
            self.table.capacity(),
        )?;
        gauge(
            &mut encoder,
            names::SLOTS,
            "Table slots holding a dialog now.",
            None,
            self.table.live(),
        )?;
        gauge(
            &mut encoder,
            names::TABLE,
            "Bytes of the dialog table: its slab and its index.",
            Some(&Unit::Bytes),
            self.table.slab_bytes() + self.table.index_bytes(),
        )?;
        let (invites, invite_bytes) = self.table.invite_records();
        gauge(
            &mut encoder,
            names::INVITES,
            "INVITE transactions tracked (until 64xT1 after their final response).",
            None,
            invites,
        )?;
        gauge(
            &mut encoder,
            names::INVITE_BYTES,
            "Bytes the INVITE transaction records hold (their budget is in the policy).",
            Some(&Unit::Bytes),
            invite_bytes,
        )?;
        gauge(
            &mut encoder,
            names::DIALOG_BYTES,
            "Bytes the live dialogs' data holds: URIs, tags, targets, route sets (their budget is in the policy).",
            Some(&Unit::Bytes),
            self.table.dialog_bytes(),
        )?;
        gauge(
            &mut encoder,
            names::SOURCES,
            "Source addresses the per-source limits track (capped by the policy).",
            None,
            self.table.sources(),
        )
    }
}
