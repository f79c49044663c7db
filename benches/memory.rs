//! Heap bytes per dialog at 1 000 000 live dialogs, counted by a global allocator that tracks
//! every byte the table allocates (slab pages, index chunks), divided by the
//! number of dialogs. Identities are realistic (Call-ID 32–48 bytes, tags 8–16). Baseline in
//! the same run: `HashMap<String, Record>` with a formatted key and the same per-dialog fields.
//!
//! Then the whole dialog layer: 1 000 000 calls answered by a `DialogManager` (INVITE, 200,
//! ACK as raw bytes) and held up, its INVITE records aged out: every byte the manager keeps
//! per established call (hot slot, index entry, cold data, timer entry), broken down by
//! structure with `DialogManager::memory`, and the transfer side table, which a call without
//! a transfer must not touch.
//! Run: `cargo bench --bench memory`.

mod support;

use std::collections::HashMap;

use sipdialog::manager::{DialogManager, ManagerConfig, Outbox, Verdict};
use sipdialog::table::HOT_SLOT_BYTES;
use support::calls::alloc::{live_bytes, rss_bytes, TrackingAlloc};
use support::{calls, filled_table, Record};

const DIALOGS: usize = 1_000_000;
/// Calls held up by the manager in the second measurement.
const CALLS: usize = 1_000_000;

#[global_allocator]
static GLOBAL: TrackingAlloc = TrackingAlloc;

fn per_dialog(bytes: isize) -> f64 {
    bytes as f64 / DIALOGS as f64
}

fn main() {
    // Identities are the caller's data, allocated before the measurement starts.
    let ids = calls::identities(DIALOGS, 9);

    let (heap0, rss0) = (live_bytes(), rss_bytes());
    let (table, _handles) = filled_table(&ids, 0);
    let (heap1, rss1) = (live_bytes(), rss_bytes());
    // `_handles` is the bench's own Vec: take it out of the table's figure.
    let handles_bytes = (DIALOGS * std::mem::size_of::<sipdialog::table::DialogHandle>()) as isize;
    let table_bytes = heap1 - heap0 - handles_bytes;
    let slab = table.slab_bytes() as isize;
    assert_eq!(table.len(), DIALOGS);

    let (heap2, rss2) = (live_bytes(), rss_bytes());
    let map: HashMap<String, Record> = ids
        .iter()
        .map(|id| {
            let key = format!("{}|{}|{}", id.call_id, id.local_tag, id.remote_tag);
            (key, Record::default())
        })
        .collect();
    let (heap3, rss3) = (live_bytes(), rss_bytes());
    let baseline_bytes = heap3 - heap2;
    assert_eq!(map.len(), DIALOGS);

    println!("memory at {DIALOGS} live dialogs (heap bytes counted by the global allocator):");
    println!(
        "  sipdialog table:        {:.1} bytes/dialog  (hot slot {HOT_SLOT_BYTES} B; slab {:.1} + index {:.1})",
        per_dialog(table_bytes),
        per_dialog(slab),
        per_dialog(table_bytes - slab)
    );
    println!(
        "  HashMap<String, Record>: {:.1} bytes/dialog  (baseline, same run)",
        per_dialog(baseline_bytes)
    );
    println!(
        "  ratio baseline/sipdialog = {:.2}x",
        baseline_bytes as f64 / table_bytes as f64
    );
    if let (Some(r0), Some(r1), Some(r2), Some(r3)) = (rss0, rss1, rss2, rss3) {
        println!(
            "  RSS growth cross-check:  sipdialog {:.1}, baseline {:.1} bytes/dialog",
            per_dialog(r1 - r0),
            per_dialog(r3 - r2)
        );
    }
    drop(map);
    drop(table);
    manager_per_call(per_dialog(table_bytes - slab));
}

/// An INVITE from a softphone, as `tests/common` writes requests.
fn invite(id: &calls::Identity) -> String {
    format!(
        "INVITE sip:bob@192.0.2.20 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK{tag}\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@atlanta.example.com>;tag={tag}\r\n\
         To: <sip:bob@biloxi.example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@198.51.100.7:5060>\r\n\
         Content-Length: 0\r\n\r\n",
        tag = id.remote_tag,
        call_id = id.call_id,
    )
}

/// `index` is the index's bytes per dialog measured in the table alone.
fn manager_per_call(index: f64) {
    let ids = calls::identities(CALLS, 10);
    let heap0 = live_bytes();
    let bob = DialogManager::new(ManagerConfig {
        capacity: CALLS as u32,
        ..ManagerConfig::default()
    })
    .expect("OS randomness");
    let mut out = Outbox::new();
    for id in &ids {
        let inv = invite(id);
        let Ok(Verdict::NewInvite { to_tag, .. }) = bob.on_received(inv.as_bytes(), 0, &mut out)
        else {
            panic!("INVITE not taken")
        };
        bob.respond(inv.as_bytes(), 200, &Default::default(), 0, &mut out)
            .expect("200");
        let ack = inv
            .replacen("INVITE sip", "ACK sip", 1)
            .replacen("1 INVITE", "1 ACK", 1)
            .replacen(
                "<sip:bob@biloxi.example.com>",
                &format!("<sip:bob@biloxi.example.com>;tag={}", to_tag.as_str()),
                1,
            );
        let Ok(Verdict::Ack { .. }) = bob.on_received(ack.as_bytes(), 0, &mut out) else {
            panic!("ACK not matched")
        };
        out.clear();
    }
    // INVITE records linger 64×T1 for retransmissions: let them go, keep the calls.
    let mut expired = Vec::new();
    let records_gone = 64 * 500 + 1;
    while bob.on_timeout(records_gone, &mut out, &mut expired) > 0 {}
    assert!(expired.is_empty(), "no established call expires");
    assert_eq!((bob.len(), bob.pending_invites()), (CALLS, 0));
    let timers_then = bob.memory().timers;
    // A lap of the timer wheel later every deadline of the setup has come due (what is left
    // is each call's one idle deadline): the calls as a box holds them for hours.
    let lap_later = records_gone + 66_000;
    while bob.on_timeout(lap_later, &mut out, &mut expired) > 0 {}
    assert!(expired.is_empty(), "no established call expires");
    assert_eq!(bob.timer_entries(), CALLS, "one deadline a call");
    let subscriptions: usize = bob
        .table()
        .iter()
        .map(|(h, _)| bob.transfers().subscriptions(h))
        .sum();
    assert_eq!(subscriptions, 0);
    let held = live_bytes() - heap0;
    let per_call = |bytes: usize| bytes as f64 / CALLS as f64;
    let m = bob.memory();
    let rest = held as usize - m.total();
    println!(
        "dialog manager at {CALLS} established calls (UAS side, 98 s after their setup: \
         INVITE records aged out, one timer entry a call):"
    );
    println!(
        "  {:.1} bytes/call, of which (DialogManager::memory):",
        per_call(held as usize)
    );
    for (what, bytes) in [
        ("hot slots (slab)", m.slots),
        ("index (allocated for the capacity)", m.index),
        ("cold entries (info pointer, deadlines)", m.cold_entries),
        (
            "dialog data (identity, URIs, targets, route set)",
            m.dialog_data,
        ),
        ("timer wheels and heaps (room included)", m.timers),
        ("INVITE records", m.records),
    ] {
        println!("    {what:<50} {:>6.1}", per_call(bytes));
    }
    println!(
        "    {:<50} {:>6.1}  (the index alone: {index:.1} in the table above)",
        "the rest: INVITE record map's table, allocator",
        per_call(rest)
    );
    println!(
        "  (when the records had just aged out, the timers held {:.1} bytes/call: the setup's \
         deadlines not yet due)",
        per_call(timers_then)
    );
    println!("  transfer state for calls without a transfer: 0 entries (side table, not the slot)");
}
