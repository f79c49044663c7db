//! Heap bytes per dialog at 1 000 000 live dialogs, counted by a global allocator that tracks
//! every byte the table allocates (slab pages, index table, index entries), divided by the
//! number of dialogs. Identities are realistic (Call-ID 32–48 bytes, tags 8–16). Baseline in
//! the same run: `HashMap<String, Record>` with a formatted key and the same per-dialog fields.
//! Run: `cargo bench --bench memory`.

mod support;

use std::collections::HashMap;

use sipdialog::table::HOT_SLOT_BYTES;
use support::calls::alloc::{live_bytes, rss_bytes, TrackingAlloc};
use support::{calls, filled_table, Record};

const DIALOGS: usize = 1_000_000;

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
}
