//! A realistic workload through the dialog table: create dialogs from raw 200 OK responses,
//! route in-dialog requests from raw bytes on every core, end every call with a BYE, and
//! report throughput and memory per dialog.
//!
//! `cargo run --release --example demo -- --dialogs 1000000 --requests 8000000`

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::alloc::{live_bytes, TrackingAlloc};
use indicatif::{ProgressBar, ProgressStyle};
use sipdialog::id::DialogKey;
use sipdialog::state::{DialogState, Event};
use sipdialog::table::{CSeqOrder, DialogTable, NewDialog};
use sipdialog::wire::MessageView;

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

/// Drive the sipdialog table with a realistic SBC workload.
#[derive(Parser, Debug)]
struct Args {
    /// Concurrent dialogs to create.
    #[arg(long, default_value_t = 1_000_000)]
    dialogs: usize,
    /// In-dialog requests to route, spread over all threads.
    #[arg(long, default_value_t = 8_000_000)]
    requests: u64,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// The 200 OK the callee sends; the caller's side of the dialog is created from it.
fn ok_response(id: &common::Identity) -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{len:x}a;received=192.0.2.1\r\n\
         Record-Route: <sip:192.0.2.1;lr>\r\n\
         From: <sip:bob@biloxi.example.com>;tag={local}\r\n\
         To: \"Alice\" <sip:alice@atlanta.example.com>;tag={remote}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@198.51.100.7:5060>\r\n\
         Content-Length: 0\r\n\r\n",
        local = id.local_tag,
        remote = id.remote_tag,
        call_id = id.call_id,
        len = id.call_id.len(),
    )
    .into_bytes()
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(what.to_owned());
    bar.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:40}] {human_pos}/{human_len} {per_sec}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64())
}

fn main() {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let ids = common::identities(args.dialogs, 2026);
    let responses: Vec<Vec<u8>> = ids.iter().map(ok_response).collect();

    let heap_before = live_bytes();
    let table = DialogTable::with_capacity(args.dialogs as u32).expect("OS randomness");
    let create = bar(args.dialogs as u64, "creating dialogs");
    let start = Instant::now();
    for (i, bytes) in responses.iter().enumerate() {
        // The caller received the 200 OK: parse it and key the dialog from it.
        let view = MessageView::parse(bytes).expect("well-formed 200 OK");
        let init = NewDialog {
            state: DialogState::CONFIRMED,
            local_cseq: view.cseq().number,
            remote_cseq: None,
            now_ms: 0,
        };
        table
            .insert(&DialogKey::received(&view), &init)
            .expect("capacity is the dialog count");
        if i % 10_000 == 0 {
            create.set_position(i as u64);
        }
    }
    let created_in = start.elapsed();
    create.finish();
    let heap_per_dialog = (live_bytes() - heap_before) as f64 / args.dialogs as f64;
    drop(responses);

    // A pool of in-dialog requests per thread (INFO, then re-INVITE-style CSeq growth).
    let pool = 50_000.min(args.dialogs);
    let route = bar(args.requests, "routing requests");
    let unmatched = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (table, ids, route, unmatched) = (&table, &ids, &route, &unmatched);
            let share = args.requests / threads as u64
                + u64::from((t as u64) < args.requests % threads as u64);
            s.spawn(move || {
                let mut rng = common::Rng::new(t as u64 + 1);
                let requests: Vec<Vec<u8>> = (0..pool)
                    .map(|_| {
                        let id = &ids[rng.below(ids.len() as u64) as usize];
                        common::in_dialog_request(id, "INFO", 2 + rng.below(1000) as u32)
                    })
                    .collect();
                for n in 0..share {
                    let bytes = &requests[(n as usize) % pool];
                    let m = table.lookup_message(bytes).expect("well-formed request");
                    let Some(h) = m.dialog else {
                        unmatched.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    // Lower CSeqs than one already seen would get a 500: count nothing here.
                    let _: Result<CSeqOrder, _> =
                        table.advance_remote_cseq(h, m.message.cseq().number);
                    let _ = table.touch(h, n);
                    if n % 10_000 == 0 {
                        route.inc(10_000.min(share - n));
                    }
                }
            });
        }
    });
    let routed_in = start.elapsed();
    route.finish();

    let end = bar(args.dialogs as u64, "ending calls (BYE)");
    let start = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let bye = common::in_dialog_request(id, "BYE", 5_000);
        let m = table.lookup_message(&bye).expect("well-formed BYE");
        let h = m.dialog.expect("every call is live until its BYE");
        table.transition(h, Event::Terminate).expect("live dialog");
        table.remove(h).expect("live dialog");
        if i % 10_000 == 0 {
            end.set_position(i as u64);
        }
    }
    let ended_in = start.elapsed();
    end.finish();

    println!();
    println!(
        "dialogs created     {} in {:.2?} ({})",
        args.dialogs,
        created_in,
        rate(args.dialogs as u64, created_in)
    );
    println!(
        "requests routed     {} on {threads} threads in {:.2?} ({}; unmatched {})",
        args.requests,
        routed_in,
        rate(args.requests, routed_in),
        unmatched.load(Ordering::Relaxed)
    );
    println!(
        "calls ended (BYE)   {} in {:.2?} ({}; BYE bytes built on the fly)",
        args.dialogs,
        ended_in,
        rate(args.dialogs as u64, ended_in)
    );
    println!(
        "heap per dialog     {heap_per_dialog:.1} bytes (slots + index, counted by the allocator)"
    );
    println!("dialogs left        {}", table.len());
    assert_eq!(table.len(), 0, "every call ended");
}
