//! Prints what the library and the reference extractor read from each file given (or from
//! each argument prefixed with `=`, taken as bytes with `\r` `\n` `\t` `\"` `\\` `\xNN` escapes).
//!
//! `cargo run --example probe -- artifacts/wire_parse/crash-... '=INVITE sip:a SIP/2.0\r\n...'`

use sipdialog::wire::MessageView;
use sipdialog_fuzz::reference;

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'r' => out.push(b'\r'),
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'x' if i + 3 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                    continue;
                }
                c => out.push(c),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn main() {
    for arg in std::env::args().skip(1) {
        let data = match arg.strip_prefix('=') {
            Some(lit) => unescape(lit),
            None => std::fs::read(&arg).unwrap(),
        };
        println!("input:     b\"{}\"", data.escape_ascii());
        match MessageView::parse(&data) {
            Ok(v) => println!(
                "library:   accept call_id={:?} from_tag={:?} to_tag={:?} cseq={} {:?} cl={:?} body={:?} as_bytes={:?}",
                v.call_id().escape_ascii().to_string(),
                v.from_tag().map(|t| t.escape_ascii().to_string()),
                v.to_tag().map(|t| t.escape_ascii().to_string()),
                v.cseq().number,
                v.cseq().method.escape_ascii().to_string(),
                v.content_length(),
                v.body().escape_ascii().to_string(),
                v.as_bytes().escape_ascii().to_string(),
            ),
            Err(e) => println!("library:   reject {e:?} ({})", e.status().0),
        }
        match reference::extract(&data) {
            Ok((_, id)) => println!(
                "reference: accept call_id={:?} from_tag={:?} to_tag={:?} cseq={} {:?} cl={:?} lenient={:?}",
                id.call_id.escape_ascii().to_string(),
                id.from_tag.as_ref().map(|t| t.escape_ascii().to_string()),
                id.to_tag.as_ref().map(|t| t.escape_ascii().to_string()),
                id.cseq_number,
                id.cseq_method.escape_ascii().to_string(),
                id.content_length,
                id.lenient,
            ),
            Err(p) => println!("reference: reject {p:?}"),
        }
        if let (Ok(v), Ok((split, _))) = (MessageView::parse(&data), reference::extract(&data)) {
            let mut l = Vec::new();
            let r = reference::top_via(&split, &mut l);
            println!("library   top_via: {:?}", v.top_via());
            println!("reference top_via: {r:?} lenient={l:?}");
        }
        println!();
    }
}
