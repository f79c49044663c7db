//! The endpoint's own structures on `/metrics`, read at scrape time: what the response
//! caches, the retransmissions and the mode's maps hold against their budgets.

use std::fmt::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use crate::endpoint::{Mode, Shared};

/// Reads `shared` and `mode` at every scrape.
pub struct EndpointGauges<M> {
    pub shared: Arc<Shared>,
    pub mode: Arc<M>,
}

impl<M> std::fmt::Debug for EndpointGauges<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointGauges")
    }
}

impl<M: Mode + 'static> Collector for EndpointGauges<M> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let stats = &self.shared.stats;
        let load =
            |gauge: &std::sync::atomic::AtomicI64| gauge.load(Ordering::Relaxed).max(0) as u64;
        let mut gauges = vec![
            (
                "sipdialog_endpoint_transactions",
                "SIP transactions held (requests in flight, answers kept for retransmitted \
                 requests), all workers.",
                load(&stats.transactions),
            ),
            (
                "sipdialog_endpoint_transaction_bytes",
                "Bytes of messages those transactions hold.",
                load(&stats.transaction_bytes),
            ),
            (
                "sipdialog_endpoint_datagrams_received_total",
                "Datagrams received, keepalives left out.",
                stats.stack.received.load(Ordering::Relaxed),
            ),
            #[cfg(feature = "scan-counter")]
            (
                "sipdialog_wire_scans_total",
                "Messages scanned (built with the scan-counter feature).",
                sipdialog::wire::scans(),
            ),
            (
                "sipdialog_endpoint_handed_over_total",
                "Messages and actions handed to the worker that holds their peer's \
                 transactions.",
                stats.stack.handed_over.load(Ordering::Relaxed),
            ),
            (
                "sipdialog_endpoint_sent_once_total",
                "Requests sent once only (a next hop the peer never sent from, or no room \
                 left for their transaction).",
                stats.stack.sent_once.load(Ordering::Relaxed),
            ),
        ];
        gauges.extend(self.mode.usage());
        for (name, help, value) in gauges {
            let kind = match name.ends_with("_total") {
                true => MetricType::Counter,
                false => MetricType::Gauge,
            };
            let name = name.trim_end_matches("_total");
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            match kind {
                MetricType::Counter => metric
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, u64, u64>(
                        &value, None,
                    )?,
                _ => metric.encode_gauge(&value)?,
            }
        }
        Ok(())
    }
}
