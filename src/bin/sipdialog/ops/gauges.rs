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
        let (retransmissions, retransmission_bytes) = self.shared.retransmissions.usage();
        let mut gauges = vec![
            (
                "sipdialog_endpoint_response_cache_entries",
                "Responses kept to answer retransmitted requests, all workers.",
                stats.cache_entries.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "sipdialog_endpoint_response_cache_bytes",
                "Bytes of those responses.",
                stats.cache_bytes.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "sipdialog_endpoint_retransmissions",
                "Messages being retransmitted until answered or ACKed.",
                retransmissions as u64,
            ),
            (
                "sipdialog_endpoint_retransmission_bytes",
                "Bytes of those messages.",
                retransmission_bytes as u64,
            ),
            (
                "sipdialog_endpoint_sent_once_total",
                "Requests sent once only (a next hop the peer never sent from, or the \
                 retransmission budget spent).",
                stats.sent_once.load(Ordering::Relaxed),
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
