//! `MessageView::parse` on arbitrary bytes.
//!
//! - never panics; every refusal maps to 400, 501, 505 or 513;
//! - every accepted message has the identity (start line, Call-ID, From/To tags, CSeq) that
//!   the independent reference extractor (`sipdialog_fuzz::reference`) reads from the same
//!   bytes, and satisfies the scanner's documented rules (one Call-ID/From/To/CSeq, CSeq below
//!   2^31 and equal to the request method, body framed by Content-Length within the buffer);
//! - the header list, the raw-header accessors and Content-Length/Max-Forwards agree with the
//!   reference's split of the header block;
//! - tighter `ScanLimits` never accept what the defaults refuse, nor read a different identity;
//! - a message the RFC fully allows (no `Leniency`), well inside the limits, is accepted.
//! - every violation of RFC 3261 that RFC 4475 does not sanction is refused (the reference
//!   lists the ones it finds; the scanner must not accept a message with any of them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipdialog::id::DialogKey;
use sipdialog::wire::{HeaderName, MessageView, Method, ScanLimits, StartLine, WireError};
use sipdialog_fuzz::reference::{self, unfold_raw, Identity, Leniency, Split, Which};

/// Grammar violations RFC 4475 lets a parser tolerate, with the identity still well defined
/// (see `reference::Leniency`).
const TOLERATED: &[Leniency] = &[
    // §3.1.2.9, §3.1.2.10: runs of SP in the request line.
    Leniency::StartLineSpacing,
    // §3.1.2.15: an unquoted display name with non-token characters ("infer the quotes").
    Leniency::DisplayNameNotToken,
];

fn show(data: &[u8]) -> String {
    data.escape_ascii().to_string()
}

fn check_error(e: &WireError) {
    let (code, reason) = e.status();
    assert!(
        matches!(code, 400 | 501 | 505 | 513),
        "{e:?} maps to {code} {reason}"
    );
    assert!(!reason.is_empty());
    let _ = e.to_string();
}

fn check_accepted(data: &[u8], view: &MessageView<'_>, split: &Split, id: &Identity) {
    let ctx = || show(data);
    for l in &id.lenient {
        assert!(TOLERATED.contains(l), "accepted despite {l:?}: {}", ctx());
    }

    // Start line.
    match view.start_line() {
        StartLine::Request {
            method,
            method_token,
            ..
        } => {
            assert_eq!(
                Some(method_token),
                id.method.as_deref(),
                "method: {}",
                ctx()
            );
            assert_eq!(method, Method::from_bytes(method_token));
            assert_eq!(view.method(), Some(method));
            assert!(view.is_request() && view.status_code().is_none());
            assert!(view.request_uri().is_some_and(|u| !u.is_empty()));
        }
        StartLine::Response { code, .. } => {
            assert_eq!(Some(code), id.status, "status: {}", ctx());
            assert!((100..=699).contains(&code));
            assert!(!view.is_request() && view.method().is_none());
            assert_eq!(view.status_code(), Some(code));
        }
    }

    // Identity.
    assert_eq!(view.call_id(), &id.call_id[..], "Call-ID: {}", ctx());
    let tag_text = |t: Option<&[u8]>| t.map(<[u8]>::to_vec);
    assert_eq!(
        tag_text(view.from_tag()),
        id.from_tag,
        "From tag: {}",
        ctx()
    );
    assert_eq!(tag_text(view.to_tag()), id.to_tag, "To tag: {}", ctx());
    let cseq = view.cseq();
    assert!(cseq.number < 1 << 31);
    assert_eq!(cseq.number, id.cseq_number, "CSeq number: {}", ctx());
    assert_eq!(cseq.method, &id.cseq_method[..], "CSeq method: {}", ctx());
    if let StartLine::Request { method_token, .. } = view.start_line() {
        assert_eq!(method_token, cseq.method);
    }
    let key = DialogKey::received(view);
    let (local, remote) = if view.is_request() {
        (view.to_tag(), view.from_tag())
    } else {
        (view.from_tag(), view.to_tag())
    };
    assert_eq!(key.call_id, view.call_id());
    assert_eq!(key.local_tag, local.unwrap_or_default());
    assert_eq!(key.remote_tag, remote.unwrap_or_default());
    let sent = DialogKey::sent(view);
    assert_eq!(
        (sent.local_tag, sent.remote_tag),
        (key.remote_tag, key.local_tag)
    );

    // Exactly one of each identity header (the reference counted them too).
    for w in [Which::CallId, Which::From, Which::To, Which::CSeq] {
        assert_eq!(reference::values_of(split, w).len(), 1, "{w:?}: {}", ctx());
    }

    // Framing.
    assert_eq!(
        view.content_length().map(u64::from),
        id.content_length,
        "Content-Length: {}",
        ctx()
    );
    assert_eq!(view.body(), &data[id.body.0..id.body.1], "body: {}", ctx());
    if let Some(n) = view.content_length() {
        assert_eq!(view.body().len(), n as usize);
    }
    let as_bytes = view.as_bytes();
    assert!(as_bytes.as_ptr() as usize >= data.as_ptr() as usize);
    assert!(as_bytes.ends_with(view.body()));
    assert_eq!(
        as_bytes.as_ptr() as usize + as_bytes.len(),
        data.as_ptr() as usize + id.body.1,
        "as_bytes must end where the body ends: {}",
        ctx()
    );
    // Documented: "from the start line to the end of the body".
    assert_eq!(
        as_bytes,
        &data[split.start_offset..id.body.1],
        "as_bytes: {}",
        ctx()
    );

    // The header list, unfolded, equals the reference's fields.
    let headers: Vec<_> = view.headers().collect();
    assert_eq!(headers.len(), split.fields.len(), "header count: {}", ctx());
    for (h, f) in headers.iter().zip(&split.fields) {
        assert_eq!(h.name, &f.name[..], "header name: {}", ctx());
        assert_eq!(unfold_raw(h.value), f.value, "header value: {}", ctx());
        assert_eq!(h.kind, HeaderName::classify(h.name));
    }

    // Raw accessors: the first value of each header, trimmed of white space (not bare CRs).
    let first = |w: Which| {
        reference::values_of(split, w)
            .first()
            .map(|v| reference::trim(v).to_vec())
    };
    let accessors: [(Which, Option<&[u8]>); 9] = [
        (Which::Contact, view.contact()),
        (Which::RecordRoute, view.record_route()),
        (Which::Route, view.route()),
        (Which::Event, view.event()),
        (Which::ReferTo, view.refer_to()),
        (Which::Replaces, view.replaces()),
        (Which::ReferredBy, view.referred_by()),
        (Which::SubscriptionState, view.subscription_state()),
        (Which::Timestamp, view.timestamp()),
    ];
    for (w, got) in accessors {
        assert_eq!(got.map(unfold_raw), first(w), "{w:?}: {}", ctx());
    }
    match reference::values_of(split, Which::MaxForwards)[..] {
        [] => assert_eq!(view.max_forwards(), None),
        [one] => assert_eq!(
            view.max_forwards().map(u64::from),
            reference::decimal_value(one).ok().flatten(),
            "Max-Forwards: {}",
            ctx()
        ),
        _ => panic!("accepted two Max-Forwards: {}", ctx()),
    }
    // `values` never panics and yields only non-empty, trimmed elements.
    for name in [
        HeaderName::Via,
        HeaderName::RecordRoute,
        HeaderName::Contact,
        HeaderName::Other,
    ] {
        for v in view.values(name) {
            assert!(!v.is_empty());
        }
    }
    check_via(data, view, split);
}

/// `top_via` against the reference's reading of the first Via element, both ways.
fn check_via(data: &[u8], view: &MessageView<'_>, split: &Split) {
    let ctx = || show(data);
    let mut lenient = Vec::new();
    let want = reference::top_via(split, &mut lenient);
    let got = view.top_via();
    match (&got, &want) {
        (Ok(None), None) => {}
        (Ok(Some(v)), Some(Ok(r))) => {
            assert!(
                lenient.is_empty(),
                "Via accepted despite {lenient:?}: {}",
                ctx()
            );
            assert_eq!(unfold_raw(v.sent_by), r.sent_by, "Via sent-by: {}", ctx());
            assert_eq!(
                v.branch.map(<[u8]>::to_vec),
                r.branch,
                "Via branch: {}",
                ctx()
            );
        }
        (Err(e), Some(Err(()))) => assert_eq!(e.status().0, 400),
        // A Via the RFC does not allow may be refused.
        (Err(e), Some(Ok(_))) if !lenient.is_empty() => assert_eq!(e.status().0, 400),
        _ => panic!("top_via {got:?}, reference {want:?}: {}", ctx()),
    }
    let top = got.ok().flatten();
    assert_eq!(view.via_branch(), top.and_then(|v| v.branch));
    assert_eq!(view.via_sent_by(), top.map(|v| v.sent_by));
}

/// Limits derived from the input, so that the fuzzer explores them without a header of its own.
fn tight_limits(data: &[u8]) -> ScanLimits {
    let h = data.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    ScanLimits {
        max_message: data.len().saturating_sub((h & 3) as usize),
        max_line: 1 + (h >> 2) as usize % 128,
        max_headers: 1 + (h >> 10) as usize % 24,
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = MessageView::parse(data);
    let reference = reference::extract(data);
    match (&parsed, &reference) {
        (Ok(view), Ok((split, id))) => check_accepted(data, view, split, id),
        (Ok(_), Err(p)) => panic!("accepted, but the reference finds {p:?}: {}", show(data)),
        (Err(e), Ok((split, id))) => {
            check_error(e);
            // A message the RFC fully allows, well inside the default limits, must be taken.
            let small = data.len() <= 4096 && split.fields.len() <= 256;
            assert!(
                !(small && id.lenient.is_empty()),
                "refused ({e:?}) a valid message: {}",
                show(data)
            );
        }
        (Err(e), Err(_)) => check_error(e),
    }

    // Tighter limits: refuse more, never accept more, never read differently.
    let limits = tight_limits(data);
    match (MessageView::parse_with(data, &limits), &parsed) {
        (Err(e), _) => check_error(&e),
        (Ok(tight), Ok(view)) => {
            assert_eq!(tight.call_id(), view.call_id());
            assert_eq!(tight.from_tag(), view.from_tag());
            assert_eq!(tight.to_tag(), view.to_tag());
            assert_eq!(tight.cseq(), view.cseq());
            assert_eq!(tight.body(), view.body());
            assert_eq!(tight.start_line(), view.start_line());
        }
        (Ok(_), Err(e)) => panic!(
            "accepted under {limits:?} but refused ({e:?}) under the defaults: {}",
            show(data)
        ),
    }
});
