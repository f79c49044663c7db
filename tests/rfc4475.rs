//! RFC 4475 torture messages against the manifest: every row must match exactly.
//! The corpus in `tests/rfc4475/` is a byte-for-byte copy of the project's shared conformance
//! set (CRLF, NUL and UTF-8 bytes kept), so the test runs from any clone.

use std::path::Path;

use sipdialog::wire::{MessageView, StartLine};

struct Row {
    file: String,
    method_or_status: String,
    call_id: String,
    from_tag: String,
    to_tag: String,
    cseq_num: String,
    cseq_method: String,
    verdict: String,
}

fn rows() -> Vec<Row> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475");
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let mut lines = manifest.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (f, m, c, ft, tt, n, cm, v) = (
        col("file"),
        col("method_or_status"),
        col("call_id"),
        col("from_tag"),
        col("to_tag"),
        col("cseq_num"),
        col("cseq_method"),
        col("dialog_verdict"),
    );
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            Row {
                file: cells[f].into(),
                method_or_status: cells[m].into(),
                call_id: cells[c].into(),
                from_tag: cells[ft].into(),
                to_tag: cells[tt].into(),
                cseq_num: cells[n].into(),
                cseq_method: cells[cm].into(),
                verdict: cells[v].into(),
            }
        })
        .collect()
}

fn text(bytes: Option<&[u8]>) -> String {
    bytes.map_or("-".into(), |b| String::from_utf8_lossy(b).into_owned())
}

/// The identity a row lists, compared field by field with what the scanner extracted.
fn assert_identity(row: &Row, view: &MessageView<'_>) {
    let first = match view.start_line() {
        StartLine::Request { method_token, .. } => text(Some(method_token)),
        StartLine::Response { code, .. } => code.to_string(),
    };
    let got = [
        first,
        text(Some(view.call_id())),
        text(view.from_tag()),
        text(view.to_tag()),
        view.cseq().number.to_string(),
        text(Some(view.cseq().method)),
    ];
    let want = [
        &row.method_or_status,
        &row.call_id,
        &row.from_tag,
        &row.to_tag,
        &row.cseq_num,
        &row.cseq_method,
    ];
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{}: identity differs from the manifest", row.file);
    }
}

#[test]
fn every_torture_message_matches_its_manifest_row() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475");
    let rows = rows();
    assert_eq!(rows.len(), 49, "the manifest lists 49 messages");
    let (mut accepted, mut rejected) = (0, 0);
    for row in &rows {
        let bytes = std::fs::read(dir.join(&row.file)).unwrap();
        let result = MessageView::parse(&bytes);
        match (row.verdict.as_str(), &result) {
            ("accept", Ok(view)) => assert_identity(row, view),
            ("accept", Err(e)) => panic!("{}: must be accepted, got {e:?}", row.file),
            ("either", Ok(view)) => assert_identity(row, view),
            ("either", Err(e)) => {
                assert_eq!(
                    e.status().0,
                    400,
                    "{}: either accept or 400, got {e:?}",
                    row.file
                )
            }
            (verdict, result) => {
                let want: u16 = verdict.strip_prefix("reject:").unwrap().parse().unwrap();
                let got = match result {
                    Ok(_) => panic!("{}: must be rejected with {want}", row.file),
                    Err(e) => e.status().0,
                };
                let allowed: &[u16] = if row.file == "mismatch02.dat" {
                    &[501, 400]
                } else {
                    &[want]
                };
                assert!(
                    allowed.contains(&got),
                    "{}: rejected with {got}, want {want}",
                    row.file
                );
            }
        }
        if result.is_ok() {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    println!("rfc4475: {accepted} accepted, {rejected} rejected");
}

#[test]
fn corpus_matches_the_shared_copy_when_present() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/rfc4475");
    if !shared.is_dir() {
        // A clone outside the project checkout has no shared/ beside it; CI always has.
        eprintln!(
            "no shared conformance copy at {}: nothing to compare",
            shared.display()
        );
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475");
    for entry in std::fs::read_dir(&shared).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(dir.join(name)).unwrap(),
            "{name:?} differs from the shared copy"
        );
    }
}

/// A request stamped with where it came from keeps its scan: the view moved onto the stamped
/// copy (`build::stamped`) is what a second scan of the copy would give, for every torture
/// request that scans and every way a source can differ from its Via.
#[test]
fn stamped_views_equal_a_fresh_scan_of_the_copy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475");
    let sources: [std::net::SocketAddr; 3] = [
        "203.0.113.9:40000".parse().unwrap(),
        "192.0.2.1:5060".parse().unwrap(),
        "[2001:db8::9]:5062".parse().unwrap(),
    ];
    let (mut stamped, mut compared) = (Vec::new(), 0);
    for row in rows() {
        let mut bytes = std::fs::read(dir.join(&row.file)).unwrap();
        // And with keepalive CRLFs in front (offsets count from byte 0).
        let mut prefixed = b"\r\n\r\n".to_vec();
        prefixed.extend_from_slice(&bytes);
        for message in [std::mem::take(&mut bytes), prefixed] {
            let Ok(view) = MessageView::parse(&message) else {
                continue;
            };
            if !view.is_request() {
                continue;
            }
            for source in sources {
                let moved = match sipdialog::build::stamped(&view, source, &mut stamped) {
                    Ok(Some(moved)) => format!("{moved:?}"),
                    // Already leads back, or a Via the stamp cannot read: nothing moved.
                    Ok(None) | Err(_) => continue,
                };
                // The moved view carries its decoded Via: so must the fresh one compared.
                let fresh = MessageView::parse(&stamped)
                    .expect("the stamped copy scans")
                    .with_decoded_via();
                assert_eq!(moved, format!("{fresh:?}"), "{}", row.file);
                compared += 1;
            }
        }
    }
    println!("{compared} stamped views compared with a fresh scan");
    assert!(compared >= 40, "only {compared} compared");
}
