//! Finding the dialog of an in-dialog request from its raw bytes (scan, fingerprint, index,
//! slot check) with 1 000 and 1 000 000 live dialogs. Baseline in the same run, the ordinary
//! way: parse with `rsip`, build a `String` key, look it up in `RwLock<HashMap<String, _>>`.
//!
//! Each iteration first copies the next request into one receive buffer, as `recv` would, so
//! the message is in cache as it is on a real SBC while the dialogs it hits are spread over
//! the whole table. Both sides pay the same copy.
//!
//! Two parts of the path are also timed alone, so a run shows where the time goes:
//! `scan_only` is the scan and fingerprint without the index; `index_chained` looks the same
//! dialogs up by precomputed fingerprint, each lookup waiting for the one before it, as in the
//! real path where the scan of the next message sits between two lookups. Unchained, the
//! processor overlaps the cache misses of successive lookups and hides their latency.
//! `papaya_chained` does the same through a `papaya` map from fingerprint to handle, the index
//! the table used before its own, so the two layouts are compared in one run.

mod support;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;

use criterion::{BenchmarkId, Criterion};
use rsip::prelude::*;
use sipdialog::id::{BuildIdentityHasher, DialogKey, Fingerprint};
use sipdialog::table::DialogHandle;
use sipdialog::wire::MessageView;
use support::{calls, filled_table};

const GROUP: &str = "lookup";
const SIZES: [usize; 2] = [1_000, 1_000_000];
/// Requests cycled through: spread over the whole table, so the 1 M case misses the caches
/// the way a busy SBC does.
const SAMPLE: usize = 8_192;

/// The ordinary way: full parse, owned key string, locked map.
fn rsip_lookup(map: &RwLock<HashMap<String, u32>>, bytes: &[u8]) -> Option<u32> {
    let msg = rsip::SipMessage::try_from(bytes).ok()?;
    let call_id = msg.call_id_header().ok()?.value().to_string();
    let from_tag = msg.from_header().ok()?.tag().ok()??;
    let to_tag = msg.to_header().ok()?.tag().ok()??;
    // A received request: local tag = To tag, remote tag = From tag.
    let key = format!("{call_id}|{to_tag}|{from_tag}");
    map.read().ok()?.get(&key).copied()
}

/// Copies a datagram into the receive buffer, as the socket read would.
fn receive<'b>(buf: &'b mut [u8; 2048], datagram: &[u8]) -> &'b [u8] {
    let len = datagram.len().min(buf.len());
    buf[..len].copy_from_slice(&datagram[..len]);
    &buf[..len]
}

fn string_key(id: &calls::Identity) -> String {
    format!("{}|{}|{}", id.call_id, id.local_tag, id.remote_tag)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group(GROUP);
    for n in SIZES {
        let ids = calls::identities(n, 42);
        let mut rng = calls::Rng::new(n as u64);
        let picks: Vec<usize> = (0..SAMPLE).map(|_| rng.below(n as u64) as usize).collect();
        let messages: Vec<Vec<u8>> = picks
            .iter()
            .map(|&i| calls::in_dialog_request(&ids[i], "BYE", 3))
            .collect();

        let (table, handles) = filled_table(&ids, 0);
        for (bytes, &i) in messages.iter().zip(&picks) {
            assert_eq!(
                table.lookup_message(bytes).unwrap().dialog,
                Some(handles[i])
            );
        }
        let mut next = 0;
        let mut recv_buf = [0u8; 2048];
        g.bench_with_input(BenchmarkId::new("sipdialog", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 1) % SAMPLE;
                let datagram = receive(&mut recv_buf, &messages[next]);
                table.lookup_message(black_box(datagram)).map(|m| m.dialog)
            })
        });
        // The scan and fingerprint alone.
        let fingerprinter = table.fingerprinter();
        g.bench_with_input(BenchmarkId::new("scan_only", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 1) % SAMPLE;
                let datagram = receive(&mut recv_buf, &messages[next]);
                let view = MessageView::parse(black_box(datagram)).ok()?;
                Some(fingerprinter.fingerprint(&DialogKey::received(&view)))
            })
        });
        // The index and slot check alone, by precomputed fingerprint. The next pick depends
        // on this lookup's answer (through an opaque zero), so misses are paid one after
        // another, as in the real path, where a scan too long for the processor to look past
        // sits between two lookups. The picks here are as many as the dialogs (up to 2^20),
        // not the 8 192 messages above: 8 192 chunks and slots would stay in the caches, where
        // a busy SBC finds neither. (The fingerprints are read in order, which the processor
        // prefetches.)
        let chained_picks = n.min(1 << 20);
        let fps: Vec<_> = (0..chained_picks)
            .map(|_| {
                let i = rng.below(n as u64) as usize;
                table.fingerprinter().fingerprint(&ids[i].key())
            })
            .collect();
        let zero = black_box(0usize);
        g.bench_with_input(BenchmarkId::new("index_chained", n), &n, |b, _| {
            b.iter(|| {
                let found = table.lookup_fingerprint(fps[next]);
                // Read back from the slot, so the chain runs through the slot's load too
                // (the check inside the lookup is a branch the processor would speculate past).
                let slot_fp = found.and_then(|h| table.fingerprint(h).ok());
                let step = slot_fp.map_or(0, |fp| fp.0 as usize & zero);
                next = (next + 1 + step) % chained_picks;
                found
            })
        });
        // The index the table had before (12-08): a `papaya` map from fingerprint to handle,
        // the same chained lookups and slot check, so the two layouts meet in one run.
        let papaya_index: papaya::HashMap<Fingerprint, DialogHandle, BuildIdentityHasher> =
            papaya::HashMap::builder()
                .capacity(n)
                .hasher(BuildIdentityHasher)
                .build();
        for (id, &h) in ids.iter().zip(&handles) {
            let fp = table.fingerprinter().fingerprint(&id.key());
            papaya_index.pin().insert(fp, h);
        }
        g.bench_with_input(BenchmarkId::new("papaya_chained", n), &n, |b, _| {
            b.iter(|| {
                let guard = papaya_index.guard();
                let found = papaya_index
                    .get(&fps[next], &guard)
                    .copied()
                    .filter(|&h| table.fingerprint(h) == Ok(fps[next]));
                let slot_fp = found.and_then(|h| table.fingerprint(h).ok());
                let step = slot_fp.map_or(0, |fp| fp.0 as usize & zero);
                next = (next + 1 + step) % chained_picks;
                found
            })
        });
        drop(papaya_index);
        drop(table);

        let map: RwLock<HashMap<String, u32>> = RwLock::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| (string_key(id), i as u32))
                .collect(),
        );
        for (bytes, &i) in messages.iter().zip(&picks) {
            assert_eq!(rsip_lookup(&map, bytes), Some(i as u32));
        }
        let mut next = 0;
        g.bench_with_input(BenchmarkId::new("rsip_string_rwlock", n), &n, |b, _| {
            b.iter(|| {
                next = (next + 1) % SAMPLE;
                let datagram = receive(&mut recv_buf, &messages[next]);
                rsip_lookup(&map, black_box(datagram))
            })
        });
    }
    g.finish();
}

fn main() {
    let mut report = support::run(bench);
    for n in SIZES {
        report.ratio(
            &format!("lookup from raw bytes, {n} dialogs"),
            GROUP,
            &format!("sipdialog/{n}"),
            &format!("rsip_string_rwlock/{n}"),
        );
        report.ratio(
            &format!("scan + fingerprint alone, {n} dialogs"),
            GROUP,
            &format!("scan_only/{n}"),
            &format!("rsip_string_rwlock/{n}"),
        );
        report.ratio(
            &format!("index + slot check alone (lookups chained), {n} dialogs"),
            GROUP,
            &format!("index_chained/{n}"),
            &format!("rsip_string_rwlock/{n}"),
        );
        report.ratio(
            &format!("index (chunks of atomic words) against papaya, lookups chained, {n} dialogs"),
            GROUP,
            &format!("index_chained/{n}"),
            &format!("papaya_chained/{n}"),
        );
    }
    report.print();
}
