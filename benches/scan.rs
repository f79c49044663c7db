//! Scanning one received message into a `MessageView`: the in-dialog BYE a softphone sends
//! (~437 bytes) and an INVITE with SDP through one proxy (~910 bytes). Baseline in the same
//! run: `rsip` parsing the same bytes and reading the same identity fields.
//!
//! Instructions per message are stable where wall time is not on this shared machine:
//! `valgrind --tool=callgrind --toggle-collect='*scan_view*' <this bench> --bench
//! --profile-time 5 scan/bye/sipdialog` counts them (divide by the calls of `scan_view`).

mod support;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use rsip::prelude::*;
use sipdialog::wire::MessageView;
use support::calls;

const GROUP: &str = "scan";

#[inline(never)]
fn scan_view(bytes: &[u8]) -> usize {
    let view = MessageView::parse(bytes).expect("a valid message");
    view.call_id().len() + view.from_tag().map_or(0, <[u8]>::len) + view.cseq().number as usize
}

fn rsip_scan(bytes: &[u8]) -> usize {
    let msg = rsip::SipMessage::try_from(bytes).expect("a valid message");
    let call_id = msg.call_id_header().expect("Call-ID").value().len();
    let tag = msg.from_header().expect("From").tag().ok().flatten();
    call_id + tag.map_or(0, |t| t.value().len())
}

fn bench(c: &mut Criterion) {
    let id = &calls::identities(1, 7)[0];
    let messages = [
        ("bye", calls::in_dialog_request(id, "BYE", 2)),
        (
            "invite_sdp",
            calls::invite_with_sdp(&id.call_id, &id.remote_tag, 0x5eed),
        ),
    ];
    let mut g = c.benchmark_group(GROUP);
    for (name, bytes) in &messages {
        println!("{name}: {} bytes", bytes.len());
        g.bench_function(BenchmarkId::new(*name, "sipdialog"), |b| {
            b.iter(|| scan_view(black_box(bytes)))
        });
        g.bench_function(BenchmarkId::new(*name, "rsip"), |b| {
            b.iter(|| rsip_scan(black_box(bytes)))
        });
    }
    g.finish();
}

fn main() {
    let mut report = support::run(bench);
    for name in ["bye", "invite_sdp"] {
        report.ratio(
            &format!("scan of the {name}"),
            GROUP,
            &format!("{name}/sipdialog"),
            &format!("{name}/rsip"),
        );
    }
    report.print();
}
